//! Wrapping `u64` matrix multiply over Z_2^64: `C = A · B mod 2^64`.
//!
//! - The packed, cache-blocked, parallel structure is the shared one of `kernels::blocking`.
//! - On x86-64 with AVX-512F/DQ (detected at runtime) the micro-kernel is a 12 × 16 tile on
//!   zmm registers using Winograd's pairing (see `winograd_corrections`): per two steps of
//!   `k` it does one `vpmullq` of two sums instead of two `vpmullq`, trading a multiply for
//!   additions (a zmm `vpmullq` takes the vector issue slots of about two `vpaddq`, so six
//!   slots per two steps become five). The per-row and per-column correction terms are
//!   subtracted once, when a task initialises its part of `C`.
//! - Elsewhere the portable 4 × 8 plain-Rust kernel (ordinary multiply-add) is used.
//! - `A` with few rows (matrix-vector and the like) skips packing: rows of `C` are computed
//!   straight from a row-major `B` (AVX-512: four rows at a time sharing the loads of `B`),
//!   split over column ranges across threads only when the product is large.
//!
//! Tried and left out: Intel AMX (Sapphire Rapids, which the development machine is). A
//! Z_2^64 product is 36 byte-plane products `A_i · B_j` (i + j < 8) on `TDPBUUD` tiles, each
//! exact in `u32` for k up to 16,384, added with shifts of 8(i + j). On the 2-core VM one tile
//! product took 6-15 ns (the no-load peak moved with the host's load) and 7-30 ns with its
//! operands loaded (64-byte-aligned rows; rows straddling cache lines made loads 6x slower),
//! and splitting the operands into byte planes cost about 0.25 ms for 100 × 784 × 128. That
//! product took 0.62-1.9 ms on one thread against 0.96-1.6 ms here; 1000 × 784 × 128 took
//! 5.1 against 12.4 ms on one thread but 6.3 against 4.7 ms on two. End to end (alternated
//! medians) `pond infer` was level for net A at batch 100 (10.2 against 10.0 ms) and 1000
//! (89.4 against 90.7 ms) and slower for net S at batch 100 (83.6 against 74.7 ms: its
//! convolution has k = 25 and n = 16, padded to 64 and 32).

use super::blocking::{blocked, Corrections, Portable};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::borrow::Cow;

/// `A` with at most this many rows takes the unpacked row-times-matrix path. Up to 16 rows it
/// beats packing `B` for the blocked kernel on every call (a weight at a batch of 10-16 rows):
/// `pond infer --net A --ring z64 --batch 10` 2.07-2.58 ms with 8 here, 1.69-1.82 ms with 16;
/// net S at batch 10 and net A at batch 16 gain alike; a private MLP epoch at batch 16 is level.
const SMALL_M: usize = 16;
/// At most this many columns (and more than `SMALL_M` rows) take the few-columns path.
const SMALL_N: usize = 8;
/// On that path, products with at least this many multiply-adds are split across threads.
const SMALL_M_PAR_WORK: usize = 1 << 20;

/// C = A · B over Z_2^64 (wrapping). A is m×k, B is k×n; any strides/layouts accepted.
///
/// Uses an AVX-512 micro-kernel when the CPU supports AVX-512F and AVX-512DQ (checked at
/// runtime), a portable one otherwise, and runs on the current rayon thread pool.
///
/// # Panics
/// If `a.ncols() != b.nrows()`.
pub fn gemm_u64(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) -> Array2<u64> {
    gemm_with(a, b, Isa::detect())
}

/// The plain triple-loop scalar reference for `gemm_u64` (used by tests).
///
/// # Panics
/// If `a.ncols() != b.nrows()`.
pub fn gemm_u64_reference(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) -> Array2<u64> {
    check_shapes(&a, &b);
    let (m, k) = a.dim();
    let n = b.ncols();
    Array2::from_shape_fn((m, n), |(i, j)| {
        (0..k).fold(0u64, |acc, p| acc.wrapping_add(a[[i, p]].wrapping_mul(b[[p, j]])))
    })
}

/// Panics unless `a · b` is defined.
fn check_shapes(a: &ArrayView2<'_, u64>, b: &ArrayView2<'_, u64>) {
    assert_eq!(a.ncols(), b.nrows(), "gemm_u64: inner dimensions differ ({:?} · {:?})", a.dim(), b.dim());
}

