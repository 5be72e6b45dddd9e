//! Shape operations shared by every ring: they move elements without doing arithmetic, so they
//! are written once over any `ArrayD<T>` and applied to each plane of a ring tensor.

use crate::error::{CoreError, Result};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use rayon::prelude::*;
use std::ops::Range;

/// Checks that two shapes are equal, for the elementwise operation `op`.
pub fn check_same_shape(op: &'static str, left: &[usize], right: &[usize]) -> Result<()> {
    if left == right {
        Ok(())
    } else {
        Err(CoreError::ShapeMismatch { op, left: left.to_vec(), right: right.to_vec() })
    }
}

fn invalid(op: &'static str, shape: &[usize], tensor: &[usize], reason: impl Into<String>) -> CoreError {
    CoreError::InvalidShape { op, shape: shape.to_vec(), tensor: tensor.to_vec(), reason: reason.into() }
}

/// `v` copied into a fresh standard-layout array: a contiguous view as one slice copy, a strided
/// one by ndarray's `assign` (a strided inner loop; `to_owned` and `as_standard_layout` of a
/// strided view walk it element by element through dynamic indices, 5-10x slower).
pub fn materialise<T: Clone + Default>(v: ArrayViewD<'_, T>) -> ArrayD<T> {
    if v.is_standard_layout() {
        return v.to_owned();
    }
    let mut out = ArrayD::<T>::default(v.raw_dim());
    out.assign(&v);
    out
}

/// Row-major reshape.
pub fn reshape<T: Clone + Default>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    if shape.iter().product::<usize>() != a.len() {
        return Err(invalid("reshape", shape, a.shape(), "element counts differ"));
    }
    materialise(a.view())
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| invalid("reshape", shape, a.shape(), e.to_string()))
}

/// [`reshape`] of an array the caller no longer needs: no copy when it is in standard layout.
pub fn into_reshaped<T: Clone + Default>(a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    if !a.is_standard_layout() {
        return reshape(&a, shape);
    }
    if shape.iter().product::<usize>() != a.len() {
        return Err(invalid("reshape", shape, a.shape(), "element counts differ"));
    }
    let from = a.shape().to_vec();
    a.into_shape_with_order(IxDyn(shape)).map_err(|e| invalid("reshape", shape, &from, e.to_string()))
}

/// Axis permutation, materialised in standard layout.
pub fn permute<T: Clone + Default>(a: &ArrayD<T>, axes: &[usize]) -> Result<ArrayD<T>> {
    let mut seen = vec![false; a.ndim()];
    let valid =
        axes.len() == a.ndim() && axes.iter().all(|&ax| ax < seen.len() && !std::mem::replace(&mut seen[ax], true));
    if !valid {
        return Err(invalid("permute", axes, a.shape(), "not a permutation of the axes"));
    }
    Ok(materialise(a.view().permuted_axes(IxDyn(axes))))
}

/// Elements `range` of `axis`.
pub fn slice_axis<T: Clone + Default>(a: &ArrayD<T>, axis: usize, range: Range<usize>) -> Result<ArrayD<T>> {
    if axis >= a.ndim() || range.start > range.end || range.end > a.shape()[axis] {
        return Err(invalid("slice_axis", &[axis, range.start, range.end], a.shape(), "axis or range out of bounds"));
    }
    Ok(materialise(a.slice_axis(Axis(axis), Slice::from(range))))
}

/// Concatenation along `axis`.
pub fn concat<T: Clone>(axis: usize, parts: &[&ArrayD<T>]) -> Result<ArrayD<T>> {
    let Some(first) = parts.first() else {
        return Err(invalid("concat", &[axis], &[], "no tensors to concatenate"));
    };
    if axis >= first.ndim() {
        return Err(invalid("concat", &[axis], first.shape(), "axis out of bounds"));
    }
    for p in parts {
        let same_rank = p.ndim() == first.ndim();
        let others_equal = same_rank && (0..p.ndim()).all(|i| i == axis || p.shape()[i] == first.shape()[i]);
        if !others_equal {
            return Err(CoreError::ShapeMismatch {
                op: "concat",
                left: first.shape().to_vec(),
                right: p.shape().to_vec(),
            });
        }
    }
    // Row-major: the result is, for each index of the axes before `axis`, every part's block
    // of that index in turn; one allocation and one slice copy per block.
    let mut shape = first.shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    let outer: usize = shape[..axis].iter().product();
    let parts: Vec<_> = parts.iter().map(|p| p.as_standard_layout()).collect();
    let blocks: Vec<(&[T], usize)> =
        parts.iter().map(|p| (p.as_slice().expect("standard layout is contiguous"), p.len() / outer.max(1))).collect();
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for &(elements, block) in &blocks {
            data.extend_from_slice(&elements[o * block..][..block]);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| invalid("concat", &[axis], first.shape(), e.to_string()))
}

