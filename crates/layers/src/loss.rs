//! Loss gradients suited to MPC.
//!
//! Both losses return the gradient of the *sum* of the per-example losses over the batch;
//! the optimiser divides the learning rate by the batch size, so the 1/B factor costs no extra
//! truncation on the private backend.
//!
//! # Logistic loss (binary)
//! For z = logit, p = sigma(z) and label y in {0, 1}, the binary cross-entropy
//! L = -y log p - (1 - y) log(1 - p) has dL/dz = p - y (sigma' = sigma (1 - sigma) cancels the
//! denominators). In MPC sigma is a polynomial approximation sigma_hat (error `max_error` on its
//! interval), and the gradient used is sigma_hat(z) - y: it differs from the true BCE gradient by
//! at most `max_error` inside the interval, and no logarithm is ever computed on shares.
//!
//! # Multiclass: squared loss on one-hot labels
//! For scores z in R^K and one-hot y, L = 1/2 ||z - y||^2 has dL/dz = z - y: no softmax, no
//! exponential, no division, so the gradient is one local subtraction on shares. The
//! prediction is argmax z (taken on revealed scores, or never needed during training).
//! Squared loss on one-hot targets is a proper scoring rule for the class probabilities (its
//! minimiser is E[y | x]), which is why it trains classifiers well (e.g. SecureML, ABY3).

use crate::backend::Backend;
use crate::error::Result;
use pond_protocol::polynomial::{Polynomial, SIGMOID};

/// Sigmoid + binary cross-entropy, with sigmoid approximated by a polynomial.
#[derive(Debug, Clone)]
pub struct LogisticLoss {
    /// The sigmoid approximation.
    pub sigmoid: Polynomial,
}

impl Default for LogisticLoss {
    fn default() -> Self {
        LogisticLoss { sigmoid: SIGMOID }
    }
}

impl LogisticLoss {
    /// (p = sigma_hat(z), dL/dz = p - y) for logits z [B, 1] and labels y [B, 1].
    pub fn gradient<B: Backend>(&self, b: &mut B, z: &B::Tensor, y: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        let p = b.polynomial(z, &self.sigmoid)?;
        let dz = b.sub(&p, y)?;
        Ok((p, dz))
    }
}

/// Squared loss on one-hot labels (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SquaredLoss;

impl SquaredLoss {
    /// dL/dz = z - y for scores z [B, K] and one-hot labels y [B, K].
    pub fn gradient<B: Backend>(&self, b: &mut B, z: &B::Tensor, y: &B::Tensor) -> Result<B::Tensor> {
        b.sub(z, y)
    }
}

/// Extra sigmoid approximations for logistic regression, trading accuracy for rounds.
pub mod sigmoids {
    use pond_protocol::polynomial::Polynomial;

    /// sigma(x) ~ 0.5 + x/4 (the first-order Taylor expansion at 0): one truncation, so the
    /// cheapest; exact to 0.02 on [-1, 1], and the gradient it gives stays bounded only in the
    /// sense of least squares (no saturation). `max_error` is for [-1, 1].
    pub const LINEAR: Polynomial = Polynomial { coeffs: &[0.5, 0.25], scale_bits: 0, max_error: 0.0202 };

    /// The degree-3 least-squares fit on [-8, 8] of Kim et al. (2018, "Logistic regression model
    /// training based on the approximate homomorphic encryption"): 0.5 + 0.15012 x - 0.001593 x^3,
    /// written in t = x/8. Max error 0.1144 on [-8, 8].
    pub const CUBIC: Polynomial =
        Polynomial { coeffs: &[0.5, 0.15012 * 8.0, 0.0, -0.0015930 * 512.0], scale_bits: 3, max_error: 0.1144 };
}

#[cfg(test)]
mod tests {
    use super::sigmoids::*;

    #[test]
    fn stated_errors_hold() {
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        for (p, lo, hi) in [(LINEAR, -1.0, 1.0), (CUBIC, -8.0, 8.0)] {
            let worst = (0..=20_000)
                .map(|i| lo + (hi - lo) * i as f64 / 20_000.0)
                .map(|x| (p.eval(x) - sigma(x)).abs())
                .fold(0.0, f64::max);
            assert!(worst <= p.max_error, "{worst}");
        }
    }
}