/// Which instruction set the kernels may use.
#[derive(Clone, Copy)]
enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX-512F + AVX-512DQ, proven present by the token.
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
}

impl Isa {
    /// The fastest instruction set the running CPU supports.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(token) = avx512::Avx512::detect() {
            return Isa::Avx512(token);
        }
        Isa::Portable
    }
}

/// `gemm_u64` with the instruction set chosen by the caller (tests run every available one).
fn gemm_with(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>, isa: Isa) -> Array2<u64> {
    check_shapes(&a, &b);
    let (m, k) = a.dim();
    let n = b.ncols();
    let mut c = Array2::<u64>::zeros((m, n));
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    if m <= SMALL_M {
        small_m(a, b, c.view_mut(), isa);
        return c;
    }
    if n <= SMALL_N {
        small_n(a, b, &mut c, isa);
        return c;
    }
    match isa {
        Isa::Portable => blocked(&a, &b, c.view_mut(), Portable, None),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => blocked(&a, &b, c.view_mut(), token, Some(&token.corrections(a, b))),
    }
    c
}

/// Winograd's inner-product identity over a commutative ring: for `k = 2h (+ 1)`,
/// `Σ_p a_p b_p = Σ_{q<h} (a_2q + b_2q+1)(a_2q+1 + b_2q) − ξ − η (+ a_2h b_2h)` with
/// `ξ = Σ_q a_2q a_2q+1` (per row of `A`) and `η = Σ_q b_2q b_2q+1` (per column of `B`).
/// One multiplication then serves two steps of `k`. Returns `(ξ, η)` for all rows and columns,
/// using `pair_dot(x) = Σ_q x[2q]·x[2q+1]` on contiguous rows of `A` and
/// `add_products(acc, x, y)`: `acc[j] += x[j]·y[j]` on contiguous rows of `B`.
fn winograd_corrections(
    a: ArrayView2<'_, u64>,
    b: ArrayView2<'_, u64>,
    pair_dot: impl Fn(&[u64]) -> u64 + Sync,
    add_products: impl Fn(&mut [u64], &[u64], &[u64]),
) -> Corrections {
    let pairs = a.ncols() / 2;
    let xi = a
        .outer_iter()
        .into_par_iter()
        .map(|row| match row.to_slice() {
            Some(row) => pair_dot(&row[..2 * pairs]),
            None => (0..pairs).fold(0u64, |acc, q| acc.wrapping_add(row[2 * q].wrapping_mul(row[2 * q + 1]))),
        })
        .collect();
    let mut eta = vec![0u64; b.ncols()];
    for q in 0..pairs {
        let (x, y) = (b.row(2 * q), b.row(2 * q + 1));
        match (x.to_slice(), y.to_slice()) {
            (Some(x), Some(y)) => add_products(&mut eta, x, y),
            _ => {
                for ((e, &x), &y) in eta.iter_mut().zip(x).zip(y) {
                    *e = e.wrapping_add(x.wrapping_mul(y));
                }
            }
        }
    }
    (xi, eta)
}

/// The elements of `x` in row-major order: borrowed when `x` is already laid out so, else copied.
fn row_major<'a>(x: ArrayView2<'a, u64>) -> Cow<'a, [u64]> {
    match x.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// Few-row path: each row of `c` is `a_row · B`, computed straight from a row-major `B`
