//! Logistic regression, plaintext and private, from the same initial weights.

use super::{max_weight_diff, on_own_thread, EpochLog, DATA_OWNER, MODEL_OWNER};
use crate::csv::{load_csv, CsvOptions, LabelColumn};
use crate::data::{synthetic_binary, Dataset, Standardizer};
use crate::error::{Result, TrainError};
use crate::fit::{batches, train_epoch, Objective, TrainingSet};
use crate::metrics::{binary_accuracy, log_loss, sigmoid};
use crate::optim::{Schedule, Sgd, SgdState};
use crate::progress::bar;
use ndarray::{Array1, Array2, Ix2};
use pond_core::{FixedPoint, Z64};
use pond_layers::loss::sigmoids;
use pond_layers::{LogisticLoss, ModelSpec, PlainBackend, PrivateBackend, Sequential, Weights};
use pond_protocol::polynomial::{Polynomial, SIGMOID};
use pond_protocol::{run_local, LocalConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Where the data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// A numeric CSV file with a header row.
    Csv {
        /// The file.
        path: PathBuf,
        /// The label column.
        label: LabelColumn,
    },
    /// [`synthetic_binary`] data: `rows` training rows (plus a third as many for testing, so the
    /// 75/25 split leaves exactly `rows` for training) of `features` features.
    Synthetic {
        /// Training rows.
        rows: usize,
        /// Features.
        features: usize,
    },
}

/// Which polynomial approximates the sigmoid in the loss gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SigmoidApprox {
    /// Degree 9 on [-8, 8] (pond-protocol's SIGMOID): 4 multiplication levels.
    Poly9,
    /// Degree 3 on [-8, 8] (Kim et al. 2018): 2 levels.
    Poly3,
    /// 0.5 + x/4: no multiplication, one truncation.
    Linear,
}

impl SigmoidApprox {
    /// The polynomial.
    pub fn polynomial(self) -> Polynomial {
        match self {
            SigmoidApprox::Poly9 => SIGMOID,
            SigmoidApprox::Poly3 => sigmoids::CUBIC,
            SigmoidApprox::Linear => sigmoids::LINEAR,
        }
    }
}

/// Settings of a logistic-regression experiment.
#[derive(Debug, Clone)]
pub struct LogregConfig {
    /// The data.
    pub data: DataSource,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Seed of the split, the initial weights and the protocol keys.
    pub seed: u64,
    /// Sigmoid approximation.
    pub sigmoid: SigmoidApprox,
    /// Fractional bits of the Z64 fixed-point encoding (integer bits: the rest of 31).
    pub frac_bits: u32,
    /// Show progress bars (on a terminal only).
    pub progress: bool,
}

/// The result: what `pond train logreg --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct LogregReport {
    /// Accuracy of the plaintext model on the held-out quarter.
    pub plain_accuracy: f64,
    /// Accuracy of the privately trained model (revealed to the model owner) on the held-out quarter.
    pub private_accuracy: f64,
    /// Log-loss (exact sigmoid) of the plaintext model on the held-out quarter.
    pub plain_log_loss: f64,
    /// Log-loss of the private model on the held-out quarter.
    pub private_log_loss: f64,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
    /// Training rows, test rows, features.
    pub shape: [usize; 3],
    /// Mean seconds per private epoch (server0's clock; sharing and masking the data excluded).
    pub s_per_epoch_private: f64,
    /// Mean seconds per plaintext epoch.
    pub s_per_epoch_plain: f64,
    /// s_per_epoch_private / s_per_epoch_plain.
    pub private_to_plain: f64,
    /// Seconds to secret-share and mask the training set and the initial weights (once).
    pub s_setup_private: f64,
    /// Mean bytes sent per epoch by [server0, server1, cp].
    pub bytes_per_epoch: [u64; 3],
    /// Mean server rounds per epoch.
    pub rounds_per_epoch: u64,
    /// Largest absolute difference between the final plaintext and private weights.
    pub max_weight_diff: f64,
    /// Ring and fractional bits.
    pub ring: String,
    /// Sigmoid approximation used in training (both runs).
    pub sigmoid: SigmoidApprox,
    /// Learning rate and momentum.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
}

/// Train/test split (75/25 with the seed), standardised with the training statistics.
pub fn prepare_data(source: &DataSource, seed: u64) -> Result<(Dataset, Dataset)> {
    let all = match source {
        DataSource::Csv { path, label } => load_csv(path, &CsvOptions { header: true, label: label.clone() })?,
        DataSource::Synthetic { rows, features } => synthetic_binary(rows * 4 / 3 + 1, *features, seed ^ 0x5eed),
    };
    if let Some(bad) = all.labels.iter().find(|&&l| l != 0.0 && l != 1.0) {
        return Err(TrainError::Config(format!("logistic regression needs 0/1 labels, found {bad}")));
    }
    let (mut train, mut test) = all.split(0.75, seed);
    let st = Standardizer::fit(&train.features);
    train.features = st.apply(&train.features);
    test.features = st.apply(&test.features);
    Ok((train, test))
}

