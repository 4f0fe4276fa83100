//! The client commands of the `chorus` binary (`put`, `get`, `del`, `txn`, `watch`, `lease`,
//! `member`, `status`), built on `chorus-client`. Output is etcdctl's "simple" format by
//! default and one JSON object per result with `--json`.
//!
//! Exit codes: 0 success; 1 the cluster answered with an error (e.g. `etcdserver: key not
//! found`); 2 usage (bad flags or input, including a malformed txn); 3 the cluster could not
//! be reached in time, or a write's outcome is unknown.

mod kv;
mod lease;
mod member;
mod output;
mod status;
mod txn;
mod txn_parse;
mod watch;

use chorus_client::{Client, ClientConfig};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// What `chorus dev` starts (its first three members' client ports).
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:2379,127.0.0.1:2381,127.0.0.1:2383";
/// The environment variable read when `--endpoints` is not given.
pub const ENDPOINTS_ENV: &str = "CHORUS_ENDPOINTS";

/// The flags every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Client commands: the members to talk to, comma-separated `host:port` or
    /// `http://host:port` [default: $CHORUS_ENDPOINTS, else 127.0.0.1:2379,127.0.0.1:2381,127.0.0.1:2383]
    #[arg(long, global = true, value_name = "LIST")]
    pub endpoints: Option<String>,
    /// Client commands: print one JSON object per result.
    #[arg(long, global = true)]
    pub json: bool,
    /// Client commands: the deadline of each call, retries on other endpoints included
    /// (e.g. `10s`, `500ms`, `1m`; a bare number is seconds).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Write a key: `chorus put KEY VALUE`.
    Put(kv::PutArgs),
    /// Read a key or a range: `chorus get KEY [--prefix]`.
    Get(kv::GetArgs),
    /// Delete a key or a range: `chorus del KEY [--prefix]`.
    Del(kv::DelArgs),
    /// Run a transaction read from standard input (etcdctl's format: compares, a blank line,
    /// the ops if they hold, a blank line, the ops otherwise).
    Txn(txn::TxnArgs),
    /// Print the changes to a key or a range as they happen.
    Watch(watch::WatchArgs),
    /// Grant, revoke, inspect and keep alive leases.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// List and change the cluster's members.
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// The status of every member of the cluster (role, term, indexes, lag), as a table.
    Status,
}

/// Why a client command failed; decides the exit code.
#[derive(Debug)]
pub enum CommandError {
    Usage(String),
    Client(chorus_client::Error),
    Output(std::io::Error),
}

impl From<chorus_client::Error> for CommandError {
    fn from(error: chorus_client::Error) -> CommandError {
        CommandError::Client(error)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> CommandError {
        CommandError::Output(error)
    }
}

impl CommandError {
    fn exit_code(&self) -> u8 {
        use chorus_client::Error;
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Client(
                Error::InvalidEndpoint { .. } | Error::NoEndpoints | Error::InvalidArgument(_),
            ) => 2,
            CommandError::Client(error) if error.is_server_error() => 1,
            CommandError::Client(_) => 3,
            CommandError::Output(_) => 1,
        }
    }

    fn message(&self) -> String {
        match self {
            CommandError::Usage(message) => message.clone(),
            CommandError::Client(error) => error.to_string(),
            CommandError::Output(error) => format!("writing the output: {error}"),
        }
    }
}

/// The endpoint list: `--endpoints`, else `$CHORUS_ENDPOINTS`, else `chorus dev`'s.
fn endpoint_list(args: &ClientArgs) -> String {
    args.endpoints
        .clone()
        .or_else(|| std::env::var(ENDPOINTS_ENV).ok())
        .filter(|list| !list.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINTS.to_string())
}

fn client(args: &ClientArgs) -> Result<Client, CommandError> {
    let mut config = ClientConfig::new(chorus_client::split_endpoints(&endpoint_list(args)));
    config.call_timeout = args.timeout;
    Ok(Client::new(config)?)
}

/// Runs a client command; prints `Error: ...` on standard error when it fails.
pub async fn run(args: ClientArgs, command: ClientCommand) -> ExitCode {
    let result = match client(&args) {
        Ok(client) => {
            let result = dispatch(&client, &args, command).await;
            // A write opened a session; closing it frees the cluster's slot at once instead
            // of after its TTL. Failing to close changes nothing the command did.
            let _ = client.close_session().await;
            result
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`chorus watch ... | head`) is a normal end.
        Err(CommandError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("Error: {}", error.message());
            ExitCode::from(error.exit_code())
        }
    }
}

async fn dispatch(
    client: &Client,
    args: &ClientArgs,
    command: ClientCommand,
) -> Result<(), CommandError> {
    let json = args.json;
    match command {
        ClientCommand::Put(args) => kv::put(client, json, args).await,
        ClientCommand::Get(args) => kv::get(client, json, args).await,
        ClientCommand::Del(args) => kv::del(client, json, args).await,
        ClientCommand::Txn(args) => txn::run(client, json, args).await,
        ClientCommand::Watch(args) => watch::run(client, json, args).await,
        ClientCommand::Lease(command) => lease::run(client, json, command).await,
        ClientCommand::Member(command) => member::run(client, json, command).await,
        ClientCommand::Status => status::run(client, json, args.timeout).await,
    }
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A lease or member id as etcdctl prints it (hex), with or without `0x`.
pub fn parse_hex_id(text: &str) -> Result<u64, CommandError> {
    let digits = text.trim().trim_start_matches("0x");
    u64::from_str_radix(digits, 16)
        .map_err(|_| CommandError::Usage(format!("{text:?} is not a hexadecimal id")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        for bad in ["", "0s", "-1s", "10x", "s", "2d", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_hex() {
        assert_eq!(
            parse_hex_id("694d71ddacfda227").unwrap(),
            0x694d71ddacfda227
        );
        assert_eq!(parse_hex_id("0x10").unwrap(), 16);
        assert!(parse_hex_id("xyz").is_err());
    }

    #[test]
    fn exit_codes_tell_server_errors_from_usage_and_unavailability() {
        let server = CommandError::Client(chorus_client::Error::Server {
            code: tonic_code_invalid_argument(),
            message: "etcdserver: key not found".into(),
        });
        assert_eq!(server.exit_code(), 1);
        assert_eq!(CommandError::Usage("bad".into()).exit_code(), 2);
        let unavailable = CommandError::Client(chorus_client::Error::Unavailable {
            message: "down".into(),
        });
        assert_eq!(unavailable.exit_code(), 3);
    }

    fn tonic_code_invalid_argument() -> chorus_client::error::Code {
        chorus_client::error::Code::InvalidArgument
    }
}
