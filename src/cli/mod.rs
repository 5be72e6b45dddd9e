//! Subcommands of `pond`. Each module owns one subcommand's arguments and its run function.

mod bench;
mod trace;

use clap::{Parser, Subcommand};

/// pond: private machine learning with secure three-party computation.
#[derive(Debug, Parser)]
#[command(name = "pond", version, about)]
pub struct Cli {
    /// Write a Chrome trace (open it in Perfetto or chrome://tracing) of every protocol
    /// operation, with its bytes and rounds, to this file.
    #[arg(long, global = true, value_name = "FILE")]
    trace: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks (one JSON object per line with --json).
    Bench(bench::BenchArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _trace = cli.trace.as_deref().map(trace::start);
    match cli.command {
        Command::Bench(args) => bench::run(args),
    }
}
