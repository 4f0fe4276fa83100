//! `chorus-bench`: the load generator as its own binary (also `chorus bench`).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "chorus-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: chorus_bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chorus-bench: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(chorus_bench::run(&cli.args)) {
        Ok(report) => {
            // A closed stdout (e.g. `| head`) is not worth a panic.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}\n{}", report.human(), report.json());
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chorus-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
