//! Elementwise loops that go parallel (rayon) only when the tensor is large enough to pay for it.

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
    let zip = Zip::from(&a).and(&b);
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(|&x, &y| f(x, y))
    } else {
        zip.map_collect(|&x, &y| f(x, y))
    }
}

/// `a[i] = f(a[i], b[i])` for every i. Shapes must already be equal.
pub fn zip_assign<A, B>(a: ArrayViewMutD<'_, A>, b: ArrayViewD<'_, B>, f: impl Fn(A, B) -> A + Sync + Send)
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
{
    let parallel = a.len() >= PARALLEL_MIN_ELEMENTS;
    let zip = Zip::from(a).and(&b);
    if parallel {
        zip.par_for_each(|x, &y| *x = f(*x, y));
    } else {
        zip.for_each(|x, &y| *x = f(*x, y));
    }
}

/// `f(a[i])` for every i, into a new array.
pub fn map<A, C>(a: ArrayViewD<'_, A>, f: impl Fn(A) -> C + Sync + Send) -> ArrayD<C>
where
    A: Copy + Send + Sync,
    C: Send,
{
    let zip = Zip::from(&a);
    if a.len() >= PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(|&x| f(x))
    } else {
        zip.map_collect(|&x| f(x))
    }
}

/// `a[i] = f(a[i], b[i], c[i])` for every i. Shapes must already be equal.
pub fn zip3_assign<A, B, C>(
    a: ArrayViewMutD<'_, A>,
    b: ArrayViewD<'_, B>,
    c: ArrayViewD<'_, C>,
    f: impl Fn(A, B, C) -> A + Sync + Send,
) where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Copy + Send + Sync,
{
    let parallel = a.len() >= PARALLEL_MIN_ELEMENTS;
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
