//! Elementwise loops that go parallel (rayon) only when the tensor is large enough to pay for it.
//!
//! Below that size, operands that are all contiguous in standard layout (nearly every tensor
//! pond makes) are looped over as slices: ndarray's `Zip` on dynamic-rank arrays spends about
//! as long on its layout checks as on a hundred elements of work, and protocol steps on small
//! tensors (a logistic-regression batch's 100 logits) are made of such loops.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Zip};

/// Below this many elements an elementwise loop stays on the calling thread.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// `f(a[i], b[i])` for every i, into a new array. Shapes must already be equal.
pub fn zip_map<A, B, C>(a: ArrayViewD<'_, A>, b: ArrayViewD<'_, B>, f: impl Fn(A, B) -> C + Sync + Send) -> ArrayD<C>
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Send,
{
    if a.len() < PARALLEL_MIN_ELEMENTS {
        if let (Some(xs), Some(ys)) = (a.as_slice(), b.as_slice()) {
            return from_vec(&a, xs.iter().zip(ys).map(|(&x, &y)| f(x, y)).collect());
        }
    }
    let zip = Zip::from(&a).and(&b);
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(|&x, &y| f(x, y))
    } else {
        zip.map_collect(|&x, &y| f(x, y))
    }
}

/// `values` (in standard order) as an array of `like`'s shape.
fn from_vec<A, C>(like: &ArrayViewD<'_, A>, values: Vec<C>) -> ArrayD<C> {
    ArrayD::from_shape_vec(like.raw_dim(), values).expect("one value per element of the shape")
}

/// `a[i] = f(a[i], b[i])` for every i. Shapes must already be equal.
pub fn zip_assign<A, B>(mut a: ArrayViewMutD<'_, A>, b: ArrayViewD<'_, B>, f: impl Fn(A, B) -> A + Sync + Send)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
{
    let parallel = a.len() >= PARALLEL_MIN_ELEMENTS;
    if !parallel {
        if let (Some(xs), Some(ys)) = (a.as_slice_mut(), b.as_slice()) {
            xs.iter_mut().zip(ys).for_each(|(x, &y)| *x = f(*x, y));
            return;
        }
    }
    let zip = Zip::from(a).and(&b);
    if parallel {
        zip.par_for_each(|x, &y| *x = f(*x, y));
    } else {
        zip.for_each(|x, &y| *x = f(*x, y));
    }
}

/// `out[i] = f(out[i], runs[(i / inner) % runs.len()])` for every i: a tensor broadcast in runs
/// ([`crate::layout::broadcast_runs`]) combined into `out` without a broadcast copy. `out`'s
/// length is a multiple of `runs.len() · inner`.
pub fn zip_assign_runs<A: Copy + Send + Sync>(out: &mut [A], runs: &[A], inner: usize, f: impl Fn(A, A) -> A + Sync) {
    let block = runs.len() * inner;
    if block == 0 {
        return;
    }
    let apply = |block: &mut [A]| {
        if inner == 1 {
            // Runs of one (a dense layer's bias over its batch): a plain zip, which vectorises.
            block.iter_mut().zip(runs).for_each(|(x, &v)| *x = f(*x, v));
        } else {
            for (run, &v) in block.chunks_exact_mut(inner).zip(runs) {
                run.iter_mut().for_each(|x| *x = f(*x, v));
            }
        }
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        use rayon::prelude::*;
        let blocks_per_job = (PARALLEL_MIN_ELEMENTS / block).max(1);
        out.par_chunks_mut(blocks_per_job * block).for_each(|job| job.chunks_exact_mut(block).for_each(apply));
    } else {
        out.chunks_exact_mut(block).for_each(apply);
    }
}

/// `f(a[i])` for every i, into a new array.
pub fn map<A, C>(a: ArrayViewD<'_, A>, f: impl Fn(A) -> C + Sync + Send) -> ArrayD<C>
where
    A: Copy + Send + Sync,
    C: Send,
{
    if a.len() < PARALLEL_MIN_ELEMENTS {
        if let Some(xs) = a.as_slice() {
            return from_vec(&a, xs.iter().map(|&x| f(x)).collect());
        }
    }
    let zip = Zip::from(&a);
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(|&x| f(x))
    } else {
        zip.map_collect(|&x| f(x))
    }
}

