//! `pond train logreg|mlp`: trains the same model from the same initial weights in plaintext
//! and privately (three local parties) and prints the comparison. The experiments live in
//! pond-train; this module only parses arguments and prints.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use pond_layers::ReluMode;
use pond_train::csv::LabelColumn;
use pond_train::experiments::{logreg, mlp};
use std::path::PathBuf;

/// Arguments of `pond train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    model: Model,
}

#[derive(Debug, Subcommand)]
enum Model {
    /// Logistic regression on a CSV file (or synthetic data), split 75/25 with the seed.
    Logreg(LogregArgs),
    /// An MLP on MNIST (784-128-128-10 by default).
    Mlp(MlpArgs),
    /// Plaintext training of a benchmark network (A-D, S) with pond's layers; writes models/.
    Mnist(MnistArgs),
}

/// Arguments of `pond train mnist`.
#[derive(Debug, Args)]
struct MnistArgs {
    /// Network.
    #[arg(long, value_enum, ignore_case = true)]
    net: super::infer::NetArg,
    /// The activation to train with: exact ReLU, or the private protocol's polynomial ReLU
    /// (writes mnist-x-poly.*, which `pond infer --relu poly` then uses).
    #[arg(long, value_enum, default_value = "exact")]
    relu: super::infer::ReluArg,
    /// Epochs (default: the committed models' setting).
    #[arg(long)]
    epochs: Option<usize>,
    /// Base learning rate (default: the committed models' setting).
    #[arg(long)]
    lr: Option<f64>,
    /// Directory to write the model files to.
    #[arg(long, default_value = "models")]
    out: std::path::PathBuf,
    /// Seed of the initial weights and the shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Train on the first N training images only (smoke and timing runs; use with --out).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sigmoid {
    /// Degree 9 on [-8, 8].
    Poly9,
    /// Degree 3 on [-8, 8].
    Poly3,
    /// 0.5 + x/4.
    Linear,
}

#[derive(Debug, Args)]
struct LogregArgs {
    #[command(flatten)]
    data: LogregData,
    #[command(flatten)]
    settings: LogregSettings,
    /// Seed of the split, the initial weights and the protocol keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Where the training data of a logistic regression comes from.
#[derive(Debug, Clone, Args)]
pub struct LogregData {
    /// CSV file with a header row (`pond party train-logreg`: server0, the data owner, only).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Label column: a header name or a 0-based index (negative from the end).
    #[arg(long, default_value = "target")]
    label: String,
    /// Synthetic data instead of a file: ROWSxFEATURES training rows (e.g. 10000x100).
    #[arg(long, conflicts_with = "data")]
    synthetic: Option<String>,
}

impl LogregData {
    /// The data source, or `None` if neither `--data` nor `--synthetic` was given.
    pub fn source(&self) -> anyhow::Result<Option<logreg::DataSource>> {
        Ok(match (&self.data, &self.synthetic) {
            (_, Some(shape)) => {
                let (rows, features) = parse_shape(shape)?;
                Some(logreg::DataSource::Synthetic { rows, features })
            }
            (Some(path), None) => {
                Some(logreg::DataSource::Csv { path: path.clone(), label: LabelColumn::parse(&self.label) })
            }
            (None, None) => None,
        })
    }
}

/// The training settings of a logistic regression.
#[derive(Debug, Clone, Args)]
pub struct LogregSettings {
    /// Epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Fractional bits of the Z64 fixed-point encoding (integer bits: 31 minus this).
    #[arg(long, default_value_t = 20)]
    frac_bits: u32,
    /// Sigmoid approximation in the loss gradient (both runs use the same).
    #[arg(long, value_enum, default_value = "poly9")]
    sigmoid: Sigmoid,
}

impl LogregSettings {
    /// The experiment's configuration with these settings.
    pub fn config(&self, data: logreg::DataSource, seed: u64, progress: bool) -> logreg::LogregConfig {
        logreg::LogregConfig {
            data,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            seed,
            sigmoid: match self.sigmoid {
                Sigmoid::Poly9 => logreg::SigmoidApprox::Poly9,
                Sigmoid::Poly3 => logreg::SigmoidApprox::Poly3,
                Sigmoid::Linear => logreg::SigmoidApprox::Linear,
            },
            frac_bits: self.frac_bits,
            progress,
        }
    }
}

#[derive(Debug, Args)]
struct MlpArgs {
    /// Directory with the four MNIST gzip IDX files.
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    /// Layer sizes, comma separated.
    #[arg(long, default_value = "784,128,128,10", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// ReLU: exact (needs secure comparison) or polynomial.
    #[arg(long, value_enum, default_value = "exact")]
    relu: Relu,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.5)]
    momentum: f64,
    /// Fractional bits of the Z64 fixed-point encoding (integer bits: 31 minus this).
    #[arg(long, default_value_t = 16)]
    frac_bits: u32,
    /// Seed of the initial weights and the protocol keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only the first N training images.
    #[arg(long)]
    train_rows: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    test_rows: Option<usize>,
    /// Train in plaintext only.
    #[arg(long)]
    plain_only: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Relu {
    /// max(x, 0) by secure comparison.
    Exact,
    /// Degree-4 polynomial on [-4, 4].
    Poly,
}

fn print<T: serde::Serialize>(json: bool, report: &T) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(())
}

fn parse_shape(s: &str) -> anyhow::Result<(usize, usize)> {
    let (r, c) = s.split_once('x').with_context(|| format!("--synthetic {s}: expected ROWSxFEATURES"))?;
    Ok((r.parse().context("--synthetic rows")?, c.parse().context("--synthetic features")?))
}

/// Runs `pond train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    match args.model {
        Model::Mnist(a) => {
            use pond_train::mnist::{self, train};
            let data = mnist::load(&mnist::default_data_dir())?;
            let mut cfg = train::TrainConfig::standard(a.net.into(), a.relu.into());
            cfg.seed = a.seed;
            cfg.limit = a.limit;
            if let Some(lr) = a.lr {
                cfg.lr = lr;
            }
            cfg.progress = !a.json;
            if let Some(e) = a.epochs {
                cfg.epochs = e;
            }
            let report = train::train_and_save(&cfg, &data, &a.out)?;
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "net {}: test accuracy {:?} after {} epochs ({:.0} s)",
                    report.net,
                    report.test_accuracy.last(),
                    report.epochs,
                    report.train_seconds
                );
            }
            Ok(())
        }
        Model::Logreg(a) => {
            let Some(data) = a.data.source()? else {
                anyhow::bail!("give --data FILE.csv or --synthetic ROWSxFEATURES");
            };
            print(a.json, &logreg::run(&a.settings.config(data, a.seed, !a.json))?)
        }
        Model::Mlp(a) => {
            let cfg = mlp::MlpConfig {
                data_dir: a.data,
                sizes: a.sizes,
                relu: match a.relu {
                    Relu::Exact => ReluMode::Exact,
                    Relu::Poly => ReluMode::Polynomial,
                },
                epochs: a.epochs,
                batch: a.batch,
                lr: a.lr,
                momentum: a.momentum,
                seed: a.seed,
                train_rows: a.train_rows,
                test_rows: a.test_rows,
                plain_only: a.plain_only,
                frac_bits: a.frac_bits,
                progress: !a.json,
            };
            print(a.json, &mlp::run(&cfg)?)
        }
    }
}
