//! Mini-batch training loops that run on either backend.

use crate::optim::{Sgd, SgdState};
use indicatif::ProgressBar;
use ndarray::ArrayD;
use pond_layers::{Activation, Backend, LogisticLoss, Result, Sequential, SquaredLoss};
use pond_protocol::Role;

/// What the model is trained to minimise.
#[derive(Debug, Clone)]
pub enum Objective {
    /// Binary: sigmoid (polynomial) + cross-entropy; the model outputs one logit per row.
    Logistic(LogisticLoss),
    /// Multiclass: squared loss on one-hot labels; the model outputs one score per class.
    Squared(SquaredLoss),
}

impl Objective {
    /// dL/dz for outputs z and labels y (gradient of the summed loss).
    pub fn gradient<B: Backend>(&self, b: &mut B, z: &B::Tensor, y: &B::Tensor) -> Result<B::Tensor> {
        match self {
            Objective::Logistic(l) => Ok(l.gradient(b, z, y)?.1),
            Objective::Squared(l) => l.gradient(b, z, y),
        }
    }
}

/// A training set inside a backend: the features prepared (masked) once, so every batch is a
/// slice that reuses the mask, and the labels.
#[derive(Debug, Clone)]
pub struct TrainingSet<B: Backend> {
    /// Features [n, ...], prepared.
    pub x: B::Operand,
    /// Labels [n, k].
    pub y: B::Tensor,
    /// Number of rows n.
    pub rows: usize,
}

impl<B: Backend> TrainingSet<B> {
    /// Brings features and labels held by `owner` into the backend (private: secret-shared by
    /// the owner, then the features are masked once: one opening of the whole set).
    pub fn input(
        b: &mut B,
        owner: Role,
        x: Option<&ArrayD<f64>>,
        x_shape: &[usize],
        y: Option<&ArrayD<f64>>,
        y_shape: &[usize],
    ) -> Result<Self> {
        let xs = b.input(owner, x, x_shape)?;
        let x = b.prepare(&xs)?;
        let y = b.input(owner, y, y_shape)?;
        Ok(TrainingSet { x, y, rows: x_shape.first().copied().unwrap_or(0) })
    }
}

/// One pass over the training set in order, in batches of `batch` rows (the last one may be
/// smaller), with one SGD step per batch.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch<B: Backend>(
    b: &mut B,
    model: &mut Sequential<B>,
    objective: &Objective,
    sgd: &Sgd,
    state: &mut SgdState<B>,
    data: &TrainingSet<B>,
    batch: usize,
    epoch: usize,
    bar: &ProgressBar,
) -> Result<()> {
    let batch = batch.max(1);
    let mut start = 0;
    while start < data.rows {
        let end = (start + batch).min(data.rows);
        let xb = b.slice_rows_prepared(&data.x, start..end)?;
        let yb = b.slice_rows(&data.y, start..end)?;
        let (z, caches) = model.forward(b, Activation::Prepared(xb))?;
        let dz = objective.gradient(b, &z, &yb)?;
        let grads = model.backward(b, caches, dz)?;
        let params = model.params();
        let new = sgd.step(b, state, &params, &grads, end - start, epoch)?;
        model.set_params(new)?;
        bar.inc(1);
        start = end;
    }
    Ok(())
}

/// Number of batches per epoch.
pub fn batches(rows: usize, batch: usize) -> usize {
    rows.div_ceil(batch.max(1))
}

/// `epochs` passes of [`train_epoch`] with a fresh optimiser state (no progress bar).
pub fn fit<B: Backend>(
    b: &mut B,
    model: &mut Sequential<B>,
    objective: &Objective,
    sgd: &Sgd,
    data: &TrainingSet<B>,
    batch: usize,
    epochs: usize,
) -> Result<()> {
    let mut state = SgdState::default();
    let bar = ProgressBar::hidden();
    for epoch in 0..epochs {
        train_epoch(b, model, objective, sgd, &mut state, data, batch, epoch, &bar)?;
    }
    Ok(())
}
