//! The packed, cache-blocked, parallel GEMM framework on `u64` lanes shared by the Z_2^64 GEMM
//! ([`super::gemm_u64`]) and the CRT residue GEMM ([`super::gemm_crt`]).
//!
//! Structure (BLIS style):
//! - `B` is packed once into zero-padded panels of `NR` columns per block of up to `KC_MAX`
//!   rows (k-blocks packed in parallel).
//! - The output is cut into a grid of (row chunk × column chunk) tasks balanced over the rayon
//!   threads; each task packs its rows of `A` into zero-padded strips of `MR` rows per k-block
//!   and runs an `MR × NR` register-tiled [`MicroKernel`] over its tiles, adding each finished
//!   tile into `C` with wrapping `u64` addition (edge tiles are computed in full and only the
//!   valid part is added).
//! - Operands are read through [`Operand`], so packing can convert on the fly (the CRT GEMM
//!   packs straight from `u32` residue planes) instead of first copying into a `u64` matrix.
//! - The packing buffers are kept per thread between calls (up to 16 MiB each), so repeated
//!   GEMMs do not pay for zeroing or page-faulting fresh memory.

use ndarray::{s, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

/// Rows of `B` (the shared dimension) per packed k-block.
pub(crate) const KC_MAX: usize = 512;
/// Most `MR`-row strips of `A` per task (bounds the packed `A` block to about L2 size).
pub(crate) const MC_MAX_STRIPS: usize = 8;
/// Most `NR`-column panels of `B` per task (bounds the `B` block a task streams).
pub(crate) const NC_MAX_PANELS: usize = 64;
/// Entries read per [`Operand::read_line`] call when packing across lines (and per conversion
/// buffer of operands that convert).
pub(crate) const LINE_SEGMENT: usize = 128;
/// Fewest multiply-adds (m·k·n) for which a product is spread over rayon's threads. Below it the
/// calling thread does all the work: a parallel loop entered from a thread outside the pool (a
/// party's thread) queues its pieces there and sleeps until they are done, which costs tens of
/// microseconds on a busy machine, more than a product this small takes on one core (about
/// 20 µs at the kernels' rate of several multiply-adds per cycle).
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// A matrix the packing routines read as `u64` values, one contiguous line (row or column) at
/// a time.
pub(crate) trait Operand: Sync {
    /// (rows, columns).
    fn dim(&self) -> (usize, usize);
    /// Whether lines are rows (consecutive columns of one row); otherwise they are columns.
    fn row_major(&self) -> bool;
    /// `dst[t · stride]` = entry `entries.start + t` of line `line`, for every
    /// `t < entries.len()`.
    fn read_line(&self, line: usize, entries: Range<usize>, dst: &mut [u64], stride: usize);
    /// Line `line` as a slice, when the operand is stored as contiguous `u64` lines (packing
    /// then copies straight from it).
    fn line_slice(&self, _line: usize) -> Option<&[u64]> {
        None
    }
}

impl Operand for ArrayView2<'_, u64> {
    fn dim(&self) -> (usize, usize) {
        ArrayView2::dim(self)
    }

    fn row_major(&self) -> bool {
        let [rs, cs] = [self.strides()[0].unsigned_abs(), self.strides()[1].unsigned_abs()];
        cs <= rs || self.nrows() == 1
    }

    fn read_line(&self, line: usize, entries: Range<usize>, dst: &mut [u64], stride: usize) {
        let lane = lane(self, line);
        match lane.to_slice() {
            Some(src) if stride == 1 => dst[..entries.len()].copy_from_slice(&src[entries]),
            Some(src) => scatter(&src[entries], dst, stride),
            None => {
                for (d, &v) in dst.iter_mut().step_by(stride).zip(lane.slice(s![entries])) {
                    *d = v;
                }
            }
        }
    }

    fn line_slice(&self, line: usize) -> Option<&[u64]> {
        lane(self, line).to_slice()
    }
}

