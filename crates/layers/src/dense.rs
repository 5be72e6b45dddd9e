//! Dense (fully connected) layer: y = x W + b.

use crate::backend::{Activation, Affine, Backend, Input, ReluOutput};
use crate::error::{shape_error, Result};
use crate::layer::{Backward, Layer};

/// A weight gradient x^T dy with at most this many columns is computed as (dy^T x)^T: x^T would
/// copy the batch (value, mask and opened difference) every step, dy^T copies a few columns,
/// and the ring GEMMs take unpacked fast paths for few rows or few columns.
const NARROW: usize = 8;

/// y = x W + b with W of shape [inputs, outputs] (pond's layout; PyTorch stores the transpose)
/// and b of shape [outputs].
#[derive(Debug, Clone)]
pub struct Dense<B: Backend> {
    /// W, [inputs, outputs].
    pub weight: B::Tensor,
    /// b, [outputs].
    pub bias: B::Tensor,
    prepared: Option<B::Operand>,
}

/// Dense's cache: the prepared input and weight, reused by both products of the backward pass.
#[derive(Debug, Clone)]
pub struct DenseCache<B: Backend> {
    x: B::Operand,
    /// The weight prepared for this pass, or `None` when the layer's prepared weight was used.
    w: Option<B::Operand>,
}

impl<B: Backend> Dense<B> {
    /// A layer with these parameters; errors if the shapes do not fit.
    pub fn new(b: &B, weight: B::Tensor, bias: B::Tensor) -> Result<Self> {
        let (ws, bs) = (b.shape(&weight), b.shape(&bias));
        if ws.len() != 2 || bs != [ws[1]] {
            return Err(shape_error("dense", format!("weight {ws:?} with bias {bs:?}")));
        }
        Ok(Dense { weight, bias, prepared: None })
    }

    /// The same layer typed for another backend with the same tensor types (see
    /// [`crate::Sequential::rebind`]).
    pub fn rebind<C: Backend<Tensor = B::Tensor, Operand = B::Operand>>(self) -> Dense<C> {
        Dense { weight: self.weight, bias: self.bias, prepared: self.prepared }
    }

    /// Prepares (masks) the weight once, so that every following forward pass reuses it
    /// (inference); training invalidates it at each update.
    pub fn prepare_weight(&mut self, b: &mut B) -> Result<()> {
        self.prepared = Some(b.prepare(&self.weight)?);
        Ok(())
    }

    /// [`Layer::forward`] with the exact ReLU after it fused in ([`Affine::relu`]): the
    /// ReLU and its 0/1 derivative (the ReLU layer's cache), and this layer's cache.
    pub fn forward_relu(&self, b: &mut B, x: Activation<B>) -> Result<(ReluOutput<B>, DenseCache<B>)> {
        self.forward_with(b, x, |b, affine| affine.relu(b))
    }

    /// One product x W with both operands prepared (x here, unless it comes prepared; W once
    /// per parameter update), handed with the bias to `apply`.
    fn forward_with<T>(
        &self,
        b: &mut B,
        x: Activation<B>,
        apply: impl FnOnce(&mut B, Affine<'_, B>) -> Result<T>,
    ) -> Result<(T, DenseCache<B>)> {
        let x = x.into_prepared(b)?;
        let fresh = match self.prepared {
            Some(_) => None,
            None => Some(b.prepare(&self.weight)?),
        };
        let w = fresh.as_ref().or(self.prepared.as_ref()).expect("one of the two is set just above");
        let y = apply(b, Affine::Dense { x: Input::Prepared(&x), w: Input::Prepared(w), bias: &self.bias })?;
        Ok((y, DenseCache { x, w: fresh }))
    }
}

impl<B: Backend> Layer<B> for Dense<B> {
    type Cache = DenseCache<B>;

    /// One product x W with both operands prepared: x is prepared here (one opening) unless it
    /// comes prepared, W once per parameter update.
    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, DenseCache<B>)> {
        self.forward_with(b, x, |b, affine| affine.apply(b))
    }

    /// dW = x^T dy, db = sum over rows of dy, dx = dy W^T: dy is prepared once (one opening)
    /// and both products reuse the prepared x and W of the forward pass.
    fn backward_select(&self, b: &mut B, cache: DenseCache<B>, dy: &B::Tensor, need_dx: bool) -> Result<Backward<B>> {
        let dy_p = b.prepare(dy)?;
        let (inputs, outs) = (b.shape(&self.weight)[0], b.shape(&self.bias)[0]);
        let dw = if outs <= NARROW && inputs > NARROW {
            let dyt = b.transpose_prepared(&dy_p)?;
            let dwt = b.matmul(Input::Prepared(&dyt), Input::Prepared(&cache.x))?;
            b.transpose(&dwt)?
        } else {
            let xt = b.transpose_prepared(&cache.x)?;
            b.matmul(Input::Prepared(&xt), Input::Prepared(&dy_p))?
        };
        let db = b.sum_axis(dy, 0)?;
        let dx = if need_dx {
            let w = cache
                .w
                .as_ref()
                .or(self.prepared.as_ref())
                .ok_or_else(|| shape_error("dense backward", "the weight changed between forward and backward"))?;
            let wt = b.transpose_prepared(w)?;
            Some(b.matmul(Input::Prepared(&dy_p), Input::Prepared(&wt))?)
        } else {
            None
        };
        Ok((dx, vec![dw, db]))
    }

    fn params(&self) -> Vec<&B::Tensor> {
        vec![&self.weight, &self.bias]
    }

    fn params_mut(&mut self) -> Vec<&mut B::Tensor> {
        vec![&mut self.weight, &mut self.bias]
    }

    fn params_changed(&mut self) {
        self.prepared = None;
    }
}
