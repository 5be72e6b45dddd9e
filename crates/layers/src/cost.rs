//! Traffic and rounds of a model's private forward pass, as a formula: the sum of the protocol's
//! per-operation formulas ([`pond_protocol::costs`], [`pond_protocol::comparison::cost`]) over
//! the operations each layer's forward pass makes on [`crate::PrivateBackend`], with every dense
//! weight and convolution filter already prepared (masked once, as inference does).
//!
//! Per layer, for an input x and output z (|t| = element count, B bytes per element):
//! - Dense: mask x (open |x|, nothing when x carries its masked form or is an input cp owns,
//!   [`pond_protocol::PrivateTensor::known_to_cp`]), matmul of two masked
//!   operands (cp's |z| correction), truncation of |z|; the bias is added locally, to the
//!   product before its truncation.
//! - Conv2D: Beaver convolution of a fresh x with masked filters (open |x| unless x is an input
//!   cp owns; cp's |z|), truncation
//!   of |z|, the bias added before it as for Dense; when an average pooling that fuses with it
//!   follows ([`crate::AvgPool2d::fuses_with_conv`]), the two layers are one pooled convolution
//!   (cp's correction has the pooled size) and one truncation of the pooled size.
//! - AvgPool2D: local window sums, one scale by a public constant (truncation of |z|).
//! - MaxPool2D: the comparison tournament of [`pond_protocol::Session::argmax_exact`] over the
//!   windows (max and one-hot, the one-hot kept for a backward pass).
//! - ReLU: exact ([`pond_protocol::comparison::cost::relu_exact_in_range`]) or the polynomial's
//!   cost; Sigmoid: its polynomial's cost. Flatten: nothing. An exact ReLU right after a Dense or
//!   Conv2D (pooled or not) is fused with that layer's truncation
//!   ([`pond_protocol::comparison::cost::truncate_relu_in_range`]), as
//!   [`crate::Affine::relu`] runs them. A Conv2D, MaxPool2D and exact ReLU cost the
//!   product, the max-pool's tournament on the unscaled product and the fused truncation and
//!   ReLU of the pooled output.
//!
//! In the CRT rings the outputs of Dense, Conv2D (pooled or not) and of a polynomial carry their
//! masked form: their final truncation masks it for free
//! ([`pond_protocol::ProtocolRing::MASKED_TRUNCATION`],
//! [`pond_protocol::costs::polynomial_output_masked`]). Flatten keeps it, so a dense layer or a
//! polynomial ReLU or sigmoid on such an input opens nothing for it. Every other layer's output,
//! and every output in the other rings, is fresh.
//!
//! A batch adds the input sharing by its owner and the logits' reveal to one owner.

use crate::error::{shape_error, Result};
use crate::model::{LayerSpec, ModelSpec};
use crate::AvgPool2d;
use crate::ReluMode;
use pond_core::kernels::im2col::ConvGeometry;
use pond_core::Conv2dParams;
use pond_protocol::comparison::{cost as compare, ComparisonRing};
use pond_protocol::costs::{self, Cost};
use pond_protocol::polynomial::{RELU, SIGMOID};
use pond_protocol::{Bilinear, Role};