/// Row `line` of `view` if its lines are rows (see [`Operand::row_major`]), else column `line`.
fn lane<'a>(view: &ArrayView2<'a, u64>, line: usize) -> ArrayView1<'a, u64> {
    let axis = if view.row_major() { Axis(0) } else { Axis(1) };
    view.index_axis_move(axis, line)
}

/// `dst[t · stride] = src[t]` for every `t < src.len()`.
#[inline]
pub(crate) fn scatter(src: &[u64], dst: &mut [u64], stride: usize) {
    for (d, &v) in dst.iter_mut().step_by(stride).zip(src) {
        *d = v;
    }
}

/// The transpose of an operand, without copying.
pub(crate) struct Transposed<'a, O>(pub(crate) &'a O);

impl<O: Operand> Operand for Transposed<'_, O> {
    fn dim(&self) -> (usize, usize) {
        let (r, c) = self.0.dim();
        (c, r)
    }

    fn row_major(&self) -> bool {
        !self.0.row_major()
    }

    fn read_line(&self, line: usize, entries: Range<usize>, dst: &mut [u64], stride: usize) {
        self.0.read_line(line, entries, dst, stride);
    }

    fn line_slice(&self, line: usize) -> Option<&[u64]> {
        self.0.line_slice(line)
    }
}

/// A register-tiled micro-kernel computing one `MR × NR` tile of `A_strip · B_panel`.
pub(crate) trait MicroKernel<const MR: usize, const NR: usize>: Copy + Send + Sync {
    /// `a` holds `kc` groups of `MR` values (one per row), `b` holds `kc` groups of `NR` values
    /// (one per column), both with the same `kc`. Writes the `MR × NR` result into `out`;
    /// only its first `cols` columns are needed, the kernel may skip the others.
    fn tile(self, a: &[u64], b: &[u64], cols: usize, out: &mut [[u64; NR]; MR]);

    /// `c + t` for a value `c` already in `C` and a tile's value `t` of a later k-block, in the
    /// kernel's lane format: wrapping `u64` addition, unless the kernel's lanes hold something
    /// else (f64 bits).
    #[inline(always)]
    fn accumulate(c: u64, t: u64) -> u64 {
        c.wrapping_add(t)
    }
}

thread_local! {
    /// This thread's packed-`B` buffer, kept between calls (see [`with_scratch`]).
    static PACKED_B: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
    /// This thread's packed-`A` buffer, kept between calls (see [`with_scratch`]).
    static PACKED_A: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// Buffers larger than this many `u64`s (16 MiB) are freed after use instead of kept.
const SCRATCH_KEEP_MAX: usize = 1 << 21;

/// Runs `f` on `len` elements of the thread-local buffer `cache`, growing it if needed.
/// Reusing the buffer across calls avoids re-zeroing and page-faulting fresh memory on every
/// GEMM; the slice holds stale data, so `f` must write every element before reading it.
/// A nested call on the same thread (e.g. via rayon work stealing) finds the cache empty
/// and simply allocates its own buffer.
fn with_scratch<R>(cache: &'static LocalKey<Cell<Vec<u64>>>, len: usize, f: impl FnOnce(&mut [u64]) -> R) -> R {
    let mut buf = cache.take();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let result = f(&mut buf[..len]);
    if buf.len() <= SCRATCH_KEEP_MAX {
        cache.set(buf);
    }
    result
}

/// Splits `k` into `ceil(k / KC_MAX)` near-equal blocks; returns the size of all but the last,
/// rounded up to even so that pairs of steps `(2q, 2q + 1)` never straddle two blocks.
pub(crate) fn k_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC_MAX)).next_multiple_of(2)
}

