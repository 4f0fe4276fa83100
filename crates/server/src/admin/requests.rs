//! A tower layer around the tonic services: counts each client request by gRPC method and
//! status code, with its latency until the response starts (for a stream, until it opens).
//!
//! tonic answers an error as a "trailers-only" response (`grpc-status` in the headers); a
//! success carries `grpc-status: 0` in the trailers, after the body, so a response without the
//! header counts as `OK`. A stream that fails later still counted as `OK` when it opened.

use crate::metrics::metrics;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Method names longer than this are cut (a client chooses the path).
const METHOD_CHARS_MAX: usize = 96;

/// Wraps a service in [`RequestMetrics`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMetricsLayer;

impl<S> tower_layer::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> RequestMetrics<S> {
        RequestMetrics { inner }
    }
}

/// The service [`RequestMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RequestMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method: String = request
            .uri()
            .path()
            .chars()
            .take(METHOD_CHARS_MAX)
            .collect();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or("OK", code_name),
                Err(_) => "Unavailable",
            };
            metrics().observe_request(&method, code, started.elapsed());
            result
        })
    }
}

/// The name of a gRPC status code, as gRPC writes it.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::lock;
    use std::convert::Infallible;
    use std::future::Ready;
    use tower_layer::Layer;
    use tower_service::Service;

    /// Answers every request with the given `grpc-status` header, or none.
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut response = http::Response::new(());
            if let Some(code) = self.0 {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(code));
            }
            std::future::ready(Ok(response))
        }
    }

    fn count(method: &str, code: &str) -> u64 {
        let requests = lock(&metrics().requests);
        requests
            .get(&(method.to_string(), code.to_string()))
            .map_or(0, |series| series.count)
    }

    #[tokio::test]
    async fn requests_are_counted_by_method_and_the_code_of_a_trailers_only_answer() {
        let method = "/test.Requests/Counted";
        let request = || http::Request::builder().uri(method).body(()).unwrap();
        let mut ok = RequestMetricsLayer.layer(Answer(None));
        ok.call(request()).await.unwrap();
        ok.call(request()).await.unwrap();
        let mut not_found = RequestMetricsLayer.layer(Answer(Some("5")));
        not_found.call(request()).await.unwrap();
        assert_eq!(count(method, "OK"), 2);
        assert_eq!(count(method, "NotFound"), 1);
        assert_eq!(code_name(14), "Unavailable");
        assert_eq!(code_name(99), "Unknown");
    }
}
