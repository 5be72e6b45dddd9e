//! Matrix products modulo small moduli (CRT planes) as exact integer GEMMs on `u64` lanes.
//!
//! Moduli are multiplied in groups: two moduli whose product P is at most
//! [`GROUP_MODULUS_MAX`] (tf-encrypted's ten moduli pair up this way) share one GEMM modulo P,
//! whose result is then reduced modulo each of them.
//!
//! The GEMM runs on the shared blocked framework of `kernels::blocking`. Packing reads the `u32`
//! residue planes directly and writes each entry's residue modulo P in [0, P) as a `u64`
//! (combining a pair by Garner's formula), so there are no conversion passes over the inputs.
//!
//! Exactness: every packed value is below P ≤ 2^26, so every product is at most (P-1)^2 < 2^52
//! and a sum of `k` of them is exact in a `u64` while k·(P-1)^2 ≤ 2^64 - 1 ([`exact_chunk`]:
//! over 4 million for P ≤ 2^21). Longer inner dimensions are split into chunks of that length,
//! each reduced before the chunks are added.
//! - On x86-64 with AVX-512F and AVX-512 IFMA (detected at runtime) the micro-kernel is a
//!   12 × 16 tile of `vpmadd52luq`: it adds the low 52 bits of each 104-bit product to a 64-bit
//!   lane, which is the whole product since (P-1)^2 < 2^52. One instruction is eight exact
//!   multiply-adds, at the same rate as a zmm f64 FMA (twice ymm FMA per instruction).
//! - Without IFMA the group's GEMM runs in f64: inner dimension split into chunks of
//!   `f64_exact_chunk` (1024 for moduli up to 2^21), so that every sum is an integer below 2^52
//!   and the result is exact whatever the order of the additions. One FMA is eight exact
//!   multiply-adds where the integer tile needs `vpmuludq` and `vpaddq`. With AVX-512F the
//!   blocked framework runs a 12 × 16 tile of `vfmadd231pd` on lanes that hold f64 bits, and
//!   packing lifts the residues to f64 on the fly; this replaced `gemm-f64` on lifted copies of
//!   the operands (`pond bench kernels`, crt5, ratio to the f64 GEMM: 1000×2304×100 5.24 →
//!   4.63, 1024³ 4.37 → 3.43; docs/performance.md). Without AVX-512, the operands are lifted
//!   and multiplied by `gemm-f64` (the `gemm` crates, whose AVX2 or portable kernels are chosen
//!   at run time).
//!   Against the integer tile, on an AVX-512 Xeon without IFMA, the f64 GEMM took net S int100
//!   at batch 100 from 224 to 176 ms per batch and net A int100 from 41.3 to 24.6 ms
//!   (docs/performance.md).
//! - Where the f64 GEMM does not apply (a modulus near 2^26, whose exact chunks are short), the
//!   tile of `kernels::blocking` multiplies by `vpmuludq` (the low 32 bits of each lane, which
//!   hold the whole entry) and adds by `vpaddq` with AVX-512F, and elsewhere the portable
//!   plain-Rust kernel computes the same sums with ordinary `u64` arithmetic: every path gives
//!   identical results.
//! - `A` with few rows (matrix-vector and the like) skips the panels: see `few_rows`, which
//!   can also read `B` packed three rows to a word ([`PackedRows`]) for a matrix that is the
//!   right operand again and again.
//! - `B` with at most 16 columns and a single modulus per GEMM (a convolution's filters, lifted
//!   to one modulus; every group of the five 21-bit moduli) reads `A`'s rows in place: see
//!   `few_cols` (AVX-512 only). It beats the f64 GEMM there (net S int100 at batch 100: 184
//!   against 195 ms with `gemm-f64` for the convolution too, and medians of 161 against 177 ms
//!   with the f64 tile).
//!
//! The final reduction of the `u64` sums to `u32` residues is one fused, vectorised pass.

#[cfg(target_arch = "x86_64")]
mod few_cols;
mod few_rows;

pub use few_rows::{few_rows_packed, PackedRows, SMALL_M};

use super::blocking::{blocked, scatter, Operand, Portable, LINE_SEGMENT};
use crate::crt::{inverse_mod, vectorised};
use crate::parallel::PARALLEL_MIN_ELEMENTS;
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, CowArray, Ix2, Zip};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Largest product of a group of moduli that share one GEMM (tf-encrypted's moduli pair up;
/// exact chunks stay over 4 million long).
pub const GROUP_MODULUS_MAX: u64 = 1 << 21;

/// Elements per unit of parallel work in the reduction pass.
const CHUNK: usize = 1 << 15;

/// Largest inner dimension whose residue dot products modulo `p` (entries in [0, p)) are exact
/// in a `u64`: k·(p-1)^2 ≤ 2^64 - 1.
pub fn exact_chunk(p: u64) -> usize {
    longest_sum_within(p, u128::from(u64::MAX))
}

/// Largest k with k·(p-1)^2 ≤ `bound`: the longest sum of products of values in [0, p) that
/// stays within `bound`.
fn longest_sum_within(p: u64, bound: u128) -> usize {
    let largest_product = u128::from(p.saturating_sub(1)).pow(2).max(1);
    (bound / largest_product).min(usize::MAX as u128) as usize
}

/// Splits `moduli` into GEMM groups: consecutive pairs whose product is at most
/// [`GROUP_MODULUS_MAX`], else single moduli.
pub fn gemm_groups(moduli: &[u32]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < moduli.len() {
        let pair = i + 1 < moduli.len() && u64::from(moduli[i]) * u64::from(moduli[i + 1]) <= GROUP_MODULUS_MAX;
        let len = if pair { 2 } else { 1 };
        groups.push(i..i + len);
        i += len;
    }
    groups
}

/// Below this many elements the reduction pass stays on the calling thread: it takes well under
/// 0.1 ms there, and waking rayon's threads (which then spin for a while) would slow the GEMM's
/// own threads that run right after it.
const PARALLEL_CONVERSION_MIN: usize = 1 << 18;

/// Runs `f(start, chunk)` over `CHUNK`-sized pieces of `out`, in parallel when `out` is large.
fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if out.len() >= PARALLEL_CONVERSION_MIN.max(PARALLEL_MIN_ELEMENTS) {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| f(c * CHUNK, chunk));
    } else {
        f(0, out);
    }
}

/// x mod m into [0, m) for an exact integer-valued f64 with |x| <= 2^53 (m < 2^26): the quotient
/// estimate is off by at most one and the fused multiply-add makes x - q*m exact.
#[inline(always)]
pub(crate) fn reduce(x: f64, m: f64, inv_m: f64) -> f64 {
    let q = (x * inv_m).floor();
    let r = (-q).mul_add(m, x);
    let r = if r < 0.0 { r + m } else { r };
    if r >= m {
        r - m
    } else {
        r
    }
}

