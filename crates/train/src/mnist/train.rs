//! `pond train mnist --net X`: plaintext training of a benchmark network with pond's own layers
//! (the plaintext backend), softmax cross-entropy, SGD with momentum and step decay.
//!
//! Plaintext training may use softmax: only inference is private here. The gradient of the
//! summed cross-entropy with respect to the logits is softmax(z) - onehot(y).
//!
//! `--relu poly` trains with the private protocol's degree-4 polynomial ReLU itself (forward
//! p(x), backward p'(x)), so private inference computes the function that was trained. p only
//! approximates ReLU on [-4, 4] and diverges outside (p(10) = -28.7); plain training with it
//! diverged in the second epoch of a trial (net A, lr 0.05, 20,000 images). Inputs are not
//! clipped, which inference could not do without comparisons; instead the loss gets a range
//! penalty lambda/2 * dist(x, [-3.5, 3.5])^2 on every activation input x (see
//! [`TrainConfig::range_penalty`]). With lambda = 1 the committed poly models keep all but about
//! 1e-5 of their test-set activation inputs inside [-4, 4] (`poly_inputs_outside` in the
//! `-train.json` report).

use super::nets::Net;
use crate::error::{Result, TrainError};
use crate::idx::Mnist;
use crate::optim::{Schedule, Sgd, SgdState};
use crate::progress;
use ndarray::{Array1, Array2, ArrayD, ArrayView2, Axis, IxDyn};
use pond_layers::activation::ReluCache;
use pond_layers::model::AnyCache;
use pond_layers::{Activation, ModelSpec, PlainBackend, ReluMode, Sequential, Weights};
use pond_protocol::polynomial::RELU;
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
    /// The activation trained with: exact ReLU, or the private protocol's polynomial ReLU
    /// (forward p(x), backward p'(x), as in private inference).
    pub relu: ReluMode,
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
    /// Train on the first `limit` training images only (smoke and timing runs; `None`: all 60,000).
    pub limit: Option<usize>,
    /// Polynomial ReLU only: weight lambda of the range penalty lambda/2 * sum dist(x, [-c, c])^2
    /// over the activation inputs x, with c = [`RANGE_MARGIN`] * 4, which keeps them where the
    /// polynomial approximates ReLU (0: no penalty).
    pub range_penalty: f64,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// The range penalty starts at this fraction of the polynomial's interval [-4, 4], so the
/// activations settle inside it with some room for unseen images.
pub const RANGE_MARGIN: f64 = 0.875;

impl TrainConfig {
    /// The settings used for the committed models.
    pub fn standard(net: Net, relu: ReluMode) -> Self {
        let epochs = match net {
            Net::A | Net::D | Net::S => 12,
            Net::B | Net::C => 6,
        };
        let range_penalty = match relu {
            ReluMode::Exact => 0.0,
            ReluMode::Polynomial => 1.0,
        };
        TrainConfig {
            net,
            relu,
            epochs,
            batch: 64,
            lr: 0.05,
            momentum: 0.9,
            seed: 1,
            limit: None,
            range_penalty,
            progress: true,
        }
    }
}

/// What a training run achieved.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Network letter.
    pub net: &'static str,
    /// "exact" or "poly".
    pub relu: &'static str,
    /// Epochs run.
    pub epochs: usize,
    /// Accuracy on the 10,000 test images after each epoch.
    pub test_accuracy: Vec<f64>,
    /// Polynomial ReLU only: after each epoch, the fraction of the activation inputs on the test
    /// images outside [-4, 4], where the polynomial stops approximating ReLU.
    pub poly_inputs_outside: Vec<f64>,
    /// Wall-clock seconds of training (without evaluation).
    pub train_seconds: f64,
}

