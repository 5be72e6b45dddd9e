//! Shared helpers of the layer tests: random inputs, one layer run forward and backward.
#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use pond_core::Conv2dParams;
use pond_layers::*;
use rand::{Rng, SeedableRng};

/// Uniform values in [-a, a] from a seed, each at least `gap` away from 0 (so exact ReLU and
/// max-pool are differentiable at every input and their fixed-point comparison is exact).
pub fn uniform(seed: u64, shape: &[usize], a: f64, gap: f64) -> ArrayD<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        let v: f64 = rng.random_range(gap..a);
        if rng.random_bool(0.5) {
            v
        } else {
            -v
        }
    })
}

/// The layers under test, each with its input shape and parameters (plaintext values).
pub struct Case {
    /// Name for messages.
    pub name: &'static str,
    /// Architecture of a one-layer model.
    pub spec: ModelSpec,
    /// Input [N, ...].
    pub x: ArrayD<f64>,
}

/// One case per layer kind; pooling inputs are spread out so window maxima are unique.
pub fn cases() -> Vec<Case> {
    let conv = LayerSpec::Conv2d { in_channels: 2, out_channels: 3, kernel: (3, 3), stride: (2, 2), padding: (1, 1) };
    let one = |name, layer: LayerSpec, x_shape: &[usize], a: f64, seed| Case {
        name,
        spec: ModelSpec { input_shape: x_shape[1..].to_vec(), layers: vec![layer] },
        x: uniform(seed, x_shape, a, 0.05),
    };
    vec![
        one("dense", LayerSpec::Dense { inputs: 6, outputs: 4 }, &[5, 6], 2.0, 1),
        one("dense (narrow output)", LayerSpec::Dense { inputs: 12, outputs: 1 }, &[10, 12], 2.0, 2),
        one("conv2d", conv, &[2, 2, 5, 6], 2.0, 3),
        one("avg_pool2d", LayerSpec::AvgPool2d { size: (2, 2), stride: (2, 2) }, &[2, 2, 4, 6], 2.0, 4),
        one("avg_pool2d (overlapping)", LayerSpec::AvgPool2d { size: (3, 3), stride: (1, 2) }, &[1, 2, 5, 5], 2.0, 5),
        one("max_pool2d", LayerSpec::MaxPool2d { size: (2, 2), stride: (2, 2) }, &[2, 2, 4, 4], 2.0, 6),
        one("flatten", LayerSpec::Flatten, &[3, 2, 2, 2], 2.0, 7),
        one("relu (exact)", LayerSpec::Relu { mode: ReluMode::Exact }, &[4, 5], 3.0, 8),
        one("relu (polynomial)", LayerSpec::Relu { mode: ReluMode::Polynomial }, &[4, 5], 3.5, 9),
        one("sigmoid", LayerSpec::Sigmoid, &[4, 5], 7.5, 10),
    ]
}

/// Conv2D geometry used above (for bounds).
pub const CONV_PARAMS: Conv2dParams = Conv2dParams { stride: (2, 2), padding: (1, 1) };

/// (y, dx, parameter gradients) of one layer, in plaintext.
pub type Outputs = (ArrayD<f64>, ArrayD<f64>, Vec<ArrayD<f64>>);

/// Forward then backward of a one-layer model on backend `b`, with weights `w` owned by
/// server1 and input and output gradient owned by server0 (private backend: shared; plaintext:
/// as is). Returns (y, dx, parameter gradients) revealed to server0.
pub fn run_layer<B: Backend>(
    b: &mut B,
    spec: &ModelSpec,
    w: &Weights,
    x: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    is_owner: (bool, bool),
) -> Result<Option<Outputs>> {
    use pond_protocol::Role;
    let model = Sequential::input(b, spec, Role::Server1, is_owner.1.then_some(w))?;
    let xs = b.input(Role::Server0, is_owner.0.then_some(x), x.shape())?;
    let dys = b.input(Role::Server0, is_owner.0.then_some(dy), dy.shape())?;
    let (y, mut caches) = model.forward(b, Activation::Value(xs))?;
    let cache = caches.pop().expect("one layer");
    let (dx, grads) = model.layers[0].backward(b, cache, &dys)?;
    let y = b.output(&y, Role::Server0)?;
    let dx = b.output(&dx, Role::Server0)?;
    let grads = grads.iter().map(|g| b.output(g, Role::Server0)).collect::<Result<Vec<_>>>()?;
    Ok(match (y, dx) {
        (Some(y), Some(dx)) => Some((y, dx, grads.into_iter().map(|g| g.expect("owner")).collect())),
        _ => None,
    })
}