/// 2^52: adding it to an integer in [0, 2^52) puts that integer in the mantissa bits.
pub(crate) const TWO52: f64 = 4_503_599_627_370_496.0;

/// `x` as f64 for `x` < 2^52, by bit operations (a plain `as` does not vectorise without AVX-512).
#[inline(always)]
pub(crate) fn to_f64(x: u64) -> f64 {
    f64::from_bits(x | TWO52.to_bits()) - TWO52
}

/// An integer-valued `x` in [0, 2^52) as `u64`, by bit operations (a plain `as` saturates and
/// does not vectorise).
#[inline(always)]
pub(crate) fn to_u64(x: f64) -> u64 {
    (x + TWO52).to_bits() ^ TWO52.to_bits()
}

/// x mod m for any `u64` x (m < 2^26), given `two32` = 2^32 mod m: with x = h·2^32 + l,
/// (h mod m)·two32 + l < 2^52 + 2^32 is exact in f64, and [`reduce`] finishes.
#[inline(always)]
fn reduce_u64(x: u64, m: f64, inv_m: f64, two32: f64) -> f64 {
    let h = reduce(to_f64(x >> 32), m, inv_m);
    reduce(h.mul_add(two32, to_f64(x & 0xffff_ffff)), m, inv_m)
}

/// `out[i] = (out[i] + acc[i]) mod m` for residues `out` in [0, m) and exact sums `acc`: any
/// `u64`, or all below 2^52 when `narrow` (then one f64 reduction each instead of two). Into
/// slots not written yet, `out[i] = acc[i] mod m` ([`ResidueSlot`]).
fn add_reduced<S: ResidueSlot>(out: &mut [S], acc: &[u64], m: u32, narrow: bool) {
    let (mf, inv_m, two32) = (f64::from(m), 1.0 / f64::from(m), ((1u64 << 32) % u64::from(m)) as f64);
    for_chunks(out, |start, out| {
        let acc = &acc[start..start + out.len()];
        vectorised(|| {
            if narrow {
                add_each(out, acc, mf, |x| reduce(to_f64(x), mf, inv_m));
            } else {
                add_each(out, acc, mf, |x| reduce_u64(x, mf, inv_m, two32));
            }
        });
    });
}

/// `out[i] = (out[i] + acc[i]) mod m` for residues `out` in [0, m) and exact integer sums in
/// [0, 2^53) held as the bits of their f64 values in `acc`.
fn add_reduced_f64_bits(out: &mut [u32], acc: &[u64], m: u32) {
    let (mf, inv_m) = (f64::from(m), 1.0 / f64::from(m));
    for_chunks(out, |start, out| {
        let acc = &acc[start..start + out.len()];
        vectorised(|| add_each(out, acc, mf, |x| reduce(f64::from_bits(x), mf, inv_m)));
    });
}

/// `out[i] = (out[i] + residue(acc[i])) mod m`, for `residue` giving values in [0, m) (or
/// `out[i] = residue(acc[i])` into slots not written yet, see [`ResidueSlot`]).
#[inline(always)]
fn add_each<S: ResidueSlot, T: Copy>(out: &mut [S], acc: &[T], m: f64, residue: impl Fn(T) -> f64) {
    for (o, &x) in out.iter_mut().zip(acc) {
        o.put(residue(x), m);
    }
}

/// Where a reduction puts a residue r in [0, m): added (mod m) to a residue already there
/// (`u32`), or written to a slot not written yet (`MaybeUninit<u32>`, a fresh output: no
/// zero-fill pass first).
trait ResidueSlot: Send {
    /// Puts the residue `r` (an integer-valued f64 in [0, m)).
    fn put(&mut self, r: f64, m: f64);
}

impl ResidueSlot for u32 {
    #[inline(always)]
    fn put(&mut self, r: f64, m: f64) {
        let r = r + f64::from(*self);
        *self = to_u64(if r >= m { r - m } else { r }) as u32;
    }
}

impl ResidueSlot for MaybeUninit<u32> {
    #[inline(always)]
    fn put(&mut self, r: f64, _: f64) {
        self.write(to_u64(r) as u32);
    }
}

/// Whether sums of `k` products of values below `p` stay below 2^52.
fn sums_below_2_52(k: usize, p: u64) -> bool {
    (k as u128) * u128::from(p.saturating_sub(1)).pow(2) < 1 << 52
}

/// One group of moduli with its combined modulus P and CRT constants.
#[derive(Clone, Copy)]
struct Group {
    /// The group's moduli (the second is 1 for a single modulus).
    m: [f64; 2],
    /// 1 / m[1].
    inv_m1: f64,
    /// P = m[0] * m[1].
    p: u64,
    /// m[0]^-1 mod m[1].
    inv01: f64,
}

impl Group {
    /// The group of one or two `moduli` whose product is below 2^26.
    fn new(moduli: &[u32]) -> Self {
        assert!(!moduli.is_empty() && moduli.len() <= 2, "GEMM groups have one or two moduli");
        let m0 = u64::from(moduli[0]);
        let m1 = moduli.get(1).map_or(1, |&m| u64::from(m));
        assert!(m0 * m1 < 1 << 26, "GEMM group moduli are below 2^26");
        let inv01 = if m1 == 1 { 0 } else { inverse_mod(m0, m1) };
        Group { m: [m0 as f64, m1 as f64], inv_m1: 1.0 / m1 as f64, p: m0 * m1, inv01: inv01 as f64 }
    }

    /// Whether the group has two moduli.
    fn is_pair(self) -> bool {
        self.m[1] > 1.0
    }

    /// The residue in [0, P) of (r0 mod m0, r1 mod m1).
    #[inline(always)]
    fn lift(self, r0: u32, r1: u32) -> u64 {
        to_u64(self.lift_f64(r0, r1))
    }

    /// [`Group::lift`] as an (exact, integer-valued) f64.
    #[inline(always)]
    fn lift_f64(self, r0: u32, r1: u32) -> f64 {
        let r0 = f64::from(r0);
        // Garner: x = r0 + m0 * ((r1 - r0) * m0^-1 mod m1), |(r1 - r0) * m0^-1| < 2^52.
        let t = (f64::from(r1) - r0) * self.inv01;
        reduce(t, self.m[1], self.inv_m1).mul_add(self.m[0], r0)
    }
}

