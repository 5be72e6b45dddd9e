//! `pond infer`: private inference of a trained network over MNIST's test set, with three local
//! parties, compared image by image with plaintext inference of the same network.
//!
//! Roles in the local run: server0 is the model owner (it secret-shares the weights once; every
//! dense weight is then masked once and reused by every batch), cp is the prediction client
//! (it secret-shares each batch of images and is the only party the logits are revealed to), and
//! server0/server1 compute. cp is also the dealer; as client it sees only its own images and
//! the logits, as dealer only masks.

use super::nets::{with_relu, Net};
use super::train::{accuracy, argmax, as_input, plain_logits, relu_name, softmax};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::progress;
use ndarray::{s, Array2, Axis};
use pond_core::{Crt, FixedPoint, Int100, TfeModuli, Z128, Z64};
use pond_layers::{
    Activation, AnyLayer, Backend, ModelSpec, PlainBackend, PrivateBackend, ReluMode, Sequential, Weights,
};
use pond_net::serve::serve_in;
use pond_net::{RequestSource, ServeError, ServeReport, WireTensor};
use pond_protocol::costs::Cost;
use pond_protocol::{run_local, LocalConfig, ProtocolError, Role, Session, Traffic};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The ring private inference runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingChoice {
    /// Z_2^64, 16 fractional bits.
    Z64,
    /// Z_2^128, 24 fractional bits.
    Z128,
    /// pond's int100 (`pond_core::Int100`: five CRT moduli just below 2^21), 16 fractional bits.
    Int100,
    /// tf-encrypted's int100 (its ten CRT moduli near 2^10.2), 16 fractional bits: the
    /// like-for-like comparison.
    Crt10,
}

impl RingChoice {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RingChoice::Z64 => "z64",
            RingChoice::Z128 => "z128",
            RingChoice::Int100 => "int100",
            RingChoice::Crt10 => "crt10",
        }
    }

    /// Whether the ring has pond's secure comparison (exact ReLU, max-pooling): the binary
    /// rings do, the CRT rings do not.
    pub fn has_comparison(self) -> bool {
        matches!(self, RingChoice::Z64 | RingChoice::Z128)
    }
}

