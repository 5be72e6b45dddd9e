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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Suite {
    /// Ring GEMM kernels vs f64 GEMM, and PRG throughput.
    Kernels,
    /// Protocol operations on three local parties vs the same operation on plaintext.
    Protocol,
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
            pond_train::bench::protocol::run(args.quick, |row| emit(args.json, &row))?;
            pond_train::bench::protocol_compare::run(args.quick, |row| emit(args.json, &row))?;
        }
    }
    Ok(())
}