fn count(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// The rescaling of an affine layer's output of n elements, and what it leaves: its truncation
/// (the output carrying its masked form where that is free), or, when an exact ReLU follows,
/// the truncation fused with the ReLU ([`compare::truncate_relu_in_range`], output fresh), which
/// consumes that layer too.
fn affine_rescaling<R: ComparisonRing>(n: u64, relu_follows: bool) -> (Cost, bool, usize) {
    if relu_follows {
        (compare::truncate_relu_in_range::<R>(n), false, 1)
    } else {
        (costs::truncation::<R>(n), R::MASKED_TRUNCATION, 0)
    }
}

/// One layer's forward cost on an input of `shape` when the layers `rest` follow it, with
/// `masked` when the input carries its masked form and `known` when it is an input cp owns:
/// the cost, the output shape, whether the output carries its masked form, and how many layers
/// the forward pass consumed (2 for a convolution fused with the average pooling after it, one
/// more for an exact ReLU fused with an affine layer).
fn layer_cost<R: ComparisonRing>(
    layer: &LayerSpec,
    rest: &[LayerSpec],
    shape: &[usize],
    masked: bool,
    known: bool,
) -> Result<(Cost, Vec<usize>, bool, usize)> {
    let n = count(shape);
    let exact_relu = |k: usize| matches!(rest.get(k), Some(LayerSpec::Relu { mode: ReluMode::Exact }));
    let (cost, out) = match *layer {
        LayerSpec::Dense { inputs, outputs } => {
            let &[rows, cols] = shape else {
                return Err(shape_error("dense", format!("input {shape:?} is not a matrix")));
            };
            if cols != inputs {
                return Err(shape_error("dense", format!("input {shape:?} for {inputs} input features")));
            }
            let out = vec![rows, outputs];
            let product = costs::product::<R>(Bilinear::Matmul, shape, true, &[inputs, outputs], true);
            let mask = if masked || known { Cost::default() } else { costs::open::<R>(n) };
            let (rescaling, out_masked, relu) = affine_rescaling::<R>(count(&out), exact_relu(0));
            return Ok((mask + product + rescaling, out, out_masked, 1 + relu));
        }
        LayerSpec::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
            let filters = [out_channels, in_channels, kernel.0, kernel.1];
            let params = Conv2dParams { stride, padding };
            let g = ConvGeometry::new(shape, &filters, params)?;
            let out = vec![g.batch, g.filters, g.output.0, g.output.1];
            if let (Some(LayerSpec::MaxPool2d { .. }), true) = (rest.first(), exact_relu(1)) {
                // The max-pool runs on the unscaled product; its result's truncation is fused
                // with the ReLU (as `Sequential` runs them).
                let (max, pooled, _, _) = layer_cost::<R>(&rest[0], &[], &out, false, false)?;
                let product = costs::product::<R>(Bilinear::Conv2d(params), shape, known, &filters, true);
                let rescaling = compare::truncate_relu_in_range::<R>(count(&pooled));
                return Ok((product + max + rescaling, pooled, false, 3));
            }
            let pooled = match rest.first() {
                Some(&LayerSpec::AvgPool2d { size, stride }) if AvgPool2d { size, stride }.fuses_with_conv(&out) => {
                    Some(size)
                }
                _ => None,
            };
            let (op, out, consumed) = match pooled {
                Some(window) => {
                    let pooled_out = vec![g.batch, g.filters, g.output.0 / window.0, g.output.1 / window.1];
                    (Bilinear::PooledConv2d { params, window }, pooled_out, 2)
                }
                None => (Bilinear::Conv2d(params), out, 1),
            };
            let (rescaling, out_masked, relu) = affine_rescaling::<R>(count(&out), exact_relu(consumed - 1));
            let cost = costs::product::<R>(op, shape, known, &filters, true) + rescaling;
            return Ok((cost, out, out_masked, consumed + relu));
        }
        LayerSpec::AvgPool2d { size, stride } | LayerSpec::MaxPool2d { size, stride } => {
            let &[b, c, h, w] = shape else {
                return Err(shape_error("pool2d", format!("input {shape:?} is not NCHW")));
            };
            let params = Conv2dParams { stride, padding: (0, 0) };
            let g = ConvGeometry::new(&[b * c, 1, h, w], &[1, 1, size.0, size.1], params)?;
            let out = vec![b, c, g.output.0, g.output.1];
            let cost = match layer {
                LayerSpec::MaxPool2d { .. } => compare::argmax_exact::<R>(&[g.patch_rows(), size.0 * size.1]),
                _ => costs::truncation::<R>(count(&out)),
            };
            (cost, out)
        }
        LayerSpec::Flatten => {
            let rows = shape.first().copied().unwrap_or(0);
            return Ok((Cost::default(), vec![rows, shape.iter().skip(1).product()], masked, 1));
        }
        LayerSpec::Relu { mode: ReluMode::Exact } => (compare::relu_exact_in_range::<R>(n), shape.to_vec()),
        LayerSpec::Relu { mode: ReluMode::Polynomial } => {
            let cost = costs::polynomial::<R>(&RELU, n, masked);
            return Ok((cost, shape.to_vec(), costs::polynomial_output_masked::<R>(&RELU), 1));
        }
        LayerSpec::Sigmoid => {
            let cost = costs::polynomial::<R>(&SIGMOID, n, masked);
            return Ok((cost, shape.to_vec(), costs::polynomial_output_masked::<R>(&SIGMOID), 1));
        }
    };
    Ok((cost, out, false, 1))
}

/// Traffic and rounds of one private inference batch of `batch` examples: the input shared by
/// `input_owner`, the forward pass with prepared weights, the output revealed to `output_owner`.
pub fn inference_batch<R: ComparisonRing>(
    spec: &ModelSpec,
    batch: usize,
    input_owner: Role,
    output_owner: Role,
) -> Result<Cost> {
    let mut shape = vec![batch];
    shape.extend(&spec.input_shape);
    let mut total = costs::share_input::<R>(input_owner, count(&shape));
    let (mut masked, mut i) = (false, 0);
    while let Some(layer) = spec.layers.get(i) {
        // Only the first layer's input can be one cp owns.
        let known = i == 0 && input_owner == Role::Cp;
        let (cost, out, out_masked, consumed) = layer_cost::<R>(layer, &spec.layers[i + 1..], &shape, masked, known)?;
        total = total + cost;
        (shape, masked) = (out, out_masked);
        i += consumed;
    }
    Ok(total + costs::reveal_to::<R>(count(&shape), output_owner))
}
