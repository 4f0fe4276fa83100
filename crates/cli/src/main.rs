//! The `chorus` binary.
//!
//! What it is: `chorus server` runs one member of a cluster (flags, or a TOML file, in the
//! style of etcd's); `chorus dev` starts a local cluster of `chorus server` child processes
//! for trying chorus out. What it is not: a client yet (use `etcdctl`); no `put`/`get`/`member`
//! commands of its own so far.

mod dev;
mod server;

use clap::{Parser, Subcommand};

/// chorus: a Raft-replicated key-value store that speaks the etcd v3 API.
#[derive(Parser, Debug)]
#[command(name = "chorus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the server's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run one member of a chorus cluster.
    Server(server::ServerArgs),
    /// Start a local cluster of several members as child processes (Ctrl-C stops them all).
    Dev(dev::DevArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match &cli.command {
        Command::Server(args) => args.log_level(),
        Command::Dev(_) => None,
    };
    let filter = match tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG") {
        Ok(filter) => filter,
        Err(_) => {
            match tracing_subscriber::EnvFilter::try_new(level.as_deref().unwrap_or("info")) {
                Ok(filter) => filter,
                Err(error) => {
                    eprintln!("chorus: --log-level {level:?}: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chorus: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Dev(args) => dev::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chorus: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