/// Images [n, 784] reshaped to the network's per-example input shape, with a batch axis.
pub fn as_input(spec: &ModelSpec, images: ArrayView2<'_, f64>) -> ArrayD<f64> {
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
        let x = as_input(&model.spec, chunk);
        let z = model.infer(&mut b, Activation::Value(x))?;
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

/// Test accuracy of `model`, and the fraction of its polynomial-ReLU inputs outside the
/// polynomial's interval [-4, 4] (0 if it has none).
fn evaluate(model: &Sequential<PlainBackend>, images: &Array2<f64>, labels: &Array1<f64>) -> Result<(f64, f64)> {
    let range = f64::from(1u32 << RELU.scale_bits);
    let mut b = PlainBackend;
    let (mut correct, mut outside, mut inputs) = (0, 0, 0);
    for (chunk, chunk_labels) in images.axis_chunks_iter(Axis(0), 1000).zip(labels.axis_chunks_iter(Axis(0), 1000)) {
        let x = as_input(&model.spec, chunk);
        let (z, caches) = model.forward(&mut b, Activation::Value(x))?;
        for cache in &caches {
            if let AnyCache::Relu(ReluCache::Input(x)) = cache {
                outside += x.iter().filter(|v| v.abs() > range).count();
                inputs += x.len();
            }
        }
        let z = logits_matrix(z)?;
        correct +=
            z.rows().into_iter().zip(chunk_labels).filter(|(r, &l)| argmax(r.iter().copied()) == l as usize).count();
    }
    Ok((correct as f64 / labels.len().max(1) as f64, outside as f64 / inputs.max(1) as f64))
}

/// The gradient lambda (x - clip(x, -c, c)) of the range penalty (see
/// [`TrainConfig::range_penalty`]) for the input x of a polynomial ReLU; `None` for other layers.
fn range_gradient(cache: &AnyCache<PlainBackend>, lambda: f64) -> Option<ArrayD<f64>> {
    let c = RANGE_MARGIN * f64::from(1u32 << RELU.scale_bits);
    match cache {
        AnyCache::Relu(ReluCache::Input(x)) if lambda > 0.0 => Some(x.mapv(|v| lambda * (v - v.clamp(-c, c)))),
        _ => None,
    }
}

/// Trains `cfg.net` on MNIST's training set; returns the weights and the per-epoch test accuracy.
pub fn train(cfg: &TrainConfig, mnist: &Mnist) -> Result<(Weights, TrainReport)> {
    let spec = cfg.net.spec(cfg.relu);
    let mut b = PlainBackend;
    let init = spec.init(cfg.seed);
    let mut model = Sequential::input(&mut b, &spec, Role::Server0, Some(&init))?;
    let sgd = Sgd { lr: cfg.lr, momentum: cfg.momentum, schedule: Schedule::Step { every: 4, factor: 0.3 } };
    let mut state = SgdState::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = cfg.limit.unwrap_or(usize::MAX).min(mnist.train.len());
    let steps = n.div_ceil(cfg.batch.max(1));
    let bar = progress::bar((steps * cfg.epochs) as u64, &format!("train net {}", cfg.net.name()), cfg.progress);
    let one_hot = mnist.train.one_hot(10);
    let mut test_accuracy = Vec::with_capacity(cfg.epochs);
    let mut poly_inputs_outside = Vec::new();
    let mut train_seconds = 0.0;
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for idx in order.chunks(cfg.batch.max(1)) {
            let x = as_input(&spec, mnist.train.features.select(Axis(0), idx).view());
            let y = one_hot.select(Axis(0), idx);
            let (z, caches) = model.forward(&mut b, Activation::Value(x))?;
            let z = logits_matrix(z)?;
            let dz = (softmax(&z) - &y).into_dyn();
            let grads =
                model.backward_with(&mut b, caches, dz, |_, cache| Ok(range_gradient(cache, cfg.range_penalty)))?;
            let params = model.params();
            let new = sgd.step(&mut b, &mut state, &params, &grads, idx.len(), epoch)?;
            model.set_params(new)?;
            bar.inc(1);
        }
        train_seconds += start.elapsed().as_secs_f64();
        let (acc, outside) = evaluate(&model, &mnist.test.features, &mnist.test.labels)?;
        test_accuracy.push(acc);
        if cfg.relu == ReluMode::Polynomial {
            poly_inputs_outside.push(outside);
        }
        bar.println(format!(
            "net {} epoch {}: test accuracy {acc:.4}, activation inputs outside [-4, 4]: {outside:.5}",
            cfg.net.name(),
            epoch + 1
        ));
    }
    bar.finish_and_clear();
    let weights = model.output(&mut b, Role::Server0)?.unwrap_or_default();
    let report = TrainReport {
        net: cfg.net.name(),
        relu: relu_name(cfg.relu),
        epochs: cfg.epochs,
        test_accuracy,
        poly_inputs_outside,
        train_seconds,
    };
    Ok((weights, report))
}