/// Packs rows `rows` and columns `cols` of `src` into `dst` as strips of `W` rows (the last
/// zero-padded) by `cols.len()` columns, column-major within a strip: entry `(i, p)` of the
/// block goes to `dst[(i / W) · cols.len() · W + p · W + i % W]`. Every element of `dst` is
/// written. Packing `B`'s panels is the same operation on `B`'s transpose.
pub(crate) fn pack_strips<const W: usize>(src: &impl Operand, rows: Range<usize>, cols: Range<usize>, dst: &mut [u64]) {
    if src.row_major() {
        pack_across_lines::<W>(src, rows, cols, dst);
    } else {
        pack_along_lines::<W>(src, rows, cols, dst);
    }
}

/// [`pack_strips`] for an operand whose lines are columns: one line gives value `p` of every
/// strip.
fn pack_along_lines<const W: usize>(src: &impl Operand, rows: Range<usize>, cols: Range<usize>, dst: &mut [u64]) {
    let kc = cols.len();
    let mut buf = Vec::new();
    for (p, col) in cols.enumerate() {
        let line = match src.line_slice(col) {
            Some(line) => &line[rows.clone()],
            None => {
                buf.resize(rows.len(), 0);
                src.read_line(col, rows.clone(), &mut buf, 1);
                &buf
            }
        };
        let mut strips = dst.chunks_exact_mut(kc * W);
        let values = line.chunks_exact(W);
        let tail = values.remainder();
        // `values` first: zip then stops without taking the tail's strip from `strips`.
        for (values, strip) in values.zip(strips.by_ref()) {
            strip[p * W..(p + 1) * W].copy_from_slice(values);
        }
        if let Some(strip) = strips.next() {
            let dst = &mut strip[p * W..(p + 1) * W];
            dst[..tail.len()].copy_from_slice(tail);
            dst[tail.len()..].fill(0);
        }
    }
}

/// [`pack_strips`] for an operand whose lines are rows: each row is scattered with stride `W`
/// into its strip.
fn pack_across_lines<const W: usize>(src: &impl Operand, rows: Range<usize>, cols: Range<usize>, dst: &mut [u64]) {
    let kc = cols.len();
    for (s, strip) in dst.chunks_exact_mut(kc * W).enumerate() {
        let i0 = rows.start + s * W;
        let rows_here = W.min(rows.end - i0);
        if rows_here < W {
            strip.fill(0);
        }
        let mut slices: [&[u64]; W] = [&[]; W];
        let lines = i0..i0 + rows_here;
        if lines.clone().zip(&mut slices).all(|(i, s)| src.line_slice(i).map(|line| *s = &line[cols.clone()]).is_some())
        {
            pack_strip_from_slices::<W>(&slices[..rows_here], strip);
            continue;
        }
        // Converted lines: segment by segment, so that the part of the strip being written
        // stays in L1.
        for c0 in (0..kc).step_by(LINE_SEGMENT) {
            let entries = cols.start + c0..cols.start + kc.min(c0 + LINE_SEGMENT);
            #[cfg(target_arch = "x86_64")]
            if let Some(transposes) = zmm::Transposes::detect().filter(|_| rows_here == W && W.is_multiple_of(4)) {
                // Each line converted into a row of a block, then the block transposed into the
                // strip in registers: one vector store per 8 values instead of a scalar store
                // each.
                let mut block = [[0u64; LINE_SEGMENT]; W];
                for (row, i) in block.iter_mut().zip(lines.clone()) {
                    src.read_line(i, entries.clone(), &mut row[..entries.len()], 1);
                }
                transposes.strip_from_rows(&block, entries.len(), &mut strip[c0 * W..(c0 + entries.len()) * W]);
                continue;
            }
            for (r, i) in lines.clone().enumerate() {
                src.read_line(i, entries.clone(), &mut strip[c0 * W + r..], W);
            }
        }
    }
}