/// The residues in [0, P) of a GEMM group (one or two moduli, see [`gemm_groups`]) of the values
/// whose residues modulo the group's moduli are `planes` (equal lengths): the same lift the
/// GEMMs apply to their operands, for callers that lift once and reuse the result (the CRT
/// convolution lifts its input before im2col).
pub(crate) fn lift_to_group(planes: &[&[u32]], moduli: &[u32]) -> Vec<u32> {
    let group = Group::new(moduli);
    if !group.is_pair() {
        return planes[0].to_vec();
    }
    let (r0, r1) = (planes[0], planes[1]);
    assert_eq!(r0.len(), r1.len(), "the planes of one tensor have equal lengths");
    // SAFETY: the loop writes each of the r0.len() slots once (r1 has the same length).
    unsafe {
        crate::parallel::vec_written_by(r0.len(), |out| {
            vectorised(|| {
                for ((o, &x), &y) in out.iter_mut().zip(r0).zip(r1) {
                    // P < 2^26, so the residue fits a u32.
                    o.write(group.lift(x, y) as u32);
                }
            })
        })
    }
}

/// Whether every row (`row_major`) or every column of `plane` is contiguous in memory.
fn lines_contiguous(plane: &ArrayView2<'_, u32>, row_major: bool) -> bool {
    let (axis, len) = if row_major { (1, plane.ncols()) } else { (0, plane.nrows()) };
    len <= 1 || plane.strides()[axis] == 1
}

/// The residues of one side of a GEMM group as an [`Operand`]: entry (i, j) is the group's
/// residue in [0, P) of the planes' entries (i, j).
struct Residues<'a> {
    /// One plane per modulus of the group, all with contiguous lines in the same direction.
    planes: Vec<CowArray<'a, u32, Ix2>>,
    /// Whether the lines are rows.
    row_major: bool,
    group: Group,
    /// Whether each entry is read as the bits of its f64 value (for the f64 micro-kernel)
    /// rather than as a `u64`.
    f64_lanes: bool,
}

impl<'a> Residues<'a> {
    /// Reads `planes` in place when their rows (or else columns) are contiguous, else from a
    /// standard-layout copy.
    fn new(planes: &[ArrayView2<'a, u32>], group: Group) -> Self {
        let in_place = [true, false].into_iter().find(|&rm| planes.iter().all(|p| lines_contiguous(p, rm)));
        let planes = match in_place {
            Some(_) => planes.iter().map(|p| CowArray::from(*p)).collect(),
            None => planes.iter().map(|p| CowArray::from(p.as_standard_layout().into_owned())).collect(),
        };
        Residues { planes, row_major: in_place.unwrap_or(true), group, f64_lanes: false }
    }

    /// [`Residues::new`], read as the bits of each entry's f64 value.
    #[cfg(target_arch = "x86_64")]
    fn new_f64(planes: &[ArrayView2<'a, u32>], group: Group) -> Self {
        Residues { f64_lanes: true, ..Residues::new(planes, group) }
    }

    /// `dst[t]` = entry `entries.start + t` of line `line` (`dst.len() == entries.len()`).
    fn lift_into(&self, line: usize, entries: Range<usize>, dst: &mut [u64]) {
        let (r0, group) = (self.line(0, line, entries.clone()), self.group);
        if group.is_pair() {
            let r1 = self.line(1, line, entries);
            let f64_lanes = self.f64_lanes;
            vectorised(|| {
                for ((d, &x), &y) in dst.iter_mut().zip(r0).zip(r1) {
                    let v = group.lift_f64(x, y);
                    *d = if f64_lanes { v.to_bits() } else { to_u64(v) };
                }
            });
        } else if self.f64_lanes {
            vectorised(|| {
                for (d, &x) in dst.iter_mut().zip(r0) {
                    *d = f64::from(x).to_bits();
                }
            });
        } else {
            for (d, &x) in dst.iter_mut().zip(r0) {
                *d = u64::from(x);
            }
        }
    }

    /// Entries `range` of line `line` of plane `i`.
    fn line(&self, i: usize, line: usize, range: Range<usize>) -> &[u32] {
        let plane = &self.planes[i];
        let lane = if self.row_major { plane.row(line) } else { plane.column(line) };
        &lane.to_slice().expect("lines are contiguous")[range]
    }
}

impl Operand for Residues<'_> {
    fn dim(&self) -> (usize, usize) {
        self.planes[0].dim()
    }

    fn row_major(&self) -> bool {
        self.row_major
    }

    fn read_line(&self, line: usize, entries: Range<usize>, dst: &mut [u64], stride: usize) {
        if stride == 1 {
            return self.lift_into(line, entries.clone(), &mut dst[..entries.len()]);
        }
        let mut buf = [0u64; LINE_SEGMENT];
        for (s, start) in entries.clone().step_by(LINE_SEGMENT).enumerate() {
            let part = start..entries.end.min(start + LINE_SEGMENT);
            let buf = &mut buf[..part.len()];
            self.lift_into(line, part, buf);
            scatter(buf, &mut dst[s * LINE_SEGMENT * stride..], stride);
        }
    }
}

/// Which instruction set the kernels may use.
#[derive(Clone, Copy)]
enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX-512F + AVX-512 IFMA, proven present by the token.
    #[cfg(target_arch = "x86_64")]
    Ifma(ifma::Ifma),
    /// AVX-512F without IFMA, proven present by the token.
    #[cfg(target_arch = "x86_64")]
    Mul32(ifma::Mul32),
}

impl Isa {
    /// The fastest instruction set the running CPU supports.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(token) = ifma::Ifma::detect() {
            return Isa::Ifma(token);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(token) = ifma::Mul32::detect() {
            return Isa::Mul32(token);
        }
        Isa::Portable
    }

    /// Whether [`group_with`] hands a group with `n` columns in `B` to the exact f64 GEMM
    /// ([`group_in_f64`]): on CPUs without IFMA, unless the few-columns kernel takes it (a
    /// single modulus, at most 16 columns, AVX-512) or the modulus leaves only short exact
    /// chunks ([`F64_MIN_CHUNK`]). IFMA's 52-bit multiply-add runs at an f64 FMA's rate and needs
    /// no conversions; without it the integer tile multiplies with `vpmuludq` and adds with
    /// `vpaddq`, two instructions where an f64 GEMM has one FMA.
    fn takes_f64(self, group: Group, n: usize) -> bool {
        let integer_kernel_wins = match self {
            Isa::Portable => false,
            #[cfg(target_arch = "x86_64")]
            Isa::Ifma(_) => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Mul32(_) => !group.is_pair() && n <= few_cols::MAX_COLS,
        };
        !integer_kernel_wins && f64_exact_chunk(group.p) >= F64_MIN_CHUNK
    }

    /// Writes the exact `u64` product of two residue operands (entries below 2^26, inner
    /// dimension from 1 to [`exact_chunk`] of their bound) into `c`.
    fn product(self, a: &Residues<'_>, b: &Residues<'_>, c: ArrayViewMut2<'_, u64>) {
        match self {
            Isa::Portable => blocked(a, b, c, Portable, None),
            #[cfg(target_arch = "x86_64")]
            Isa::Ifma(token) => blocked(a, b, c, token, None),
            #[cfg(target_arch = "x86_64")]
            Isa::Mul32(token) => blocked(a, b, c, token, None),
        }
    }
}

