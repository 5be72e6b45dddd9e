//! im2col: rewrites a 2-D convolution as one matrix product, so convolutions run on the GEMM
//! kernels of each ring.

use crate::error::{CoreError, Result};
use crate::ring::Conv2dParams;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, IxDyn};
use std::mem::MaybeUninit;

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

/// The filter taps `lo..hi` (of `k`) that fall inside a line of `len` input values when the
/// window starts at input position `start` (negative: in the padding); the others cover padding.
fn taps_inside(start: isize, k: usize, len: usize) -> (usize, usize) {
    let lo = (-start).clamp(0, k as isize) as usize;
    let hi = (len as isize - start).clamp(0, k as isize) as usize;
    (lo, hi.max(lo))
}

/// Calls `visit(c, ky, first, taps)` for every window line of output position (oy, ox) that
/// overlaps the image: the filter taps `taps` of that line read the `taps.len()` input values
/// from index `first` of the image (C*H*W values, row-major). Lines that fall entirely on
/// padding are skipped.
fn for_each_window_line(
    g: &ConvGeometry,
    (oy, ox): (usize, usize),
    mut visit: impl FnMut(usize, usize, usize, std::ops::Range<usize>),
) {
    let (h, w) = g.input;
    let x0 = (ox * g.params.stride.1) as isize - g.params.padding.1 as isize;
    let (lo, hi) = taps_inside(x0, g.kernel.1, w);
    for c in 0..g.channels {
        for ky in 0..g.kernel.0 {
            let iy = (oy * g.params.stride.0 + ky) as isize - g.params.padding.0 as isize;
            if iy >= 0 && (iy as usize) < h && lo < hi {
                let first = (c * h + iy as usize) * w + (x0 + lo as isize) as usize;
                visit(c, ky, first, lo..hi);
            }
        }
    }
}

/// The patch matrix of an NCHW input: row (n, oy, ox) holds the C*KH*KW input values under the
/// filter at that output position (zero where the filter covers padding), in (c, ky, kx) order,
/// matching an OIHW filter reshaped to (O, C*KH*KW). Images are processed in parallel and every
/// window line is one copy. Without padding every entry is a copy, so the matrix is not
/// zero-filled first.
pub fn im2col<T: Copy + Default + Send + Sync>(x: ArrayViewD<'_, T>, g: &ConvGeometry) -> Array2<T> {
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let cols = g.patch_cols();
    let mut patches = Array2::<T>::uninit((g.patch_rows(), cols));
    let x = x.as_standard_layout();
    let per_image = oh * ow * cols;
    let image_len = g.channels * g.input.0 * g.input.1;
    let flat = patches.as_slice_mut().expect("freshly allocated arrays are contiguous");
    let (padded, copies) = (g.params.padding != (0, 0), per_image > 0 && image_len > 0);
    if padded || !copies {
        flat.iter_mut().for_each(|p| {
            p.write(T::default());
        });
    }
    if copies {
        let src = x.as_slice().expect("standard layout is contiguous");
        crate::parallel::for_each_chunk_mut(flat, per_image, |i, out| {
            let image = &src[i * image_len..][..image_len];
            if !padded {
                return unpadded_image(image, out, g);
            }
            for (position, row) in out.chunks_exact_mut(cols).enumerate() {
                for_each_window_line(g, (position / ow, position % ow), |c, ky, first, taps| {
                    let dst = &mut row[(c * kh + ky) * kw..][..kw];
                    copy_line(&mut dst[taps.clone()], &image[first..first + taps.len()]);
                });
            }
        });
    }
    // SAFETY: with padding (or nothing to copy) every entry was set to the default above; without
    // it, the window lines of each row cover all C*KH*KW entries (every tap is inside the image),
    // and every row of every image was visited.
    unsafe { patches.assume_init() }
}

/// The patch rows of one image without padding, where every window line is whole: line (c, ky)
/// of position (oy, ox) is the KW values from (c, oy·sy + ky, ox·sx). Visited input line by
/// input line (c, oy, ky) so that the position ox is the inner loop, with the filter width a
/// constant for the widths of pond's networks (a line is then a few moves, with no per-line
/// index arithmetic beyond two strides).
fn unpadded_image<T: Copy>(image: &[T], out: &mut [MaybeUninit<T>], g: &ConvGeometry) {
    match g.kernel.1 {
        1 => unpadded_lines::<T, 1>(image, out, g),
        2 => unpadded_lines::<T, 2>(image, out, g),
        3 => unpadded_lines::<T, 3>(image, out, g),
        4 => unpadded_lines::<T, 4>(image, out, g),
        5 => unpadded_lines::<T, 5>(image, out, g),
        6 => unpadded_lines::<T, 6>(image, out, g),
        7 => unpadded_lines::<T, 7>(image, out, g),
        8 => unpadded_lines::<T, 8>(image, out, g),
        _ => unpadded_lines::<T, 0>(image, out, g),
    }
}