/// One strip from its rows' slices (columns `0..kc` of each), eight columns at a time for all
/// rows, so that each 8 × `W` block of the strip is written in one go.
fn pack_strip_from_slices<const W: usize>(rows: &[&[u64]], strip: &mut [u64]) {
    for (p, dst_8p) in strip.chunks_mut(8 * W).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            let vals = &row[8 * p..row.len().min(8 * p + 8)];
            for (d, &v) in dst_8p[r..].iter_mut().step_by(W).zip(vals) {
                *d = v;
            }
        }
    }
}

/// How the output is cut into parallel tasks: `row_strips` strips of `MR` rows and
/// `col_panels` panels of `NR` columns per task.
struct Grid {
    row_strips: usize,
    col_panels: usize,
}

/// Cost of packing one strip of `A`, in units of one tile's micro-kernel work over the same
/// `k` (both are per k step: `MR` scattered loads and stores against `MR × NR` multiply-adds;
/// measured at about two tiles).
const PACK_STRIP_TILES: usize = 2;

/// Picks task sizes so that every thread gets about the same work (estimated makespan: tiles,
/// plus the packing of each task's strips of `A`, repeated in every column chunk), with tasks
/// no bigger than `MC_MAX_STRIPS × NC_MAX_PANELS` tiles.
fn choose_grid(strips: usize, panels: usize, threads: usize) -> Grid {
    let min_rc = strips.div_ceil(MC_MAX_STRIPS);
    let min_cc = panels.div_ceil(NC_MAX_PANELS);
    let mut best = (usize::MAX, usize::MAX, Grid { row_strips: strips, col_panels: panels });
    for rc in min_rc..=strips.min(min_rc * 4 + threads) {
        for cc in min_cc..=panels.min(min_cc * 4 + threads) {
            let (rs, cp) = (strips.div_ceil(rc), panels.div_ceil(cc));
            // Actual number of tasks after rounding the task sizes up.
            let tasks = strips.div_ceil(rs) * panels.div_ceil(cp);
            let makespan = tasks.div_ceil(threads) * rs * (cp + PACK_STRIP_TILES);
            if (makespan, tasks) < (best.0, best.1) {
                best = (makespan, tasks, Grid { row_strips: rs, col_panels: cp });
            }
        }
    }
    best.2
}

/// Per-row and per-column terms `(ξ, η)` a task writes into `C` as `−ξ_i − η_j` before adding
/// its tiles (used by kernels that compute a shifted product, see `gemm_u64`).
pub(crate) type Corrections = (Vec<u64>, Vec<u64>);

/// Packed, blocked GEMM (parallel from [`PARALLEL_MIN_MACS`] multiply-adds up) writing `a · b`
/// (with wrapping `u64` arithmetic, as computed by `kernel`) into `c`, whatever `c` held before.
/// With `corrections`, `C` starts from `−ξ_i − η_j` and the kernel's products are added to that.
/// Needs `a.ncols() > 0`.
pub(crate) fn blocked<K, const MR: usize, const NR: usize>(
    a: &impl Operand,
    b: &impl Operand,
    c: ArrayViewMut2<'_, u64>,
    kernel: K,
    corrections: Option<&Corrections>,
) where
    K: MicroKernel<MR, NR>,
{
    let (k, n) = b.dim();
    let kc = k_block(k);
    let n_pad = n.div_ceil(NR) * NR;
    let parallel = a.dim().0.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_MACS;
    with_scratch(&PACKED_B, k * n_pad, |packed_b| {
        // Per k-block of `kc` rows (the last may be shorter): `n_pad / NR` panels of `kc × NR`.
        let pack = |(kb, block): (usize, &mut [u64])| {
            let pc = kb * kc;
            pack_strips::<NR>(&Transposed(b), 0..n, pc..pc + block.len() / n_pad, block);
        };
        if parallel {
            packed_b.par_chunks_mut(kc * n_pad).enumerate().for_each(pack);
        } else {
            packed_b.chunks_mut(kc * n_pad).enumerate().for_each(pack);
        }
        run_tasks(a, packed_b, c, kernel, kc, corrections, parallel);
    });
}

