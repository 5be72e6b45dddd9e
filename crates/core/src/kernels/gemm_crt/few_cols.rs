//! CRT matrix products with few columns (`n` ≤ 16: a convolution with up to 16 filters, a
//! network's last layer) and a single modulus per GEMM: `A`'s rows are read where they are, as
//! `u32` residues, instead of being packed into `u64` panels first.
//!
//! The blocked GEMM packs `A` (m·k values, widened to `u64`) and then reads the packed copy:
//! with n ≤ 16 that is several times the work of the products themselves (an im2col patch
//! matrix is read, widened and written back before the kernel reads it). Here `B` (k·n entries,
//! at most 16 per row) is widened once into a small buffer that stays in L1, and each row of `A`
//! is broadcast entry by entry against it: per four rows and inner index, one or two `B`
//! vectors, four broadcasts and four or eight multiply-adds (`vpmadd52luq` with IFMA, else
//! `vpmuludq` and `vpaddq`; see [`Madd`]) into accumulators held in registers over the whole
//! inner dimension.
//!
//! Exactness is the caller's, as for every kernel of this module: entries below 2^26 (products
//! below 2^52, which both multiply-adds keep whole) and sums that fit a `u64`.

use super::ifma::{Ifma, Madd, Mul32};
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Most columns of `B` this path takes: two registers of eight `u64` sums per row.
pub(super) const MAX_COLS: usize = 16;

/// Rows of `A` per register block.
const ROWS: usize = 4;

/// Rows of `A` per unit of parallel work.
const ROWS_PER_JOB: usize = 512;

/// Products with at least this many multiply-adds run their row blocks in parallel.
const PAR_WORK: usize = 1 << 20;

/// Writes the exact `u64` sums A·B into `c` (m×n, standard layout), for `A` whose rows are
/// contiguous and `B` with at most [`MAX_COLS`] columns; `false` (and nothing written) when `A`'s
/// rows are not contiguous or `B` is wider, for the caller to take the blocked path.
pub(super) fn product<M: RowsKernel>(
    token: M,
    a: ArrayView2<'_, u32>,
    b: ArrayView2<'_, u32>,
    mut c: ArrayViewMut2<'_, u64>,
) -> bool {
    let ((m, k), n) = (a.dim(), b.ncols());
    if n > MAX_COLS || n == 0 || (k > 1 && a.strides()[1] != 1) || (m > 1 && a.strides()[0] < k as isize) {
        return false;
    }
    let Some(c) = c.as_slice_mut() else { return false };
    // B widened to u64, each row padded to 8·V lanes.
    let width = if n > 8 { 16 } else { 8 };
    let mut wide = vec![0u64; k * width];
    for (t, row) in b.rows().into_iter().enumerate() {
        for (w, &x) in wide[t * width..].iter_mut().zip(row) {
            *w = u64::from(x);
        }
    }
    let row_stride = if m > 1 { a.strides()[0] as usize } else { k };
    // SAFETY: rows are contiguous (checked above), so row r's entries are ptr[r·stride..][..k],
    // inside the view's memory.
    let a_rows = |rows: std::ops::Range<usize>| -> &[u32] {
        if rows.is_empty() || k == 0 {
            return &[];
        }
        let len = (rows.len() - 1) * row_stride + k;
        unsafe { std::slice::from_raw_parts(a.as_ptr().add(rows.start * row_stride), len) }
    };
    let job = |(j, out): (usize, &mut [u64])| {
        let first = j * ROWS_PER_JOB;
        let rows = first..first + out.len() / n;
        // SAFETY: the token proves its features; the slices have the lengths the kernel reads
        // and writes (rows.len() rows of k entries at `row_stride`, out rows of n).
        let input = RowsInput { a: a_rows(rows), stride: row_stride, k, wide: &wide, n };
        unsafe { token.rows(width == 16, input, out) }
    };
    let jobs = c.chunks_mut(ROWS_PER_JOB * n).enumerate();
    if m * k * n >= PAR_WORK {
        jobs.collect::<Vec<_>>().into_par_iter().for_each(job);
    } else {
        jobs.for_each(job);
    }
    true
}

