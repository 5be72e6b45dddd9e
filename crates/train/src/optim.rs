//! Stochastic gradient descent with momentum and a learning-rate schedule, on any backend.
//!
//! The update keeps the velocity in learning-rate units, u <- mu u + (lr_t / B) g, w <- w - u,
//! where g is the gradient of the summed loss over a batch of B examples. On the private
//! backend the whole update of every parameter is one [`Backend::axpby_many`]: one truncation,
//! one round, whatever the number of parameters. With a constant learning rate this is exactly
//! PyTorch's SGD with momentum (v <- mu v + g, w <- w - lr v, with u = lr v).

use pond_layers::{Backend, Result};

/// How the learning rate changes over epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// lr in every epoch.
    Constant,
    /// lr * factor^(epoch / every).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Multiplier per decay.
        factor: f64,
    },
    /// lr / (1 + decay * epoch).
    InverseTime {
        /// Decay rate per epoch.
        decay: f64,
    },
}

impl Schedule {
    /// The learning rate in `epoch` (0-based) for base rate `lr`.
    pub fn rate(&self, lr: f64, epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { every, factor } => lr * factor.powi((epoch / every.max(1)) as i32),
            Schedule::InverseTime { decay } => lr / (1.0 + decay * epoch as f64),
        }
    }
}

/// SGD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Base learning rate.
    pub lr: f64,
    /// Momentum mu in [0, 1).
    pub momentum: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// SGD's state for one model: the velocities, in the backend.
#[derive(Debug, Clone)]
pub struct SgdState<B: Backend> {
    velocity: Option<Vec<B::Tensor>>,
}

impl<B: Backend> Default for SgdState<B> {
    fn default() -> Self {
        SgdState { velocity: None }
    }
}

impl Sgd {
    /// New parameters from `params`, the batch gradients `grads` (of the summed loss over
    /// `batch` examples) and the state, in `epoch`.
    pub fn step<B: Backend>(
        &self,
        b: &mut B,
        state: &mut SgdState<B>,
        params: &[&B::Tensor],
        grads: &[B::Tensor],
        batch: usize,
        epoch: usize,
    ) -> Result<Vec<B::Tensor>> {
        let c = self.schedule.rate(self.lr, epoch) / batch.max(1) as f64;
        let grads: Vec<&B::Tensor> = grads.iter().collect();
        let u = match (&state.velocity, self.momentum) {
            (Some(v), mu) if mu != 0.0 => {
                let v: Vec<&B::Tensor> = v.iter().collect();
                b.axpby_many(mu, &v, c, &grads)?
            }
            _ => b.axpby_many(c, &grads, 0.0, &grads)?,
        };
        let new = params.iter().zip(&u).map(|(w, u)| b.sub(w, u)).collect::<Result<Vec<_>>>()?;
        if self.momentum != 0.0 {
            state.velocity = Some(u);
        }
        Ok(new)
    }
}
