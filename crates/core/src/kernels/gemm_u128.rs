//! Wrapping `u128` matrix multiplication over the ring Z_2^128.
//!
//! [`gemm_u128`] computes `C = A · B mod 2^128` for arbitrary strides and
//! layouts. On x86-64 CPUs with AVX-512 IFMA (detected at run time) it uses a
//! packed, register-tiled kernel built on the 52-bit multiply-accumulate
//! instructions `vpmadd52luq` / `vpmadd52huq`. On other AVX-512 CPUs, `A` with
//! at least a few rows is multiplied through pond's Z_2^64 and CRT GEMMs on the
//! operands' 64-bit halves (see `limbs`); everything else runs a cache-blocked
//! scalar kernel on `u128` wrapping arithmetic. Every path is parallelised with
//! rayon.
//!
//! # The IFMA method
//!
//! Every entry is split into three limbs, `x = x0 + x1·2^52 + x2·2^104` with
//! `x0, x1 < 2^52` and `x2 < 2^24`. Modulo `2^128` a product `a·b` only needs
//! the limb products whose weight is below `2^128`:
//!
//! | weight   | terms                                                     |
//! | -------- | --------------------------------------------------------- |
//! | `2^0`    | `lo(a0·b0)`                                               |
//! | `2^52`   | `hi(a0·b0) + lo(a0·b1) + lo(a1·b0)`                       |
//! | `2^104`  | `hi(a0·b1) + hi(a1·b0) + lo(a0·b2) + lo(a1·b1) + lo(a2·b0)` |
//!
//! where `lo`/`hi` are the low and high 52-bit halves of the 104-bit product,
//! exactly what one IFMA instruction adds to a 64-bit lane. That is nine IFMA
//! lane operations per scalar multiply-add, accumulated in three 64-bit
//! accumulators `z0, z1, z2` per output entry and recombined as
//! `z0 + z1·2^52 + z2·2^104 (mod 2^128)`.
//!
//! `z2` may wrap freely (only its low 24 bits survive the shift by 104), `z0`
//! gains less than `2^52` per step and `z1` less than `3·2^52`, so a block of
//! up to 1365 steps of `k` cannot lose a carry. The `k` dimension is therefore
//! processed in blocks of at most `ifma::KC_MAX` steps, each block's
//! accumulators being folded into the `u128` output before the next starts.
//!
//! `B` is split into limb planes and packed once into panels of eight columns
//! (one zmm register per limb). Each parallel work unit packs its rows of `A`
//! block by block into a small buffer and runs an `8 × 8` register tile
//! (24 accumulators) over it; the IFMA instructions are the only vector
//! arithmetic in the inner loop.

use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

mod limbs;

/// C = A · B over Z_2^128 (wrapping). A is m×k, B is k×n; any strides/layouts accepted.
///
/// Uses an AVX-512 IFMA kernel when the running CPU supports it, otherwise the
/// Z_2^64 and CRT GEMMs on 64-bit halves where they run their AVX-512 kernels
/// and `A` has a few rows, else a blocked scalar kernel; all run in parallel on
/// the current rayon pool.
///
/// # Panics
///
/// Panics only if `a.ncols() != b.nrows()`.
pub fn gemm_u128(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>) -> Array2<u128> {
    assert_eq!(
        a.ncols(),
        b.nrows(),
        "gemm_u128: inner dimensions differ ({}x{} · {}x{})",
        a.nrows(),
        a.ncols(),
        b.nrows(),
        b.ncols()
    );
    let mut c = Array2::<u128>::zeros((a.nrows(), b.ncols()));
    if c.is_empty() || a.ncols() == 0 {
        return c;
    }
    #[cfg(target_arch = "x86_64")]
    if ifma::available() {
        ifma::gemm(a, b, c.view_mut());
        return c;
    }
    if limbs::preferred(a.nrows()) {
        limbs::gemm(a, b, c.view_mut());
    } else {
        portable::gemm(a, b, c.view_mut());
    }
    c
}