/// What one job of [`rows_kernel`] reads: `rows` rows of `A` (`stride` apart, `k` entries
/// each) in `a`, and `k` rows of `B` widened to 8·V values each in `wide`, of which the first
/// `n` are columns of `B`.
#[derive(Clone, Copy)]
pub(super) struct RowsInput<'a> {
    a: &'a [u32],
    stride: usize,
    k: usize,
    wide: &'a [u64],
    n: usize,
}

/// [`rows_kernel`] compiled with a token's features.
pub(super) trait RowsKernel: Copy + Send + Sync {
    /// [`rows_kernel`] with V = 2 if `two` (n ≤ 16), else V = 1 (n ≤ 8).
    ///
    /// # Safety
    /// As [`rows_kernel`].
    unsafe fn rows(self, two: bool, input: RowsInput<'_>, out: &mut [u64]);
}

/// Implements [`RowsKernel`] for a token by a function compiled with its features.
macro_rules! rows_kernel_for {
    ($token:ty, $features:literal, $entry:ident) => {
        impl RowsKernel for $token {
            unsafe fn rows(self, two: bool, input: RowsInput<'_>, out: &mut [u64]) {
                // SAFETY: the token proves the features; the rest is forwarded from the caller.
                unsafe { $entry(two, input, out) }
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn $entry(two: bool, input: RowsInput<'_>, out: &mut [u64]) {
            // SAFETY: forwarded from the caller; the features are enabled here.
            unsafe {
                if two {
                    rows_kernel::<$token, 2>(input, out)
                } else {
                    rows_kernel::<$token, 1>(input, out)
                }
            }
        }
    };
}

rows_kernel_for!(Ifma, "avx512f,avx512ifma", rows_ifma);
rows_kernel_for!(Mul32, "avx512f", rows_mul32);

/// `out` row r (n sums) = Σ_t a[r·stride + t]·wide[t·8V ..][..n], for the out.len() / n rows of
/// `a`, in blocks of [`ROWS`] rows with 8·V sums per row in registers.
///
/// # Safety
/// The CPU has `M`'s features and the caller is compiled with them; `input` is as its docs say
/// with out.len() / n rows, and `n` ≤ 8·V.
#[inline(always)]
unsafe fn rows_kernel<M: Madd, const V: usize>(input: RowsInput<'_>, out: &mut [u64]) {
    let RowsInput { a, stride, k, wide, n } = input;
    let rows = out.len() / n;
    // Lanes of the last vector of a row that hold one of its n sums.
    let tail: __mmask8 = if n.is_multiple_of(8) { 0xff } else { (1u8 << (n % 8)) - 1 };
    let store = |sums: &[__m512i; V], dst: *mut u64| {
        for (v, &s) in sums.iter().enumerate() {
            let mask = if v + 1 == V { tail } else { 0xff };
            // SAFETY: lane l of vector v is column 8v + l < n of the row at `dst`, inside `out`.
            unsafe { _mm512_mask_storeu_epi64(dst.add(8 * v).cast(), mask, s) };
        }
    };
    let mut r = 0;
    // SAFETY (whole loop): every read of `a` is row < rows at offset t < k, of `wide` row t < k;
    // every store is one of `out`'s rows.
    unsafe {
        while r + ROWS <= rows {
            let mut sums = [[_mm512_setzero_si512(); V]; ROWS];
            for t in 0..k {
                let b: [__m512i; V] =
                    std::array::from_fn(|v| _mm512_loadu_si512(wide.as_ptr().add(t * 8 * V + 8 * v).cast()));
                for (i, row) in sums.iter_mut().enumerate() {
                    let x = _mm512_set1_epi64(i64::from(*a.get_unchecked((r + i) * stride + t)));
                    for (s, &b) in row.iter_mut().zip(&b) {
                        *s = M::madd(*s, x, b);
                    }
                }
            }
            for (i, row) in sums.iter().enumerate() {
                store(row, out.as_mut_ptr().add((r + i) * n));
            }
            r += ROWS;
        }
        while r < rows {
            let mut sums = [_mm512_setzero_si512(); V];
            for t in 0..k {
                let x = _mm512_set1_epi64(i64::from(*a.get_unchecked(r * stride + t)));
                for (v, s) in sums.iter_mut().enumerate() {
                    *s = M::madd(*s, x, _mm512_loadu_si512(wide.as_ptr().add(t * 8 * V + 8 * v).cast()));
                }
            }
            store(&sums, out.as_mut_ptr().add(r * n));
            r += 1;
        }
    }
}