/// Numpy-style broadcast to `shape`, materialised.
pub fn broadcast_to<T: Clone + Default>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    broadcast_view(a, shape).map(materialise)
}

/// How a tensor of shape `from` repeats when broadcast to `to`, if it does so in runs: as
/// (outer, mid, inner) with `from` holding `mid` values, where element i of the broadcast (in
/// standard order) is value (i / inner) mod mid of `from`. That is the case when `from`'s axes
/// that are not 1 are the same contiguous block of `to`'s axes (right-aligned, as numpy
/// aligns them), such as a bias [1, F, 1, 1] over [N, F, H, W] or [1, N] over [B, N]. `None`
/// for other broadcasts (and for shapes that do not broadcast).
pub fn broadcast_runs(from: &[usize], to: &[usize]) -> Option<(usize, usize, usize)> {
    if from.len() > to.len() {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, to.len() - from.len()).chain(from.iter().copied()).collect();
    if padded.iter().zip(to).any(|(&f, &t)| f != t && f != 1) {
        return None;
    }
    let kept: Vec<usize> = (0..to.len()).filter(|&i| padded[i] != 1).collect();
    let (first, last) = match (kept.first(), kept.last()) {
        (Some(&first), Some(&last)) => (first, last),
        _ => return Some((to.iter().product(), 1, 1)),
    };
    (last + 1 - first == kept.len())
        .then(|| (to[..first].iter().product(), to[first..=last].iter().product(), to[last + 1..].iter().product()))
}

/// Numpy-style broadcast to `shape`, as a view (repeated axes have stride 0).
pub fn broadcast_view<'a, T>(a: &'a ArrayD<T>, shape: &[usize]) -> Result<ArrayViewD<'a, T>> {
    a.broadcast(IxDyn(shape))
        .ok_or_else(|| invalid("broadcast_to", shape, a.shape(), "shapes are not broadcast-compatible"))
}

/// Sums `a` over `axis` with `add` (the axis is removed), in one pass over contiguous rows and
/// with one allocation, whatever the shape (an empty axis sums to `T::default()`, the zero of
/// every ring word); an error if `axis` is not an axis of `a`.
pub fn sum_axis<T: Copy + Default>(a: &ArrayD<T>, axis: usize, add: impl Fn(T, T) -> T) -> Result<ArrayD<T>> {
    if axis >= a.ndim() {
        return Err(invalid("sum_axis", &[axis], a.shape(), "axis out of bounds"));
    }
    let shape = a.shape();
    let (outer, len) = (shape[..axis].iter().product::<usize>(), shape[axis]);
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis);
    let mut out = ArrayD::<T>::default(IxDyn(&out_shape));
    let a = a.as_standard_layout();
    let src = a.as_slice().expect("standard layout is contiguous");
    let dst = out.as_slice_mut().expect("freshly allocated arrays are contiguous");
    if inner == 0 || len == 0 {
        return Ok(out);
    }
    for (o, block) in dst.chunks_exact_mut(inner).zip(src.chunks_exact(len * inner).take(outer)) {
        for row in block.chunks_exact(inner) {
            o.iter_mut().zip(row).for_each(|(s, &x)| *s = add(*s, x));
        }
    }
    Ok(out)
}