/// (no packing). Large enough products are split over column ranges across rayon threads.
fn small_m(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>, mut c: ArrayViewMut2<'_, u64>, isa: Isa) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let b_rows = row_major(b);
    let b_rows: &[u64] = &b_rows;
    let a_rows: Vec<u64> = a.iter().copied().collect();
    let width =
        if m * k * n >= SMALL_M_PAR_WORK { n.div_ceil(rayon::current_num_threads()).next_multiple_of(64) } else { n };
    let columns_times = |(jc, mut c_cols): (usize, ArrayViewMut2<'_, u64>)| {
        let j0 = jc * width;
        let mut out = vec![0u64; c_cols.len()];
        match isa {
            Isa::Portable => portable::rows_times_matrix(&a_rows, b_rows, n, j0, &mut out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(token) => token.rows_times_matrix(&a_rows, b_rows, n, j0, &mut out),
        }
        for (d, &v) in c_cols.iter_mut().zip(&out) {
            *d = v;
        }
    };
    if width >= n {
        columns_times((0, c));
    } else {
        c.axis_chunks_iter_mut(Axis(1), width).into_par_iter().enumerate().for_each(columns_times);
    }
}

/// Few-columns path: `c[i][j] = A[i, :] · B[:, j]` as dot products over the rows of a
/// row-major `A` (no packing; a logistic regression's `X w` is one). `B`'s columns are gathered
/// once; large products split rows across rayon threads.
fn small_n(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>, c: &mut Array2<u64>, isa: Isa) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let a_rows = row_major(a);
    let a_rows: &[u64] = &a_rows;
    let columns: Vec<u64> = b.t().iter().copied().collect();
    let out = c.as_slice_mut().expect("a fresh array is contiguous");
    let dots = |(a_rows, out): (&[u64], &mut [u64])| match isa {
        Isa::Portable => rows_dot_columns(a_rows, &columns, k, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512(token) => token.rows_dot_columns(a_rows, &columns, k, out),
    };
    if m * k * n >= SMALL_M_PAR_WORK {
        let rows = m.div_ceil(rayon::current_num_threads());
        a_rows.par_chunks(rows * k).zip(out.par_chunks_mut(rows * n)).for_each(dots);
    } else {
        dots((a_rows, out));
    }
}

/// `out[i][j] = Σ_p a[i][p]·columns[j][p]` (wrapping) for row-major `a` (rows of length `k`),
/// `columns` (n rows of length `k`) and `out` (rows of length n). Inlined into each
/// instruction set's entry point, which vectorizes it.
#[inline(always)]
fn rows_dot_columns(a: &[u64], columns: &[u64], k: usize, out: &mut [u64]) {
    let n = columns.len() / k;
    for (a_row, c_row) in a.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        for (c, column) in c_row.iter_mut().zip(columns.chunks_exact(k)) {
            *c = a_row.iter().zip(column).fold(0u64, |acc, (&x, &y)| acc.wrapping_add(x.wrapping_mul(y)));
        }
    }
}

mod portable {
    //! The plain-Rust few-row path (autovectorized where the target allows).

