//! Logistic regression, plaintext and private, from the same initial weights.
//!
//! The private run is one per-party program, [`train_private_party`], run either on three
//! threads of one process ([`train_private_local`], what [`run`] and `pond train logreg` do) or
//! by three `pond party train-logreg` processes on three hosts. Either way the data owner
//! ([`DATA_OWNER`], server0) reads the CSV and secret-shares the training set; the two other
//! parties learn only its shape, from the data owner's first message. The model owner
//! ([`MODEL_OWNER`], server1) secret-shares the initial weights and alone receives the trained
//! ones. With the same seed both ways give bit-identical weights.

use super::{max_weight_diff, on_own_thread, train_plain, train_private_epochs, EpochLog, DATA_OWNER, MODEL_OWNER};
use crate::csv::{load_csv, CsvOptions, LabelColumn};
use crate::data::{synthetic_binary, Dataset, Standardizer};
use crate::error::{Result, TrainError};
use crate::fit::{batches, Objective, TrainingSet};
use crate::metrics::{binary_accuracy, log_loss, sigmoid};
use crate::optim::{Schedule, Sgd};
use ndarray::{Array1, Array2, Ix2};
use pond_core::CoreError;
use pond_core::{FixedPoint, Z64};
use pond_layers::loss::sigmoids;
use pond_layers::{LogisticLoss, ModelSpec, PrivateBackend, Sequential, Weights};
use pond_protocol::polynomial::{Polynomial, SIGMOID};
use pond_protocol::{run_local, LocalConfig, ProtocolError, Role, Session};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// Held by another party: a party of a distributed run that is not the data owner, which
    /// learns only the data's shape.
    OtherParty,
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

impl LogregConfig {
    /// The Z64 fixed-point encoding of the private run: `frac_bits` fractional bits, the rest of
    /// 31 integer bits.
    pub fn fixed_point(&self) -> std::result::Result<FixedPoint<Z64>, CoreError> {
        FixedPoint::<Z64>::new(self.frac_bits, 31 - self.frac_bits.min(30))
    }

    fn objective(&self) -> Objective {
        Objective::Logistic(LogisticLoss { sigmoid: self.sigmoid.polynomial() })
    }

    fn sgd(&self) -> Sgd {
        Sgd { lr: self.lr, momentum: self.momentum, schedule: Schedule::Constant }
    }

