//! Elementwise activations: ReLU (exact or polynomial) and sigmoid (polynomial), with the
//! polynomials' derivatives for the backward pass.

use crate::backend::{Activation, Backend};
use crate::error::Result;
use crate::layer::{Backward, Layer};
use pond_protocol::polynomial::{Polynomial, RELU, SIGMOID};

/// Coefficients (in t = x / 2^s) of d p(x) / dx for p with coefficients `c` in t.
const fn derivative<const N: usize>(c: &[f64], scale_bits: u32) -> [f64; N] {
    let mut out = [0.0; N];
    let scale = (1u64 << scale_bits) as f64;
    let mut i = 0;
    while i < N {
        out[i] = (i + 1) as f64 * c[i + 1] / scale;
        i += 1;
    }
    out
}

const RELU_GRAD_COEFFS: [f64; 4] = derivative::<4>(RELU.coeffs, RELU.scale_bits);
const SIGMOID_GRAD_COEFFS: [f64; 9] = derivative::<9>(SIGMOID.coeffs, SIGMOID.scale_bits);

/// The derivative of [`RELU`] (exactly, as a polynomial in the same t = x/4), used by the
/// polynomial ReLU's backward pass. `max_error` is its distance to the step function on
/// [-4, 4] away from the jump, |x| >= 1 (near 0 no polynomial approximates a step): 0.331.
pub const RELU_GRAD: Polynomial =
    Polynomial { coeffs: &RELU_GRAD_COEFFS, scale_bits: RELU.scale_bits, max_error: 0.331 };

/// The derivative of [`SIGMOID`] (exactly, in the same t = x/8), used by the sigmoid's backward
/// pass. `max_error` is its distance to sigma'(x) on [-8, 8] (largest at the ends).
pub const SIGMOID_GRAD: Polynomial =
    Polynomial { coeffs: &SIGMOID_GRAD_COEFFS, scale_bits: SIGMOID.scale_bits, max_error: 0.063 };

/// How a ReLU is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReluMode {
    /// max(x, 0) by secure comparison (exact up to the input's encoding).
    Exact,
    /// The polynomial [`RELU`] on [-4, 4] (max error 0.255 there; diverges outside).
    Polynomial,
}

/// ReLU.
#[derive(Debug, Clone, Copy)]
pub struct Relu {
    /// Exact or polynomial.
    pub mode: ReluMode,
}

/// What ReLU's backward pass needs.
#[derive(Debug, Clone)]
pub enum ReluCache<B: Backend> {
    /// Exact: the 0/1 bits [x > 0].
    Bits(B::Tensor),
    /// Polynomial: the input, whose polynomial derivative the backward pass evaluates.
    Input(B::Tensor),
}

impl<B: Backend> Layer<B> for Relu {
    type Cache = ReluCache<B>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, ReluCache<B>)> {
        let x = x.into_value(b);
        match self.mode {
            ReluMode::Exact => {
                let (y, bits) = b.relu(&x)?;
                Ok((y, ReluCache::Bits(bits)))
            }
            ReluMode::Polynomial => Ok((b.polynomial(&x, &RELU)?, ReluCache::Input(x))),
        }
    }

    /// The polynomial ReLU takes its input by value (no cache keeps it).
    fn infer(&self, b: &mut B, x: Activation<B>) -> Result<B::Tensor> {
        let x = x.into_value(b);
        match self.mode {
            ReluMode::Exact => Ok(b.relu(&x)?.0),
            ReluMode::Polynomial => b.polynomial_owned(x, &RELU),
        }
    }

    fn backward_select(&self, b: &mut B, cache: ReluCache<B>, dy: &B::Tensor, _need_dx: bool) -> Result<Backward<B>> {
        let dx = match cache {
            ReluCache::Bits(bits) => b.gate(dy, &bits)?,
            ReluCache::Input(x) => {
                let d = b.polynomial(&x, &RELU_GRAD)?;
                b.mul(dy, &d)?
            }
        };
        Ok((Some(dx), Vec::new()))
    }
}

/// Sigmoid by the polynomial [`SIGMOID`] (degree 9 on [-8, 8], max error 0.0123 there).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl<B: Backend> Layer<B> for Sigmoid {
    type Cache = B::Tensor;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, B::Tensor)> {
        let x = x.into_value(b);
        Ok((b.polynomial(&x, &SIGMOID)?, x))
    }

    /// The polynomial takes the input by value (no cache keeps it).
    fn infer(&self, b: &mut B, x: Activation<B>) -> Result<B::Tensor> {
        let x = x.into_value(b);
        b.polynomial_owned(x, &SIGMOID)
    }

    fn backward_select(&self, b: &mut B, x: B::Tensor, dy: &B::Tensor, _need_dx: bool) -> Result<Backward<B>> {
        let d = b.polynomial(&x, &SIGMOID_GRAD)?;
        Ok((Some(b.mul(dy, &d)?), Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The derivative polynomials are what their doc comments claim.
    #[test]
    fn derivative_polynomials() {
        let h = 1e-6;
        for i in 0..=1000 {
            let x = -8.0 + 16.0 * i as f64 / 1000.0;
            let fd = (SIGMOID.eval(x + h) - SIGMOID.eval(x - h)) / (2.0 * h);
            assert!((SIGMOID_GRAD.eval(x) - fd).abs() < 1e-6);
            let s = sigmoid(x);
            assert!((SIGMOID_GRAD.eval(x) - s * (1.0 - s)).abs() <= SIGMOID_GRAD.max_error, "{x}");
            let x = x / 2.0;
            let fd = (RELU.eval(x + h) - RELU.eval(x - h)) / (2.0 * h);
            assert!((RELU_GRAD.eval(x) - fd).abs() < 1e-6);
            if x.abs() >= 1.0 {
                let step = if x > 0.0 { 1.0 } else { 0.0 };
                assert!((RELU_GRAD.eval(x) - step).abs() <= RELU_GRAD.max_error, "{x}");
            }
        }
    }
}