/// "exact" or "poly", as on the command line.
pub fn relu_name(relu: ReluMode) -> &'static str {
    match relu {
        ReluMode::Exact => "exact",
        ReluMode::Polynomial => "poly",
    }
}

/// The command line that reruns `cfg` (options at their standard value are left out).
fn command(cfg: &TrainConfig) -> String {
    let standard = TrainConfig::standard(cfg.net, cfg.relu);
    let mut out = format!("pond train mnist --net {}", cfg.net.name().to_ascii_lowercase());
    if cfg.relu != ReluMode::Exact {
        out += &format!(" --relu {}", relu_name(cfg.relu));
    }
    if cfg.epochs != standard.epochs {
        out += &format!(" --epochs {}", cfg.epochs);
    }
    if cfg.lr != standard.lr {
        out += &format!(" --lr {}", cfg.lr);
    }
    if cfg.seed != standard.seed {
        out += &format!(" --seed {}", cfg.seed);
    }
    if let Some(limit) = cfg.limit {
        out += &format!(" --limit {limit}");
    }
    out
}

/// Trains `cfg.net` and writes `{dir}/mnist-{x}.json` (architecture), `.safetensors` (weights)
/// and `-train.json` (this report with the settings), the committed model files.
pub fn train_and_save(cfg: &TrainConfig, mnist: &Mnist, dir: &std::path::Path) -> Result<TrainReport> {
    let (weights, report) = train(cfg, mnist)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Config(format!("cannot create {}: {e}", dir.display())))?;
    let stem = dir.join(cfg.net.file_stem(cfg.relu));
    let spec = cfg.net.spec(cfg.relu);
    pond_layers::io::save(&spec, &weights, &stem.with_extension("json"), &stem.with_extension("safetensors"))?;
    let settings = serde_json::json!({
        "report": &report,
        "settings": {"epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr, "momentum": cfg.momentum, "seed": cfg.seed,
                     "limit": cfg.limit, "range_penalty": cfg.range_penalty, "range_margin": RANGE_MARGIN,
                     "schedule": "step: x0.3 every 4 epochs", "loss": "softmax cross-entropy"},
        "command": command(cfg),
    });
    let path = dir.join(format!("{}-train.json", cfg.net.file_stem(cfg.relu)));
    std::fs::write(&path, serde_json::to_string_pretty(&settings).unwrap_or_default())
        .map_err(|e| TrainError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pond_layers::LayerSpec;

    /// lambda/2 * sum dist(x, [-c, c])^2 over the polynomial ReLU inputs of a forward pass.
    fn range_penalty(caches: &[AnyCache<PlainBackend>], lambda: f64) -> f64 {
        let c = RANGE_MARGIN * f64::from(1u32 << RELU.scale_bits);
        caches
            .iter()
            .filter_map(|cache| match cache {
                AnyCache::Relu(ReluCache::Input(x)) => {
                    Some(x.iter().map(|v| (v - v.clamp(-c, c)).powi(2)).sum::<f64>())
                }
                _ => None,
            })
            .sum::<f64>()
            * lambda
            / 2.0
    }

    /// The penalised loss sum(z * r) + penalty, whose gradient with respect to z is r.
    fn loss(spec: &ModelSpec, w: &Weights, x: &ArrayD<f64>, r: &ArrayD<f64>, lambda: f64) -> f64 {
        let mut b = PlainBackend;
        let model = Sequential::input(&mut b, spec, Role::Server0, Some(w)).expect("model");
        let (z, caches) = model.forward(&mut b, Activation::Value(x.clone())).expect("forward");
        (&z * r).sum() + range_penalty(&caches, lambda)
    }

    /// The range penalty's gradient, added by `backward_with`, matches central finite
    /// differences of the penalised loss, with many activation inputs outside [-3.5, 3.5].
    #[test]
    fn range_penalty_gradient_matches_finite_differences() {
        let spec = ModelSpec::mlp(&[6, 5, 4, 3], ReluMode::Polynomial);
        let w: Weights = spec.init(3).into_iter().map(|(k, v)| (k, v * 6.0 + 0.1)).collect();
        let mut k = 0.0;
        let mut next = || {
            k += 1.0;
            (k * 0.618_f64).fract() * 2.0 - 1.0
        };
        let x = ArrayD::from_shape_fn(vec![3, 6], |_| next());
        let r = ArrayD::from_shape_fn(vec![3, 3], |_| next());
        let lambda = 0.7;
        let mut b = PlainBackend;
        let model = Sequential::input(&mut b, &spec, Role::Server0, Some(&w)).expect("model");
        let (_, caches) = model.forward(&mut b, Activation::Value(x.clone())).expect("forward");
        assert!(range_penalty(&caches, lambda) > 1.0, "the test point should have inputs outside the range");
        let grads =
            model.backward_with(&mut b, caches, r.clone(), |_, c| Ok(range_gradient(c, lambda))).expect("backward");
        let h = 1e-6;
        for ((name, _), g) in spec.param_shapes().iter().zip(&grads) {
            for i in 0..g.len() {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                *wp.get_mut(name).and_then(|t| t.iter_mut().nth(i)).expect("entry") += h;
                *wm.get_mut(name).and_then(|t| t.iter_mut().nth(i)).expect("entry") -= h;
                let fd = (loss(&spec, &wp, &x, &r, lambda) - loss(&spec, &wm, &x, &r, lambda)) / (2.0 * h);
                let got = g.iter().nth(i).copied().expect("entry");
                assert!((fd - got).abs() <= 1e-5 * (1.0 + fd.abs()), "d{name}[{i}] = {got}, finite difference {fd}");
            }
        }
    }

    #[test]
    fn range_gradient_is_zero_inside_the_margin_and_only_for_polynomial_relu() {
        let x = ArrayD::from_shape_vec(vec![4], vec![-5.0, -3.5, 3.0, 4.5]).expect("shape");
        let g = range_gradient(&AnyCache::Relu(ReluCache::Input(x.clone())), 2.0).expect("polynomial ReLU");
        assert_eq!(g.as_slice(), Some(&[-3.0, 0.0, 0.0, 2.0][..]));
        assert!(range_gradient(&AnyCache::Relu(ReluCache::Input(x.clone())), 0.0).is_none());
        assert!(range_gradient(&AnyCache::Relu(ReluCache::Bits(x)), 2.0).is_none());
        assert!(matches!(Net::A.spec(ReluMode::Polynomial).layers[1], LayerSpec::Relu { mode: ReluMode::Polynomial }));
    }

    #[test]
    fn command_lists_the_settings_that_differ_from_the_standard() {
        let mut cfg = TrainConfig::standard(Net::A, ReluMode::Polynomial);
        assert_eq!(command(&cfg), "pond train mnist --net a --relu poly");
        cfg.epochs = 3;
        cfg.limit = Some(100);
        assert_eq!(command(&cfg), "pond train mnist --net a --relu poly --epochs 3 --limit 100");
    }
}
