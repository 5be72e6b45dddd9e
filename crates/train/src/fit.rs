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

/// One mini-batch inside a backend: features prepared (masked once, so every epoch reuses the
/// mask) and labels.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// Features [rows, ...], prepared.
    pub x: B::Operand,
    /// Labels [rows, k].
    pub y: B::Tensor,
}

/// A training set inside a backend, split into its mini-batches in order (the last one may be
/// smaller). The split happens once, on input: a step then copies nothing (the private
/// backend's prepared operands are shared, not copied, when a step takes one).
#[derive(Debug, Clone)]
pub struct TrainingSet<B: Backend> {
    /// The batches, in row order.
    pub batches: Vec<Batch<B>>,
    /// Number of rows n.
    pub rows: usize,
}

impl<B: Backend> TrainingSet<B> {
    /// Brings features and labels held by `owner` into the backend (private: secret-shared by
    /// the owner) and splits them into batches of `batch` rows; each batch's features are
    /// masked once (one opening per batch, the same bytes as masking the whole set).
    #[allow(clippy::too_many_arguments)]
    pub fn input(
        b: &mut B,
        owner: Role,
        x: Option<&ArrayD<f64>>,
        x_shape: &[usize],
        y: Option<&ArrayD<f64>>,
        y_shape: &[usize],
        batch: usize,
    ) -> Result<Self> {
        let xs = b.input(owner, x, x_shape)?;
        let ys = b.input(owner, y, y_shape)?;
        let rows = x_shape.first().copied().unwrap_or(0);
        let batch = batch.max(1);
        let batches = (0..rows)
            .step_by(batch)
            .map(|start| {
                let range = start..(start + batch).min(rows);
                let x = b.slice_rows(&xs, range.clone())?;
                Ok(Batch { x: b.prepare(&x)?, y: b.slice_rows(&ys, range)? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainingSet { batches, rows })
    }
}

/// One pass over the training set's batches in order, with one SGD step per batch.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch<B: Backend>(
    b: &mut B,
    model: &mut Sequential<B>,
    objective: &Objective,
    sgd: &Sgd,
    state: &mut SgdState<B>,
    data: &TrainingSet<B>,
    epoch: usize,
    bar: &ProgressBar,
) -> Result<()> {
    for batch in &data.batches {
        let (z, caches) = model.forward(b, Activation::Prepared(batch.x.clone()))?;
        let dz = objective.gradient(b, &z, &batch.y)?;
        let grads = model.backward(b, caches, dz)?;
        let params = model.params();
        let rows = b.shape(b.prepared_value(&batch.x))[0];
        let new = sgd.step(b, state, &params, &grads, rows, epoch)?;
        model.set_params(new)?;
        bar.inc(1);
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
    epochs: usize,
) -> Result<()> {
    let mut state = SgdState::default();
    let bar = ProgressBar::hidden();
    for epoch in 0..epochs {
        train_epoch(b, model, objective, sgd, &mut state, data, epoch, &bar)?;
    }
    Ok(())
}