/// Settings of a private inference run.
#[derive(Debug, Clone)]
pub struct InferConfig {
    /// Which network.
    pub net: Net,
    /// Ring of the private computation.
    pub ring: RingChoice,
    /// Exact (secure comparison) or polynomial ReLU.
    pub relu: ReluMode,
    /// Images per batch.
    pub batch: usize,
    /// Only the first `limit` test images (all 10,000 if `None`).
    pub limit: Option<usize>,
    /// Directory of the model files.
    pub model_dir: PathBuf,
    /// Seed of the parties' keys (reproducible runs).
    pub seed: u64,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// What a private inference run measured (the fields of `pond infer --json`).
#[derive(Debug, Clone, Serialize)]
pub struct InferReport {
    /// Network letter.
    pub net: &'static str,
    /// Ring name.
    pub ring: &'static str,
    /// "exact" or "poly".
    pub relu: &'static str,
    /// The model file stem used (`.json` + `.safetensors`): `mnist-x-poly` when running with
    /// polynomial ReLU and a model trained with it exists, else `mnist-x` (net S without a
    /// model: "random weights (seed 7)").
    pub model: String,
    /// Images classified.
    pub images: usize,
    /// Images per batch.
    pub batch: usize,
    /// Accuracy of the private predictions.
    pub accuracy_private: f64,
    /// Accuracy of plaintext inference with the same network and ReLU.
    pub accuracy_plain: f64,
    /// Accuracy of plaintext inference of the same weights with exact ReLU.
    pub accuracy_plain_exact: f64,
    /// Fraction of images where private and plaintext predictions agree.
    pub agreement: f64,
    /// Mean KL(plaintext softmax || private softmax).
    pub kl: f64,
    /// Largest absolute difference between a private and a plaintext logit.
    pub max_abs_err: f64,
    /// Milliseconds per batch, three parties (slowest party), cp dealing online, after one
    /// untimed warm-up batch (see `warmup_ms`).
    pub ms_per_batch: f64,
    /// Milliseconds per image.
    pub ms_per_image: f64,
    /// Bytes sent per image by server0, server1, cp.
    pub bytes_per_image: [f64; 3],
    /// Server rounds per batch.
    pub rounds_per_batch: f64,
    /// The protocol's formula for `bytes_per_image` ([`pond_layers::cost::inference_batch`]).
    pub expected_bytes_per_image: [f64; 3],
    /// Milliseconds per batch of plaintext inference (f64, same run).
    pub plain_ms: f64,
    /// ms_per_batch / plain_ms.
    pub ratio: f64,
    /// One-time set-up: sharing and masking the weights (ms, slowest party).
    pub setup_ms: f64,
    /// The warm-up batch (the first batch, run once more before the timed run on cold buffers
    /// and threads; ms, slowest party), not part of `ms_per_batch`.
    pub warmup_ms: f64,
}

/// The file stem (without extension) of the model to run `net` with `relu`: for polynomial ReLU
/// the model trained with it (`mnist-x-poly`) when `dir` has one, otherwise the exact-ReLU model.
pub fn model_stem(net: Net, relu: ReluMode, dir: &Path) -> PathBuf {
    let trained_for = dir.join(net.file_stem(relu));
    if trained_for.with_extension("json").is_file() {
        trained_for
    } else {
        dir.join(net.file_stem(ReluMode::Exact))
    }
}

/// Loads the committed model (architecture + weights) to run `net` with `relu` (see
/// [`model_stem`]).
pub fn load_model(net: Net, relu: ReluMode, dir: &Path) -> Result<(ModelSpec, Weights)> {
    let stem = model_stem(net, relu, dir);
    Ok(pond_layers::io::load(&stem.with_extension("json"), &stem.with_extension("safetensors"))?)
}

/// Seed of the random weights of net S when it has no trained model.
const RANDOM_SEED: u64 = 7;

/// Weights for `net` with `relu`: the committed model, or for S (which is only timed) seeded
/// random weights.
pub fn model_or_random(net: Net, relu: ReluMode, dir: &Path) -> Result<(ModelSpec, Weights)> {
    match load_model(net, relu, dir) {
        Ok(m) => Ok(m),
        Err(_) if net == Net::S => {
            let spec = net.spec(ReluMode::Exact);
            let w = spec.init(RANDOM_SEED);
            Ok((spec, w))
        }
        Err(e) => Err(e),
    }
}

/// True if the network needs secure comparison even with polynomial ReLU (it max-pools), so it
/// cannot run in the CRT ring.
pub fn needs_comparison(spec: &ModelSpec) -> bool {
    spec.layers.iter().any(|l| matches!(l, pond_layers::LayerSpec::MaxPool2d { .. }))
}

/// Prepares (masks) every dense weight and convolution filter once, for reuse by every batch.
fn prepare_weights<B: Backend>(b: &mut B, model: &mut Sequential<B>) -> pond_layers::Result<()> {
    for layer in &mut model.layers {
        match layer {
            AnyLayer::Dense(d) => d.prepare_weight(b)?,
            AnyLayer::Conv2d(c) => c.prepare_weight(b)?,
            _ => {}
        }
    }
    Ok(())
}

/// Private inference as a service, one party's part (SPMD) of `pond party infer` and of its
/// local twin ([`pond_net::serve_local`]): the model owner server0 secret-shares `weights`
/// (the others pass `None`) and every weight is masked once; then each client request (input
/// 0: images in `Z64` fixed point, shaped by [`as_input`]) goes through the model and each
/// server sends its share of the logits to the client.
pub fn serve_infer(
    session: &mut Session,
    source: Option<&mut dyn RequestSource>,
    spec: &ModelSpec,
    weights: Option<&Weights>,
) -> std::result::Result<ServeReport, ServeError> {
    let mut b = PrivateBackend::<Z64>::new(session, FixedPoint::<Z64>::default_for_ring());
    let mut model = Sequential::input(&mut b, spec, Role::Server0, weights).map_err(ProtocolError::from)?;
    prepare_weights(&mut b, &mut model).map_err(ProtocolError::from)?;
    let mut context = (b, model);
    serve_in(
        &mut context,
        |(b, _)| b.session(),
        source,
        |(b, model), request| {
            let x = request.input::<Z64>(0)?;
            let z = model.infer(b, Activation::Value(x))?;
            Ok(vec![WireTensor::from_private(&z)])
        },
    )
}

/// Per-party measurements of the private run.
struct PartyRun {
    logits: Option<Array2<f64>>,
    batches_ms: f64,
    setup_ms: f64,
    warmup_ms: f64,
    traffic: Traffic,
}

/// The test images as the client feeds them: batches of `size` rows, the last one partial.
struct Batches<'a> {
    spec: &'a ModelSpec,
    images: &'a Array2<f64>,
    size: usize,
}