    /// `out = A · B[:, j0 .. j0 + w]` for row-major `a` (rows of length k), row-major `b`
    /// (k × n) and row-major `out` (rows of length `w`), one row at a time.
    pub(super) fn rows_times_matrix(a: &[u64], b: &[u64], n: usize, j0: usize, out: &mut [u64]) {
        let k = b.len() / n;
        let w = out.len() / (a.len() / k);
        for (a_row, c_row) in a.chunks_exact(k).zip(out.chunks_exact_mut(w)) {
            c_row.fill(0);
            for (&av, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
                for (cv, &bv) in c_row.iter_mut().zip(&b_row[j0..j0 + w]) {
                    *cv = cv.wrapping_add(av.wrapping_mul(bv));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! AVX-512F/DQ kernels. Every entry point takes an [`Avx512`] token, which can only be
    //! created after runtime detection of both features.
    use super::super::blocking::zmm::{load8, load_row, store8, store_tile, zmm_micro_kernel, MR, NR};
    use super::super::blocking::Corrections;
    use super::winograd_corrections;
    use ndarray::ArrayView2;
    use std::arch::x86_64::*;

    /// Proof that the running CPU supports AVX-512F and AVX-512DQ.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512 {
        _detected: (),
    }

    impl Avx512 {
        /// Returns the token if the CPU has AVX-512F and AVX-512DQ.
        pub(super) fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq"))
                .then_some(Avx512 { _detected: () })
        }

        /// `out = A · B[:, j0 .. j0 + w]` for row-major `a` (rows of length k), row-major
        /// `b` (k × n) and row-major `out` (rows of length `w`).
        pub(super) fn rows_times_matrix(self, a: &[u64], b: &[u64], n: usize, j0: usize, out: &mut [u64]) {
            // SAFETY: `self` exists only if AVX-512F and AVX-512DQ were detected at runtime.
            unsafe { rows_times_matrix(a, b, n, j0, out) }
        }

        /// `out[i][j] = A[i, :] · columns[j]` (see `rows_dot_columns`).
        pub(super) fn rows_dot_columns(self, a: &[u64], columns: &[u64], k: usize, out: &mut [u64]) {
            // SAFETY: `self` exists only if AVX-512F and AVX-512DQ were detected at runtime.
            unsafe { rows_dot_columns(a, columns, k, out) }
        }

        /// The Winograd correction terms `(ξ, η)` of `a · b` (see `winograd_corrections`).
        pub(super) fn corrections(self, a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) -> Corrections {
            let pair_dot = |x: &[u64]| {
                // SAFETY: `self` exists only if AVX-512F and AVX-512DQ were detected at runtime.
                unsafe { pair_dot(x) }
            };
            let add_products = |acc: &mut [u64], x: &[u64], y: &[u64]| {
                // SAFETY: `self` exists only if AVX-512F and AVX-512DQ were detected at runtime.
                unsafe { add_products(acc, x, y) }
            };
            winograd_corrections(a, b, pair_dot, add_products)
        }
    }

    zmm_micro_kernel!(Avx512, tile_avx512);

    /// The `MR × 8V` Winograd micro-kernel: `V` = 2 for a full tile, 1 when at most 8
    /// columns are needed (the rest of `out` is left untouched). Per pair of k steps: `2V`
    /// loads of `b`, then per row two `vpaddq` with broadcast `a` values, one `vpmullq` and
    /// one `vpaddq` into the zmm accumulator per vector — one multiply per two steps.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn tile_avx512<const V: usize>(a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
        let mut acc = [[_mm512_setzero_si512(); V]; MR];
        let a_pairs = a.chunks_exact(2 * MR);
        let b_pairs = b.chunks_exact(2 * NR);
        let (a_last, b_last) = (a_pairs.remainder(), b_pairs.remainder());
        for (ap, bp) in a_pairs.zip(b_pairs) {
            let (a_even, a_odd) = ap.split_at(MR);
            let (b_even, b_odd) = (load_row::<V>(&bp[..NR]), load_row::<V>(&bp[NR..]));
            for ((acc_row, &ae), &ao) in acc.iter_mut().zip(a_even).zip(a_odd) {
                let (ae, ao) = (_mm512_set1_epi64(ae as i64), _mm512_set1_epi64(ao as i64));
                for ((acc_v, &be), &bo) in acc_row.iter_mut().zip(&b_even).zip(&b_odd) {
                    let product = _mm512_mullo_epi64(_mm512_add_epi64(ae, bo), _mm512_add_epi64(ao, be));
                    *acc_v = _mm512_add_epi64(*acc_v, product);
                }
            }
        }
        if !a_last.is_empty() && !b_last.is_empty() {
            // Odd k: the unpaired last step is a plain multiply-add.
            let bv = load_row::<V>(b_last);
            for (acc_row, &av) in acc.iter_mut().zip(a_last) {
                let av = _mm512_set1_epi64(av as i64);
                for (acc_v, &b_v) in acc_row.iter_mut().zip(&bv) {
                    *acc_v = _mm512_add_epi64(*acc_v, _mm512_mullo_epi64(av, b_v));
                }
            }
        }
        store_tile(&acc, out);
    }

    /// `super::rows_dot_columns`, autovectorized with `vpmullq`.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn rows_dot_columns(a: &[u64], columns: &[u64], k: usize, out: &mut [u64]) {
        super::rows_dot_columns(a, columns, k, out)
    }

