//! TEMPORARY placeholder until the fast kernel lands.
use ndarray::{Array2, ArrayView2};
/// C = A·B mod 2^64.
pub fn gemm_u64(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) -> Array2<u64> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        (0..a.ncols()).fold(0u64, |s, t| s.wrapping_add(a[[i, t]].wrapping_mul(b[[t, j]])))
    })
}
