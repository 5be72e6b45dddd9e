//! `pond infer` and `pond demo`: private MNIST inference with three local parties.

use clap::{Args, ValueEnum};
use pond_layers::ReluMode;
use pond_train::mnist::{self, infer, Net};
use std::path::PathBuf;

/// A network name on the command line (`A` as the papers write it; `a` is accepted too).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetArg {
    /// 784-128-128-10 dense.
    #[value(name = "A")]
    A,
    /// Two convolutions with max-pooling.
    #[value(name = "B")]
    B,
    /// A larger B.
    #[value(name = "C")]
    C,
    /// One strided convolution.
    #[value(name = "D")]
    D,
    /// One convolution with average pooling (timing net).
    #[value(name = "S")]
    S,
}

impl From<NetArg> for Net {
    fn from(n: NetArg) -> Net {
        match n {
            NetArg::A => Net::A,
            NetArg::B => Net::B,
            NetArg::C => Net::C,
            NetArg::D => Net::D,
            NetArg::S => Net::S,
        }
    }
}

/// A ring on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RingArg {
    /// Z_2^64.
    Z64,
    /// Z_2^128.
    Z128,
    /// pond's int100: CRT over five primes just below 2^21.
    Int100,
    /// tf-encrypted's int100: CRT over its ten moduli (the like-for-like comparison).
    Crt10,
}

impl From<RingArg> for infer::RingChoice {
    fn from(r: RingArg) -> Self {
        match r {
            RingArg::Z64 => infer::RingChoice::Z64,
            RingArg::Z128 => infer::RingChoice::Z128,
            RingArg::Int100 => infer::RingChoice::Int100,
            RingArg::Crt10 => infer::RingChoice::Crt10,
        }
    }
}

/// ReLU on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReluArg {
    /// Exact, by secure comparison.
    Exact,
    /// tf-encrypted-style polynomial approximation.
    Poly,
}

impl From<ReluArg> for ReluMode {
    fn from(r: ReluArg) -> Self {
        match r {
            ReluArg::Exact => ReluMode::Exact,
            ReluArg::Poly => ReluMode::Polynomial,
        }
    }
}

/// Arguments of `pond infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Network.
    #[arg(long, value_enum, ignore_case = true)]
    net: NetArg,
    /// Ring of the private computation.
    #[arg(long, value_enum, default_value = "z64")]
    ring: RingArg,
    /// Exact or polynomial ReLU.
    #[arg(long, value_enum, default_value = "exact")]
    relu: ReluArg,
    /// Images per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Directory with the MNIST IDX files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory with the trained models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Seed of the parties' keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `pond infer`.
pub fn run(args: InferArgs) -> anyhow::Result<()> {
    let data = args.data.unwrap_or_else(mnist::default_data_dir);
    let test = mnist::load_test(&data)?;
    let cfg = infer::InferConfig {
        net: args.net.into(),
        ring: args.ring.into(),
        relu: args.relu.into(),
        batch: args.batch,
        limit: args.limit,
        model_dir: args.models.unwrap_or_else(mnist::default_model_dir),
        seed: args.seed,
        progress: !args.json,
    };
    let report = infer::run(&cfg, &test)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// The human summary of a private inference run.
pub fn print_summary(r: &infer::InferReport) {
    println!("pond: private inference of MNIST net {} ({} ReLU, ring {}), three local parties", r.net, r.relu, r.ring);
    println!("  images          {} in batches of {}", r.images, r.batch);
    println!(
        "  accuracy        private {:.2}%   plaintext {:.2}%",
        100.0 * r.accuracy_private,
        100.0 * r.accuracy_plain
    );
    println!("  agreement       {:.2}% of predictions identical", 100.0 * r.agreement);
    println!("  KL divergence   {:.2e} (plaintext softmax || private softmax)", r.kl);
    println!(
        "  time            {:.3} ms per image, {:.2} ms per batch ({:.1}x plaintext)",
        r.ms_per_image, r.ms_per_batch, r.ratio
    );
    println!(
        "  not timed       set-up {:.0} ms (sharing and masking the weights), warm-up batch {:.0} ms",
        r.setup_ms, r.warmup_ms
    );
    let kb = r.bytes_per_image.map(|b| b / 1024.0);
    println!("  traffic/image   server0 {:.1} KiB, server1 {:.1} KiB, cp {:.1} KiB", kb[0], kb[1], kb[2]);
    println!("  rounds/batch    {:.0}", r.rounds_per_batch);
}

/// Arguments of `pond demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory with the MNIST IDX files.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Runs `pond demo`: net A, exact ReLU, Z64, the full test set.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    run(InferArgs {
        net: NetArg::A,
        ring: RingArg::Z64,
        relu: ReluArg::Exact,
        batch: 100,
        limit: None,
        data: args.data,
        models: None,
        seed: 1,
        json: false,
    })
}
