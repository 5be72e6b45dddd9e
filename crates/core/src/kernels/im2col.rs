//! im2col: rewrites a 2-D convolution as one matrix product, so convolutions run on the GEMM
//! kernels of each ring.

use crate::error::{CoreError, Result};
use crate::ring::Conv2dParams;
use ndarray::{Array2, ArrayViewD, Axis};
use rayon::prelude::*;

/// Sizes of one convolution, checked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input channels C.
    pub channels: usize,
    /// Input height and width.
    pub input: (usize, usize),
    /// Output channels O (number of filters).
    pub filters: usize,
    /// Filter height and width.
    pub kernel: (usize, usize),
    /// Output height and width.
    pub output: (usize, usize),
    /// Stride and padding.
    pub params: Conv2dParams,
}

impl ConvGeometry {
    /// Geometry of an NCHW input `x_shape` convolved with OIHW `w_shape`; a typed error names
    /// both shapes when they do not fit.
    pub fn new(x_shape: &[usize], w_shape: &[usize], params: Conv2dParams) -> Result<Self> {
        let mismatch = || CoreError::ShapeMismatch {
            op: "conv2d (NCHW input, OIHW filters)",
            left: x_shape.to_vec(),
            right: w_shape.to_vec(),
        };
        let (&[n, c, h, w], &[o, ci, kh, kw]) = (x_shape, w_shape) else {
            return Err(mismatch());
        };
        if c != ci || kh == 0 || kw == 0 {
            return Err(mismatch());
        }
        let output = params.output_size(h, w, kh, kw).ok_or_else(mismatch)?;
        Ok(ConvGeometry { batch: n, channels: c, input: (h, w), filters: o, kernel: (kh, kw), output, params })
    }

    /// Rows of the patch matrix: N * OH * OW.
    pub fn patch_rows(&self) -> usize {
        self.batch * self.output.0 * self.output.1
    }

    /// Columns of the patch matrix: C * KH * KW.
    pub fn patch_cols(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }
}

/// The patch matrix of an NCHW input: row (n, oy, ox) holds the C*KH*KW input values under the
/// filter at that output position (zero where the filter covers padding), in (c, ky, kx) order,
/// matching an OIHW filter reshaped to (O, C*KH*KW).
pub fn im2col<T: Copy + Default + Send + Sync>(x: ArrayViewD<'_, T>, g: &ConvGeometry) -> Array2<T> {
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (h, w) = g.input;
    let (sh, sw) = g.params.stride;
    let (ph, pw) = g.params.padding;
    let cols = g.patch_cols();
    let mut patches = Array2::<T>::default((g.patch_rows(), cols));
    let x = x.as_standard_layout();
    let per_image = oh * ow * cols;
    if per_image == 0 {
        return patches;
    }
    let flat = patches.as_slice_mut().expect("freshly allocated arrays are contiguous");
    flat.par_chunks_mut(per_image).enumerate().for_each(|(n, out)| {
        let image = x.index_axis(Axis(0), n);
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &mut out[(oy * ow + ox) * cols..][..cols];
                let mut idx = 0;
                for c in 0..g.channels {
                    for ky in 0..kh {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        for kx in 0..kw {
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                            row[idx] = if inside { image[[c, iy as usize, ix as usize]] } else { T::default() };
                            idx += 1;
                        }
                    }
                }
            }
        }
    });
    patches
}

/// Reorders a (N*OH*OW, O) product back to NOHW.
pub fn patches_to_nchw<T: Clone>(product: Array2<T>, g: &ConvGeometry) -> ndarray::ArrayD<T> {
    let (oh, ow) = g.output;
    product
        .into_shape_with_order((g.batch, oh, ow, g.filters))
        .expect("product has N*OH*OW rows and O columns")
        .permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .into_owned()
        .into_dyn()
}