/// [`unpadded_image`] for filters `KW` wide, or any width with `KW` = 0.
#[inline(always)]
fn unpadded_lines<T: Copy, const KW: usize>(image: &[T], out: &mut [MaybeUninit<T>], g: &ConvGeometry) {
    let (((h, w), (sy, sx)), (oh, ow), (kh, kw)) = ((g.input, g.params.stride), g.output, g.kernel);
    let cols = g.patch_cols();
    for c in 0..g.channels {
        for oy in 0..oh {
            let rows = &mut out[oy * ow * cols..][..ow * cols];
            for ky in 0..kh {
                let line = &image[(c * h + oy * sy + ky) * w..][..w];
                let at = (c * kh + ky) * kw;
                for (ox, row) in rows.chunks_exact_mut(cols).enumerate() {
                    let src = &line[ox * sx..][..kw];
                    let dst = &mut row[at..at + kw];
                    if KW == 0 {
                        copy_line(dst, src);
                    } else {
                        let (dst, src): (&mut [MaybeUninit<T>; KW], &[T; KW]) = (
                            dst.try_into().expect("the line holds KW values"),
                            src.try_into().expect("the line holds KW values"),
                        );
                        for (d, &v) in dst.iter_mut().zip(src) {
                            d.write(v);
                        }
                    }
                }
            }
        }
    }
}

/// `dst` = `src` (equal lengths). Lines of up to 8 values (a filter row) are copied as fixed-size
/// arrays, a few moves, where a call to `memcpy` for 20-60 bytes cost more than the copy (3% of
/// net S's samples in int100).
#[inline(always)]
fn copy_line<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    #[inline(always)]
    fn fixed<T: Copy, const N: usize>(dst: &mut [MaybeUninit<T>], src: &[T]) {
        let dst: &mut [MaybeUninit<T>; N] = dst.try_into().expect("the line's length is N");
        let src: &[T; N] = src.try_into().expect("the line's length is N");
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(s);
        }
    }
    match src.len() {
        1 => fixed::<T, 1>(dst, src),
        2 => fixed::<T, 2>(dst, src),
        3 => fixed::<T, 3>(dst, src),
        4 => fixed::<T, 4>(dst, src),
        5 => fixed::<T, 5>(dst, src),
        6 => fixed::<T, 6>(dst, src),
        7 => fixed::<T, 7>(dst, src),
        8 => fixed::<T, 8>(dst, src),
        _ => dst.iter_mut().zip(src).for_each(|(d, &s)| {
            d.write(s);
        }),
    }
}

/// The adjoint of [`im2col`]: sums each patch entry of `patches` [N*OH*OW, C*KH*KW] back into
/// its NCHW input position (entries that fell on padding are dropped). `add` must be the ring's
/// (wrapping) sum. Images are processed in parallel.
pub fn col2im<T: Copy + Default + Send + Sync>(
    patches: ArrayView2<'_, T>,
    g: &ConvGeometry,
    add: impl Fn(T, T) -> T + Sync,
) -> ArrayD<T> {
    let (oh, ow) = g.output;
    let (kh, kw) = g.kernel;
    let cols = g.patch_cols();
    let mut out = ArrayD::<T>::default(IxDyn(&[g.batch, g.channels, g.input.0, g.input.1]));
    let per_image = oh * ow * cols;
    let image_len = g.channels * g.input.0 * g.input.1;
    if per_image == 0 || image_len == 0 {
        return out;
    }
    let patches = patches.as_standard_layout();
    let src = patches.as_slice().expect("standard layout is contiguous");
    let flat = out.as_slice_mut().expect("freshly allocated arrays are contiguous");
    crate::parallel::for_each_chunk_mut(flat, image_len, |i, image| {
        let rows = &src[i * per_image..][..per_image];
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &rows[(oy * ow + ox) * cols..][..cols];
                for_each_window_line(g, (oy, ox), |c, ky, first, taps| {
                    let from = &row[(c * kh + ky) * kw..][..kw];
                    for (cell, &v) in image[first..first + taps.len()].iter_mut().zip(&from[taps]) {
                        *cell = add(*cell, v);
                    }
                });
            }
        }
    });
    out
}

/// Reorders a (N*OH*OW, O) product back to NOHW (one transpose per image, in parallel).
pub fn patches_to_nchw<T: Copy + Default + Send + Sync>(product: ArrayView2<'_, T>, g: &ConvGeometry) -> ArrayD<T> {
    let mut out = ArrayD::<T>::default(IxDyn(&[g.batch, g.filters, g.output.0, g.output.1]));
    let flat = out.as_slice_mut().expect("freshly allocated arrays are contiguous");
    combine_patches_into_nchw(product, g, flat, |_, v| v);
    out
}

