//! The `chorus` binary.
//!
//! What it is: `chorus server` runs one member of a cluster (flags, or a TOML file, in the
//! style of etcd's); `chorus dev` starts a local cluster of `chorus server` child processes
//! for trying chorus out; `chorus put/get/del/txn/watch/lease/member/status` are client commands
//! in the style of `etcdctl`, built on `chorus-client` (`client_cmd`); `chorus snapshot restore`
//! seeds a new member from a saved snapshot.

mod client_cmd;
mod dev;
mod server;
mod snapshot;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: under a 64-client put load a fifth of the leader's
/// samples were in glibc's allocator (`_int_malloc`, `unlink_chunk`, `malloc_consolidate`), and
/// freed memory returns to the system sooner (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux). Why: mimalloc asks for them on
/// its arenas, and then every first touch of fresh memory makes the kernel zero a whole 2 MiB
/// page; under 64-client puts that `clear_page` was 7% of the members' samples, and 0.1% with
/// huge pages off (docs/performance.md). Databases commonly run without them for the same
/// reason and for steadier latency. A kernel that refuses only costs the gain.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("chorus: cannot turn transparent huge pages off ({error}); going on");
    }
}

/// Shapes the server's runtime so that it batches gRPC responses: no LIFO slot, and one worker
/// thread fewer than the cores (at least one) unless `TOKIO_WORKER_THREADS` says otherwise.
///
/// Why: the group thread answers a cycle's writes together, and each answer wakes its
/// request's HTTP/2 stream task. With tokio's LIFO slot the connection task that a stream
/// woke ran right after that stream and wrote its one response: one `writev` per response.
/// Without the slot it queues behind the other answered streams and writes their responses
/// in one go. With a worker per core, though, a task queued instead of run next makes the
/// runtime wake an idle worker to steal it: a futex wake and a thread switch per answer,
/// which at 64 clients cost more than the batching saved. The group thread (node.rs) takes
/// most of a core under load, so the workers get the others. Under 64-client puts on two
/// cores: `writev` 63k–81k → 16k–17k and futex calls 49k–58k → 4k in 4 s, CPU per put
/// 63–80 → 52–56 µs, throughput 17k–21k → 23k–25k puts/s (docs/performance.md). The LIFO
/// setting needs `--cfg tokio_unstable` (.cargo/config.toml); without it the slot stays.
fn shape_server_runtime(builder: &mut tokio::runtime::Builder) {
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
}

/// chorus: a Raft-replicated key-value store that speaks the etcd v3 API.
#[derive(Parser, Debug)]
#[command(name = "chorus", version, about)]
struct Cli {
    #[command(flatten)]
    client: client_cmd::ClientArgs,
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
    #[command(flatten)]
    Client(client_cmd::ClientCommand),
    /// Snapshot files: `chorus snapshot restore FILE` seeds a new member from one.
    Snapshot(snapshot::SnapshotArgs),
    /// Load any etcd v3 endpoint list (chorus or etcd) and print throughput and latency.
    Bench(chorus_bench::BenchArgs),
}

/// `chorus bench`: one human line, then one JSON line.
async fn bench(args: chorus_bench::BenchArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let report = chorus_bench::run(&args).await?;
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth an error.
    let _ = writeln!(out, "{}\n{}", report.human(), report.json());
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Server(_)) {
        disable_transparent_huge_pages();
    }
    let level = match &cli.command {
        Command::Server(args) => args.log_level(),
        Command::Dev(_) | Command::Client(_) | Command::Snapshot(_) | Command::Bench(_) => None,
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, Command::Server(_)) {
        shape_server_runtime(&mut builder);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chorus: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Server(args) => report(server::run(args).await),
            Command::Dev(args) => report(dev::run(args).await),
            Command::Snapshot(args) => report(snapshot::run(args).await),
            Command::Client(command) => client_cmd::run(cli.client, command).await,
            Command::Bench(args) => report(bench(args).await),
        }
    })
}

/// The exit code of `chorus server` and `chorus dev`, with their error on standard error.
fn report(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chorus: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
