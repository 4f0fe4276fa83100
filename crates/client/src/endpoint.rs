//! Endpoint strings as users write them (`host:port` or `http://host:port`) turned into the
//! URIs tonic connects to. Pure, so it is tested without a network.

use crate::Error;

/// The URI for one endpoint: `http://` is added when no scheme is given; `https` is refused
/// (chorus serves no TLS yet), as are a missing host, a missing or non-numeric port, and paths.
pub fn endpoint_uri(endpoint: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim();
    let authority = match trimmed.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(invalid("https is not supported (no TLS yet)")),
        Some((scheme, _)) => return Err(invalid(&format!("unknown scheme {scheme:?}"))),
        None => trimmed,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('/') {
        return Err(invalid("an endpoint has no path"));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(invalid("expected host:port"));
    };
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    if port.parse::<u16>().is_err() {
        return Err(invalid("the port is not a number from 0 to 65535"));
    }
    Ok(format!("http://{authority}"))
}

/// Splits a comma-separated endpoint list (as in `--endpoints` and `CHORUS_ENDPOINTS`),
/// skipping empty items.
pub fn split_endpoints(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn host_port_gets_the_http_scheme() {
        assert_eq!(
            endpoint_uri("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_uri("http://localhost:2379/").unwrap(),
            "http://localhost:2379"
        );
        assert_eq!(endpoint_uri("[::1]:2379").unwrap(), "http://[::1]:2379");
    }

    #[test]
    fn bad_endpoints_are_refused_with_a_reason() {
        for bad in [
            "https://127.0.0.1:2379",
            "ftp://x:1",
            "127.0.0.1",
            ":2379",
            "host:port",
            "host:70000",
            "http://host:1/path",
        ] {
            let error = endpoint_uri(bad).unwrap_err();
            assert!(
                matches!(error, Error::InvalidEndpoint { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn lists_split_on_commas_and_skip_blanks() {
        assert_eq!(
            split_endpoints(" a:1, b:2,,c:3 ,"),
            vec!["a:1".to_string(), "b:2".to_string(), "c:3".to_string()]
        );
        assert!(split_endpoints("").is_empty());
    }
}
