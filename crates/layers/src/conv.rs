//! 2-D convolution by im2col: the patch matrix times the reshaped filters.

use crate::backend::{Activation, Affine, Backend, Input, ReluOutput};
use crate::error::{shape_error, Result};
use crate::layer::{Backward, Layer};
use crate::pool::{AvgPool2d, PoolCache};
use pond_core::kernels::im2col::ConvGeometry;
use pond_core::Conv2dParams;

/// Conv2D on NCHW inputs with OIHW filters, stride and zero padding, plus a bias per output
/// channel.
///
/// Forward: one convolution product (private: a Beaver convolution that opens only the input,
/// the filters being masked once by [`Conv2d::prepare_weight`] or per call). Backward: the patch
/// matrix P = im2col(x) [N*OH*OW, C*KH*KW] is prepared (masked) once and reused by the filter
/// gradient P^T dY; the input gradient is col2im(dY W).
#[derive(Debug, Clone)]
pub struct Conv2d<B: Backend> {
    /// Filters, [O, C, KH, KW].
    pub weight: B::Tensor,
    /// Bias per output channel, [O].
    pub bias: B::Tensor,
    /// Stride and padding.
    pub params: Conv2dParams,
    prepared: Option<B::Operand>,
}

/// The caches of a convolution and the average pooling fused with it, as their own forward
/// passes make them.
pub type PooledCaches<B> = (Conv2dCache<B>, PoolCache<<B as Backend>::Tensor>);

/// A convolution's forward pass with a fused average pooling and ReLU: the output, the
/// convolution's cache and the pooling's (when one is fused).
pub type ConvForward<T, B> = (T, Conv2dCache<B>, Option<PoolCache<<B as Backend>::Tensor>>);

/// Conv2d's cache: the layer input (its patches are built only if backward runs).
#[derive(Debug, Clone)]
pub struct Conv2dCache<B: Backend> {
    x: B::Tensor,
    geometry: ConvGeometry,
}

impl<B: Backend> Conv2d<B> {
    /// A layer with these parameters; errors if the shapes do not fit.
    pub fn new(b: &B, weight: B::Tensor, bias: B::Tensor, params: Conv2dParams) -> Result<Self> {
        let (ws, bs) = (b.shape(&weight), b.shape(&bias));
        if ws.len() != 4 || bs != [ws[0]] {
            return Err(shape_error("conv2d", format!("filters {ws:?} with bias {bs:?}")));
        }
        Ok(Conv2d { weight, bias, params, prepared: None })
    }

    /// The same layer typed for another backend with the same tensor types (see
    /// [`crate::Sequential::rebind`]).
    pub fn rebind<C: Backend<Tensor = B::Tensor, Operand = B::Operand>>(self) -> Conv2d<C> {
        Conv2d { weight: self.weight, bias: self.bias, params: self.params, prepared: self.prepared }
    }

    /// The geometry of this layer on input `x`, or the shape error.
    fn geometry(&self, b: &B, x: &B::Tensor) -> Result<ConvGeometry> {
        Ok(ConvGeometry::new(b.shape(x), b.shape(&self.weight), self.params)?)
    }

    /// The output shape on an input of `x`'s shape.
    pub(crate) fn output_shape(&self, b: &B, x: &B::Tensor) -> Result<Vec<usize>> {
        let g = self.geometry(b, x)?;
        Ok(vec![g.batch, g.filters, g.output.0, g.output.1])
    }