/// Panics unless the planes are one matrix per modulus with a defined product.
fn check_planes(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32]) {
    assert!(a.len() == moduli.len() && b.len() == moduli.len(), "one matrix per modulus");
    assert!(a.iter().all(|x| x.dim() == a[0].dim()) && b.iter().all(|x| x.dim() == b[0].dim()), "equal shapes");
    assert_eq!(a[0].ncols(), b[0].nrows(), "callers check matmul shapes");
}

/// A_i·B_i mod m_i for every modulus `m_i` (each below 2^26), with residue matrices `a[i]`,
/// `b[i]` with entries in [0, m_i): moduli are grouped by [`gemm_groups`], one GEMM per group.
pub fn gemm_mod_planes(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32]) -> Vec<Array2<u32>> {
    planes_with(a, b, moduli, Isa::detect())
}

/// [`gemm_mod_planes`] with the instruction set chosen by the caller.
fn planes_with(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32], isa: Isa) -> Vec<Array2<u32>> {
    check_planes(a, b, moduli);
    if a[0].nrows() <= SMALL_M {
        return few_rows::planes(a, b, moduli, isa);
    }
    with_sums_scratch(|acc| {
        let groups = gemm_groups(moduli).into_iter();
        groups.flat_map(|g| group_with(&a[g.clone()], &b[g.clone()], &moduli[g], isa, acc)).collect()
    })
}

thread_local! {
    /// Each thread's scratch for the `u64` sums of [`group_with`], kept between calls: a private
    /// inference's products have the same shapes batch after batch, and a fresh scratch was
    /// zero-filled each time (1.8 MB per modulus for net S's convolution at batch 100).
    static SUMS_SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's sums scratch, or with a fresh one if the thread's is in use (a
/// rayon worker that took up another GEMM while it waited inside one).
fn with_sums_scratch<T>(f: impl FnOnce(&mut Vec<u64>) -> T) -> T {
    SUMS_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut acc) => f(&mut acc),
        Err(_) => f(&mut Vec::new()),
    })
}

/// A_i·B_i mod m_i for every modulus of one GEMM group (one or two moduli whose product is below
/// 2^26; see [`gemm_groups`]), with residue matrices `a[i]`, `b[i]` with entries in [0, m_i).
/// Costs one integer GEMM per [`exact_chunk`] of the inner dimension.
pub fn gemm_mod_group(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32]) -> Vec<Array2<u32>> {
    check_planes(a, b, moduli);
    if a[0].nrows() <= SMALL_M {
        return few_rows::planes(a, b, moduli, Isa::detect());
    }
    with_sums_scratch(|acc| group_with(a, b, moduli, Isa::detect(), acc))
}