/// Probabilities sigma(x w + b) of a logistic-regression model in plaintext.
pub fn predict(weights: &Weights, x: &Array2<f64>) -> Result<Array1<f64>> {
    let get = |n: &str| weights.get(n).ok_or_else(|| TrainError::Config(format!("no tensor `{n}` in the weights")));
    let w =
        get("layers.0.weight")?.view().into_dimensionality::<Ix2>().map_err(|e| TrainError::Config(e.to_string()))?;
    let b = get("layers.0.bias")?.iter().copied().next().unwrap_or(0.0);
    Ok(x.dot(&w).column(0).mapv(|z| sigmoid(z + b)))
}

/// Runs the experiment.
pub fn run(cfg: &LogregConfig) -> Result<LogregReport> {
    if cfg.epochs == 0 || cfg.batch == 0 {
        return Err(TrainError::Config("epochs and batch must be positive".into()));
    }
    let (train, test) = prepare_data(&cfg.data, cfg.seed)?;
    let (n, d) = train.features.dim();
    let spec = ModelSpec::logistic_regression(d);
    let init = spec.init(cfg.seed);
    let objective = Objective::Logistic(LogisticLoss { sigmoid: cfg.sigmoid.polynomial() });
    let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, schedule: Schedule::Constant };
    let x = train.features.clone().into_dyn();
    let y = train.label_column().into_dyn();
    let nb = batches(n, cfg.batch);

    // Plaintext reference.
    let mut pb = PlainBackend;
    let mut model = Sequential::input(&mut pb, &spec, MODEL_OWNER, Some(&init))?;
    let data = TrainingSet::input(&mut pb, DATA_OWNER, Some(&x), x.shape(), Some(&y), y.shape())?;
    let mut state = SgdState::default();
    let progress = bar((cfg.epochs * nb) as u64, "plaintext", cfg.progress);
    let start = Instant::now();
    for epoch in 0..cfg.epochs {
        train_epoch(&mut pb, &mut model, &objective, &sgd, &mut state, &data, cfg.batch, epoch, &progress)?;
    }
    let s_per_epoch_plain = start.elapsed().as_secs_f64() / cfg.epochs as f64;
    progress.finish_and_clear();
    let plain_weights =
        model.output(&mut pb, MODEL_OWNER)?.ok_or_else(|| TrainError::Config("no plain weights".into()))?;

    // Private run: three parties on three threads.
    let fp = FixedPoint::<Z64>::new(cfg.frac_bits, 31 - cfg.frac_bits.min(30))?;
    let outputs = run_local(LocalConfig::seeded(cfg.seed), |s| {
        on_own_thread(|| {
            let role = s.role();
            let setup = Instant::now();
            let mut b = PrivateBackend::new(s, fp);
            let mut model = Sequential::input(&mut b, &spec, MODEL_OWNER, (role == MODEL_OWNER).then_some(&init))?;
            let owned = role == DATA_OWNER;
            let data =
                TrainingSet::input(&mut b, DATA_OWNER, owned.then_some(&x), x.shape(), owned.then_some(&y), y.shape())?;
            let setup = setup.elapsed();
            let mut state = SgdState::default();
            let progress = bar((cfg.epochs * nb) as u64, "private", cfg.progress && role == DATA_OWNER);
            let mut log = EpochLog::default();
            for epoch in 0..cfg.epochs {
                let (t0, c0) = (Instant::now(), b.session().traffic());
                train_epoch(&mut b, &mut model, &objective, &sgd, &mut state, &data, cfg.batch, epoch, &progress)?;
                log.times.push(t0.elapsed());
                log.traffic.push(b.session().traffic().since(&c0));
            }
            progress.finish_and_clear();
            let weights = model.output(&mut b, MODEL_OWNER)?;
            Ok((weights, log, setup))
        })
    })?;
    let [(_, log0, setup), (private_weights, log1, _), (_, log2, _)] = outputs;
    let private_weights = private_weights.ok_or_else(|| TrainError::Config("model owner got no weights".into()))?;

    let (p_plain, p_private) = (predict(&plain_weights, &test.features)?, predict(&private_weights, &test.features)?);
    let s_per_epoch_private = log0.mean_seconds();
    Ok(LogregReport {
        plain_accuracy: binary_accuracy(p_plain.view(), test.labels.view()),
        private_accuracy: binary_accuracy(p_private.view(), test.labels.view()),
        plain_log_loss: log_loss(p_plain.view(), test.labels.view()),
        private_log_loss: log_loss(p_private.view(), test.labels.view()),
        epochs: cfg.epochs,
        batch: cfg.batch,
        batches_per_epoch: nb,
        shape: [n, test.len(), d],
        s_per_epoch_private,
        s_per_epoch_plain,
        private_to_plain: s_per_epoch_private / s_per_epoch_plain,
        s_setup_private: setup.as_secs_f64(),
        bytes_per_epoch: [log0.mean_bytes(), log1.mean_bytes(), log2.mean_bytes()],
        rounds_per_epoch: log0.mean_rounds(),
        max_weight_diff: max_weight_diff(&plain_weights, &private_weights),
        ring: format!("{} (f = {})", <Z64 as pond_core::Ring>::NAME, fp.frac_bits()),
        sigmoid: cfg.sigmoid,
        lr: cfg.lr,
        momentum: cfg.momentum,
    })
}