    /// The filters as a product operand: prepared when [`Conv2d::prepare_weight`] ran.
    fn filters(&self) -> Input<'_, B> {
        match &self.prepared {
            Some(w) => Input::Prepared(w),
            None => Input::Value(&self.weight),
        }
    }

    /// This layer followed by `pool`, which must fuse with it ([`AvgPool2d::fuses_with_conv`]):
    /// one [`Backend::conv2d_add_channels`] with the pooling window (the bias commutes with
    /// pooling, being constant over each window), and both layers' caches, as their own forward
    /// passes make them.
    pub fn forward_avg_pooled(
        &self,
        b: &mut B,
        x: Activation<B>,
        pool: &AvgPool2d,
    ) -> Result<(B::Tensor, PooledCaches<B>)> {
        let (y, conv, pool) = self.forward_with(b, x, Some(pool), |b, affine| affine.apply(b))?;
        Ok((y, (conv, pool.expect("a pooled forward pass makes the pooling's cache"))))
    }

    /// [`Layer::forward`] (or [`Conv2d::forward_avg_pooled`] with `pool`) with the exact ReLU
    /// after it fused in ([`Affine::relu`]): the ReLU and its 0/1 derivative (the ReLU
    /// layer's cache), this layer's cache and the pooling's.
    pub fn forward_relu(
        &self,
        b: &mut B,
        x: Activation<B>,
        pool: Option<&AvgPool2d>,
    ) -> Result<ConvForward<ReluOutput<B>, B>> {
        self.forward_with(b, x, pool, |b, affine| affine.relu(b))
    }

    /// [`Layer::forward`] before the output's rescaling ([`Backend::affine_unscaled`]): the
    /// output at scale 2^(f + s) with the shift s, and this layer's cache. For a max-pool that
    /// runs on the unscaled output (the rescaling commutes with the max).
    pub fn forward_unscaled(&self, b: &mut B, x: Activation<B>) -> Result<ConvForward<(B::Tensor, u32), B>> {
        self.forward_with(b, x, None, |b, affine| b.affine_unscaled(affine))
    }

    /// The convolution of x, pooled by `pool` if given (which must fuse with it), handed with
    /// the bias to `apply`; the bias commutes with the pooling, being constant over each window.
    fn forward_with<T>(
        &self,
        b: &mut B,
        x: Activation<B>,
        pool: Option<&AvgPool2d>,
        apply: impl FnOnce(&mut B, Affine<'_, B>) -> Result<T>,
    ) -> Result<ConvForward<T, B>> {
        let x = x.into_value(b);
        let g = self.geometry(b, &x)?;
        let conv_out = [g.batch, g.filters, g.output.0, g.output.1];
        let pool_cache = match pool {
            Some(pool) if !pool.fuses_with_conv(&conv_out) => {
                return Err(shape_error(
                    "conv2d + avg_pool2d",
                    format!("{pool:?} does not fuse with output {conv_out:?}"),
                ));
            }
            Some(pool) => Some(pool.cache_for(&conv_out)?),
            None => None,
        };
        let window = pool.map(|p| p.size);
        let affine = Affine::Conv { x: Input::Value(&x), w: self.filters(), geometry: &g, window, bias: &self.bias };
        let y = apply(b, affine)?;
        Ok((y, Conv2dCache { x, geometry: g }, pool_cache))
    }

    /// Prepares (masks) the filters once, so that every following forward pass reuses them
    /// (inference); training invalidates them at each update.
    pub fn prepare_weight(&mut self, b: &mut B) -> Result<()> {
        self.prepared = Some(b.prepare(&self.weight)?);
        Ok(())
    }
}

impl<B: Backend> Layer<B> for Conv2d<B> {
    type Cache = Conv2dCache<B>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Conv2dCache<B>)> {
        let (y, cache, _) = self.forward_with(b, x, None, |b, affine| affine.apply(b))?;
        Ok((y, cache))
    }

    fn backward_select(&self, b: &mut B, cache: Conv2dCache<B>, dy: &B::Tensor, need_dx: bool) -> Result<Backward<B>> {
        let g = cache.geometry;
        let patches = b.im2col(&cache.x, &g)?;
        let patches = b.prepare(&patches)?;
        let dy = b.permute(dy, &[0, 2, 3, 1])?;
        let dy = b.reshape(&dy, &[g.patch_rows(), g.filters])?;
        let dy_p = b.prepare(&dy)?;
        let pt = b.transpose_prepared(&patches)?;
        let dwt = b.matmul(Input::Prepared(&pt), Input::Prepared(&dy_p))?;
        let dw = b.transpose(&dwt)?;
        let dw = b.reshape(&dw, &[g.filters, g.channels, g.kernel.0, g.kernel.1])?;
        let db = b.sum_axis(&dy, 0)?;
        let dx = if need_dx {
            let w = b.reshape(&self.weight, &[g.filters, g.patch_cols()])?;
            let dp = b.matmul(Input::Prepared(&dy_p), Input::Value(&w))?;
            Some(b.col2im(&dp, &g)?)
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