/// The packed GEMM of one group with the instruction set chosen by the caller; `acc` is scratch
/// space for the `u64` sums, reused across calls (every kernel writes the sums it is given
/// before reading them, so stale values in it do not matter).
fn group_with(
    a: &[ArrayView2<'_, u32>],
    b: &[ArrayView2<'_, u32>],
    moduli: &[u32],
    isa: Isa,
    acc: &mut Vec<u64>,
) -> Vec<Array2<u32>> {
    let group = Group::new(moduli);
    let (m, k) = a[0].dim();
    let n = b[0].ncols();
    if m == 0 || n == 0 || k == 0 {
        return moduli.iter().map(|_| written_zeros(m, n)).collect();
    }
    if acc.len() < m * n {
        acc.resize(m * n, 0);
    }
    let mut c = ArrayViewMut2::from_shape((m, n), &mut acc[..m * n]).expect("m·n scratch values");
    if isa.takes_f64(group, n) {
        let mut out: Vec<_> = moduli.iter().map(|_| written_zeros(m, n)).collect();
        group_in_f64(a, b, moduli, group, isa, c, &mut out);
        return out;
    }
    let chunk = exact_chunk(group.p).max(1);
    let mut out: Vec<Vec<u32>> = Vec::with_capacity(moduli.len());
    for start in (0..k).step_by(chunk) {
        let end = (start + chunk).min(k);
        let a_part: Vec<_> = a.iter().map(|p| p.slice(s![.., start..end])).collect();
        let b_part: Vec<_> = b.iter().map(|p| p.slice(s![start..end, ..])).collect();
        if !few_columns(isa, group, &a_part, &b_part, c.view_mut()) {
            isa.product(&Residues::new(&a_part, group), &Residues::new(&b_part, group), c.view_mut());
        }
        let narrow = sums_below_2_52(end - start, group.p);
        let sums = c.as_slice().expect("scratch is in standard layout");
        if start == 0 {
            // The first chunk's residues are written, not added to zeros: no zero-fill pass.
            // SAFETY: `add_reduced` writes every slot of a fresh output (one per sum, m·n).
            out.extend(
                moduli
                    .iter()
                    .map(|&p| unsafe { crate::parallel::vec_written_by(m * n, |o| add_reduced(o, sums, p, narrow)) }),
            );
        } else {
            for (o, &p) in out.iter_mut().zip(moduli) {
                add_reduced(o, sums, p, narrow);
            }
        }
    }
    out.into_iter().map(|o| Array2::from_shape_vec((m, n), o).expect("m·n residues")).collect()
}

/// Longest inner dimension whose sums of products of values below `p` stay below 2^52, so
/// that an f64 GEMM computes them exactly: every product and partial sum is then an integer
/// below 2^53, which f64 holds exactly, whatever the order of the additions and with or without
/// fused multiply-adds.
fn f64_exact_chunk(p: u64) -> usize {
    longest_sum_within(p, (1 << 52) - 1)
}

/// Shortest exact f64 chunk worth an f64 GEMM (1024 for moduli up to 2^21, pond's rings). A
/// modulus near 2^26, which the integer kernels allow, leaves chunks of one or two.
const F64_MIN_CHUNK: usize = 256;

/// Multiply-adds from which an f64 GEMM runs on all of rayon's threads.
const F64_PARALLEL_WORK: usize = 1 << 20;

/// The group's residues in [0, P) of `planes` (one per modulus) as an f64 matrix in standard
/// layout. Planes whose rows are not contiguous are copied to standard layout first.
fn lifted_f64(planes: &[ArrayView2<'_, u32>], group: Group) -> Array2<f64> {
    let planes: Vec<CowArray<'_, u32, Ix2>> = planes
        .iter()
        .take(if group.is_pair() { 2 } else { 1 })
        .map(|p| {
            if lines_contiguous(p, true) {
                CowArray::from(*p)
            } else {
                CowArray::from(p.as_standard_layout().into_owned())
            }
        })
        .collect();
    let second = planes.last().expect("a group has a modulus");
    let mut lifted = Array2::<f64>::uninit(planes[0].dim());
    let rows = Zip::from(lifted.rows_mut()).and(planes[0].rows()).and(second.rows());
    let lift_row = |mut out: ArrayViewMut1<'_, MaybeUninit<f64>>, r0: ArrayView1<'_, u32>, r1: ArrayView1<'_, u32>| {
        let out = out.as_slice_mut().expect("rows of a standard-layout array are contiguous");
        let (r0, r1) = (r0.to_slice().expect("rows are contiguous"), r1.to_slice().expect("rows are contiguous"));
        vectorised(|| {
            if group.is_pair() {
                for ((o, &x), &y) in out.iter_mut().zip(r0).zip(r1) {
                    o.write(group.lift_f64(x, y));
                }
            } else {
                for (o, &x) in out.iter_mut().zip(r0) {
                    o.write(to_f64(u64::from(x)));
                }
            }
        })
    };
    if planes[0].len() >= PARALLEL_MIN_ELEMENTS {
        rows.par_for_each(lift_row);
    } else {
        rows.for_each(lift_row);
    }
    // SAFETY: the zip visited every row of `lifted` once and wrote each of its elements.
    unsafe { lifted.assume_init() }
}

/// Writes A·B for standard-layout f64 matrices into `c` (standard layout) as f64 bits (the
/// `gemm` crates; their AVX2 or portable kernels are chosen at run time), on all of rayon's
/// threads when the product is large.
fn f64_matmul(a: &Array2<f64>, b: &Array2<f64>, mut c: ArrayViewMut2<'_, u64>) {
    let ((m, k), n) = (a.dim(), b.ncols());
    assert_eq!(k, b.nrows(), "callers check matmul shapes");
    assert_eq!(c.dim(), (m, n), "the output is A's rows × B's columns");
    assert!(a.is_standard_layout() && b.is_standard_layout(), "operands are lifted in standard layout");
    assert!(c.is_standard_layout(), "the output is in standard layout");
    // Zeros (0.0's bits), so that no stale value survives whatever entries gemm writes.
    c.fill(0);
    let parallelism = if m * k * n >= F64_PARALLEL_WORK {
        gemm_common::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm_common::Parallelism::None
    };
    let gemm = gemm_f64::gemm::f64::get_gemm_fn();
    // SAFETY: `c` is m×n, `a` m×k and `b` k×n, all in standard layout (row stride = columns,
    // column stride 1), so every index gemm forms from these dimensions and strides is in
    // bounds; `c` does not alias `a` or `b`, and its `u64`s have f64's size and alignment. With
    // `read_dst` false, c = 1.0 · a·b.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr().cast::<f64>(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A_i·B_i mod m_i for the moduli of one group, added into `out`, through exact f64 products
/// over chunks of the inner dimension ([`f64_exact_chunk`]), whose sums `c` (A's rows × B's
/// columns, scratch) holds as f64 bits. With AVX-512 the product runs on the blocked framework
/// with the f64 tile, lifting the operands to f64 while it packs them (no lifted copies); elsewhere
/// the operands are lifted and multiplied by `gemm-f64`.
fn group_in_f64(
    a: &[ArrayView2<'_, u32>],
    b: &[ArrayView2<'_, u32>],
    moduli: &[u32],
    group: Group,
    isa: Isa,
    mut c: ArrayViewMut2<'_, u64>,
    out: &mut [Array2<u32>],
) {
    let k = a[0].ncols();
    let chunk = f64_exact_chunk(group.p);
    for start in (0..k).step_by(chunk) {
        let end = (start + chunk).min(k);
        let a_part: Vec<_> = a.iter().map(|p| p.slice(s![.., start..end])).collect();
        let b_part: Vec<_> = b.iter().map(|p| p.slice(s![start..end, ..])).collect();
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Mul32(token) => {
                let (a_part, b_part) = (Residues::new_f64(&a_part, group), Residues::new_f64(&b_part, group));
                blocked(&a_part, &b_part, c.view_mut(), ifma::Fma64::from(token), None);
            }
            _ => f64_matmul(&lifted_f64(&a_part, group), &lifted_f64(&b_part, group), c.view_mut()),
        }
        let sums = c.as_slice().expect("scratch is in standard layout");
        for (o, &m) in out.iter_mut().zip(moduli) {
            add_reduced_f64_bits(o.as_slice_mut().expect("fresh arrays are in standard layout"), sums, m);
        }
    }
}

/// Writes the exact sums A·B into `c` by the few-columns kernel ([`few_cols`]) when it applies:
/// AVX-512 (with or without IFMA), a single modulus (no pair to lift), `B` at most 16 columns wide and `A`'s rows
/// contiguous. Returns whether it did.
fn few_columns(
    isa: Isa,
    group: Group,
    a: &[ArrayView2<'_, u32>],
    b: &[ArrayView2<'_, u32>],
    c: ArrayViewMut2<'_, u64>,
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Ifma(token) if !group.is_pair() => few_cols::product(token, a[0], b[0], c),
        #[cfg(target_arch = "x86_64")]
        Isa::Mul32(token) if !group.is_pair() => few_cols::product(token, a[0], b[0], c),
        _ => false,
    }
}

/// A zero matrix whose memory has been written: `vec![0; n]` may map untouched zero pages, and
/// the first read-then-write of each would cost a copy-on-write fault that flushes the TLB of
/// every core.
#[allow(clippy::slow_vector_initialization, reason = "`vec![0; n]` is what this avoids")]
fn written_zeros(rows: usize, cols: usize) -> Array2<u32> {
    let mut zeros = Vec::new();
    zeros.resize(rows * cols, 0);
    Array2::from_shape_vec((rows, cols), zeros).expect("one zero per element")
}

/// A·B mod m for residue matrices with entries in [0, m), m < 2^26.
pub fn gemm_mod(a: ArrayView2<'_, u32>, b: ArrayView2<'_, u32>, m: u32) -> Array2<u32> {
    gemm_mod_group(&[a], &[b], &[m]).pop().expect("one modulus, one result")
}

/// The plain scalar reference: u128 accumulation, then one reduction.
pub fn gemm_mod_reference(a: ArrayView2<'_, u32>, b: ArrayView2<'_, u32>, m: u32) -> Array2<u32> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        let sum: u128 = (0..a.ncols()).map(|t| a[[i, t]] as u128 * b[[t, j]] as u128).sum();
        (sum % m as u128) as u32
    })
}

#[cfg(target_arch = "x86_64")]
mod ifma {
    //! AVX-512 kernels. Every entry point takes a token that implements [`Madd`], which can only
    //! be created after runtime detection of its features: [`Ifma`] (AVX-512F and IFMA, one
    //! `vpmadd52luq` per eight multiply-adds) or [`Mul32`] (AVX-512F alone, `vpmuludq` and
    //! `vpaddq`, for CPUs without IFMA such as Skylake-SP and Cascade Lake). Both give the exact
    //! sums for entries below 2^26, so the two paths agree with each other and with the portable
    //! kernel.
    use super::super::blocking::zmm::{load_row, store_tile, zmm_micro_kernel, MR, NR};
    use std::arch::x86_64::*;

    /// Proof that the running CPU supports AVX-512F and AVX-512 IFMA.
    #[derive(Clone, Copy)]
    pub(super) struct Ifma {
        _detected: (),
    }

    impl Ifma {
        /// Returns the token if the CPU has AVX-512F and AVX-512 IFMA.
        pub(super) fn detect() -> Option<Self> {
            crate::cpu::Avx512Ifma::detect().map(|_| Ifma { _detected: () })
        }
    }

    /// Proof that the running CPU supports AVX-512F.
    #[derive(Clone, Copy)]
    pub(super) struct Mul32 {
        _detected: (),
    }

    impl Mul32 {
        /// Returns the token if the CPU has AVX-512F.
        pub(super) fn detect() -> Option<Self> {
            is_x86_feature_detected!("avx512f").then_some(Mul32 { _detected: () })
        }
    }

    /// Proof that the running CPU supports AVX-512F, for the f64 tile: its lanes hold the bits
    /// of f64 values, multiplied and added by `vfmadd231pd`.
    #[derive(Clone, Copy)]
    pub(super) struct Fma64 {
        _detected: (),
    }

    impl From<Mul32> for Fma64 {
        /// AVX-512F, which `Mul32` proves, has the f64 fused multiply-add on zmm registers.
        fn from(_: Mul32) -> Self {
            Fma64 { _detected: () }
        }
    }

    /// An exact eight-lane multiply-add of `u64` lanes holding values below 2^26.
    pub(super) trait Madd: Copy + Send + Sync {
        /// `sum + a·b` lane by lane, for `a` and `b` below 2^26 (products below 2^52).
        ///
        /// # Safety
        /// The CPU has the token's features; the caller is compiled with them (the method is
        /// inlined into it).
        unsafe fn madd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i;
    }

    impl Madd for Ifma {
        #[inline(always)]
        unsafe fn madd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: forwarded from the caller. The instruction adds the low 52 bits of each
            // product, which is the whole product below 2^52.
            unsafe { _mm512_madd52lo_epu64(sum, a, b) }
        }
    }

    impl Madd for Mul32 {
        #[inline(always)]
        unsafe fn madd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: forwarded from the caller. `vpmuludq` multiplies the low 32 bits of each
            // lane, which hold the whole value below 2^26.
            unsafe { _mm512_add_epi64(sum, _mm512_mul_epu32(a, b)) }
        }
    }

    impl Madd for Fma64 {
        #[inline(always)]
        unsafe fn madd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: forwarded from the caller. The lanes hold f64 values: integers below 2^26
            // whose products and sums stay below 2^53 (the caller's chunks), so every result
            // is exact.
            unsafe {
                _mm512_castpd_si512(_mm512_fmadd_pd(
                    _mm512_castsi512_pd(a),
                    _mm512_castsi512_pd(b),
                    _mm512_castsi512_pd(sum),
                ))
            }
        }
    }

    zmm_micro_kernel!(Ifma, tile_ifma);
    zmm_micro_kernel!(Mul32, tile_mul32);
    zmm_micro_kernel!(Fma64, tile_fma64, |c: u64, t: u64| (f64::from_bits(c) + f64::from_bits(t)).to_bits());

    /// [`tile`] with f64 lanes (AVX-512F).
    #[target_feature(enable = "avx512f")]
    fn tile_fma64<const V: usize>(a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
        // SAFETY: the features are enabled here.
        unsafe { tile::<Fma64, V>(a, b, out) }
    }

    /// [`tile`] with IFMA.
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn tile_ifma<const V: usize>(a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
        // SAFETY: the features are enabled here.
        unsafe { tile::<Ifma, V>(a, b, out) }
    }

    /// [`tile`] with AVX-512F alone.
    #[target_feature(enable = "avx512f")]
    fn tile_mul32<const V: usize>(a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
        // SAFETY: the features are enabled here.
        unsafe { tile::<Mul32, V>(a, b, out) }
    }

    /// The `MR × 8V` micro-kernel: `V` = 2 for a full tile, 1 when at most 8 columns are needed
    /// (the rest of `out` is left untouched). Per k step: `V` loads of `b`, then per row one
    /// broadcast of `a` and `V` multiply-adds into the zmm accumulators. Exact for entries
    /// below 2^26 (products below 2^52) while the sums fit in 64 bits.
    ///
    /// # Safety
    /// The CPU has `M`'s features and the caller is compiled with them.
    #[inline(always)]
    unsafe fn tile<M: Madd, const V: usize>(a: &[u64], b: &[u64], out: &mut [[u64; NR]; MR]) {
        // SAFETY (whole body): the features come from the caller.
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); V]; MR];
            for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
                let bv = load_row::<V>(bp);
                for (acc_row, &av) in acc.iter_mut().zip(ap) {
                    let av = _mm512_set1_epi64(av as i64);
                    for (acc_v, &b_v) in acc_row.iter_mut().zip(&bv) {
                        *acc_v = M::madd(*acc_v, av, b_v);
                    }
                }
            }
            store_tile(&acc, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocking::test_shapes::{dim_k, dim_mn};
    use super::super::blocking::{KC_MAX, MC_MAX_STRIPS, NC_MAX_PANELS};
    use super::*;
    use proptest::prelude::*;

    fn residues(m: u32, r: usize, c: usize) -> impl Strategy<Value = Array2<u32>> {
        proptest::collection::vec(0..m, r * c).prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
    }

    /// Deterministic residues in [0, m) (xorshift), half of them at the extremes 0 and m - 1.
    pub(super) fn plane(rows: usize, cols: usize, m: u32, seed: u64) -> Array2<u32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        Array2::from_shape_fn((rows, cols), |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 => 0,
                1 => m - 1,
                _ => ((x >> 2) % u64::from(m)) as u32,
            }
        })
    }

    /// Every instruction-set path available on this machine.
    pub(super) fn all_isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            isas.extend(super::ifma::Ifma::detect().map(Isa::Ifma));
            isas.extend(super::ifma::Mul32::detect().map(Isa::Mul32));
        }
        isas
    }

    /// Checks every path (per-modulus planes, packed group GEMM; each instruction set) against the reference, for residue planes `a[i]`, `b[i]`
    /// modulo `moduli[i]`.
    fn check(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32]) {
        let expected: Vec<_> = (0..moduli.len()).map(|i| gemm_mod_reference(a[i], b[i], moduli[i])).collect();
        let dims = (a[0].dim(), b[0].dim());
        assert_eq!(gemm_mod_planes(a, b, moduli), expected, "dispatching path, {dims:?}");
        for isa in all_isas() {
            assert_eq!(planes_with(a, b, moduli, isa), expected, "planes, {dims:?}");
            for g in gemm_groups(moduli) {
                let out = group_with(&a[g.clone()], &b[g.clone()], &moduli[g.clone()], isa, &mut Vec::new());
                assert_eq!(out, expected[g].to_vec(), "packed group, {dims:?}");
            }
        }
    }

    /// Planes of a `rows × cols` matrix for each modulus.
    pub(super) fn planes(rows: usize, cols: usize, moduli: &[u32], seed: u64) -> Vec<Array2<u32>> {
        moduli.iter().enumerate().map(|(i, &m)| plane(rows, cols, m, seed ^ ((i as u64) << 32))).collect()
    }

    pub(super) fn views(planes: &[Array2<u32>]) -> Vec<ArrayView2<'_, u32>> {
        planes.iter().map(|p| p.view()).collect()
    }

    fn transposed(planes: &[Array2<u32>]) -> Vec<ArrayView2<'_, u32>> {
        planes.iter().map(|p| p.t()).collect()
    }

    /// A tf-encrypted pair plus a single, two of the wide moduli, and the largest modulus a
    /// group allows.
    fn moduli() -> impl Strategy<Value = Vec<u32>> {
        prop::sample::select(vec![vec![1201u32, 1433, 1217], vec![2097143, 2097091], vec![(1 << 26) - 1]])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn matches_reference(
            (m, a, b) in (prop::sample::select(vec![1201u32, 1039, 2097143, 2097091]), 1usize..40, 1usize..70, 1usize..40)
                .prop_flat_map(|(m, r, k, c)| (Just(m), residues(m, r, k), residues(m, k, c)))
        ) {
            prop_assert_eq!(gemm_mod(a.view(), b.view(), m), gemm_mod_reference(a.view(), b.view(), m));
        }

        #[test]
        fn pairs_match_reference(
            (a0, a1, b0, b1) in (1usize..30, 1usize..50, 1usize..30)
                .prop_flat_map(|(r, k, c)| (residues(1201, r, k), residues(1433, r, k), residues(1201, k, c), residues(1433, k, c)))
        ) {
            let out = gemm_mod_group(&[a0.view(), a1.view()], &[b0.view(), b1.view()], &[1201, 1433]);
            prop_assert_eq!(&out[0], &gemm_mod_reference(a0.view(), b0.view(), 1201));
            prop_assert_eq!(&out[1], &gemm_mod_reference(a1.view(), b1.view(), 1433));
            // Transposed (column-major) operands, as conv2d passes its filters.
            let bt0 = b0.t().as_standard_layout().into_owned();
            let bt1 = b1.t().as_standard_layout().into_owned();
            let out = gemm_mod_group(&[a0.view(), a1.view()], &[bt0.t(), bt1.t()], &[1201, 1433]);
            prop_assert_eq!(&out[0], &gemm_mod_reference(a0.view(), b0.view(), 1201));
            prop_assert_eq!(&out[1], &gemm_mod_reference(a1.view(), b1.view(), 1433));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_path_matches_reference(
            moduli in moduli(), m in dim_mn(), k in dim_k(), n in dim_mn(), seed in any::<u64>()
        ) {
            let (a, b) = (planes(m, k, &moduli, seed), planes(k, n, &moduli, !seed));
            check(&views(&a), &views(&b), &moduli);
        }

        #[test]
        fn every_path_matches_reference_transposed(
            moduli in moduli(), m in dim_mn(), k in dim_k(), n in dim_mn(), seed in any::<u64>()
        ) {
            // Stored as k×m and n×k; the transposed views are column-major m×k and k×n.
            let (at, bt) = (planes(k, m, &moduli, seed), planes(n, k, &moduli, !seed));
            check(&transposed(&at), &transposed(&bt), &moduli);
            check(&transposed(&at), &views(&planes(k, n, &moduli, seed ^ 2)), &moduli);
        }

        #[test]
        fn matrix_vector_shapes(moduli in moduli(), k in 1usize..600, n in 1usize..300, seed in any::<u64>()) {
            let (row, b) = (planes(1, k, &moduli, seed), planes(k, n, &moduli, !seed));
            let col = planes(k, 1, &moduli, seed ^ 3);
            check(&views(&row), &views(&b), &moduli);
            check(&views(&row), &views(&col), &moduli);
            check(&views(&col), &views(&row), &moduli);
            check(&transposed(&b), &transposed(&row), &moduli);
        }
    }

    #[test]
    fn strided_views_and_sizes_just_above_task_sizes() {
        let moduli = [1201, 1433, 2097143];
        let (a, b) = (planes(40, 60, &moduli, 7), planes(90, 50, &moduli, 8));
        // Every third row and other column of A, reversed rows of B: neither has contiguous lines.
        let a_views: Vec<_> = a.iter().map(|p| p.slice(s![..;3, ..;2])).collect();
        let b_views: Vec<_> = b.iter().map(|p| p.slice(s![..;-3, 3..40])).collect();
        check(&a_views, &b_views, &moduli);
        let (mc, nc) = (12 * MC_MAX_STRIPS, 16 * NC_MAX_PANELS);
        for (m, k, n, seed) in [(mc + 1, 7, nc + 1, 6), (25, KC_MAX + 1, nc + 1, 8)] {
            let (a, b) = (planes(m, k, &moduli, seed), planes(k, n, &moduli, !seed));
            check(&views(&a), &views(&b), &moduli);
        }
    }

    #[test]
    fn f64_chunks_are_exact_and_split_long_inner_dimensions() {
        // The f64 chunk is the longest k with k·(p-1)^2 < 2^52.
        for p in [2_097_143u64, 1201 * 1433, 1 << 21] {
            let chunk = f64_exact_chunk(p) as u128;
            let square = u128::from(p - 1).pow(2);
            assert!(chunk * square < 1 << 52 && (chunk + 1) * square >= 1 << 52, "p = {p}");
        }
        assert_eq!(f64_exact_chunk(2_097_143), 1024);
        // pond's moduli take the f64 GEMM where there is no IFMA; one near 2^26 does not.
        let (wide, pair) = (Group::new(&[2_097_143]), Group::new(&[1201, 1433]));
        assert!(Isa::Portable.takes_f64(wide, 17) && Isa::Portable.takes_f64(pair, 3));
        assert!(!Isa::Portable.takes_f64(Group::new(&[(1 << 26) - 1]), 17));
        // Four and a bit chunks of residues near the extreme (m - 2: odd products, whose sums
        // past 2^53 would round, so a chunk too long fails), then random ones, for a single
        // modulus and a pair, through every instruction set.
        let k = 4 * 1024 + 3;
        for moduli in [vec![2_097_143u32], vec![1201, 1433]] {
            for near in [1, 2] {
                let a: Vec<_> = moduli.iter().map(|&m| Array2::from_elem((13, k), m - near)).collect();
                let b: Vec<_> = moduli.iter().map(|&m| Array2::from_elem((k, 17), m - near)).collect();
                check(&views(&a), &views(&b), &moduli);
            }
            let (a, b) = (planes(13, k, &moduli, 5), planes(k, 17, &moduli, 6));
            check(&views(&a), &views(&b), &moduli);
        }
    }

    #[test]
    fn long_inner_dimension_is_split_and_still_exact() {
        // The largest modulus a group allows: exact chunks of 4096.
        let m = (1u32 << 26) - 1;
        assert_eq!(exact_chunk(u64::from(m)), 4096);
        let k = exact_chunk(u64::from(m)) * 2 + 3;
        for rows in [2, 13] {
            // All residues at the extreme m - 1: the worst case for exactness.
            let a = Array2::from_elem((rows, k), m - 1);
            let b = Array2::from_elem((k, 17), m - 1);
            check(&[a.view()], &[b.view()], &[m]);
            let (a, b) = (plane(rows, k, m, 5), plane(k, 17, m, 6));
            check(&[a.view()], &[b.view()], &[m]);
        }
    }

    #[test]
    fn few_columns_stay_exact_at_the_extremes_and_on_strided_rows() {
        // The largest modulus a group allows, over an inner dimension split into exact chunks;
        // row counts on both sides of the kernel's four-row blocks, widths of one and two
        // registers.
        let m = (1u32 << 26) - 1;
        let k = exact_chunk(u64::from(m)) + 5;
        for n in [1, 8, 9, 16] {
            for rows in [1, 4, 7, 13] {
                let (a, b) = (Array2::from_elem((rows, k), m - 1), Array2::from_elem((k, n), m - 1));
                check(&[a.view()], &[b.view()], &[m]);
                let (a, b) = (plane(rows, k, m, 5), plane(k, n, m, 6));
                check(&[a.view()], &[b.view()], &[m]);
            }
        }
        // Every third row of A: rows contiguous but not adjacent.
        let (a, b) = (plane(40, 30, 2097143, 7), plane(30, 16, 2097143, 8));
        check(&[a.slice(s![..;3, ..])], &[b.view()], &[2097143]);
    }

    #[test]
    fn pairs_at_the_extremes_stay_exact() {
        let (m0, m1) = (1433u32, 1367u32);
        let p = m0 * m1;
        let k = 2 * KC_MAX + 5;
        // Residues of 0, P - 1 (the largest lifted value) and P/2.
        for x in [0, p - 1, p / 2] {
            let a = [Array2::from_elem((13, k), x % m0), Array2::from_elem((13, k), x % m1)];
            let b = [Array2::from_elem((k, 17), x % m0), Array2::from_elem((k, 17), x % m1)];
            check(&views(&a), &views(&b), &[m0, m1]);
        }
    }

    #[test]
    fn empty_dimensions() {
        let moduli = [1201, 1433];
        for (m, k, n) in [(0, 3, 4), (3, 0, 4), (30, 0, 4), (3, 4, 0), (30, 4, 0), (0, 0, 0)] {
            let (a, b) = (planes(m, k, &moduli, 1), planes(k, n, &moduli, 2));
            check(&views(&a), &views(&b), &moduli);
        }
    }

    #[test]
    fn tfe_moduli_pair_up_and_wide_ones_do_not() {
        let tfe = [1201, 1433, 1217, 1237, 1321, 1103, 1129, 1367, 1093, 1039];
        assert_eq!(gemm_groups(&tfe), vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        let wide = [2097143, 2097133, 2097131, 2097097, 2097091];
        assert_eq!(gemm_groups(&wide), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(gemm_groups(&[1201, 1433, 1217]), vec![0..2, 2..3]);
    }

    #[test]
    fn reduce_is_exact_at_the_extremes() {
        let m = 2097143.0;
        for x in [0.0, 1.0, -1.0, m, -m, m - 1.0, 2f64.powi(53), -(2f64.powi(53)), 2f64.powi(53) - 1.0] {
            let expected = (x as i64).rem_euclid(m as i64) as f64;
            assert_eq!(reduce(x, m, 1.0 / m), expected, "{x}");
        }
    }

    #[test]
    fn reduce_u64_is_exact_at_the_extremes() {
        for m in [2u32, 1039, 2097143, (1 << 26) - 1] {
            let (mf, two32) = (f64::from(m), ((1u64 << 32) % u64::from(m)) as f64);
            let m64 = u64::from(m);
            for x in [0, 1, m64 - 1, m64, u32::MAX.into(), 1 << 32, 1 << 53, u64::MAX - 1, u64::MAX] {
                assert_eq!(reduce_u64(x, mf, 1.0 / mf, two32), (x % m64) as f64, "{x} mod {m}");
            }
        }
    }

    #[test]
    fn both_reductions_agree_below_2_52() {
        let m = 2097143u32;
        let k = 1usize << 10;
        assert!(sums_below_2_52(k, u64::from(m)) && !sums_below_2_52(k + 1, u64::from(m)));
        let acc: Vec<u64> = vec![0, 1, u64::from(m), k as u64 * u64::from(m - 1).pow(2), (1 << 52) - 1];
        for start in [0, 5, m - 1] {
            let (mut narrow, mut wide) = (vec![start; acc.len()], vec![start; acc.len()]);
            add_reduced(&mut narrow, &acc, m, true);
            add_reduced(&mut wide, &acc, m, false);
            let expected: Vec<u32> = acc.iter().map(|&x| ((x + u64::from(start)) % u64::from(m)) as u32).collect();
            assert_eq!((narrow, wide), (expected.clone(), expected));
        }
    }

    #[test]
    fn lift_is_the_crt_combination() {
        let (m0, m1) = (1433u32, 1367u32);
        let group = Group::new(&[m0, m1]);
        for x in [0, 1, m0 - 1, m0, m0 * m1 / 2, m0 * m1 - 1] {
            assert_eq!(group.lift(x % m0, x % m1), u64::from(x), "{x}");
        }
    }
}
