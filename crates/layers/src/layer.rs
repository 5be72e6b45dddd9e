//! The layer interface, and Flatten.

use crate::backend::{Activation, Backend};
use crate::error::{shape_error, Result};

/// What a backward pass returns: the input gradient (`None` when not asked for) and the
/// parameter gradients.
pub type Backward<B> = (Option<<B as Backend>::Tensor>, Vec<<B as Backend>::Tensor>);

/// A layer with a forward and a backward pass over any [`Backend`].
///
/// The cache is an explicit value returned by `forward` and consumed by `backward`, not hidden
/// state, so one layer can serve many batches at once and backward never sees a stale cache.
pub trait Layer<B: Backend> {
    /// What the backward pass needs from the forward pass.
    type Cache;

    /// y = layer(x), and the cache for the backward pass.
    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Self::Cache)>;

    /// y = layer(x) alone, for inference: by default [`Layer::forward`] without its cache; a
    /// layer whose cache would keep its input overrides it to give the input up instead.
    fn infer(&self, b: &mut B, x: Activation<B>) -> Result<B::Tensor> {
        Ok(self.forward(b, x)?.0)
    }

    /// (dx, gradients of the parameters in [`Layer::params`] order) from dy; dx is skipped
    /// (`None`) when `need_dx` is false and the layer can save work by not computing it.
    fn backward_select(&self, b: &mut B, cache: Self::Cache, dy: &B::Tensor, need_dx: bool) -> Result<Backward<B>>;

    /// (dx, gradients of the parameters in [`Layer::params`] order) from dy.
    fn backward(&self, b: &mut B, cache: Self::Cache, dy: &B::Tensor) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let (dx, grads) = self.backward_select(b, cache, dy, true)?;
        let dx = dx.ok_or_else(|| shape_error("backward", "the layer returned no input gradient"))?;
        Ok((dx, grads))
    }

    /// The parameters (none by default).
    fn params(&self) -> Vec<&B::Tensor> {
        Vec::new()
    }

    /// The parameters, mutable (none by default). Changing them invalidates prepared copies:
    /// call [`Layer::params_changed`] afterwards.
    fn params_mut(&mut self) -> Vec<&mut B::Tensor> {
        Vec::new()
    }

    /// Drops any prepared (masked) copies of the parameters.
    fn params_changed(&mut self) {}
}

/// Flattens every axis but the batch axis: [N, ...] -> [N, prod(...)].
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl<B: Backend> Layer<B> for Flatten {
    type Cache = Vec<usize>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Vec<usize>)> {
        let x = x.into_value(b);
        let shape = b.shape(&x).to_vec();
        let n = *shape.first().ok_or_else(|| shape_error("flatten", "a scalar has no batch axis"))?;
        let rest = shape[1..].iter().product();
        Ok((b.reshape_owned(x, &[n, rest])?, shape))
    }

    fn backward_select(&self, b: &mut B, shape: Vec<usize>, dy: &B::Tensor, _need_dx: bool) -> Result<Backward<B>> {
        Ok((Some(b.reshape(dy, &shape)?), Vec::new()))
    }
}
