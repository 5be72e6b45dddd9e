//! `pond train mnist --net X`: plaintext training of a benchmark network with pond's own layers
//! (the plaintext backend), softmax cross-entropy, SGD with momentum and step decay.
//!
//! Plaintext training may use softmax: only inference is private here. The gradient of the
//! summed cross-entropy with respect to the logits is softmax(z) - onehot(y).

use super::nets::Net;
use crate::error::{Result, TrainError};
use crate::idx::Mnist;
use crate::optim::{Schedule, Sgd, SgdState};
use crate::progress;
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use pond_layers::{Activation, ModelSpec, PlainBackend, ReluMode, Sequential, Weights};
use pond_protocol::Role;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::time::Instant;

/// Settings of a plaintext training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Which network.
    pub net: Net,
    /// Passes over the 60,000 training images.
    pub epochs: usize,
    /// Examples per SGD step.
    pub batch: usize,
    /// Base learning rate (per example: gradients are averaged over the batch).
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Seed of the initial weights and the shuffling.
    pub seed: u64,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

impl TrainConfig {
    /// The settings used for the committed models.
    pub fn standard(net: Net) -> Self {
        let epochs = match net {
            Net::A | Net::D | Net::S => 12,
            Net::B | Net::C => 6,
        };
        TrainConfig { net, epochs, batch: 64, lr: 0.05, momentum: 0.9, seed: 1, progress: true }
    }
}

/// What a training run achieved.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Network letter.
    pub net: &'static str,
    /// Epochs run.
    pub epochs: usize,
    /// Accuracy on the 10,000 test images after each epoch.
    pub test_accuracy: Vec<f64>,
    /// Wall-clock seconds of training (without evaluation).
    pub train_seconds: f64,
}

/// Images [n, 784] reshaped to the network's per-example input shape, with a batch axis.
pub fn as_input(spec: &ModelSpec, images: &Array2<f64>) -> ArrayD<f64> {
    let mut shape = vec![images.nrows()];
    shape.extend(&spec.input_shape);
    images.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&shape)).expect("784 pixels per image")
}

/// A network output [n, classes] as a matrix.
pub fn logits_matrix(z: ArrayD<f64>) -> Result<Array2<f64>> {
    let shape = z.shape().to_vec();
    z.into_dimensionality::<ndarray::Ix2>()
        .map_err(|_| TrainError::Config(format!("network output of shape {shape:?} is not [batch, classes]")))
}

/// softmax(z) row by row, stabilised by subtracting each row's maximum.
pub fn softmax(z: &Array2<f64>) -> Array2<f64> {
    let mut out = z.clone();
    for mut row in out.rows_mut() {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Logits of `images` under `model` in plaintext, in batches.
pub fn plain_logits(model: &Sequential<PlainBackend>, images: &Array2<f64>, batch: usize) -> Result<Array2<f64>> {
    let mut b = PlainBackend;
    let mut out = Vec::with_capacity(images.nrows());
    for chunk in images.axis_chunks_iter(Axis(0), batch.max(1)) {
        let x = as_input(&model.spec, &chunk.to_owned());
        let (z, _) = model.forward(&mut b, Activation::Value(x))?;
        out.push(logits_matrix(z)?);
    }
    let views: Vec<_> = out.iter().map(|z| z.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| TrainError::Config(format!("logits do not stack: {e}")))
}

/// Fraction of rows whose largest logit is the label.
pub fn accuracy(logits: &Array2<f64>, labels: &ndarray::Array1<f64>) -> f64 {
    let correct =
        logits.rows().into_iter().zip(labels).filter(|(row, &l)| argmax(row.iter().copied()) == l as usize).count();
    correct as f64 / labels.len().max(1) as f64
}

/// Index of the first largest value.
pub fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values.enumerate().fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// Trains `cfg.net` on MNIST's training set; returns the weights and the per-epoch test accuracy.
pub fn train(cfg: &TrainConfig, mnist: &Mnist) -> Result<(Weights, TrainReport)> {
    let spec = cfg.net.spec(ReluMode::Exact);
    let mut b = PlainBackend;
    let init = spec.init(cfg.seed);
    let mut model = Sequential::input(&mut b, &spec, Role::Server0, Some(&init))?;
    let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, schedule: Schedule::Step { every: 4, factor: 0.3 } };
    let mut state = SgdState::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = mnist.train.len();
    let steps = n.div_ceil(cfg.batch.max(1));
    let bar = progress::bar((steps * cfg.epochs) as u64, &format!("train net {}", cfg.net.name()), cfg.progress);
    let one_hot = mnist.train.one_hot(10);
    let mut test_accuracy = Vec::with_capacity(cfg.epochs);
    let mut train_seconds = 0.0;
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for idx in order.chunks(cfg.batch.max(1)) {
            let x = as_input(&spec, &mnist.train.features.select(Axis(0), idx));
            let y = one_hot.select(Axis(0), idx);
            let (z, caches) = model.forward(&mut b, Activation::Value(x))?;
            let z = logits_matrix(z)?;
            let dz = (softmax(&z) - &y).into_dyn();
            let grads = model.backward(&mut b, caches, dz)?;
            let params = model.params();
            let new = sgd.step(&mut b, &mut state, &params, &grads, idx.len(), epoch)?;
            model.set_params(new)?;
            bar.inc(1);
        }
        train_seconds += start.elapsed().as_secs_f64();
        let logits = plain_logits(&model, &mnist.test.features, 1000)?;
        test_accuracy.push(accuracy(&logits, &mnist.test.labels));
        bar.println(format!("net {} epoch {}: test accuracy {:.4}", cfg.net.name(), epoch + 1, test_accuracy[epoch]));
    }
    bar.finish_and_clear();
    let weights = model.output(&mut b, Role::Server0)?.unwrap_or_default();
    Ok((weights, TrainReport { net: cfg.net.name(), epochs: cfg.epochs, test_accuracy, train_seconds }))
}

/// Trains `cfg.net` and writes `{dir}/mnist-{x}.json` (architecture), `.safetensors` (weights)
/// and `-train.json` (this report with the settings), the committed model files.
pub fn train_and_save(cfg: &TrainConfig, mnist: &Mnist, dir: &std::path::Path) -> Result<TrainReport> {
    let (weights, report) = train(cfg, mnist)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Config(format!("cannot create {}: {e}", dir.display())))?;
    let stem = dir.join(cfg.net.file_stem());
    let spec = cfg.net.spec(ReluMode::Exact);
    pond_layers::io::save(&spec, &weights, &stem.with_extension("json"), &stem.with_extension("safetensors"))?;
    let settings = serde_json::json!({
        "report": &report,
        "settings": {"epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr, "momentum": cfg.momentum, "seed": cfg.seed,
                     "schedule": "step: x0.3 every 4 epochs", "loss": "softmax cross-entropy"},
        "command": format!("pond train mnist --net {}", cfg.net.name()),
    });
    let path = dir.join(format!("{}-train.json", cfg.net.file_stem()));
    std::fs::write(&path, serde_json::to_string_pretty(&settings).unwrap_or_default())
        .map_err(|e| TrainError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(report)
}
