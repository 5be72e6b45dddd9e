//! A convolution followed by the sums of non-overlapping windows of its output (average
//! pooling before its division), as one strided convolution with a wider filter.
//!
//! Summing the outputs at rows i·kh + di (di < kh) of a convolution with vertical stride s reads
//! input rows (i·kh + di)·s + u = i·(kh·s) + (di·s + u): it is the convolution with stride kh·s,
//! the same padding and the filter `W'[p] = Σ_{di·s + u = p} W[u]`, of height s·(kh - 1) + KH (and
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
    // W' = W·P on the filters flattened to (o·c, fh·fw), with P the public 0/1 matrix that sends
    // tap (u, v) to every wide tap (di·sh + u, dj·sw + v): one small ring GEMM, whatever the ring.
    let mut spread = ndarray::Array2::<i128>::zeros((fh * fw, wide_h * wide_w));
    for (di, dj, u, v) in window_taps(kh, kw, fh, fw) {
        spread[[u * fw + v, (di * sh + u) * wide_w + dj * sw + v]] = 1;
    }
    let spread = T::from_signed(spread.into_dyn().view());
    let wide = filters.reshape(&[o * c, fh * fw])?.matmul(&spread)?.reshape(&[o, c, wide_h, wide_w])?;
    let strided = Conv2dParams { stride: (kh * sh, kw * sw), padding: params.padding };
    Ok((wide, strided))
}

/// Every (di, dj, u, v): window offset (di < kh, dj < kw) and filter tap (u < fh, v < fw).
fn window_taps(kh: usize, kw: usize, fh: usize, fw: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..kh)
        .flat_map(move |di| (0..kw).flat_map(move |dj| (0..fh).flat_map(move |u| (0..fw).map(move |v| (di, dj, u, v)))))
}