impl Batches<'_> {
    /// The rows of batch `i`.
    fn rows(&self, i: usize) -> ndarray::ArrayView2<'_, f64> {
        self.images.slice(s![i * self.size..((i + 1) * self.size).min(self.images.nrows()), ..])
    }

    /// The client's fixed-point encoding of batch `i`, on cp; `None` on the servers.
    fn encode<R: pond_protocol::comparison::ComparisonRing>(
        &self,
        b: &mut PrivateBackend<'_, R>,
        i: usize,
    ) -> pond_protocol::Result<Option<R::Tensor>> {
        if b.session().role() != Role::Cp {
            return Ok(None);
        }
        Ok(Some(b.fixed_point().encode(as_input(self.spec, self.rows(i)).view())?))
    }
}

/// What one batch gives the client: the logits, and its encoding of the batch it feeds next
/// (both `None` on the servers).
struct BatchOut<T> {
    logits: Option<Array2<f64>>,
    next: Option<T>,
}

/// Batch `i` through the private model, from the client's encoding `x` of it (`None` on the
/// servers); cp, the client, gets the logits. The client encodes batch `next` (if any) while
/// the servers finish this one: once cp has dealt the last layer's correlations it only waits
/// for the logits, so the encoding is off the batch's critical path, as it would be for a client
/// that streams batches.
fn forward_batch<'s, R: pond_protocol::comparison::ComparisonRing>(
    b: &mut PrivateBackend<'s, R>,
    model: &Sequential<PrivateBackend<'s, R>>,
    batches: &Batches<'_>,
    (i, x): (usize, Option<R::Tensor>),
    next: Option<usize>,
) -> pond_protocol::Result<BatchOut<R::Tensor>> {
    let mut shape = vec![batches.rows(i).nrows()];
    shape.extend(&batches.spec.input_shape);
    let x = b.session().share_input_owned::<R>(Role::Cp, x, &shape)?;
    let z = model.infer(b, Activation::Value(x))?;
    let next = match next {
        Some(j) => batches.encode(b, j)?,
        None => None,
    };
    let logits = b
        .output(&z, Role::Cp)?
        .map(|z| {
            z.into_dimensionality::<ndarray::Ix2>().map_err(|e| pond_protocol::ProtocolError::Usage {
                op: "infer",
                reason: format!("logits are not a matrix: {e}"),
            })
        })
        .transpose()?;
    Ok(BatchOut { logits, next })
}

fn run_private<R: pond_protocol::comparison::ComparisonRing>(
    spec: &ModelSpec,
    weights: &Weights,
    images: &Array2<f64>,
    batch: usize,
    seed: u64,
    show: bool,
) -> Result<[PartyRun; 3]> {
    let fp = FixedPoint::<R>::default_for_ring();
    let n = images.nrows();
    let count = n.div_ceil(batch);
    let bar = progress::bar(count as u64, "private inference", show);
    let out = run_local(LocalConfig::seeded(seed), |s| {
        let role = s.role();
        let start = Instant::now();
        let mut b = PrivateBackend::<R>::new(s, fp);
        let mut model = Sequential::input(&mut b, spec, Role::Server0, (role == Role::Server0).then_some(weights))?;
        prepare_weights(&mut b, &mut model)?;
        let setup_ms = start.elapsed().as_secs_f64() * 1e3;
        // One untimed warm-up batch (the first images again), as the plaintext reference gets a
        // warm-up pass: it faults in the buffers and starts rayon's threads, costs of a fresh
        // process that a session serving batch after batch does not pay per batch. Its logits
        // are dropped and its traffic is not counted; `warmup_ms` reports its time. The client
        // encodes the timed loop's first batch during it, as it encodes each next batch during
        // the one before.
        let start = Instant::now();
        let batches = Batches { spec, images, size: batch };
        let x = batches.encode(&mut b, 0)?;
        let mut x = forward_batch(&mut b, &model, &batches, (0, x), Some(0))?.next;
        let warmup_ms = start.elapsed().as_secs_f64() * 1e3;
        let before = b.session().traffic();
        let start = Instant::now();
        let mut rows = Vec::new();
        for i in 0..count {
            let next = (i + 1 < count).then_some(i + 1);
            let out = forward_batch(&mut b, &model, &batches, (i, x), next)?;
            x = out.next;
            rows.extend(out.logits);
            if role == Role::Cp {
                bar.inc(1);
            }
        }
        let batches_ms = start.elapsed().as_secs_f64() * 1e3;
        let traffic = b.session().traffic().since(&before);
        let logits = if rows.is_empty() {
            None
        } else {
            let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
            Some(
                ndarray::concatenate(Axis(0), &views)
                    .map_err(|e| pond_protocol::ProtocolError::Usage { op: "infer", reason: e.to_string() })?,
            )
        };
        Ok(PartyRun { logits, batches_ms, setup_ms, warmup_ms, traffic })
    })?;
    bar.finish_and_clear();
    Ok(out)
}