/// `a[i] = f(a[i], b[i], c[i])` for every i. Shapes must already be equal.
pub fn zip3_assign<A, B, C>(
    mut a: ArrayViewMutD<'_, A>,
    b: ArrayViewD<'_, B>,
    c: ArrayViewD<'_, C>,
    f: impl Fn(A, B, C) -> A + Sync + Send,
) where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Copy + Send + Sync,
{
    let parallel = a.len() >= PARALLEL_MIN_ELEMENTS;
    if !parallel {
        if let (Some(xs), Some(ys), Some(zs)) = (a.as_slice_mut(), b.as_slice(), c.as_slice()) {
            xs.iter_mut().zip(ys).zip(zs).for_each(|((x, &y), &z)| *x = f(*x, y, z));
            return;
        }
    }
    let zip = Zip::from(a).and(&b).and(&c);
    if parallel {
        zip.par_for_each(|x, &y, &z| *x = f(*x, y, z));
    } else {
        zip.for_each(|x, &y, &z| *x = f(*x, y, z));
    }
}

/// `f(c, chunk)` for each `chunk_len`-sized piece of `out` (c counts the pieces), on rayon's
/// threads when there is more than one piece. A single piece runs on the calling thread: from a
/// thread outside rayon's pool, even a one-piece parallel loop is a hand-off to a pool thread and
/// back (several microseconds, the whole cost of a small tensor's fill).
pub fn for_each_chunk_mut<T: Send>(out: &mut [T], chunk_len: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    use rayon::prelude::*;
    if out.len() <= chunk_len {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk_len).enumerate().for_each(|(c, chunk)| f(c, chunk));
    }
}

/// A vector of `n` values written by `fill` into uninitialised memory: no zero-fill pass (and,
/// for fresh pages, no separate pass that faults them in) before the real one.
///
/// # Safety
/// `fill` must write every one of the `n` slots it is given (it may write a slot more than once
/// and must not read a slot it has not written).
pub unsafe fn vec_written_by<T>(n: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>])) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: the caller guarantees that `fill` initialised all n slots.
    unsafe { out.set_len(n) };
    out
}

/// Runs `write` so that its output lands at the front of `out`, and returns how many slots of
/// `out` now hold output. `write` writes its output to the front of the buffer it is given and
/// returns the output's length; it needs `room` slots there (what it writes past its output is
/// scratch). The buffer is `out` itself when `out` has `room` slots (the scratch is then `out`'s,
/// for the caller to overwrite), else `side`, whose output is copied as far as it fits.
///
/// # Panics
/// If `out` is shorter than `room` and `side` is too.
pub fn write_front<T: Copy>(
    out: &mut [std::mem::MaybeUninit<T>],
    room: usize,
    side: &mut [std::mem::MaybeUninit<T>],
    write: impl FnOnce(&mut [std::mem::MaybeUninit<T>]) -> usize,
) -> usize {
    if out.len() >= room {
        return write(out);
    }
    assert!(side.len() >= room, "write_front: the side buffer has {} of {room} slots", side.len());
    let take = write(side).min(out.len());
    out[..take].copy_from_slice(&side[..take]);
    take
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    /// Writes 1, 2, ..., 6 and then four slots of scratch (9s); its output is the six values.
    fn six(buf: &mut [MaybeUninit<u32>]) -> usize {
        for (i, slot) in buf[..10].iter_mut().enumerate() {
            slot.write(if i < 6 { i as u32 + 1 } else { 9 });
        }
        6
    }

    /// In place with room, through the side buffer without it (only what fits is copied), and
    /// a side buffer that is too short is refused.
    #[test]
    fn write_front_lands_the_output_at_the_front() {
        let mut side = vec![MaybeUninit::uninit(); 10];
        for (len, filled) in [(12, 6), (10, 6), (9, 6), (4, 4)] {
            let mut out = vec![MaybeUninit::uninit(); len];
            assert_eq!(write_front(&mut out, 10, &mut side, six), filled, "{len} slots");
            // SAFETY: write_front reported the first `filled` slots written.
            let front: Vec<u32> = out[..filled].iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(front, [1, 2, 3, 4, 5, 6][..filled], "{len} slots");
        }
        let refused = std::panic::catch_unwind(|| write_front(&mut [MaybeUninit::uninit(); 4], 10, &mut [], six));
        assert!(refused.is_err());
    }
}
