//! `pond bench <suite>`.

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Arguments of `pond bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark suite to run.
    suite: Suite,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Short time budget per measurement (smoke test; numbers are noisier).
    #[arg(long)]
    quick: bool,
    /// `infer`: draw ms per batch against batch size per net and ring to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// `results`: the directory to write results.md and runtime.svg to.
    #[arg(long, value_name = "DIR", default_value = "docs")]
    out: std::path::PathBuf,
    /// `results`, `infer`: only the first N test images for the accuracy runs.
    #[arg(long)]
    limit: Option<usize>,
    /// `protocol`: only the basic operations of this ring (z64, z128, crt10, crt5; int100 is
    /// crt5), without the comparison lines.
    #[arg(long, value_name = "RING")]
    ring: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Suite {
    /// Ring GEMM kernels vs f64 GEMM, and PRG throughput.
    Kernels,
    /// Protocol operations on three local parties vs the same operation on plaintext.
    Protocol,
    /// Net A inference over QUIC with three processes on loopback vs three local threads.
    Net,
    /// Private MNIST inference, nets A-D and S x rings x batch 1, 10, 100, 1000.
    Infer,
    /// Regenerate docs/results.md and its plot (accuracy/KL tables, runtime vs batch size).
    Results,
}

fn emit<T: Serialize>(json: bool, row: &T) {
    let line = serde_json::to_string(row).expect("bench rows serialise");
    if json {
        println!("{line}");
    } else {
        let value: serde_json::Value = serde_json::from_str(&line).expect("just serialised");
        let fields: Vec<String> = value
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| match v.as_f64() {
                        Some(x) if v.is_f64() => format!("{k}={x:.4}"),
                        _ => format!("{k}={v}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!("{}", fields.join("  "));
    }
}

/// Runs `pond bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.suite {
        Suite::Kernels => pond_train::bench::kernels::run(args.quick, |row| emit(args.json, &row)),
        Suite::Protocol => {
            pond_train::bench::protocol::run(args.quick, args.ring.as_deref(), |row| emit(args.json, &row))?;
            if args.ring.is_none() {
                pond_train::bench::protocol_compare::run(args.quick, |row| emit(args.json, &row))?;
            }
        }
        Suite::Net => super::net::bench(args.quick, |row| emit(args.json, row))?,
        Suite::Infer => {
            use pond_train::mnist::{self, infer::RingChoice, Net};
            let test = mnist::load_test(&mnist::default_data_dir())?;
            let rows = pond_train::bench::infer::run(
                &Net::ALL,
                &[RingChoice::Z64, RingChoice::Z128, RingChoice::Int100, RingChoice::Crt10],
                &pond_train::bench::infer::BATCHES,
                args.quick,
                &test,
                &mnist::default_model_dir(),
                |row| emit(args.json, row),
            )?;
            if let Some(path) = &args.plot {
                pond_train::bench::infer::plot(&rows, path)?;
            }
        }
        Suite::Results => {
            use pond_train::mnist;
            let test = mnist::load_test(&mnist::default_data_dir())?;
            pond_train::bench::results::run(&test, &mnist::default_model_dir(), &args.out, args.limit, |line| {
                eprintln!("{line}")
            })?;
        }
    }
    Ok(())
}
