//! `chorus-sim`: runs seeds, prints one summary line, and for every violation the seed, the
//! checker, the exact replay command and the last trace events. Exits non-zero on a violation.

use anyhow::{bail, Context};
use chorus_sim::faults::FaultSwitch;
use chorus_sim::history_json::write_history;
use chorus_sim::runner::{self, Report, REPORT_TRACE_EVENTS};
use chorus_sim::scenario::RunOptions;
use chorus_sim::time::{Time, SECOND};
use chorus_sim::workload::ClientMode;
use clap::Parser;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Deterministic simulation of a chorus cluster: seed in, verdict out.
#[derive(Parser, Debug)]
#[command(name = "chorus-sim", version)]
struct Cli {
    /// How many seeds to run, starting at --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed (alone: replay exactly this seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replicas in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Simulated seconds of workload per seed (faults in the first two thirds).
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Break raft on purpose: commit-without-majority, forget-vote, read-without-quorum,
    /// accept-stale-append, lease-beyond-drift-bound (lease reads under clocks slower than
    /// their drift bound).
    #[arg(long)]
    fault: Option<String>,
    /// Clients write without sessions: each write sent once, a retry is a new operation (the
    /// mode before sessions). By default every write goes in a client session, retried with
    /// its sequence until answered, and the `exactly-once` checker runs.
    #[arg(long, conflicts_with = "break_dedup")]
    no_sessions: bool,
    /// Break deduplication on purpose: sessions, but every retry carries a new sequence, so
    /// the replica applies it again; the checkers must report it.
    #[arg(long)]
    break_dedup: bool,
    /// Leaders serve linearizable reads from their lease (drift bound 1000 ppm) instead of
    /// confirming each batch with a heartbeat round.
    #[arg(long)]
    read_lease: bool,
    /// Followers answer "not leader" instead of handing writes to the leader through raft.
    #[arg(long)]
    no_forward: bool,
    /// Break forwarded writes on purpose: a follower reports its forwarded writes lost while
    /// they may still be applied; the linearizability checker must report it.
    #[arg(long, conflicts_with = "no_forward")]
    break_forward_loss: bool,
    /// Clients think at most a millisecond between operations instead of being paced: a busy
    /// leader, whose cycles carry new proposals and commits together (use a short
    /// --duration-secs: many more operations to check).
    #[arg(long)]
    busy: bool,
    /// Write the client history (JSON Lines) of the first failing seed, else the last seed run.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Print every event as it happens, and the scenario of each seed.
    #[arg(long)]
    trace: bool,
    /// Print a line per seed.
    #[arg(long)]
    verbose: bool,
}

fn replay_command(seed: u64, cli: &Cli) -> String {
    let mut command = format!(
        "cargo run -p chorus-sim --release -- --seed {seed} --nodes {} --duration-secs {}",
        cli.nodes, cli.duration_secs
    );
    if let Some(fault) = &cli.fault {
        command.push_str(&format!(" --fault {fault}"));
    }
    if cli.no_sessions {
        command.push_str(" --no-sessions");
    }
    if cli.break_dedup {
        command.push_str(" --break-dedup");
    }
    if cli.read_lease {
        command.push_str(" --read-lease");
    }
    if cli.no_forward {
        command.push_str(" --no-forward");
    }
    if cli.break_forward_loss {
        command.push_str(" --break-forward-loss");
    }
    if cli.busy {
        command.push_str(" --busy");
    }
    command.push_str(" --trace");
    command
}

fn print_violation(report: &Report, cli: &Cli) {
    let Some(violation) = &report.violation else {
        return;
    };
    let seed = report.scenario.options.seed;
    println!("VIOLATION seed {seed}: checker {}", violation.checker);
    println!("  {violation}");
    println!("  replay: {}", replay_command(seed, cli));
    print!("{}", report.scenario);
    println!("last {REPORT_TRACE_EVENTS} events:");
    print!("{}", report.trace_tail);
    println!();
}

