//! Pooling over square windows: average (linear, cheap) and max (secure comparisons).

use crate::backend::{Activation, Backend};
use crate::error::{shape_error, Result};
use crate::layer::{Backward, Layer};
use pond_core::kernels::im2col::ConvGeometry;
use pond_core::Conv2dParams;

/// Window geometry: pooling is a convolution of each channel on its own with a 1-channel
/// window, so it reuses im2col on the input viewed as [N*C, 1, H, W].
fn window_geometry(shape: &[usize], size: (usize, usize), stride: (usize, usize)) -> Result<ConvGeometry> {
    let &[n, c, h, w] = shape else {
        return Err(shape_error("pool2d", format!("input {shape:?} is not NCHW")));
    };
    Ok(ConvGeometry::new(&[n * c, 1, h, w], &[1, 1, size.0, size.1], Conv2dParams { stride, padding: (0, 0) })?)
}

/// The windows of x as rows: [N*C*OH*OW, KH*KW].
fn windows<B: Backend>(b: &mut B, x: &B::Tensor, g: &ConvGeometry) -> Result<B::Tensor> {
    let xr = b.reshape(x, &[g.batch, 1, g.input.0, g.input.1])?;
    b.im2col(&xr, g)
}

/// Average pooling over `size` windows moved by `stride` (no padding).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    /// Window height and width.
    pub size: (usize, usize),
    /// Vertical and horizontal step.
    pub stride: (usize, usize),
}

/// Pooling caches: the geometry and the input shape.
#[derive(Debug, Clone)]
pub struct PoolCache<T> {
    geometry: ConvGeometry,
    input_shape: Vec<usize>,
    onehot: Option<T>,
}

impl AvgPool2d {
    /// The window, if the windows tile an NCHW input of `shape` (stride equal to the size,
    /// dividing its height and width): then the window sums need no patch matrix.
    fn tiling_window(&self, shape: &[usize]) -> Option<(usize, usize)> {
        (self.stride == self.size && crate::backend::window_sum_shape(shape, self.size).is_ok()).then_some(self.size)
    }

    /// True if this pooling, applied to a convolution's output of `shape`, folds into the
    /// convolution's rescaling ([`Backend::conv2d_avg_pool`]): its windows tile the output and
    /// their area is a power of two. [`crate::Sequential`] then runs the two layers as one, and
    /// [`crate::cost`] counts one truncation (of the pooled output) for both.
    pub fn fuses_with_conv(&self, shape: &[usize]) -> bool {
        self.tiling_window(shape).is_some_and(|(kh, kw)| (kh * kw).is_power_of_two())
    }

    /// The cache of a forward pass on an input of `shape` (for the fused convolution).
    pub(crate) fn cache_for<T>(&self, shape: &[usize]) -> Result<PoolCache<T>> {
        let geometry = window_geometry(shape, self.size, self.stride)?;
        Ok(PoolCache { geometry, input_shape: shape.to_vec(), onehot: None })
    }
}

impl<B: Backend> Layer<B> for AvgPool2d {
    type Cache = PoolCache<B::Tensor>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Self::Cache)> {
        let x = x.into_value(b);
        let cache = self.cache_for(b.shape(&x))?;
        let (n, c, g) = (cache.input_shape[0], cache.input_shape[1], cache.geometry);
        let sum = match self.tiling_window(b.shape(&x)) {
            Some(window) => b.window_sum(&x, window)?,
            None => {
                let p = windows(b, &x, &g)?;
                let sum = b.sum_axis(&p, 1)?;
                b.reshape(&sum, &[n, c, g.output.0, g.output.1])?
            }
        };
        let y = b.scale(&sum, 1.0 / (self.size.0 * self.size.1) as f64)?;
        Ok((y, cache))
    }

    fn backward_select(&self, b: &mut B, cache: Self::Cache, dy: &B::Tensor, _need_dx: bool) -> Result<Backward<B>> {
        let g = cache.geometry;
        let k = g.kernel.0 * g.kernel.1;
        let dy = b.reshape(dy, &[g.patch_rows(), 1])?;
        let dy = b.scale(&dy, 1.0 / k as f64)?;
        let dp = b.broadcast(&dy, &[g.patch_rows(), k])?;
        let dx = b.col2im(&dp, &g)?;
        Ok((Some(b.reshape(&dx, &cache.input_shape)?), Vec::new()))
    }
}

/// Max pooling over `size` windows moved by `stride` (no padding); the gradient goes to the
/// first maximum of each window.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window height and width.
    pub size: (usize, usize),
    /// Vertical and horizontal step.
    pub stride: (usize, usize),
}

impl<B: Backend> Layer<B> for MaxPool2d {
    type Cache = PoolCache<B::Tensor>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Self::Cache)> {
        let x = x.into_value(b);
        let g = window_geometry(b.shape(&x), self.size, self.stride)?;
        let input_shape = b.shape(&x).to_vec();
        let p = windows(b, &x, &g)?;
        let (max, onehot) = b.max_rows(&p)?;
        let y = b.reshape(&max, &[input_shape[0], input_shape[1], g.output.0, g.output.1])?;
        Ok((y, PoolCache { geometry: g, input_shape, onehot: Some(onehot) }))
    }

    fn backward_select(&self, b: &mut B, cache: Self::Cache, dy: &B::Tensor, _need_dx: bool) -> Result<Backward<B>> {
        let g = cache.geometry;
        let k = g.kernel.0 * g.kernel.1;
        let onehot = cache.onehot.ok_or_else(|| shape_error("max_pool2d", "cache without argmax"))?;
        let dy = b.reshape(dy, &[g.patch_rows(), 1])?;
        let dp = b.broadcast(&dy, &[g.patch_rows(), k])?;
        let dp = b.gate(&dp, &onehot)?;
        let dx = b.col2im(&dp, &g)?;
        Ok((Some(b.reshape(&dx, &cache.input_shape)?), Vec::new()))
    }
}
