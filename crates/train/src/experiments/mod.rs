//! Experiment runners shared by the CLI (`pond train ...`), the examples and the tests: each
//! trains the same model from the same initial weights in plaintext and privately and reports
//! both.
//!
//! Roles in the local (three-thread) run: the data owner is server0 (it secret-shares features
//! and labels), the model owner is server1 (it secret-shares the initial weights and is the only
//! party that receives the final ones); weights stay secret-shared throughout training.

pub mod logreg;
pub mod mlp;

use crate::fit::{train_epoch, Objective, TrainingSet};
use crate::optim::{Sgd, SgdState};
use crate::progress::bar;
use ndarray::ArrayD;
use pond_layers::{ModelSpec, PlainBackend, PrivateBackend, Sequential, Weights};
use pond_protocol::comparison::ComparisonRing;
use pond_protocol::{Role, Traffic};
use std::time::{Duration, Instant};

/// The party that owns (and secret-shares) the training data.
pub const DATA_OWNER: Role = Role::Server0;
/// The party that owns the model: shares the initial weights, receives the trained ones.
pub const MODEL_OWNER: Role = Role::Server1;

/// What one party measured for each epoch of a private run.
#[derive(Debug, Clone, Default)]
pub struct EpochLog {
    /// Wall-clock time of each epoch.
    pub times: Vec<Duration>,
    /// Traffic of each epoch.
    pub traffic: Vec<Traffic>,
}

impl EpochLog {
    /// Mean seconds per epoch.
    pub fn mean_seconds(&self) -> f64 {
        self.times.iter().map(|t| t.as_secs_f64()).sum::<f64>() / self.times.len().max(1) as f64
    }

    /// Mean bytes sent per epoch.
    pub fn mean_bytes(&self) -> u64 {
        self.traffic.iter().map(|t| t.total_sent()).sum::<u64>() / self.traffic.len().max(1) as u64
    }

    /// Mean rounds per epoch.
    pub fn mean_rounds(&self) -> u64 {
        self.traffic.iter().map(|t| t.rounds).sum::<u64>() / self.traffic.len().max(1) as u64
    }
}

/// Largest absolute difference between two sets of weights with the same names.
pub fn max_weight_diff(a: &pond_layers::Weights, b: &pond_layers::Weights) -> f64 {
    a.iter()
        .filter_map(|(k, va)| b.get(k).map(|vb| (va, vb)))
        .flat_map(|(va, vb)| va.iter().zip(vb.iter()).map(|(x, y)| (x - y).abs()))
        .fold(0.0, |m: f64, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) })
}

/// Runs `f` on a one-thread rayon pool. Each party of a local run computes on its own thread;
/// the ring kernels would otherwise hand every small GEMM to the shared rayon pool and wait for
/// it (a cross-thread wake-up per product), while three parties on two cores already keep
/// every core busy.
pub fn on_own_thread<T: Send>(f: impl FnOnce() -> pond_protocol::Result<T> + Send) -> pond_protocol::Result<T> {
    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(f),
        Err(e) => Err(pond_protocol::ProtocolError::Usage { op: "thread pool", reason: e.to_string() }),
    }
}

/// The plaintext reference run of the experiments: `epochs` passes of [`train_epoch`] from
/// `init` over features `x` and targets `y` in batches of `batch` rows. Returns the final weights
/// and the mean seconds per epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_plain(
    spec: &ModelSpec,
    init: &Weights,
    objective: &Objective,
    sgd: &Sgd,
    x: &ArrayD<f64>,
    y: &ArrayD<f64>,
    epochs: usize,
    batch: usize,
    show: bool,
) -> crate::error::Result<(Weights, f64)> {
    let mut pb = PlainBackend;
    let mut model = Sequential::input(&mut pb, spec, MODEL_OWNER, Some(init))?;
    let data = TrainingSet::input(&mut pb, DATA_OWNER, Some(x), x.shape(), Some(y), y.shape(), batch)?;
    let mut state = SgdState::default();
    let progress = bar((epochs * data.batches.len()) as u64, "plaintext", show);
    let start = Instant::now();
    for epoch in 0..epochs {
        train_epoch(&mut pb, &mut model, objective, sgd, &mut state, &data, epoch, &progress)?;
    }
    let s_per_epoch = start.elapsed().as_secs_f64() / epochs.max(1) as f64;
    progress.finish_and_clear();
    let weights = model
        .output(&mut pb, MODEL_OWNER)?
        .ok_or_else(|| crate::error::TrainError::Config("no plain weights".into()))?;
    Ok((weights, s_per_epoch))
}

/// The private training loop of the experiments: `epochs` passes of [`train_epoch`] over
/// `data` in batches of `batch` rows, each timed and its traffic counted, with a progress bar
/// if `show` (and on a terminal).
#[allow(clippy::too_many_arguments)]
pub fn train_private_epochs<'s, R: ComparisonRing>(
    b: &mut PrivateBackend<'s, R>,
    model: &mut Sequential<PrivateBackend<'s, R>>,
    objective: &Objective,
    sgd: &Sgd,
    data: &TrainingSet<PrivateBackend<'s, R>>,
    epochs: usize,
    show: bool,
) -> pond_protocol::Result<EpochLog> {
    let mut state = SgdState::default();
    let progress = bar((epochs * data.batches.len()) as u64, "private", show);
    let mut log = EpochLog::default();
    for epoch in 0..epochs {
        let (t0, c0) = (Instant::now(), b.session().traffic());
        train_epoch(b, model, objective, sgd, &mut state, data, epoch, &progress)?;
        log.times.push(t0.elapsed());
        log.traffic.push(b.session().traffic().since(&c0));
    }
    progress.finish_and_clear();
    Ok(log)
}