/// Splits `c` into the task grid and runs the tasks over packed `B`, in parallel when asked.
fn run_tasks<K, const MR: usize, const NR: usize>(
    a: &impl Operand,
    packed_b: &[u64],
    mut c: ArrayViewMut2<'_, u64>,
    kernel: K,
    kc: usize,
    corrections: Option<&Corrections>,
    parallel: bool,
) where
    K: MicroKernel<MR, NR>,
{
    let (m, k) = a.dim();
    let n = c.ncols();
    let n_pad = n.div_ceil(NR) * NR;
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let grid = choose_grid(m.div_ceil(MR), n.div_ceil(NR), threads);
    let (mc, nc) = (grid.row_strips * MR, grid.col_panels * NR);

    let mut tasks = Vec::new();
    for (ic, mut c_rows) in c.axis_chunks_iter_mut(Axis(0), mc).enumerate() {
        let mut j0 = 0;
        while c_rows.ncols() > nc {
            let (left, right) = c_rows.split_at(Axis(1), nc);
            tasks.push((ic * mc, j0, left));
            c_rows = right;
            j0 += nc;
        }
        tasks.push((ic * mc, j0, c_rows));
    }
    let run = |(i0, j0, mut c_task): (usize, usize, ArrayViewMut2<'_, u64>)| {
        let (rows, cols) = c_task.dim();
        if let Some((xi, eta)) = corrections {
            // Start from −ξ_i − η_j; the tiles add the shifted products on top.
            for (mut c_row, &x) in c_task.rows_mut().into_iter().zip(&xi[i0..]) {
                for (cv, &e) in c_row.iter_mut().zip(&eta[j0..]) {
                    *cv = x.wrapping_add(e).wrapping_neg();
                }
            }
        }
        let strips = rows.div_ceil(MR);
        with_scratch(&PACKED_A, strips * kc * MR, |packed_a| {
            let mut tile = [[0u64; NR]; MR];
            for pc in (0..k).step_by(kc) {
                let kc_here = kc.min(k - pc);
                let packed_a = &mut packed_a[..strips * kc_here * MR];
                pack_strips::<MR>(a, i0..i0 + rows, pc..pc + kc_here, packed_a);
                let b_block = &packed_b[pc * n_pad..(pc + kc_here) * n_pad];
                // The first k-block overwrites `C` (so `C` needs no zeroing, and its fresh pages
                // are first written, not read), unless it starts from the corrections.
                let store = pc == 0 && corrections.is_none();
                for jr in (0..cols).step_by(NR) {
                    let panel_start = (j0 + jr) * kc_here;
                    let b_panel = &b_block[panel_start..panel_start + kc_here * NR];
                    let cols_here = NR.min(cols - jr);
                    for (s, a_strip) in packed_a.chunks_exact(kc_here * MR).enumerate() {
                        kernel.tile(a_strip, b_panel, cols_here, &mut tile);
                        let ir = s * MR;
                        let mut c_sub = c_task.slice_mut(s![ir..rows.min(ir + MR), jr..cols.min(jr + NR)]);
                        for (mut c_row, t_row) in c_sub.rows_mut().into_iter().zip(&tile) {
                            let c_row = c_row.iter_mut().zip(t_row);
                            if store {
                                c_row.for_each(|(cv, &tv)| *cv = tv);
                            } else {
                                c_row.for_each(|(cv, &tv)| *cv = K::accumulate(*cv, tv));
                            }
                        }
                    }
                }
            }
        });
    };
    if parallel {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
}

/// The portable micro-kernel: a plain-Rust 4 × 8 tile of wrapping multiply-adds
/// (autovectorized where the target allows).
#[derive(Clone, Copy)]
pub(crate) struct Portable;

/// Rows of the portable register tile.
pub(crate) const PORTABLE_MR: usize = 4;
/// Columns of the portable register tile.
pub(crate) const PORTABLE_NR: usize = 8;

impl MicroKernel<PORTABLE_MR, PORTABLE_NR> for Portable {
    fn tile(self, a: &[u64], b: &[u64], _cols: usize, out: &mut [[u64; PORTABLE_NR]; PORTABLE_MR]) {
        let mut acc = [[0u64; PORTABLE_NR]; PORTABLE_MR];
        for (ap, bp) in a.chunks_exact(PORTABLE_MR).zip(b.chunks_exact(PORTABLE_NR)) {
            for (acc_row, &av) in acc.iter_mut().zip(ap) {
                for (cv, &bv) in acc_row.iter_mut().zip(bp) {
                    *cv = cv.wrapping_add(av.wrapping_mul(bv));
                }
            }
        }
        *out = acc;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod zmm {
    //! Load/store helpers and the register tile shared by the AVX-512 micro-kernels (callers
    //! hold a detection token).
    use std::arch::x86_64::*;

    /// Rows of the AVX-512 register tile: 12 rows × 16 columns use 24 zmm accumulators.
    pub(crate) const MR: usize = 12;
    /// Columns of the AVX-512 register tile (two zmm of 8 `u64`).
    pub(crate) const NR: usize = 16;

    /// Implements [`super::MicroKernel`] for the detection token `$token` with the tile kernel
    /// `$kernel::<V>`: `V` = 1 (one zmm per row) when at most 8 columns are needed, else 2. The
    /// kernel must only need the CPU features whose detection creates `$token`. A third argument,
    /// if given, replaces the default [`super::MicroKernel::accumulate`] (wrapping addition).
    macro_rules! zmm_micro_kernel {
        ($token:ty, $kernel:ident $(, $accumulate:expr)?) => {
            impl $crate::kernels::blocking::MicroKernel<MR, NR> for $token {
                $(
                    #[inline(always)]
                    fn accumulate(c: u64, t: u64) -> u64 {
                        ($accumulate)(c, t)
                    }
                )?

                fn tile(self, a: &[u64], b: &[u64], cols: usize, out: &mut [[u64; NR]; MR]) {
                    if cols <= NR / 2 {
                        // SAFETY: `self` exists only if the kernel's CPU features were detected.
                        unsafe { $kernel::<1>(a, b, out) }
                    } else {
                        // SAFETY: `self` exists only if the kernel's CPU features were detected.
                        unsafe { $kernel::<2>(a, b, out) }
                    }
                }
            }
        };
    }
    pub(crate) use zmm_micro_kernel;

    /// Loads 8 `u64`s from `src`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn load8(src: &[u64; 8]) -> __m512i {
        // SAFETY: `src` is a valid, readable 64-byte region; unaligned loads are allowed.
        unsafe { _mm512_loadu_si512(src.as_ptr().cast()) }
    }

    /// Proof that the running CPU supports AVX-512F, for the in-register transposes that pack
    /// converted lines into strips ([`super::pack_strips`]).
    #[derive(Clone, Copy)]
    pub(crate) struct Transposes {
        _detected: (),
    }

    impl Transposes {
        /// The token if the CPU has AVX-512F (detected once, then cached by the standard library).
        pub(crate) fn detect() -> Option<Self> {
            is_x86_feature_detected!("avx512f").then_some(Transposes { _detected: () })
        }

        /// `strip[p · W + r] = rows[r][p]` for every `p < len` and `r < W`: the first `len`
        /// columns of `W` rows written column by column, as a packed strip of `W` rows. `W` must
        /// be a multiple of 4, `len` at most [`super::LINE_SEGMENT`], and `strip` hold `len · W`
        /// values.
        pub(crate) fn strip_from_rows<const W: usize>(
            self,
            rows: &[[u64; super::LINE_SEGMENT]; W],
            len: usize,
            strip: &mut [u64],
        ) {
            assert!(
                W.is_multiple_of(4) && len <= super::LINE_SEGMENT && strip.len() == len * W,
                "strip_from_rows: sizes"
            );
            // SAFETY: the token proves AVX-512F; the sizes were checked above.
            unsafe { transpose_rows(rows, len, strip) }
        }
    }

    /// [`Transposes::strip_from_rows`]: blocks of 8 columns by 8 rows (the last block of a
    /// strip of 4 more rows padded with zero rows and stored under a mask), then the columns
    /// after the last whole block one value at a time.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `W` is a multiple of 4, `len` ≤ `LINE_SEGMENT` and
    /// `strip.len() == len · W`.
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose_rows<const W: usize>(rows: &[[u64; super::LINE_SEGMENT]; W], len: usize, strip: &mut [u64]) {
        let whole = len / 8 * 8;
        for p in (0..whole).step_by(8) {
            for r0 in (0..W).step_by(8) {
                let n = (W - r0).min(8);
                let block: [__m512i; 8] = std::array::from_fn(|r| {
                    if r < n {
                        load8(rows[r0 + r][p..p + 8].try_into().expect("8 values"))
                    } else {
                        _mm512_setzero_si512()
                    }
                });
                let columns = transpose8(block);
                let mask: __mmask8 = if n == 8 { 0xff } else { 0x0f };
                for (j, column) in columns.into_iter().enumerate() {
                    let at = (p + j) * W + r0;
                    // SAFETY: p + j < len, so values at..at + n lie inside `strip` (len · W
                    // values, r0 + n ≤ W); the mask leaves the other lanes untouched, and masked
                    // lanes are never accessed.
                    unsafe { _mm512_mask_storeu_epi64(strip.as_mut_ptr().add(at).cast(), mask, column) };
                }
            }
        }
        for p in whole..len {
            for (r, row) in rows.iter().enumerate() {
                strip[p * W + r] = row[p];
            }
        }
    }

    /// The transpose of an 8 × 8 block of `u64` rows: the columns, as registers. Three stages
    /// of pairwise interleaves (values, then 128-bit lanes twice).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose8(r: [__m512i; 8]) -> [__m512i; 8] {
        // t: pairs of rows interleaved: [a0 b0 a2 b2 a4 b4 a6 b6] and [a1 b1 a3 b3 ...].
        let t = [
            _mm512_unpacklo_epi64(r[0], r[1]),
            _mm512_unpackhi_epi64(r[0], r[1]),
            _mm512_unpacklo_epi64(r[2], r[3]),
            _mm512_unpackhi_epi64(r[2], r[3]),
            _mm512_unpacklo_epi64(r[4], r[5]),
            _mm512_unpackhi_epi64(r[4], r[5]),
            _mm512_unpacklo_epi64(r[6], r[7]),
            _mm512_unpackhi_epi64(r[6], r[7]),
        ];
        // u: lanes 0 and 2 (0x88) or 1 and 3 (0xdd) of two t's: [a0 b0 a4 b4 c0 d0 c4 d4], ...
        let u = [
            _mm512_shuffle_i64x2::<0x88>(t[0], t[2]),
            _mm512_shuffle_i64x2::<0x88>(t[1], t[3]),
            _mm512_shuffle_i64x2::<0xdd>(t[0], t[2]),
            _mm512_shuffle_i64x2::<0xdd>(t[1], t[3]),
            _mm512_shuffle_i64x2::<0x88>(t[4], t[6]),
            _mm512_shuffle_i64x2::<0x88>(t[5], t[7]),
            _mm512_shuffle_i64x2::<0xdd>(t[4], t[6]),
            _mm512_shuffle_i64x2::<0xdd>(t[5], t[7]),
        ];
        // Column j: the same selection from u[j mod 4] (rows a-d) and u[4 + j mod 4] (rows e-h).
        [
            _mm512_shuffle_i64x2::<0x88>(u[0], u[4]),
            _mm512_shuffle_i64x2::<0x88>(u[1], u[5]),
            _mm512_shuffle_i64x2::<0x88>(u[2], u[6]),
            _mm512_shuffle_i64x2::<0x88>(u[3], u[7]),
            _mm512_shuffle_i64x2::<0xdd>(u[0], u[4]),
            _mm512_shuffle_i64x2::<0xdd>(u[1], u[5]),
            _mm512_shuffle_i64x2::<0xdd>(u[2], u[6]),
            _mm512_shuffle_i64x2::<0xdd>(u[3], u[7]),
        ]
    }

    /// Stores 8 `u64`s to `dst`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn store8(dst: &mut [u64; 8], v: __m512i) {
        // SAFETY: `dst` is a valid, writable 64-byte region; unaligned stores are allowed.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) }
    }

    /// Loads the first `8V` values of a packed `B` row (`row.len()` ≥ `8V`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn load_row<const V: usize>(row: &[u64]) -> [__m512i; V] {
        let mut v = [_mm512_setzero_si512(); V];
        for (v, chunk) in v.iter_mut().zip(row.chunks_exact(8)) {
            *v = load8(chunk.try_into().unwrap());
        }
        v
    }

    /// Stores an `R × 8V` register tile into the first `8V` columns of `out`'s rows.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn store_tile<const R: usize, const V: usize, const NR: usize>(
        acc: &[[__m512i; V]; R],
        out: &mut [[u64; NR]; R],
    ) {
        for (out_row, acc_row) in out.iter_mut().zip(acc) {
            for (chunk, &v) in out_row.chunks_exact_mut(8).zip(acc_row) {
                store8(chunk.try_into().unwrap(), v);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_shapes {
    //! Proptest dimensions shared by the GEMM kernels' tests.
    use super::{KC_MAX, MC_MAX_STRIPS};
    use proptest::prelude::*;

    /// Row / column counts: around the register tiles (4, 8, 12, 16), the small-`m` cut-off,
    /// primes, and just above the most strips a task takes (`MC_MAX_STRIPS` × 12 rows).
    pub(crate) fn dim_mn() -> impl Strategy<Value = usize> {
        prop_oneof![
            6 => 1usize..=20,
            1 => Just(23usize),
            1 => Just(31usize),
            1 => Just(12 * MC_MAX_STRIPS + 1),
            1 => Just(131usize),
        ]
    }

    /// Inner dimensions: small, prime, and just above one and two k-blocks.
    pub(crate) fn dim_k() -> impl Strategy<Value = usize> {
        prop_oneof![
            4 => 1usize..=20,
            1 => Just(97usize),
            1 => Just(KC_MAX + 1),
            1 => Just(2 * KC_MAX + 3),
        ]
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod transpose_tests {
    use super::{zmm::Transposes, LINE_SEGMENT};

    /// The in-register transpose writes exactly the scalar definition, for strips of 4 to 16
    /// rows and segments with and without a partial block of columns.
    fn check<const W: usize>(transposes: Transposes) {
        let rows: [[u64; LINE_SEGMENT]; W] =
            std::array::from_fn(|r| std::array::from_fn(|p| (r as u64) << 32 | p as u64 | 0x8000_0000_0000_0000));
        for len in [0, 1, 7, 8, 9, 63, LINE_SEGMENT - 1, LINE_SEGMENT] {
            let mut strip = vec![u64::MAX; len * W];
            transposes.strip_from_rows(&rows, len, &mut strip);
            let expected: Vec<u64> = (0..len * W).map(|k| rows[k % W][k / W]).collect();
            assert_eq!(strip, expected, "{W} rows, {len} columns");
        }
    }

    #[test]
    fn strips_from_rows_match_the_scalar_transpose() {
        let Some(transposes) = Transposes::detect() else {
            eprintln!("no AVX-512F on this CPU: the transposing pack does not run here");
            return;
        };
        check::<4>(transposes);
        check::<8>(transposes);
        check::<12>(transposes);
        check::<16>(transposes);
    }
}