fn client_mode(cli: &Cli) -> ClientMode {
    if cli.no_sessions {
        ClientMode::Plain
    } else if cli.break_dedup {
        ClientMode::SessionsBrokenDedup
    } else {
        ClientMode::Sessions
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chorus-sim: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when every seed passed.
fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let fault = match &cli.fault {
        None => None,
        Some(name) => match FaultSwitch::parse(name) {
            Some(switch) => Some(switch),
            None => bail!(
                "unknown --fault {name}; one of: {:?}",
                FaultSwitch::ALL.map(|s| s.name())
            ),
        },
    };
    if cli.seeds == 0 || cli.duration_secs == 0 {
        bail!("--seeds and --duration-secs must be at least 1");
    }
    let started = Instant::now();
    let (mut violations, mut simulated_ns, mut operations, mut inconclusive) =
        (0u64, 0u64, 0u64, 0u64);
    let mut kept_history = None;
    let last_seed = cli.seed.saturating_add(cli.seeds - 1);
    for seed in cli.seed..=last_seed {
        let options = RunOptions {
            seed,
            nodes: cli.nodes as usize,
            duration_ns: cli.duration_secs * SECOND,
            fault,
            clients: client_mode(&cli),
            read_lease: cli.read_lease,
            forward_writes: !cli.no_forward,
            break_forward_loss: cli.break_forward_loss,
            busy_clients: cli.busy,
        };
        let keep_history = cli.history.is_some();
        if cli.trace {
            print!(
                "{}",
                chorus_sim::scenario::Scenario::from_seed(options.clone())
            );
        }
        let mut report = runner::run(options, cli.trace, keep_history);
        simulated_ns += report.simulated_ns;
        operations += report.operations.total as u64;
        if let Some(key) = &report.inconclusive_key {
            inconclusive += 1;
            if cli.verbose {
                println!("seed {seed}: linearizability search inconclusive on key {key}");
            }
        }
        if cli.verbose || cli.trace {
            println!(
                "seed {seed}: {} | {} ops ({} failed, {} unknown), {} acked writes, {} terms with a \
                 leader, {} crashes, {} messages, recovery {}, trace {:016x} ({} events)",
                report.violation.as_ref().map_or("ok".to_string(), |v| format!("VIOLATION {}", v.checker)),
                report.operations.total,
                report.operations.failed,
                report.operations.unknown,
                report.acknowledged_writes,
                report.terms_with_leader,
                report.stats.crashes,
                report.stats.messages_delivered,
                report.recovery_ns.map_or("-".to_string(), |ns| Time(ns).to_string()),
                report.trace_hash,
                report.trace_events
            );
        }
        let failed = report.violation.is_some();
        if failed {
            violations += 1;
            print_violation(&report, &cli);
        }
        // Keep the first failing seed's history; until one fails, the latest seed's.
        let first_failure = failed && violations == 1;
        if keep_history && (violations == 0 || first_failure) {
            kept_history = report.history.take().map(|history| (seed, history));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let seeds_run = cli.seeds;
    println!(
        "chorus-sim: {seeds_run} seeds ({}..={last_seed}), {} replicas{}, clients {:?}, {violations} violations, \
         {:.1} s simulated, {operations} client ops, {inconclusive} inconclusive, {:.1} s wall \
         ({:.0} seeds/min)",
        cli.seed,
        cli.nodes,
        fault.map_or(String::new(), |f| format!(", fault {f}")),
        client_mode(&cli),
        simulated_ns as f64 / SECOND as f64,
        wall,
        seeds_run as f64 * 60.0 / wall.max(1e-9)
    );
    if let (Some(path), Some((seed, history))) = (&cli.history, kept_history) {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        write_history(&history, &mut out).with_context(|| format!("writing {}", path.display()))?;
        out.flush()?;
        println!("history of seed {seed} written to {}", path.display());
    }
    Ok(violations == 0)
}