    /// The settings all parties of a private run must share, named, as `u64` words.
    fn shared_settings(&self) -> [(&'static str, u64); 7] {
        [
            ("epochs", self.epochs as u64),
            ("batch", self.batch as u64),
            ("lr (f64 bits)", self.lr.to_bits()),
            ("momentum (f64 bits)", self.momentum.to_bits()),
            ("frac_bits", self.frac_bits.into()),
            ("sigmoid", self.sigmoid as u64),
            ("seed", self.seed),
        ]
    }
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
        DataSource::OtherParty => {
            return Err(TrainError::Config(format!("the data is held by the data owner ({DATA_OWNER})")))
        }
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
    let (objective, sgd) = (cfg.objective(), cfg.sgd());
    let x = train.features.clone().into_dyn();
    let y = train.label_column().into_dyn();
    let nb = batches(n, cfg.batch);

    // Plaintext reference.
    let (plain_weights, s_per_epoch_plain) =
        train_plain(&spec, &init, &objective, &sgd, &x, &y, cfg.epochs, cfg.batch, cfg.progress)?;

    // Private run: three parties on three threads.
    let fp = cfg.fixed_point()?;
    let outcomes = train_private_local(cfg, &train)?;
    let private_weights = outcomes[MODEL_OWNER.index()]
        .weights
        .clone()
        .ok_or_else(|| TrainError::Config("model owner got no weights".into()))?;
    let setup = outcomes[0].setup;
    let [log0, log1, log2] = outcomes.map(|o| o.log);

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

/// What one party ends a private training run with.
#[derive(Debug, Clone)]
pub struct PrivateOutcome {
    /// The trained weights: on the model owner ([`MODEL_OWNER`]) only.
    pub weights: Option<Weights>,
    /// Time and traffic of each epoch.
    pub log: EpochLog,
    /// Time to secret-share and mask the training set and the initial weights.
    pub setup: Duration,
    /// Training rows and features (public).
    pub shape: [usize; 2],
}

/// Private training on three local threads: [`train_private_party`] for each party, keys from
/// `cfg.seed`. Outcomes are indexed by [`Role::index`].
pub fn train_private_local(cfg: &LogregConfig, train: &Dataset) -> Result<[PrivateOutcome; 3]> {
    Ok(run_local(LocalConfig::seeded(cfg.seed), |s| {
        on_own_thread(|| {
            let owned = (s.role() == DATA_OWNER).then_some(train);
            train_private_party(s, cfg, owned)
        })
    })?)
}

/// One party's part of private logistic-regression training, SPMD: server0, server1 and cp
/// each call it with their session, on three threads ([`train_private_local`]) or in three
/// processes (`pond party train-logreg`).
///
/// The data owner ([`DATA_OWNER`]) passes its training set (split and standardised by
/// [`prepare_data`]), the others `None`. The data owner first announces the set's shape and the
/// training settings; a party started with other settings stops with an error naming the data
/// owner. The model owner ([`MODEL_OWNER`]) secret-shares the initial weights
/// (`ModelSpec::init(cfg.seed)`) and is the only party whose outcome has the trained weights.
pub fn train_private_party(
    session: &mut Session,
    cfg: &LogregConfig,
    train: Option<&Dataset>,
) -> pond_protocol::Result<PrivateOutcome> {
    let role = session.role();
    if cfg.epochs == 0 || cfg.batch == 0 {
        return Err(ProtocolError::Usage { op: "logreg", reason: "epochs and batch must be positive".into() });
    }
    let fp = cfg.fixed_point()?;
    let [n, d] = agree_on_shape(session, cfg, train)?;
    let spec = ModelSpec::logistic_regression(d);
    let init = (role == MODEL_OWNER).then(|| spec.init(cfg.seed));
    let (objective, sgd) = (cfg.objective(), cfg.sgd());
    let x = train.map(|t| t.features.clone().into_dyn());
    let y = train.map(|t| t.label_column().into_dyn());

    let setup = Instant::now();
    let mut b = PrivateBackend::new(session, fp);
    let mut model = Sequential::input(&mut b, &spec, MODEL_OWNER, init.as_ref())?;
    let data = TrainingSet::input(&mut b, DATA_OWNER, x.as_ref(), &[n, d], y.as_ref(), &[n, 1], cfg.batch)?;
    let setup = setup.elapsed();
    let show = cfg.progress && role == DATA_OWNER;
    let log = train_private_epochs(&mut b, &mut model, &objective, &sgd, &data, cfg.epochs, show)?;
    let weights = model.output(&mut b, MODEL_OWNER)?;
    Ok(PrivateOutcome { weights, log, setup, shape: [n, d] })
}

/// The first step of private training: the data owner sends the two other parties the shape of
/// its training set (rows, features) and [`LogregConfig::shared_settings`]; they check the
/// settings against their own. Returns the shape.
fn agree_on_shape(
    session: &mut Session,
    cfg: &LogregConfig,
    train: Option<&Dataset>,
) -> pond_protocol::Result<[usize; 2]> {
    let role = session.role();
    let tag = session.next_tag();
    let settings = cfg.shared_settings();
    let usage = |reason: String| ProtocolError::Usage { op: "logreg", reason };
    if role == DATA_OWNER {
        let train = train.ok_or_else(|| usage(format!("{role} is the data owner but has no training set")))?;
        let (n, d) = train.features.dim();
        let words = [n as u64, d as u64].into_iter().chain(settings.iter().map(|&(_, v)| v));
        let bytes: Vec<u8> = words.flat_map(u64::to_le_bytes).collect();
        for peer in Role::ALL.into_iter().filter(|&r| r != role) {
            session.send_bytes(peer, tag, bytes.clone())?;
        }
        return Ok([n, d]);
    }
    if train.is_some() {
        return Err(usage(format!("{role} holds a training set, but only the data owner {DATA_OWNER} may")));
    }
    let bytes = session.recv_bytes(DATA_OWNER, tag)?;
    let bad = |reason: String| ProtocolError::BadMessage { peer: DATA_OWNER, reason };
    if bytes.len() != 8 * (2 + settings.len()) {
        return Err(bad(format!(
            "a training announcement of {} bytes, expected {}",
            bytes.len(),
            8 * (2 + settings.len())
        )));
    }
    let words: Vec<u64> = bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))).collect();
    for (&(name, mine), &theirs) in settings.iter().zip(&words[2..]) {
        if mine != theirs {
            return Err(bad(format!("{DATA_OWNER} trains with {name} = {theirs}, {role} was started with {mine}")));
        }
    }
    let dim = |w: u64| usize::try_from(w).ok().filter(|&v| v > 0);
    match (dim(words[0]), dim(words[1])) {
        (Some(n), Some(d)) => Ok([n, d]),
        _ => Err(bad(format!("a training set of {} rows and {} features", words[0], words[1]))),
    }
}