/// Sums of the non-overlapping `window`s (kh, kw) of the last two axes, which they must divide:
/// [.., H, W] -> [.., H/kh, W/kw], with the ring's sum `add` (average pooling's window sums
/// without a patch matrix). Each output row is accumulated from its kh input rows in order;
/// images are processed in parallel when the array is large.
pub fn window_sum<T: Copy + Default + Send + Sync>(
    a: &ArrayD<T>,
    window: (usize, usize),
    add: impl Fn(T, T) -> T + Sync,
) -> Result<ArrayD<T>> {
    let (kh, kw) = window;
    let shape = a.shape();
    let fits = shape.len() >= 2 && kh > 0 && kw > 0 && {
        let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        h % kh == 0 && w % kw == 0
    };
    if !fits {
        return Err(invalid("window_sum", &[kh, kw], shape, "windows must tile the last two axes"));
    }
    let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let mut out_shape = shape.to_vec();
    let rank = out_shape.len();
    out_shape[rank - 2] = h / kh;
    out_shape[rank - 1] = w / kw;
    let mut out = ArrayD::<T>::default(IxDyn(&out_shape));
    let a = a.as_standard_layout();
    let src = a.as_slice().expect("standard layout is contiguous");
    let dst = out.as_slice_mut().expect("freshly allocated arrays are contiguous");
    let (image, pooled) = (h * w, (h / kh) * (w / kw));
    if image == 0 || pooled == 0 {
        return Ok(out);
    }
    let sum_image = |(o, x): (&mut [T], &[T])| {
        for (y, row) in x.chunks_exact(w).enumerate() {
            let o = &mut o[(y / kh) * (w / kw)..][..w / kw];
            for (cell, group) in o.iter_mut().zip(row.chunks_exact(kw)) {
                *cell = group.iter().fold(*cell, |acc, &v| add(acc, v));
            }
        }
    };
    if src.len() >= crate::parallel::PARALLEL_MIN_ELEMENTS {
        dst.par_chunks_mut(pooled).zip(src.par_chunks(image)).for_each(sum_image);
    } else {
        dst.chunks_mut(pooled).zip(src.chunks(image)).for_each(sum_image);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn broadcasts_in_runs() {
        assert_eq!(broadcast_runs(&[1, 16, 1, 1], &[100, 16, 12, 12]), Some((100, 16, 144)));
        assert_eq!(broadcast_runs(&[1, 10], &[100, 10]), Some((100, 10, 1)));
        // Fewer axes are aligned on the right, as numpy aligns them.
        assert_eq!(broadcast_runs(&[10], &[100, 10]), Some((100, 10, 1)));
        assert_eq!(broadcast_runs(&[16, 1, 1], &[2, 16, 3, 3]), Some((2, 16, 9)));
        assert_eq!(broadcast_runs(&[1, 1], &[4, 5]), Some((20, 1, 1)));
        assert_eq!(broadcast_runs(&[4, 5], &[4, 5]), Some((1, 20, 1)));
        assert_eq!(broadcast_runs(&[], &[4, 5]), Some((20, 1, 1)));
        // Kept axes that are not contiguous, and shapes that do not broadcast.
        assert_eq!(broadcast_runs(&[2, 1, 4], &[2, 3, 4]), None);
        assert_eq!(broadcast_runs(&[3], &[4, 5]), None);
        assert_eq!(broadcast_runs(&[1, 4, 5], &[4, 5]), None);
    }

    use super::*;

    #[test]
    fn concat_matches_ndarray_on_every_axis_and_layout() {
        let a = ArrayD::from_shape_fn(IxDyn(&[3, 4, 5]), |i| (i[0] * 100 + i[1] * 10 + i[2]) as i64);
        let b = a.mapv(|v| -v);
        let transposed = a.clone().permuted_axes(IxDyn(&[1, 0, 2])).as_standard_layout().into_owned();
        for axis in 0..3 {
            let views = [a.view(), b.view(), a.view()];
            assert_eq!(concat(axis, &[&a, &b, &a]).unwrap(), ndarray::concatenate(Axis(axis), &views).unwrap());
        }
        // A non-standard layout part (a transposed view, materialised here as the caller's
        // tensor would be a permuted array).
        let t = a.clone().permuted_axes(IxDyn(&[1, 0, 2]));
        assert_eq!(concat(1, &[&t, &t]).unwrap(), concat(1, &[&transposed, &transposed]).unwrap());
        let empty = ArrayD::<i64>::zeros(IxDyn(&[0, 4, 5]));
        assert_eq!(concat(1, &[&empty, &empty]).unwrap().shape(), &[0, 8, 5]);
        assert!(concat(0, &[&a, &t]).is_err());
    }

    #[test]
    fn sum_axis_matches_ndarray_on_every_axis_and_layout() {
        let a = ArrayD::from_shape_fn(IxDyn(&[3, 4, 5]), |i| (i[0] * 100 + i[1] * 10 + i[2]) as i64);
        let transposed = a.clone().permuted_axes(IxDyn(&[2, 0, 1]));
        for x in [a, transposed] {
            for axis in 0..3 {
                assert_eq!(sum_axis(&x, axis, |p, q| p + q).unwrap(), x.sum_axis(Axis(axis)), "axis {axis}");
            }
        }
        let empty = ArrayD::<i64>::zeros(IxDyn(&[2, 0, 3]));
        assert_eq!(sum_axis(&empty, 1, |p, q| p + q).unwrap(), ArrayD::zeros(IxDyn(&[2, 3])));
        assert!(sum_axis(&empty, 3, |p, q| p + q).is_err());
        assert_eq!(sum_axis(&empty, 0, |p, q| p + q).unwrap(), ArrayD::zeros(IxDyn(&[0, 3])));
    }
}
