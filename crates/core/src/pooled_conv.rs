//! A convolution followed by the sums of non-overlapping windows of its output (average
//! pooling before its division), as one strided convolution with a wider filter.
//!
//! Summing the outputs at rows i·kh + di (di < kh) of a convolution with vertical stride s reads
//! input rows (i·kh + di)·s + u = i·(kh·s) + (di·s + u): it is the convolution with stride kh·s,
//! the same padding and the filter W'[p] = Σ_{di·s + u = p} W[u], of height s·(kh - 1) + KH (and
//! likewise across). The map W -> W' is linear, so this is exact in every ring. For average
//! pooling after a 5x5 convolution with 2x2 windows, the one 6x6 convolution with stride 2 reads
//! 36 values per output where the convolution and its sums read 4·25, and never builds the
//! convolution's full output.

use crate::error::{CoreError, Result};
use crate::kernels::im2col::ConvGeometry;
use crate::ring::{Conv2dParams, RingTensor};

/// The widened OIHW filters and the strided parameters whose convolution of an input of shape
/// `x_shape` equals the `window` sums of `conv2d(x, filters, params)`; an error names the shapes
/// when they do not fit or the windows do not tile the convolution's output.
pub fn pooled_as_strided<T: RingTensor>(
    x_shape: &[usize],
    filters: &T,
    params: Conv2dParams,
    window: (usize, usize),
) -> Result<(T, Conv2dParams)> {
    let g = ConvGeometry::new(x_shape, filters.shape(), params)?;
    let (kh, kw) = window;
    if kh == 0 || kw == 0 || g.output.0 % kh != 0 || g.output.1 % kw != 0 {
        return Err(CoreError::InvalidShape {
            op: "pooled_conv2d",
            shape: vec![kh, kw],
            tensor: vec![g.batch, g.filters, g.output.0, g.output.1],
            reason: "windows must tile the convolution's output".into(),
        });
    }
    let (sh, sw) = params.stride;
    let (fh, fw) = g.kernel;
    let (wide_h, wide_w) = (sh * (kh - 1) + fh, sw * (kw - 1) + fw);
    let (o, c) = (g.filters, g.channels);
    let mut wide = T::zeros(&[o, c, wide_h, wide_w]);
    for di in 0..kh {
        let rows = pad_axis(filters, 2, di * sh, wide_h - fh - di * sh)?;
        for dj in 0..kw {
            wide.add_assign(&pad_axis(&rows, 3, dj * sw, wide_w - fw - dj * sw)?)?;
        }
    }
    let strided = Conv2dParams { stride: (kh * sh, kw * sw), padding: params.padding };
    Ok((wide, strided))
}

/// `t` with `before` zeros ahead of it and `after` zeros behind it along `axis`.
fn pad_axis<T: RingTensor>(t: &T, axis: usize, before: usize, after: usize) -> Result<T> {
    let zeros = |n: usize| {
        let mut shape = t.shape().to_vec();
        shape[axis] = n;
        T::zeros(&shape)
    };
    let (head, tail) = (zeros(before), zeros(after));
    T::concat(axis, &[&head, t, &tail])
}
