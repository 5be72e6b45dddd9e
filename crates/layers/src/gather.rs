//! col2im, the adjoint of pond-core's im2col, over any element type with a wrapping sum.
//!
//! Both are pure data movement (plus sums for col2im), so on the private backend they run on
//! each server's share: they commute with the sharing because they are linear.

use ndarray::{ArrayD, ArrayView2, IxDyn};
use pond_core::kernels::im2col::ConvGeometry;

/// Sums each patch entry of `patches` [N*OH*OW, C*KH*KW] back into its NCHW input position
/// (entries that fell on padding are dropped). `add` must be the ring's (wrapping) sum.
pub fn col2im<T: Copy + Default>(patches: ArrayView2<'_, T>, g: &ConvGeometry, add: impl Fn(T, T) -> T) -> ArrayD<T> {
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let (h, w) = g.input;
    let (sh, sw) = g.params.stride;
    let (ph, pw) = g.params.padding;
    let mut out = ArrayD::<T>::default(IxDyn(&[g.batch, g.channels, h, w]));
    for n in 0..g.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = patches.row((n * oh + oy) * ow + ox);
                let mut idx = 0;
                for c in 0..g.channels {
                    for ky in 0..kh {
                        let iy = (oy * sh + ky) as isize - ph as isize;
                        for kx in 0..kw {
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let cell = &mut out[[n, c, iy as usize, ix as usize]];
                                *cell = add(*cell, row[idx]);
                            }
                            idx += 1;
                        }
                    }
                }
            }
        }
    }
    out
}