/// The plain triple-loop scalar reference used by tests.
///
/// # Panics
///
/// Panics if `a.ncols() != b.nrows()`.
pub fn gemm_u128_reference(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>) -> Array2<u128> {
    assert_eq!(a.ncols(), b.nrows(), "gemm_u128_reference: inner dimensions differ");
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut c = Array2::<u128>::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0u128;
            for l in 0..k {
                acc = acc.wrapping_add(a[[i, l]].wrapping_mul(b[[l, j]]));
            }
            c[[i, j]] = acc;
        }
    }
    c
}

/// Splits the output into roughly `4 × threads` work units: returns
/// `(rows per unit, columns per unit)`, with rows a multiple of `row_align`
/// (at most `max_rows`) and columns a multiple of `col_align`.
fn work_split(m: usize, n: usize, row_align: usize, max_rows: usize, col_align: usize) -> (usize, usize) {
    let want = 4 * rayon::current_num_threads();
    let row_tiles = m.div_ceil(row_align);
    let tiles_per_unit = row_tiles.div_ceil(want).clamp(1, max_rows / row_align);
    let row_units = row_tiles.div_ceil(tiles_per_unit);
    let col_tiles = n.div_ceil(col_align);
    let col_units = want.div_ceil(row_units).clamp(1, col_tiles);
    let cols = col_tiles.div_ceil(col_units) * col_align;
    (tiles_per_unit * row_align, cols)
}

/// Portable path: cache-blocked scalar `u128` wrapping arithmetic.
mod portable {
    use super::*;

    /// Rows of `A` per parallel work unit.
    const MB: usize = 16;
    /// Columns of `C` per block (the `B` block `KB × NB` stays in L2).
    const NB: usize = 256;
    /// Steps of `k` per block.
    const KB: usize = 128;

    /// Accumulates `A · B` into the zero-initialised `c`.
    pub(super) fn gemm(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>, mut c: ArrayViewMut2<'_, u128>) {
        let b = b.as_standard_layout();
        let (k, n) = b.dim();
        let (rows, cols) = work_split(a.nrows(), n, 1, MB, NB);
        c.axis_chunks_iter_mut(Axis(0), rows).into_par_iter().zip(a.axis_chunks_iter(Axis(0), rows)).for_each(
            |(mut c_rows, a_rows)| {
                c_rows.axis_chunks_iter_mut(Axis(1), cols).into_par_iter().enumerate().for_each(|(q, mut c_blk)| {
                    let j0 = q * cols;
                    for j in (0..c_blk.ncols()).step_by(NB) {
                        let j1 = (j + NB).min(c_blk.ncols());
                        for k0 in (0..k).step_by(KB) {
                            let k1 = (k0 + KB).min(k);
                            let b_blk = b.slice(s![k0..k1, j0 + j..j0 + j1]);
                            for (mut c_row, a_row) in c_blk
                                .slice_mut(s![.., j..j1])
                                .rows_mut()
                                .into_iter()
                                .zip(a_rows.slice(s![.., k0..k1]).rows())
                            {
                                for (&x, b_row) in a_row.iter().zip(b_blk.rows()) {
                                    for (cv, &y) in c_row.iter_mut().zip(b_row.iter()) {
                                        *cv = cv.wrapping_add(x.wrapping_mul(y));
                                    }
                                }
                            }
                        }
                    }
                });
            },
        );
    }
}