/// The formula's traffic for `n` images in batches of `batch` (the last one partial).
fn expected_cost<R: pond_protocol::comparison::ComparisonRing>(
    spec: &ModelSpec,
    n: usize,
    batch: usize,
) -> Result<Cost> {
    let one = |b: usize| pond_layers::cost::inference_batch::<R>(spec, b, Role::Cp, Role::Cp);
    let full = one(batch)? * (n / batch) as u64;
    let rest = n % batch;
    Ok(if rest > 0 { full + one(rest)? } else { full })
}

fn kl(p: &Array2<f64>, q: &Array2<f64>) -> f64 {
    let (p, q) = (softmax(p), softmax(q));
    let total: f64 = p
        .iter()
        .zip(q.iter())
        .map(|(&a, &b)| if a > 0.0 { a * (a.max(1e-300).ln() - b.max(1e-300).ln()) } else { 0.0 })
        .sum();
    total / p.nrows().max(1) as f64
}

/// Runs private and plaintext inference of `cfg.net` on MNIST's test set `test` and compares
/// them.
pub fn run(cfg: &InferConfig, test: &Dataset) -> Result<InferReport> {
    if cfg.batch == 0 {
        return Err(TrainError::Config("--batch must be at least 1".into()));
    }
    let (trained, weights) = model_or_random(cfg.net, cfg.relu, &cfg.model_dir)?;
    let stem = model_stem(cfg.net, cfg.relu, &cfg.model_dir);
    let model = if stem.with_extension("json").is_file() {
        stem.display().to_string()
    } else {
        format!("random weights (seed {RANDOM_SEED})")
    };
    let spec = with_relu(&trained, cfg.relu);
    let n = cfg.limit.unwrap_or(test.len()).min(test.len());
    let images = test.features.slice(s![..n, ..]).to_owned();
    let labels = test.labels.slice(s![..n]).to_owned();

    let mut plain = PlainBackend;
    let plain_model = Sequential::input(&mut plain, &spec, Role::Server0, Some(&weights))?;
    let exact_spec = with_relu(&trained, ReluMode::Exact);
    let exact_model = Sequential::input(&mut plain, &exact_spec, Role::Server0, Some(&weights))?;
    // Two plaintext passes, the second timed: the first faults in the buffers and warms the
    // caches, as the private run's set-up does for its batches (a cold pass varied 2x).
    let plain_z = plain_logits(&plain_model, &images, cfg.batch)?;
    let start = Instant::now();
    std::hint::black_box(plain_logits(&plain_model, &images, cfg.batch)?);
    let plain_ms = start.elapsed().as_secs_f64() * 1e3 / n.div_ceil(cfg.batch) as f64;
    let exact_z = plain_logits(&exact_model, &images, cfg.batch)?;

    let parties = match cfg.ring {
        RingChoice::Z64 => run_private::<Z64>(&spec, &weights, &images, cfg.batch, cfg.seed, cfg.progress)?,
        RingChoice::Z128 => run_private::<Z128>(&spec, &weights, &images, cfg.batch, cfg.seed, cfg.progress)?,
        RingChoice::Int100 => run_private::<Int100>(&spec, &weights, &images, cfg.batch, cfg.seed, cfg.progress)?,
        RingChoice::Crt10 => {
            run_private::<Crt<TfeModuli>>(&spec, &weights, &images, cfg.batch, cfg.seed, cfg.progress)?
        }
    };
    let expected = match cfg.ring {
        RingChoice::Z64 => expected_cost::<Z64>(&spec, n, cfg.batch)?,
        RingChoice::Z128 => expected_cost::<Z128>(&spec, n, cfg.batch)?,
        RingChoice::Int100 => expected_cost::<Int100>(&spec, n, cfg.batch)?,
        RingChoice::Crt10 => expected_cost::<Crt<TfeModuli>>(&spec, n, cfg.batch)?,
    };
    let private_z = parties[Role::Cp.index()]
        .logits
        .clone()
        .ok_or_else(|| TrainError::Config("the client received no logits".into()))?;
    let batches = n.div_ceil(cfg.batch) as f64;
    let ms_per_batch = parties.iter().map(|p| p.batches_ms).fold(0.0, f64::max) / batches;
    let agree = plain_z
        .rows()
        .into_iter()
        .zip(private_z.rows())
        .filter(|(a, b)| argmax(a.iter().copied()) == argmax(b.iter().copied()))
        .count();
    Ok(InferReport {
        net: cfg.net.name(),
        ring: cfg.ring.name(),
        relu: relu_name(cfg.relu),
        model,
        images: n,
        batch: cfg.batch,
        accuracy_private: accuracy(&private_z, &labels),
        accuracy_plain: accuracy(&plain_z, &labels),
        accuracy_plain_exact: accuracy(&exact_z, &labels),
        agreement: agree as f64 / n.max(1) as f64,
        kl: kl(&plain_z, &private_z),
        max_abs_err: (&plain_z - &private_z).iter().fold(0.0, |m, d| m.max(d.abs())),
        ms_per_batch,
        ms_per_image: ms_per_batch * batches / n.max(1) as f64,
        bytes_per_image: std::array::from_fn(|i| parties[i].traffic.total_sent() as f64 / n.max(1) as f64),
        rounds_per_batch: parties[0].traffic.rounds as f64 / batches,
        expected_bytes_per_image: expected.bytes.map(|b| b as f64 / n.max(1) as f64),
        plain_ms,
        ratio: ms_per_batch / plain_ms,
        setup_ms: parties.iter().map(|p| p.setup_ms).fold(0.0, f64::max),
        warmup_ms: parties.iter().map(|p| p.warmup_ms).fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system's temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pond-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn polynomial_relu_uses_the_model_trained_with_it_when_there_is_one() {
        let dir = temp_dir("model-stem");
        assert_eq!(model_stem(Net::A, ReluMode::Polynomial, &dir), dir.join("mnist-a"));
        std::fs::write(dir.join("mnist-a-poly.json"), "{}").expect("write");
        assert_eq!(model_stem(Net::A, ReluMode::Polynomial, &dir), dir.join("mnist-a-poly"));
        assert_eq!(model_stem(Net::A, ReluMode::Exact, &dir), dir.join("mnist-a"));
        assert_eq!(model_stem(Net::D, ReluMode::Polynomial, &dir), dir.join("mnist-d"));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// Every committed model loads, has its network's architecture (with the ReLU it was trained
    /// with) and weights of the right shapes; A and D have polynomial-ReLU models.
    #[test]
    fn committed_models_load_with_the_right_shapes() {
        let dir = crate::mnist::default_model_dir();
        for relu in [ReluMode::Exact, ReluMode::Polynomial] {
            for net in [Net::A, Net::B, Net::C, Net::D] {
                let stem = dir.join(net.file_stem(relu));
                if !stem.with_extension("json").is_file() {
                    continue;
                }
                let (spec, weights) = load_model(net, relu, &dir).expect("committed model loads");
                assert_eq!(spec, net.spec(relu), "{}", stem.display());
                for (name, shape) in spec.param_shapes() {
                    assert_eq!(weights[&name].shape(), &shape[..], "{} {name}", stem.display());
                }
            }
        }
        for net in [Net::A, Net::D] {
            assert_eq!(model_stem(net, ReluMode::Polynomial, &dir), dir.join(net.file_stem(ReluMode::Polynomial)));
        }
    }
}
