//! An MLP on MNIST (784-128-128-10, ReLU, squared loss on one-hot labels), plaintext and
//! private, from the same initial weights.

use super::{max_weight_diff, on_own_thread, train_plain, train_private_epochs, DATA_OWNER, MODEL_OWNER};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::fit::{Objective, TrainingSet};
use crate::idx::Mnist;
use crate::metrics::multiclass_accuracy;
use crate::optim::{Schedule, Sgd};
use ndarray::{s, Ix2};
use pond_core::{FixedPoint, Z64};
use pond_layers::{Activation, ModelSpec, PlainBackend, PrivateBackend, ReluMode, Sequential, SquaredLoss, Weights};
use pond_protocol::{run_local, LocalConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Settings of the MNIST MLP experiment.
#[derive(Debug, Clone)]
pub struct MlpConfig {
    /// Directory with the four MNIST gzip IDX files.
    pub data_dir: PathBuf,
    /// Layer sizes, input first.
    pub sizes: Vec<usize>,
    /// ReLU: exact (secure comparison) or polynomial.
    pub relu: ReluMode,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Seed of the initial weights and the protocol keys.
    pub seed: u64,
    /// Use only the first this many training rows (all if `None`).
    pub train_rows: Option<usize>,
    /// Use only the first this many test rows (all if `None`).
    pub test_rows: Option<usize>,
    /// Skip the private run (plaintext only).
    pub plain_only: bool,
    /// Fractional bits of the Z64 fixed-point encoding (integer bits: the rest of 31).
    pub frac_bits: u32,
    /// Show progress bars (on a terminal only).
    pub progress: bool,
}

/// The result: what `pond train mlp --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct MlpReport {
    /// Test accuracy of the plaintext model.
    pub plain_accuracy: f64,
    /// Test accuracy of the privately trained model (revealed to the model owner).
    pub private_accuracy: Option<f64>,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Training rows and test rows used.
    pub rows: [usize; 2],
    /// Mean seconds per private epoch (server0's clock).
    pub s_per_epoch_private: Option<f64>,
    /// Mean seconds per plaintext epoch.
    pub s_per_epoch_plain: f64,
    /// Seconds to secret-share and mask the training set and the initial weights (once).
    pub s_setup_private: Option<f64>,
    /// Mean bytes sent per epoch by [server0, server1, cp].
    pub bytes_per_epoch: Option<[u64; 3]>,
    /// Mean server rounds per epoch.
    pub rounds_per_epoch: Option<u64>,
    /// Largest absolute difference between the final plaintext and private weights.
    pub max_weight_diff: Option<f64>,
    /// ReLU mode.
    pub relu: ReluMode,
    /// Ring and fractional bits.
    pub ring: String,
}

fn head(d: &Dataset, rows: Option<usize>) -> Dataset {
    let n = rows.unwrap_or(d.len()).min(d.len());
    Dataset {
        features: d.features.slice(s![..n, ..]).to_owned(),
        labels: d.labels.slice(s![..n]).to_owned(),
        feature_names: d.feature_names.clone(),
    }
}

/// Test accuracy of `weights` (plaintext forward pass of `spec`).
pub fn evaluate(spec: &ModelSpec, weights: &Weights, test: &Dataset) -> Result<f64> {
    let mut pb = PlainBackend;
    let model = Sequential::input(&mut pb, spec, MODEL_OWNER, Some(weights))?;
    let scores = model.infer(&mut pb, Activation::Value(test.features.clone().into_dyn()))?;
    let scores = scores.into_dimensionality::<Ix2>().map_err(|e| TrainError::Config(e.to_string()))?;
    Ok(multiclass_accuracy(&scores, test.labels.view()))
}

/// Runs the experiment.
pub fn run(cfg: &MlpConfig) -> Result<MlpReport> {
    if cfg.epochs == 0 || cfg.batch == 0 || cfg.sizes.len() < 2 {
        return Err(TrainError::Config("epochs, batch and at least two layer sizes are needed".into()));
    }
    let mnist = Mnist::load(&cfg.data_dir)?;
    let (train, test) = (head(&mnist.train, cfg.train_rows), head(&mnist.test, cfg.test_rows));
    let classes = *cfg.sizes.last().unwrap_or(&10);
    let spec = ModelSpec::mlp(&cfg.sizes, cfg.relu);
    let init = spec.init(cfg.seed);
    let objective = Objective::Squared(SquaredLoss);
    let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, schedule: Schedule::Constant };
    let x = train.features.clone().into_dyn();
    let y = train.one_hot(classes).into_dyn();
    let n = train.len();
    let (plain_weights, s_per_epoch_plain) =
        train_plain(&spec, &init, &objective, &sgd, &x, &y, cfg.epochs, cfg.batch, cfg.progress)?;
    let plain_accuracy = evaluate(&spec, &plain_weights, &test)?;
    let fp = FixedPoint::<Z64>::new(cfg.frac_bits, 31 - cfg.frac_bits.min(30))?;
    let ring = format!("{} (f = {})", <Z64 as pond_core::Ring>::NAME, fp.frac_bits());
    let mut report = MlpReport {
        plain_accuracy,
        private_accuracy: None,
        epochs: cfg.epochs,
        batch: cfg.batch,
        rows: [n, test.len()],
        s_per_epoch_private: None,
        s_per_epoch_plain,
        s_setup_private: None,
        bytes_per_epoch: None,
        rounds_per_epoch: None,
        max_weight_diff: None,
        relu: cfg.relu,
        ring,
    };
    if cfg.plain_only {
        return Ok(report);
    }

    let outputs = run_local(LocalConfig::seeded(cfg.seed), |s| {
        on_own_thread(|| {
            let role = s.role();
            let setup = Instant::now();
            let mut b = PrivateBackend::new(s, fp);
            let mut model = Sequential::input(&mut b, &spec, MODEL_OWNER, (role == MODEL_OWNER).then_some(&init))?;
            let owned = role == DATA_OWNER;
            let data = TrainingSet::input(
                &mut b,
                DATA_OWNER,
                owned.then_some(&x),
                x.shape(),
                owned.then_some(&y),
                y.shape(),
                cfg.batch,
            )?;
            let setup = setup.elapsed();
            let show = cfg.progress && role == DATA_OWNER;
            let log = train_private_epochs(&mut b, &mut model, &objective, &sgd, &data, cfg.epochs, show)?;
            let weights = model.output(&mut b, MODEL_OWNER)?;
            Ok((weights, log, setup))
        })
    })?;
    let [(_, log0, setup), (private_weights, log1, _), (_, log2, _)] = outputs;
    let private_weights = private_weights.ok_or_else(|| TrainError::Config("model owner got no weights".into()))?;
    report.private_accuracy = Some(evaluate(&spec, &private_weights, &test)?);
    report.s_per_epoch_private = Some(log0.mean_seconds());
    report.s_setup_private = Some(setup.as_secs_f64());
    report.bytes_per_epoch = Some([log0.mean_bytes(), log1.mean_bytes(), log2.mean_bytes()]);
    report.rounds_per_epoch = Some(log0.mean_rounds());
    report.max_weight_diff = Some(max_weight_diff(&plain_weights, &private_weights));
    Ok(report)
}