/// AVX-512 IFMA path (x86-64 only, selected at run time).
///
/// The AVX-512 intrinsics and target features are stable since Rust 1.89, so
/// this module needs a 1.89+ toolchain even where the crate declares older.
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod ifma {
    use super::*;
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_loadu_si512, _mm512_madd52hi_epu64, _mm512_madd52lo_epu64, _mm512_set1_epi64,
        _mm512_setzero_si512, _mm512_storeu_si512,
    };

    /// Columns per `B` panel: one zmm register of 64-bit lanes.
    const NR: usize = 8;
    /// Rows per register tile: `3 · MR` accumulators plus 3 `B` limbs and
    /// 3 broadcast `A` limbs fit the 32 zmm registers.
    const MR: usize = 8;
    /// Limbs per `u128` entry.
    const LIMBS: usize = 3;
    /// Largest `k` block: `z1` gains `< 3·2^52` per step, so it stays below
    /// `2^64` for up to 1365 steps.
    pub(super) const KC_MAX: usize = 1024;
    /// Most rows of `A` packed by one work unit.
    const MC_MAX: usize = 128;
    const MASK52: u64 = (1 << 52) - 1;

    /// One packed step of a `B` panel: limb planes `[b0, b1, b2]`, eight columns each.
    type BStep = [[u64; NR]; LIMBS];
    /// Accumulators of one tile row, `[z0, z1, z2]` for eight columns.
    type AccRow = [[u64; NR]; LIMBS];

    /// Whether the running CPU has the instructions this path needs.
    pub(super) fn available() -> bool {
        crate::cpu::Avx512Ifma::detect().is_some()
    }

    /// Splits `v` into limbs `[v mod 2^52, (v >> 52) mod 2^52, v >> 104]`.
    fn split(v: u128) -> [u64; LIMBS] {
        [v as u64 & MASK52, (v >> 52) as u64 & MASK52, (v >> 104) as u64]
    }

    /// Where a work unit finds its `B` panels.
    #[derive(Clone, Copy)]
    enum Panels<'a> {
        /// Pre-packed panels (see [`pack_b`]), starting at the unit's first column.
        Packed(&'a [BStep]),
        /// Row-major `B` with `n` columns, the unit starting at column `j0`:
        /// the unit packs each panel block itself just before using it.
        Raw { b: &'a [u128], n: usize, j0: usize },
    }

    /// Accumulates `A · B` into the zero-initialised `c` (all dimensions non-zero).
    pub(super) fn gemm(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>, mut c: ArrayViewMut2<'_, u128>) {
        let (k, n) = b.dim();
        let b = b.as_standard_layout();
        let b = b.as_slice().expect("standard layout is contiguous");
        let (rows, cols) = work_split(a.nrows(), n, MR, MC_MAX, NR);
        // With several row units every panel is used several times: pack `B`
        // once up front. A single row unit uses each panel once, so it packs
        // block by block, keeping the packed copy in cache.
        let b_packed = if rows < a.nrows() { pack_b(b, k, n) } else { Vec::new() };
        c.axis_chunks_iter_mut(Axis(0), rows).into_par_iter().zip(a.axis_chunks_iter(Axis(0), rows)).for_each(
            |(mut c_rows, a_rows)| {
                c_rows.axis_chunks_iter_mut(Axis(1), cols).into_par_iter().enumerate().for_each(|(q, c_blk)| {
                    let panels = if b_packed.is_empty() {
                        Panels::Raw { b, n, j0: q * cols }
                    } else {
                        Panels::Packed(&b_packed[q * (cols / NR) * k..])
                    };
                    // SAFETY: `available()` returned true before `gemm` was
                    // called, so the CPU supports AVX-512F and IFMA.
                    unsafe { block(a_rows, panels, k, c_blk) };
                });
            },
        );
    }

    /// The packed step of row `row` of `B` for the panel starting at column
    /// `j0`; columns past the row's end are zero.
    #[inline(always)]
    fn b_step(row: &[u128], j0: usize) -> BStep {
        let mut step = [[0u64; NR]; LIMBS];
        if let Some(cols) = row.get(j0..j0 + NR) {
            // Full panel: fixed trip count, fully unrolled.
            for (lane, &v) in cols.iter().enumerate() {
                for (plane, limb) in step.iter_mut().zip(split(v)) {
                    plane[lane] = limb;
                }
            }
        } else {
            for (lane, &v) in row[j0..].iter().enumerate() {
                for (plane, limb) in step.iter_mut().zip(split(v)) {
                    plane[lane] = limb;
                }
            }
        }
        step
    }

    /// Packs row-major `B` (k × n) into `ceil(n / 8)` panels of `k` steps.
    fn pack_b(b: &[u128], k: usize, n: usize) -> Vec<BStep> {
        let panels = n.div_ceil(NR);
        // Groups of panels per task: read `B` row by row, a few panels wide.
        let group = panels.div_ceil(2 * rayon::current_num_threads()).min(16);
        let mut packed = Vec::with_capacity(panels * k);
        packed.spare_capacity_mut()[..panels * k].par_chunks_mut(group * k).enumerate().for_each(|(g, dst)| {
            for (kk, row) in b.chunks_exact(n).enumerate() {
                for p in 0..dst.len() / k {
                    dst[p * k + kk].write(b_step(row, (g * group + p) * NR));
                }
            }
        });
        // SAFETY: the chunks cover the first `panels * k` slots and every slot
        // `p * k + kk` of a chunk (panel `p`, step `kk < k`) was written above.
        unsafe { packed.set_len(panels * k) };
        packed
    }

    /// Packs the `mr × kc` block `a` as `kc` steps of `[a0 rows, a1 rows, a2 rows]`.
    fn pack_a(a: ArrayView2<'_, u128>, dst: &mut [u64]) {
        let mr = a.nrows();
        for (r, row) in a.rows().into_iter().enumerate() {
            for (step, &v) in dst.chunks_exact_mut(LIMBS * mr).zip(row.iter()) {
                for (l, limb) in split(v).into_iter().enumerate() {
                    step[l * mr + r] = limb;
                }
            }
        }
    }

    /// Computes one work unit: rows `a` (all of `k`) times the `B` panels
    /// starting at `panels`, added into `c`.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn block(a: ArrayView2<'_, u128>, panels: Panels<'_>, k: usize, mut c: ArrayViewMut2<'_, u128>) {
        let kc = k.div_ceil(k.div_ceil(KC_MAX));
        let mut a_packed = vec![0u64; a.nrows() * kc * LIMBS];
        let mut b_local = match panels {
            Panels::Packed(_) => Vec::new(),
            Panels::Raw { .. } => vec![[[0u64; NR]; LIMBS]; kc],
        };
        let mut acc = [[[0u64; NR]; LIMBS]; MR];
        for k0 in (0..k).step_by(kc) {
            let k1 = (k0 + kc).min(k);
            let len = k1 - k0;
            for (i, dst) in (0..a.nrows()).step_by(MR).zip(a_packed.chunks_mut(MR * len * LIMBS)) {
                pack_a(a.slice(s![i..(i + MR).min(a.nrows()), k0..k1]), dst);
            }
            for q in 0..c.ncols().div_ceil(NR) {
                let b_blk = match panels {
                    Panels::Packed(p) => &p[q * k + k0..q * k + k1],
                    Panels::Raw { b, n, j0 } => {
                        let rows = b[k0 * n..k1 * n].chunks_exact(n);
                        for (dst, row) in b_local.iter_mut().zip(rows) {
                            *dst = b_step(row, j0 + q * NR);
                        }
                        &b_local[..len]
                    }
                };
                let cols = NR.min(c.ncols() - q * NR);
                for (i, a_blk) in (0..a.nrows()).step_by(MR).zip(a_packed.chunks(MR * len * LIMBS)) {
                    let mr = MR.min(a.nrows() - i);
                    let acc = &mut acc[..mr];
                    match mr {
                        8 => tile::<8, 1>(a_blk, b_blk, acc),
                        7 => tile::<7, 1>(a_blk, b_blk, acc),
                        6 => tile::<6, 1>(a_blk, b_blk, acc),
                        5 => tile::<5, 1>(a_blk, b_blk, acc),
                        4 => tile::<4, 2>(a_blk, b_blk, acc),
                        3 => tile::<3, 2>(a_blk, b_blk, acc),
                        2 => tile::<2, 2>(a_blk, b_blk, acc),
                        _ => tile::<1, 4>(a_blk, b_blk, acc),
                    }
                    let mut c_tile = c.slice_mut(s![i..i + mr, q * NR..q * NR + cols]);
                    for (mut c_row, [z0, z1, z2]) in c_tile.rows_mut().into_iter().zip(acc.iter()) {
                        for (lane, cv) in c_row.iter_mut().enumerate() {
                            let v = u128::from(z0[lane])
                                .wrapping_add(u128::from(z1[lane]) << 52)
                                .wrapping_add(u128::from(z2[lane]) << 104);
                            *cv = cv.wrapping_add(v);
                        }
                    }
                }
            }
        }
    }

    /// The register tile: `R` rows of packed `A` (`a`, steps of `3·R` limbs)
    /// times one packed `B` panel block (`b`), over the same number of steps.
    /// Writes the limb accumulators of row `r` to `out[r]`.
    ///
    /// `U` independent accumulator sets take the steps in turn, so that short
    /// tiles are not bound by the latency of the five-deep `z2` chain.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn tile<const R: usize, const U: usize>(a: &[u64], b: &[BStep], out: &mut [AccRow]) {
        let mut z = [[[_mm512_setzero_si512(); LIMBS]; R]; U];
        let a_steps = a.chunks_exact(LIMBS * R * U);
        let b_steps = b.chunks_exact(U);
        let (a_rest, b_rest) = (a_steps.remainder(), b_steps.remainder());
        for (ak, bk) in a_steps.zip(b_steps) {
            for ((zu, au), bu) in z.iter_mut().zip(ak.chunks_exact(LIMBS * R)).zip(bk) {
                step::<R>(zu, au, bu);
            }
        }
        for (au, bu) in a_rest.chunks_exact(LIMBS * R).zip(b_rest) {
            step::<R>(&mut z[0], au, bu);
        }
        let (first, rest) = z.split_at_mut(1);
        for zu in rest {
            for (zr, ur) in first[0].iter_mut().zip(zu.iter()) {
                for (acc, &v) in zr.iter_mut().zip(ur) {
                    *acc = _mm512_add_epi64(*acc, v);
                }
            }
        }
        for (zr, or) in first[0].iter().zip(out.iter_mut()) {
            for (&v, o) in zr.iter().zip(or.iter_mut()) {
                store(o, v);
            }
        }
    }

    /// One step of `k`: accumulates the nine limb products of `R` rows.
    #[target_feature(enable = "avx512f,avx512ifma")]
    #[inline]
    fn step<const R: usize>(z: &mut [[__m512i; LIMBS]; R], ak: &[u64], bk: &BStep) {
        let b0 = load(&bk[0]);
        let b1 = load(&bk[1]);
        let b2 = load(&bk[2]);
        for (r, zr) in z.iter_mut().enumerate() {
            let a0 = _mm512_set1_epi64(ak[r] as i64);
            let a1 = _mm512_set1_epi64(ak[R + r] as i64);
            let a2 = _mm512_set1_epi64(ak[2 * R + r] as i64);
            zr[0] = _mm512_madd52lo_epu64(zr[0], a0, b0);
            zr[1] = _mm512_madd52hi_epu64(zr[1], a0, b0);
            zr[1] = _mm512_madd52lo_epu64(zr[1], a0, b1);
            zr[1] = _mm512_madd52lo_epu64(zr[1], a1, b0);
            zr[2] = _mm512_madd52hi_epu64(zr[2], a0, b1);
            zr[2] = _mm512_madd52hi_epu64(zr[2], a1, b0);
            zr[2] = _mm512_madd52lo_epu64(zr[2], a0, b2);
            zr[2] = _mm512_madd52lo_epu64(zr[2], a1, b1);
            zr[2] = _mm512_madd52lo_epu64(zr[2], a2, b0);
        }
    }

    /// Loads eight packed lanes into a zmm register.
    #[target_feature(enable = "avx512f")]
    fn load(src: &[u64; NR]) -> __m512i {
        // SAFETY: `src` is a valid, readable 64-byte array and the unaligned
        // load has no alignment requirement.
        unsafe { _mm512_loadu_si512(src.as_ptr().cast()) }
    }

    /// Stores a zmm register into eight lanes.
    #[target_feature(enable = "avx512f")]
    fn store(dst: &mut [u64; NR], v: __m512i) {
        // SAFETY: `dst` is a valid, writable 64-byte array and the unaligned
        // store has no alignment requirement.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;

    /// Random full-range `rows × cols` matrix.
    fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = Array2<u128>> {
        proptest::collection::vec(any::<u128>(), rows * cols)
            .prop_map(move |v| Array2::from_shape_vec((rows, cols), v).unwrap())
    }

    /// Deterministic full-range matrix (splitmix64) for the large fixed cases.
    fn fixed(rows: usize, cols: usize, seed: u64) -> Array2<u128> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Array2::from_shape_simple_fn((rows, cols), || (u128::from(next()) << 64) | u128::from(next()))
    }

    fn check(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>) {
        let want = gemm_u128_reference(a, b);
        assert_eq!(gemm_u128(a, b), want, "dispatching path");
        let mut c = Array2::zeros(want.dim());
        if !c.is_empty() {
            portable::gemm(a, b, c.view_mut());
        }
        assert_eq!(c, want, "portable path");
        let mut c = Array2::zeros(want.dim());
        if !c.is_empty() && a.ncols() > 0 {
            limbs::gemm(a, b, c.view_mut());
        }
        assert_eq!(c, want, "limb path");
    }

    /// Shapes around the tile sizes (8), odd/prime sizes and the vectors cases.
    fn dims() -> impl Strategy<Value = usize> {
        prop_oneof![1usize..=3, 4usize..=20, Just(31), Just(37), 60usize..=70]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn matches_reference(
            (a, b) in (dims(), dims(), dims())
                .prop_flat_map(|(m, k, n)| (matrix(m, k), matrix(k, n)))
        ) {
            check(a.view(), b.view());
        }

        #[test]
        fn transposed_views(
            (at, bt) in (dims(), dims(), dims())
                .prop_flat_map(|(m, k, n)| (matrix(k, m), matrix(n, k)))
        ) {
            check(at.t(), bt.t());
            check(at.t(), bt.t().as_standard_layout().view());
        }

        #[test]
        fn strided_views(a in matrix(23, 34), b in matrix(17, 41)) {
            // Every other row / column, plus a reversed axis.
            let a = a.slice(s![..;2, ..;-2]);
            let b = b.slice(s![..;1, 1..;3]);
            let b = b.slice(s![..a.ncols(), ..]);
            check(a, b);
        }
    }

    #[test]
    fn long_k_crosses_block_boundaries() {
        // Above the k-block size and the 1365-step carry interval.
        for (m, k, n, seed) in [(3, 5000, 11, 1), (9, 1025, 17, 2), (1, 1365, 9, 3), (17, 2049, 1, 4)] {
            let a = fixed(m, k, seed);
            let b = fixed(k, n, seed + 100);
            check(a.view(), b.view());
        }
    }

    #[test]
    fn worst_case_limbs_do_not_overflow() {
        // All-ones entries maximise every limb product and accumulator.
        let k = 3000;
        let a = Array2::from_elem((9, k), u128::MAX);
        let b = Array2::from_elem((k, 10), u128::MAX);
        check(a.view(), b.view());
        let a = Array2::from_elem((5, k), u128::MAX >> 24);
        check(a.view(), b.view());
    }

    #[test]
    fn the_limb_path_takes_more_moduli_for_long_inner_dimensions() {
        // k = 2^18 + 1 needs eight primes to hold k·(2^64 - 1)^2; all-ones low halves reach it.
        let k = (1 << 18) + 1;
        let a = Array2::from_elem((2, k), u128::MAX);
        let b =
            Array2::from_shape_fn((k, 3), |(p, j)| if j == 0 { u128::MAX } else { u128::from(u64::MAX) << (p % 64) });
        check(a.view(), b.view());
    }

    #[test]
    fn larger_work_split() {
        let a = fixed(130, 70, 7);
        let b = fixed(70, 150, 8);
        check(a.view(), b.view());
        check(b.t(), a.t());
    }

    #[test]
    fn empty_dimensions() {
        let a = Array2::<u128>::zeros((3, 0));
        let b = Array2::<u128>::zeros((0, 4));
        assert_eq!(gemm_u128(a.view(), b.view()), Array2::<u128>::zeros((3, 4)));
        let a = Array2::<u128>::zeros((0, 5));
        let b = Array2::<u128>::zeros((5, 4));
        assert_eq!(gemm_u128(a.view(), b.view()).dim(), (0, 4));
    }

    #[test]
    #[should_panic(expected = "inner dimensions differ")]
    fn mismatched_shapes_panic() {
        let a = Array2::<u128>::zeros((2, 3));
        let b = Array2::<u128>::zeros((4, 2));
        let _ = gemm_u128(a.view(), b.view());
    }
}