    /// `Σ_q x[2q]·x[2q+1]` (wrapping), autovectorized with `vpmullq`.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn pair_dot(x: &[u64]) -> u64 {
        x.chunks_exact(2).fold(0u64, |acc, p| acc.wrapping_add(p[0].wrapping_mul(p[1])))
    }

    /// `acc[j] += x[j]·y[j]` (wrapping), autovectorized with `vpmullq`.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn add_products(acc: &mut [u64], x: &[u64], y: &[u64]) {
        for ((e, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *e = e.wrapping_add(x.wrapping_mul(y));
        }
    }

    /// `out = A · B[:, j0 .. j0 + w]` for row-major `a` (rows of length k), row-major `b`
    /// (k × n) and row-major `out` (rows of length `w`), without packing. Rows go four at a
    /// time (sharing each load of `B`), then one at a time.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn rows_times_matrix(a: &[u64], b: &[u64], n: usize, j0: usize, out: &mut [u64]) {
        let k = b.len() / n;
        let w = out.len() / (a.len() / k);
        let mut rest = (a, out);
        while rest.0.len() >= 4 * k {
            let (a4, a_rest) = rest.0.split_at(4 * k);
            let (c4, c_rest) = rest.1.split_at_mut(4 * w);
            rows_block::<4>(a4, b, n, j0, c4);
            rest = (a_rest, c_rest);
        }
        for (a1, c1) in rest.0.chunks_exact(k).zip(rest.1.chunks_exact_mut(w)) {
            rows_block::<1>(a1, b, n, j0, c1);
        }
    }

    /// Columns per register block of [`rows_block`] (4 zmm per row).
    const ROW_COLS: usize = 32;

    /// [`rows_times_matrix`] for exactly `R` rows: keeps an `R × 32` block of the output in
    /// registers while streaming down `B`; a last block narrower than 32 uses masked loads.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn rows_block<const R: usize>(a: &[u64], b: &[u64], n: usize, j0: usize, out: &mut [u64]) {
        let k = b.len() / n;
        let w = out.len() / R;
        for jb in (0..w).step_by(ROW_COLS) {
            let cols = ROW_COLS.min(w - jb);
            let mut acc = [[_mm512_setzero_si512(); ROW_COLS / 8]; R];
            for (p, b_row) in b.chunks_exact(n).enumerate() {
                let b_row = &b_row[j0 + jb..j0 + jb + cols];
                let mut bv = [_mm512_setzero_si512(); ROW_COLS / 8];
                if let Ok(full) = <&[u64; ROW_COLS]>::try_from(b_row) {
                    for (v, chunk) in bv.iter_mut().zip(full.chunks_exact(8)) {
                        *v = load8(chunk.try_into().unwrap());
                    }
                } else {
                    for (v, chunk) in bv.iter_mut().zip(b_row.chunks(8)) {
                        *v = load_prefix(chunk);
                    }
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi64(a[r * k + p] as i64);
                    for (acc_v, &b_v) in acc_r.iter_mut().zip(&bv) {
                        *acc_v = _mm512_add_epi64(*acc_v, _mm512_mullo_epi64(av, b_v));
                    }
                }
            }
            for (c_row, acc_r) in out.chunks_exact_mut(w).zip(&acc) {
                let mut block = [0u64; ROW_COLS];
                for (chunk, &v) in block.chunks_exact_mut(8).zip(acc_r) {
                    store8(chunk.try_into().unwrap(), v);
                }
                c_row[jb..jb + cols].copy_from_slice(&block[..cols]);
            }
        }
    }

    /// Loads the first `min(src.len(), 8)` values of `src` into the low lanes (others zero).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_prefix(src: &[u64]) -> __m512i {
        let mask = ((1u16 << src.len().min(8)) - 1) as __mmask8;
        // SAFETY: `mask` selects only lanes below `src.len()`, all inside `src`; masked-off
        // lanes are not accessed (and cannot fault), so the read stays within `src`.
        unsafe { _mm512_maskz_loadu_epi64(mask, src.as_ptr().cast()) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocking::test_shapes::{dim_k, dim_mn};
    use super::super::blocking::{KC_MAX, MC_MAX_STRIPS, NC_MAX_PANELS};
    use super::*;
    use ndarray::s;
    use ndarray::ShapeBuilder;
    use proptest::prelude::*;

    /// Deterministic full-range u64 matrix (xorshift), so wrapping is exercised.
    fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<u64> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    /// Every instruction-set path available on this machine.
    fn all_isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        if !matches!(Isa::detect(), Isa::Portable) {
            isas.push(Isa::detect());
        }
        isas
    }

    fn check(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>) {
        let expected = gemm_u64_reference(a, b);
        assert_eq!(gemm_u64(a, b), expected, "dispatching path, {:?}·{:?}", a.dim(), b.dim());
        for isa in all_isas() {
            assert_eq!(gemm_with(a, b, isa), expected, "{:?}·{:?}", a.dim(), b.dim());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn matches_reference(m in dim_mn(), k in dim_k(), n in dim_mn(), seed in any::<u64>()) {
            let a = matrix(m, k, seed);
            let b = matrix(k, n, seed ^ 1);
            check(a.view(), b.view());
        }

        #[test]
        fn matches_reference_transposed(
            m in dim_mn(),
            k in dim_k(),
            n in dim_mn(),
            seed in any::<u64>(),
        ) {
            // Stored as k×m and n×k; the transposed views are column-major m×k and k×n.
            let at = matrix(k, m, seed);
            let bt = matrix(n, k, seed ^ 1);
            check(at.t(), bt.t());
            check(at.t(), matrix(k, n, seed ^ 2).view());
        }

        #[test]
        fn matrix_vector_shapes(k in 1usize..600, n in 1usize..300, seed in any::<u64>()) {
            let row = matrix(1, k, seed);
            let b = matrix(k, n, seed ^ 1);
            check(row.view(), b.view());
            check(b.t(), row.t());
            let col = matrix(k, 1, seed ^ 2);
            check(row.view(), col.view());
            check(col.view(), row.view());
        }
    }

    #[test]
    fn strided_and_negative_stride_views() {
        let a = matrix(40, 60, 7);
        let b = matrix(90, 50, 8);
        // Every other column of A, reversed rows of B, a sliced (non-contiguous) window.
        let a_view = a.slice(s![..;3, ..;2]);
        let b_view = b.slice(s![..;-3, 3..40]);
        check(a_view, b_view);
        let f = Array2::from_shape_fn((33, 30).f(), |(i, j)| (i * 31 + j) as u64 * 0xdead_beef_1234);
        check(f.view(), b.slice(s![..30, ..]));
        check(f.slice(s![..1, ..]), b.slice(s![..;3, ..]));
    }

    #[test]
    fn just_above_task_sizes() {
        let (mc, nc) = (12 * MC_MAX_STRIPS, 16 * NC_MAX_PANELS);
        for (m, k, n, seed) in [(mc + 1, 7, nc + 1, 6), (2 * mc + 13, 3, 2 * nc + 9, 7), (25, KC_MAX + 1, nc + 1, 8)] {
            let a = matrix(m, k, seed);
            let b = matrix(k, n, seed ^ 1);
            check(a.view(), b.view());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// More than `SMALL_M` rows and at most `SMALL_N` columns: row-major, column-major
        /// (transposed) and strided `A`.
        #[test]
        fn few_columns(m in (SMALL_M + 1)..300, k in dim_k(), n in 1..=SMALL_N, seed in any::<u64>()) {
            let a = matrix(m, k, seed);
            let b = matrix(k, n, seed ^ 1);
            check(a.view(), b.view());
            check(matrix(k, m, seed ^ 2).t(), b.view());
            check(a.slice(s![.., ..;2]), matrix(k.div_ceil(2), n, seed ^ 3).view());
        }
    }

    #[test]
    fn few_columns_split_over_threads() {
        let (m, k, n) = (SMALL_M_PAR_WORK / 100 + 7, 100, SMALL_N);
        assert!(m * k * n >= SMALL_M_PAR_WORK);
        check(matrix(m, k, 1).view(), matrix(k, n, 2).view());
    }

    #[test]
    fn few_rows_split_over_threads() {
        // m ≤ SMALL_M with m·k·n ≥ SMALL_M_PAR_WORK: the unpacked path splits columns.
        for (m, k, n, seed) in [(8, 600, 300, 1), (5, 1000, 700, 2), (1, 1500, 777, 3)] {
            assert!(m <= SMALL_M && m * k * n >= SMALL_M_PAR_WORK);
            let a = matrix(m, k, seed);
            let b = matrix(k, n, seed ^ 1);
            check(a.view(), b.view());
            check(a.view(), b.t().t());
        }
    }

    #[test]
    fn other_thread_counts() {
        // The task grid depends on the pool size; 1 and 3 threads give other grids than 2.
        let a = matrix(12 * MC_MAX_STRIPS + 1, KC_MAX + 1, 4);
        let b = matrix(KC_MAX + 1, 16 * 9 + 5, 5);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| check(a.view(), b.view()));
            pool.install(|| check(a.slice(s![..40, ..]), b.view()));
        }
    }

    #[test]
    fn empty_dimensions() {
        for (m, k, n) in [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)] {
            let c = gemm_u64(matrix(m, k, 1).view(), matrix(k, n, 2).view());
            assert_eq!(c, Array2::zeros((m, n)));
        }
    }

    #[test]
    fn wraps_modulo_2_64() {
        let a = Array2::from_elem((3, 2), u64::MAX);
        let b = Array2::from_elem((2, 5), u64::MAX);
        // (-1)·(-1) + (-1)·(-1) = 2 mod 2^64.
        assert_eq!(gemm_u64(a.view(), b.view()), Array2::from_elem((3, 5), 2));
    }

    #[test]
    #[should_panic(expected = "inner dimensions differ")]
    fn mismatched_shapes_panic() {
        gemm_u64(matrix(2, 3, 1).view(), matrix(4, 2, 2).view());
    }
}
