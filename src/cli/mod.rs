//! Subcommands of `pond`. Each module owns one subcommand's arguments and its run function.

mod bench;

use clap::{Parser, Subcommand};

/// pond: private machine learning with secure three-party computation.
#[derive(Debug, Parser)]
#[command(name = "pond", version, about)]
pub struct Cli {
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
    match cli.command {
        Command::Bench(args) => bench::run(args),
    }
}
