//! Subcommands of `pond`. Each module owns one subcommand's arguments and its run function.

mod bench;
mod infer;
mod net;
mod trace;
mod train;

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
    /// Private MNIST inference on three local parties: accuracy, agreement, time and traffic.
    Demo(infer::DemoArgs),
    /// Private inference of a benchmark network over MNIST's test set (three local parties).
    Infer(infer::InferArgs),
    /// Benchmarks (one JSON object per line with --json).
    Bench(bench::BenchArgs),
    /// Write a CA and one certificate per party (and a loopback parties.toml template).
    Keygen(net::KeygenArgs),
    /// Run one party (server0, server1 or cp) of a session over QUIC.
    Party(net::PartyArgs),
    /// Secret-share inputs to the two servers and receive the results (only the client sees them).
    Client(net::ClientArgs),
    /// Train a model (plaintext and private).
    Train(train::TrainArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _trace = cli.trace.as_deref().map(trace::start);
    match cli.command {
        Command::Demo(args) => infer::demo(args),
        Command::Infer(args) => infer::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Keygen(args) => net::keygen(args),
        Command::Party(args) => net::party(args),
        Command::Client(args) => net::client(args),
        Command::Train(args) => train::run(args),
    }
}