/// Combines a (N*OH*OW, O) product into the NOHW elements `out` of the same N images:
/// `out[n, o, y, x] = combine(out[n, o, y, x], product[(n, y, x), o])` (one transpose per image,
/// in parallel). With `combine` the ring's sum this accumulates a convolution chunk by chunk.
pub fn combine_patches_into_nchw<T: Copy + Send + Sync>(
    product: ArrayView2<'_, T>,
    g: &ConvGeometry,
    out: &mut [T],
    combine: impl Fn(T, T) -> T + Sync,
) {
    let positions = g.output.0 * g.output.1;
    let filters = g.filters;
    if positions == 0 || filters == 0 {
        return;
    }
    let product = product.as_standard_layout();
    let src = product.as_slice().expect("standard layout is contiguous");
    crate::parallel::for_each_chunk_mut(out, positions * filters, |i, image| {
        let block = &src[i * positions * filters..][..positions * filters];
        for (p, row) in block.chunks_exact(filters).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                let cell = &mut image[o * positions + p];
                *cell = combine(*cell, v);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array4, ArrayD};

    /// The scalar reference: one indexed read per patch entry.
    fn im2col_reference(x: &Array4<i64>, g: &ConvGeometry) -> Array2<i64> {
        let (sh, sw) = g.params.stride;
        let (ph, pw) = g.params.padding;
        let mut p = Array2::zeros((g.patch_rows(), g.patch_cols()));
        for n in 0..g.batch {
            for oy in 0..g.output.0 {
                for ox in 0..g.output.1 {
                    let r = (n * g.output.0 + oy) * g.output.1 + ox;
                    for c in 0..g.channels {
                        for ky in 0..g.kernel.0 {
                            for kx in 0..g.kernel.1 {
                                let iy = (oy * sh + ky) as isize - ph as isize;
                                let ix = (ox * sw + kx) as isize - pw as isize;
                                let col = (c * g.kernel.0 + ky) * g.kernel.1 + kx;
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.input.0 && (ix as usize) < g.input.1 {
                                    p[[r, col]] = x[[n, c, iy as usize, ix as usize]];
                                }
                            }
                        }
                    }
                }
            }
        }
        p
    }

    fn geometries() -> Vec<(ConvGeometry, Array4<i64>)> {
        let mut out = Vec::new();
        for (shape, kernel, stride, padding) in [
            ([2, 1, 28, 28], (5, 5), 1, 0),
            ([2, 1, 28, 28], (5, 5), 2, 2),
            ([3, 2, 7, 6], (3, 2), 2, 1),
            ([1, 3, 4, 5], (2, 2), 2, 0),
            // Net S's convolution with its 2x2 average pooling folded in: 6x6, stride 2.
            ([2, 1, 28, 28], (6, 6), 2, 0),
            ([2, 2, 3, 3], (3, 3), 1, 3),
            // Lines longer than the fixed-size copies, two channels, no padding.
            ([1, 2, 12, 11], (3, 10), 1, 0),
        ] {
            let params = Conv2dParams { stride: (stride, stride), padding: (padding, padding) };
            let g = ConvGeometry::new(&shape, &[4, shape[1], kernel.0, kernel.1], params).expect("valid geometry");
            let mut k = 0i64;
            let x = Array4::from_shape_fn(shape, |_| {
                k += 1;
                k * 7 % 101 - 50
            });
            out.push((g, x));
        }
        out
    }

    #[test]
    fn im2col_matches_the_scalar_reference() {
        for (g, x) in geometries() {
            assert_eq!(im2col(x.view().into_dyn(), &g), im2col_reference(&x, &g), "{g:?}");
        }
    }

    /// col2im is the adjoint of im2col: <im2col(x), p> = <x, col2im(p)> for every x and p.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (g, x) in geometries() {
            let mut k = 0i64;
            let p = Array2::from_shape_fn((g.patch_rows(), g.patch_cols()), |_| {
                k += 1;
                k * 13 % 97 - 40
            });
            let back: ArrayD<i64> = col2im(p.view(), &g, |a, b| a + b);
            let lhs = (&im2col_reference(&x, &g) * &p).sum();
            let rhs = (&x.into_dyn() * &back).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }

    #[test]
    fn patches_to_nchw_transposes_each_image() {
        let (g, _) = geometries().remove(0);
        let product = Array2::from_shape_fn((g.patch_rows(), g.filters), |(r, o)| (r * 10 + o) as i64);
        let out = patches_to_nchw(product.view(), &g);
        let expected = product
            .into_shape_with_order((g.batch, g.output.0, g.output.1, g.filters))
            .expect("rows are N*OH*OW")
            .permuted_axes([0, 3, 1, 2])
            .as_standard_layout()
            .into_owned()
            .into_dyn();
        assert_eq!(out, expected);
    }
}
