//! 2-D convolution by im2col: the patch matrix times the reshaped filters.

use crate::backend::{Activation, Backend, Input};
use crate::error::{shape_error, Result};
use crate::layer::{Backward, Layer};
use pond_core::kernels::im2col::ConvGeometry;
use pond_core::Conv2dParams;

/// Conv2D on NCHW inputs with OIHW filters, stride and zero padding, plus a bias per output
/// channel.
///
/// Forward: P = im2col(x) [N*OH*OW, C*KH*KW] (local data movement), Y = P W^T with W reshaped to
/// [O, C*KH*KW], then back to NOHW. On the private backend P is prepared (masked) once, which
/// opens KH*KW/stride^2 times more elements than a direct Beaver convolution would, in exchange
/// for reusing it in the filter gradient.
#[derive(Debug, Clone)]
pub struct Conv2d<B: Backend> {
    /// Filters, [O, C, KH, KW].
    pub weight: B::Tensor,
    /// Bias per output channel, [O].
    pub bias: B::Tensor,
    /// Stride and padding.
    pub params: Conv2dParams,
}

/// Conv2d's cache.
#[derive(Debug, Clone)]
pub struct Conv2dCache<B: Backend> {
    patches: B::Operand,
    w: B::Operand,
    geometry: ConvGeometry,
}

impl<B: Backend> Conv2d<B> {
    /// A layer with these parameters; errors if the shapes do not fit.
    pub fn new(b: &B, weight: B::Tensor, bias: B::Tensor, params: Conv2dParams) -> Result<Self> {
        let (ws, bs) = (b.shape(&weight), b.shape(&bias));
        if ws.len() != 4 || bs != [ws[0]] {
            return Err(shape_error("conv2d", format!("filters {ws:?} with bias {bs:?}")));
        }
        Ok(Conv2d { weight, bias, params })
    }
}

impl<B: Backend> Layer<B> for Conv2d<B> {
    type Cache = Conv2dCache<B>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Conv2dCache<B>)> {
        let x = x.into_value(b);
        let ws = b.shape(&self.weight).to_vec();
        let g = ConvGeometry::new(b.shape(&x), &ws, self.params)?;
        let patches = b.im2col(&x, &g)?;
        let patches = b.prepare(&patches)?;
        let wm = b.reshape(&self.weight, &[g.filters, g.patch_cols()])?;
        let wt = b.transpose(&wm)?;
        let w = b.prepare(&wt)?;
        let y = b.matmul(Input::Prepared(&patches), Input::Prepared(&w))?;
        let y = b.add_row(&y, &self.bias)?;
        let y = b.reshape(&y, &[g.batch, g.output.0, g.output.1, g.filters])?;
        let y = b.permute(&y, &[0, 3, 1, 2])?;
        Ok((y, Conv2dCache { patches, w, geometry: g }))
    }

    fn backward_select(&self, b: &mut B, cache: Conv2dCache<B>, dy: &B::Tensor, need_dx: bool) -> Result<Backward<B>> {
        let g = cache.geometry;
        let dy = b.permute(dy, &[0, 2, 3, 1])?;
        let dy = b.reshape(&dy, &[g.patch_rows(), g.filters])?;
        let dy_p = b.prepare(&dy)?;
        let pt = b.transpose_prepared(&cache.patches)?;
        let dwt = b.matmul(Input::Prepared(&pt), Input::Prepared(&dy_p))?;
        let dw = b.transpose(&dwt)?;
        let dw = b.reshape(&dw, &[g.filters, g.channels, g.kernel.0, g.kernel.1])?;
        let db = b.sum_axis(&dy, 0)?;
        let dx = if need_dx {
            let w = b.transpose_prepared(&cache.w)?;
            let dp = b.matmul(Input::Prepared(&dy_p), Input::Prepared(&w))?;
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
}
