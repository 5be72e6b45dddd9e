//! The CRT ring Z_M ("int100"): an element is its residues modulo pairwise-coprime moduli whose
//! product M is about 2^100 (pond's [`Int100`](crate::Int100) uses [`WideModuli`], tf-encrypted's
//! set is [`TfeModuli`]), stored plane by plane (one `u32` array per modulus) so that a matrix
//! product is one exact integer GEMM per modulus (or per pair of small moduli, see
//! [`kernels::gemm_crt`]).
//!
//! Every plane is kept in standard (row-major, contiguous) layout, so elementwise work runs on flat
//! slices: split into chunks, spread over rayon's threads when the tensor is large, and compiled for
//! AVX2 when the CPU has it (see `vectorised`; additions, multiplications and the reduction of
//! wide integers also for AVX-512, see `vectorised_wide` and `limb_reduce`).

use crate::error::{CoreError, Result};
use crate::kernels::{self, gemm_crt::PackedRows, im2col::ConvGeometry};
use crate::layout;
use crate::parallel::PARALLEL_MIN_ELEMENTS;
use crate::prg::{self, PrgKey};
use crate::ring::{Conv2dParams, Ring, RingTensor};
use ndarray::{ArrayD, ArrayViewD, Axis, CowArray, Ix2, IxDyn};
use num_bigint::BigUint;
use rayon::prelude::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use wire::{decode_add_residues, decode_residues, encode_residues, unreduced_residue};

mod shift;
mod truncation_masks;
mod wire;

/// A set of pairwise-coprime moduli, all below 2^21, with product below 2^127.
pub trait CrtModuli: Copy + Clone + std::fmt::Debug + Default + PartialEq + Send + Sync + 'static {
    /// The moduli.
    const MODULI: &'static [u64];
    /// Ring name.
    const NAME: &'static str;
    /// Bytes per residue in the wire encoding (enough for the largest modulus).
    const RESIDUE_BYTES: usize;
    /// floor(log2 M), checked by a test against the moduli.
    const MODULUS_BITS: u32;
}

/// tf-encrypted's int100 moduli: ten primes near 2^10.2, M about 2^102.4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TfeModuli;

impl CrtModuli for TfeModuli {
    const MODULI: &'static [u64] = &[1201, 1433, 1217, 1237, 1321, 1103, 1129, 1367, 1093, 1039];
    const NAME: &'static str = "crt10";
    const RESIDUE_BYTES: usize = 2;
    const MODULUS_BITS: u32 = 102;
}

/// Five primes just below 2^21, M about 2^105: five GEMMs, as for [`TfeModuli`] (whose ten moduli
/// pair up); residue dot products stay exact in `u64` for inner dimensions up to 2^22 (longer
/// ones are split).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WideModuli;

impl CrtModuli for WideModuli {
    const MODULI: &'static [u64] = &[2097143, 2097133, 2097131, 2097097, 2097091];
    const NAME: &'static str = "crt5";
    const RESIDUE_BYTES: usize = 3;
    const MODULUS_BITS: u32 = 104;
}

/// The CRT ring over the moduli set `M`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crt<M: CrtModuli>(PhantomData<M>);

impl<M: CrtModuli> Ring for Crt<M> {
    type Tensor = CrtTensor<M>;
    const NAME: &'static str = M::NAME;
    /// Statistical truncation shifts x (|x| < 2^k) to [0, 2^(k+1)) and masks it with r uniform
    /// in [0, 2^(k+41)) (40-bit statistical hiding); the sum must stay below M: k + 42 <= log2 M.
    const PRODUCT_BITS: u32 = M::MODULUS_BITS - 42;
    fn modulus() -> BigUint {
        M::MODULI.iter().map(|&m| BigUint::from(m)).product()
    }
}

/// A tensor over Z_M: `planes[i]` holds the residues modulo `M::MODULI[i]`, each in [0, m_i), in
/// standard layout.
#[derive(Clone, Debug)]
pub struct CrtTensor<M: CrtModuli> {
    planes: Vec<ArrayD<u32>>,
    /// A packed copy of `planes` for few-row products, shared by clones until one is changed.
    packed: Arc<PackedCopy>,
    moduli: PhantomData<M>,
}

impl<M: CrtModuli> PartialEq for CrtTensor<M> {
    /// Equal residues (the packed copy is a cache).
    fn eq(&self, other: &Self) -> bool {
        self.planes == other.planes
    }
}

/// The matrix packed for few-row products ([`kernels::gemm_crt::PackedRows`]: three rows' group
/// residues to a `u64` word), built for a tensor that is the right operand of few-row matrix
/// products again and again (a weight or its mask, reused batch after batch at batch size 1):
/// the matrix-vector kernel then streams a third of the bytes of the `u32` planes. Built on the
/// second such product, so a tensor used once never pays for the copy.
#[derive(Debug, Default)]
struct PackedCopy {
    /// Few-row products that have read the tensor as their right operand so far.
    uses: AtomicUsize,
    /// The packed matrix (`None` inside if the moduli do not pack).
    rows: OnceLock<Option<PackedRows>>,
}

/// Elements per unit of parallel work in elementwise loops (256 KiB of `u32`).
const CHUNK: usize = 1 << 16;

/// Output positions (patch rows) per chunk of a convolution: bounds its patch matrix to
/// 2^14·C·KH·KW residues per plane (16 MiB for a 5x5 single-channel filter and ten planes), while
/// keeping the GEMMs tall enough to run at full speed.
const CONV_CHUNK_ROWS: usize = 1 << 14;

/// Runs `f` compiled for AVX2 and FMA when the CPU has them, else as compiled for the target.
///
/// pond builds for baseline x86-64 (SSE2): without this, the modular loops below (unsigned `min`,
/// `floor`, i32<->f64 conversions) would not vectorise. `f` and everything it calls are inlined
/// into the AVX2 copy, which is why the loop kernels are `#[inline(always)]`. (An AVX-512 copy here
/// too stopped LLVM from inlining some closures into either copy, leaving `floor` as a library
/// call: [`vectorised_wide`] adds it only for loops where that is harmless, and [`limb_reduce`]
/// dispatches by hand.)
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if Simd::detect() != Simd::Baseline {
            // SAFETY: `with_avx2` only needs AVX2 and FMA, which every level above the baseline
            // has.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

/// [`vectorised`] with a third copy compiled for AVX-512 (F, DQ, BW, VL), taken when the CPU has
/// it: for the elementwise loops of additions and multiplications only, whose closures call
/// nothing but [`Modulus`]'s `#[inline(always)]` arithmetic (no `floor`), so a closure that is
/// not inlined stays correct, only slower. Twice the lanes of AVX2: a Beaver product's pair of
/// multiplications on L2-resident planes measured 1.9-2.5 ns per residue with AVX2, 1.25 with
/// AVX-512.
#[inline(always)]
fn vectorised_wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
        fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if Simd::detect() == Simd::Avx512 {
            // SAFETY: `with_avx512` needs AVX-512 F, DQ, BW and VL, which the CPU has.
            return unsafe { with_avx512(f) };
        }
    }
    vectorised(f)
}

/// Work that [`run_vectorised`] compiles once per instruction set. `run` must be
/// `#[inline(always)]`, so that its loops are compiled inside each copy, with its features (a
/// closure handed to [`vectorised`] is inlined only if the compiler chooses to).
pub(crate) trait VectorKernel {
    /// What the work returns.
    type Output;
    /// The work.
    fn run(self) -> Self::Output;
}

/// `kernel.run()` in a copy compiled for AVX-512 (F, DQ, BW, VL), AVX2 or the baseline, whichever
/// is the widest the running CPU has.
pub(crate) fn run_vectorised<K: VectorKernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
        fn with_avx512<K: VectorKernel>(kernel: K) -> K::Output {
            kernel.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn with_avx2<K: VectorKernel>(kernel: K) -> K::Output {
            kernel.run()
        }
        match Simd::detect() {
            // SAFETY: the CPU has the features each copy is compiled for.
            Simd::Avx512 => return unsafe { with_avx512(kernel) },
            // SAFETY: as above.
            Simd::Avx2 => return unsafe { with_avx2(kernel) },
            Simd::Baseline => {}
        }
    }
    kernel.run()
}

/// The widest vector instruction set of the running CPU that the modular loops use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// AVX-512 F, DQ, BW and VL (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Neither: the loops as compiled for the target.
    Baseline,
}

impl Simd {
    /// What the running CPU has (the standard library caches the detection).
    #[inline(always)]
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
            {
                return Simd::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }
}

/// Runs `work` on every job, on rayon's threads if the whole operation touches at least
/// [`PARALLEL_MIN_ELEMENTS`] residues.
fn run_jobs<J: Send>(jobs: Vec<J>, residues: usize, work: impl Fn(J) + Sync + Send) {
    if residues >= PARALLEL_MIN_ELEMENTS && jobs.len() > 1 {
        jobs.into_par_iter().for_each(work);
    } else {
        jobs.into_iter().for_each(work);
    }
}

/// One modulus m < 2^21 with the constants that make reduction cheap.
#[derive(Clone, Copy, Debug)]
struct Modulus {
    m: u32,
    /// 1/m, for quotient estimates of exact f64 products.
    inv: f64,
    /// floor(2^64 / m), for Barrett reduction of `u64`s.
    barrett: u64,
    /// 2^64 mod m.
    two64: u32,
}

impl Modulus {
    fn new(m: u64) -> Self {
        assert!((2..1 << 21).contains(&m), "CRT moduli are in [2, 2^21)");
        Modulus {
            m: m as u32,
            inv: 1.0 / m as f64,
            barrett: u64::MAX / m,
            two64: ((1u128 << 64) % u128::from(m)) as u32,
        }
    }

    fn all<M: CrtModuli>() -> Vec<Modulus> {
        M::MODULI.iter().map(|&m| Modulus::new(m)).collect()
    }

    /// (x + y) mod m for x, y in [0, m): branchless, so loops of it vectorise.
    #[inline(always)]
    fn add(self, x: u32, y: u32) -> u32 {
        let s = x + y;
        s.min(s.wrapping_sub(self.m))
    }

    /// (x - y) mod m for x, y in [0, m).
    #[inline(always)]
    fn sub(self, x: u32, y: u32) -> u32 {
        let d = x.wrapping_sub(y);
        d.min(d.wrapping_add(self.m))
    }

    /// (x * y) mod m for x, y in [0, m), or more generally for x, y below 2^31 with x·y below
    /// 2^52 and x·y / m below 2^31 (what the argument below needs: an exact f64 product and a
    /// quotient below 2^31). The product is exact in f64; the quotient estimate, x·y·(1/m)
    /// rounded to the nearest integer, is the quotient or one above it, so the remainder, computed
    /// exactly in wrapping 32-bit arithmetic, lies in [-m, m) and two branchless corrections bring
    /// it to [0, m).
    ///
    /// The rounding adds 2^52 and keeps the low mantissa bits (exact for estimates below 2^51):
    /// a plain `as` cast saturates, and its NaN and range checks would keep the loops that call
    /// this scalar.
    #[inline(always)]
    fn mul(self, x: u32, y: u32) -> u32 {
        let p = f64::from(x as i32) * f64::from(y as i32);
        let q = (p * self.inv + kernels::gemm_crt::TWO52).to_bits() as u32;
        let r = x.wrapping_mul(y).wrapping_sub(q.wrapping_mul(self.m));
        let r = r.min(r.wrapping_add(self.m));
        r.min(r.wrapping_sub(self.m))
    }

    /// v mod m for any v below 2^31: [`Modulus::mul`] by 1, within its bounds (v / m < 2^31).
    #[inline(always)]
    fn reduce_small(self, v: u32) -> u32 {
        self.mul(v, 1)
    }

    /// u mod m by Barrett reduction: the estimate floor(u * floor(2^64/m) / 2^64) is at most one
    /// below the quotient.
    #[inline(always)]
    fn reduce_u64(self, u: u64) -> u32 {
        let q = ((u128::from(u) * u128::from(self.barrett)) >> 64) as u64;
        let r = (u - q * u64::from(self.m)) as u32;
        r.min(r.wrapping_sub(self.m))
    }

    /// v mod m in [0, m), branchless: a negative v is (v as u64) - 2^64.
    #[inline(always)]
    fn reduce_i64(self, v: i64) -> u32 {
        let negative = (v >> 63) as u32;
        self.sub(self.reduce_u64(v as u64), self.two64 & negative)
    }

    /// v mod m in [0, m) for any signed v, without division: v = hi * 2^64 + lo with hi = v >> 64
    /// (an `i64`) and lo the low 64 bits. When |hi| < 2^42 (|v| < 2^106, every fixed-point value
    /// and mask), hi * (2^64 mod m) + (lo mod m) fits an `i64` (below 2^63 in absolute value) and
    /// one signed reduction finishes; otherwise hi is reduced first, and
    /// (hi mod m) * (2^64 mod m) + (lo mod m) < 2^43.
    #[inline(always)]
    fn reduce_signed(self, v: i128) -> u32 {
        let (hi, lo) = ((v >> 64) as i64, u64::from(self.reduce_u64(v as u64)));
        if hi.unsigned_abs() < 1 << 42 {
            return self.reduce_i64(hi * i64::from(self.two64) + lo as i64);
        }
        let hi = u64::from(self.reduce_i64(hi));
        self.reduce_u64(hi * u64::from(self.two64) + lo)
    }
}

/// The residues modulo the product P of a GEMM group's moduli (`group` indexes `planes`) of
/// the tensor whose residue planes are `planes`, in its shape: the plane itself (borrowed) for a
/// group of one modulus.
fn lift_to_group<'a>(planes: &'a [ArrayD<u32>], group: Range<usize>, moduli: &[u32]) -> CowArray<'a, u32, IxDyn> {
    if group.len() == 1 {
        return CowArray::from(planes[group.start].view());
    }
    let flats: Vec<&[u32]> = planes[group.clone()].iter().map(flat).collect();
    CowArray::from(plane(planes[group.start].shape(), kernels::gemm_crt::lift_to_group(&flats, &moduli[group])))
}

/// (a^-1) mod m for coprime a, m, by the extended Euclidean algorithm.
pub(crate) fn inverse_mod(a: u64, m: u64) -> u64 {
    let (mut r0, mut r1) = (m as i128, (a % m) as i128);
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert_eq!(r0, 1, "moduli are pairwise coprime");
    t0.rem_euclid(m as i128) as u64
}

/// Precomputed constants for CRT reconstruction.
///
/// With M_i = M / m_i and t_i = M_i^-1 mod m_i, the element x in [0, M) with residues r_i is
/// x = sum r_i t_i M_i - k M where k = floor(sum r_i t_i / m_i). The sum is taken in wrapping
/// `u128` arithmetic (M < 2^127) and k is estimated in f64; the estimate is off by at most one
/// (its error is below 2^-20, and only matters when x is within that fraction of 0 or M), which a
/// final comparison detects and corrects, so the result is exact.
struct Reconstruction {
    /// t_i * M_i mod M.
    coefficients: Vec<u128>,
    /// t_i / m_i.
    weights: Vec<f64>,
    modulus: u128,
}

impl Reconstruction {
    fn new(moduli: &[u64]) -> Self {
        let modulus: u128 = moduli.iter().map(|&m| u128::from(m)).product();
        let (mut coefficients, mut weights) = (Vec::new(), Vec::new());
        for &m in moduli {
            let rest = modulus / u128::from(m);
            let t = inverse_mod((rest % u128::from(m)) as u64, m);
            // t < m and rest = M / m, so t * rest < M.
            coefficients.push(rest * u128::from(t));
            weights.push(t as f64 / m as f64);
        }
        Reconstruction { coefficients, weights, modulus }
    }

    /// The value in [0, M) with residues `residue(i)` for i over the moduli.
    #[inline(always)]
    fn reconstruct(&self, residue: impl Fn(usize) -> u32) -> u128 {
        let mut sum = 0u128;
        let mut k = 0f64;
        for (i, (&c, &w)) in self.coefficients.iter().zip(&self.weights).enumerate() {
            let r = residue(i);
            sum = sum.wrapping_add(c.wrapping_mul(u128::from(r)));
            k += f64::from(r) * w;
        }
        // 0 <= k < the number of moduli: through `u64`, the conversion is one instruction
        // (f64 to u128 is a library call).
        let x = sum.wrapping_sub(u128::from(k as u64).wrapping_mul(self.modulus));
        if x >= self.modulus {
            // k was one too large (x wrapped below zero) or one too small.
            if x > u128::MAX / 2 {
                x.wrapping_add(self.modulus)
            } else {
                x - self.modulus
            }
        } else {
            x
        }
    }

    /// Canonical values of `n` elements of `planes`, reconstructed in parallel chunks.
    fn all<T: Send + Default + Clone>(&self, planes: &[&[u32]], n: usize, finish: impl Fn(u128) -> T + Sync) -> Vec<T> {
        let mut out = vec![T::default(); n];
        let jobs: Vec<(usize, &mut [T])> = out.chunks_mut(CHUNK / 4).enumerate().collect();
        run_jobs(jobs, n * planes.len(), |(c, slots)| {
            let start = c * (CHUNK / 4);
            for (i, slot) in slots.iter_mut().enumerate() {
                *slot = finish(self.reconstruct(|p| planes[p][start + i]));
            }
        });
        out
    }
}

/// Bits per limb of [`limb_reduce`].
const LIMB_BITS: u32 = 24;
/// Limbs per value: four unsigned limbs and a signed top one (bits 96 and up).
const LIMBS: usize = 5;
/// [`limb_reduce`] takes values in [-2^`LIMBS_MAX_BITS`, 2^`LIMBS_MAX_BITS`): the top limb v >> 96 is
/// then in [-2^23, 2^23).
const LIMBS_MAX_BITS: u32 = 119;

/// Residues of signed values through limbs, written to plane i (v mod m_i) or, with
/// `accumulate`, added to it (mod m_i); false (and nothing written) if some value is outside
/// [-2^[`LIMBS_MAX_BITS`], 2^[`LIMBS_MAX_BITS`]).
///
/// Each value is split into [`LIMBS`] limbs of [`LIMB_BITS`] bits, v = sum l_j 2^(24j) with
/// l_0..l_3 in [0, 2^24) and l_4 = v >> 96 signed, each limb an `f64` plane, so that residues
/// come from loops that vectorise instead of one 128-bit reduction per value and modulus.
///
/// Exactness: modulo m < 2^21, sum l_j (2^(24j) mod m) is at most 4·2^24·2^21 + 2^23·2^21 < 2^48
/// in absolute value, so it is exact in f64, and [`kernels::gemm_crt::reduce`] (exact below
/// 2^53) finishes with one quotient estimate.
fn limb_reduce(values: &[i128], planes: &mut [&mut [u32]], moduli: &[Modulus], accumulate: bool) -> bool {
    // v is in range exactly when v >> 119 is 0 or -1. A non-short-circuiting fold, so the check
    // vectorises (a scan that stops at the first failure runs value by value).
    let out_of_range = values
        .iter()
        .fold(false, |bad, &v| bad | (((v >> 64) as i64 >> (LIMBS_MAX_BITS - 64)).wrapping_add(1) as u64 > 1));
    if out_of_range {
        return false;
    }
    // A `VectorKernel`, not a closure passed to `vectorised`: such a closure is not reliably
    // inlined into its copies here, which would leave `floor` and `mul_add` as library calls.
    run_vectorised(LimbReduce { values, planes, moduli, accumulate });
    true
}

/// [`limb_kernel`]'s arguments, run by [`run_vectorised`].
struct LimbReduce<'a, 'p> {
    values: &'a [i128],
    planes: &'a mut [&'p mut [u32]],
    moduli: &'a [Modulus],
    accumulate: bool,
}

impl VectorKernel for LimbReduce<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        limb_kernel(self.values, self.planes, self.moduli, self.accumulate);
    }
}

/// Values per block of [`limb_kernel`]: the block's limbs (20 KiB of `f64`) stay in L1 while
/// every modulus reads them.
const LIMB_BLOCK: usize = 512;

/// The work of [`limb_reduce`] for in-range values, inlined into its copies for each [`Simd`]
/// level ([`run_vectorised`]): block by block, one pass per limb, then one pass per modulus over the block's limbs.
#[inline(always)]
fn limb_kernel(values: &[i128], planes: &mut [&mut [u32]], moduli: &[Modulus], accumulate: bool) {
    let weights = limb_weights(moduli);
    let mut limbs = [[0.0; LIMB_BLOCK]; LIMBS];
    for (b, block) in values.chunks(LIMB_BLOCK).enumerate() {
        let (start, n) = (b * LIMB_BLOCK, block.len());
        let [l0, l1, l2, l3, l4] = &mut limbs;
        fill_limb::<0>(block, l0);
        fill_limb::<1>(block, l1);
        fill_limb::<2>(block, l2);
        fill_limb::<3>(block, l3);
        fill_limb::<4>(block, l4);
        let limbs = limbs.each_ref().map(|l| &l[..n]);
        for ((plane, &m), &w) in planes.iter_mut().zip(moduli).zip(&weights) {
            limb_residues(limbs, w, m, &mut plane[start..start + n], accumulate);
        }
    }
}

/// 2^(24j) mod m for each limb j (see [`limb_reduce`]) and each of `moduli`, as f64s.
fn limb_weights(moduli: &[Modulus]) -> Vec<[f64; LIMBS]> {
    moduli
        .iter()
        .map(|m| std::array::from_fn(|j| ((1u128 << (LIMB_BITS * j as u32)) % u128::from(m.m)) as f64))
        .collect()
}

/// Limb `J` (see [`limb_reduce`]) of every value, into `out`, as exact f64s, converted by bit
/// operations ([`kernels::gemm_crt::to_f64`]) so that the loop vectorises.
#[inline(always)]
fn fill_limb<const J: usize>(values: &[i128], out: &mut [f64]) {
    use kernels::gemm_crt::to_f64 as small;
    const MASK: u64 = (1 << LIMB_BITS) - 1;
    // The top limb v >> 96 is in [-2^23, 2^23): shifted by 2^23 to be nonnegative, and back.
    const OFFSET: i64 = 1 << 23;
    for (o, &v) in out.iter_mut().zip(values) {
        let (lo, hi) = (v as u64, (v >> 64) as i64);
        *o = match J {
            0 => small(lo & MASK),
            1 => small((lo >> 24) & MASK),
            2 => small(((lo >> 48) | ((hi as u64) << 16)) & MASK),
            3 => small(((hi as u64) >> 8) & MASK),
            _ => small(((hi >> 32) + OFFSET) as u64) - OFFSET as f64,
        };
    }
}

/// Elements per job of the loops that visit every plane per element (one `i128` each in a
/// job-local buffer: 128 KiB).
const RUN: usize = CHUNK / 8;

/// Residue of value `i` of `limbs` modulo m (as f64 with its inverse), see [`limb_reduce`].
#[inline(always)]
fn limb_residue(limbs: [&[f64]; LIMBS], weights: &[f64; LIMBS], i: usize, m: f64, inv: f64) -> u32 {
    let [l0, l1, l2, l3, l4] = limbs;
    let x = l4[i].mul_add(weights[4], l3[i].mul_add(weights[3], l2[i] * weights[2]));
    let x = l1[i].mul_add(weights[1], l0[i].mul_add(weights[0], x));
    // The residue is below m < 2^21.
    kernels::gemm_crt::to_u64(kernels::gemm_crt::reduce(x, m, inv)) as u32
}

/// v mod m for every value whose limbs are `limbs`, written to `out` or, with `accumulate`,
/// added (mod m) to it.
#[inline(always)]
fn limb_residues(limbs: [&[f64]; LIMBS], weights: [f64; LIMBS], m: Modulus, out: &mut [u32], accumulate: bool) {
    let (mf, inv) = (f64::from(m.m), m.inv);
    // Slices of one length, indexed: the bounds checks go and the loops vectorise (a zip of six
    // iterators does not).
    let n = out.len().min(limbs[0].len());
    let [l0, l1, l2, l3, l4] = limbs.map(|l| &l[..n]);
    let out = &mut out[..n];
    let (x, weights) = ([l0, l1, l2, l3, l4], &weights);
    if accumulate {
        for (i, o) in out.iter_mut().enumerate() {
            *o = m.add(*o, limb_residue(x, weights, i, mf, inv));
        }
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o = limb_residue(x, weights, i, mf, inv);
        }
    }
}

/// Writes (or, with `accumulate`, adds) `values` modulo each modulus into its plane: by
/// [`Modulus::reduce_i64`] when every value fits an `i64` (and nothing is added), else through
/// [`limb_reduce`] when every value is in its range, else value by value.
fn reduce_values(values: &[i128], planes: &mut [&mut [u32]], moduli: &[Modulus], accumulate: bool) {
    // A non-short-circuiting fold, which vectorises.
    if !accumulate && values.iter().fold(true, |fits, &x| fits & (x as i64 as i128 == x)) {
        // Faster than limbs for values that fit an `i64`.
        let words: Vec<i64> = values.iter().map(|&x| x as i64).collect();
        for (p, &m) in planes.iter_mut().zip(moduli) {
            vectorised(|| p.iter_mut().zip(&words).for_each(|(o, &w)| *o = m.reduce_i64(w)));
        }
        return;
    }
    if limb_reduce(values, planes, moduli, accumulate) {
        return;
    }
    for (p, &m) in planes.iter_mut().zip(moduli) {
        let residue = |v: i128| m.reduce_signed(v);
        if accumulate {
            p.iter_mut().zip(values).for_each(|(o, &v)| *o = m.add(*o, residue(v)));
        } else {
            p.iter_mut().zip(values).for_each(|(o, &v)| *o = residue(v));
        }
    }
}

/// The planes split into runs of [`RUN`] elements: entry r holds run r of every plane.
fn runs_mut<'a, T: 'a, P: AsMut<[T]> + 'a>(planes: &'a mut [P]) -> Vec<Vec<&'a mut [T]>> {
    let mut columns: Vec<_> = planes.iter_mut().map(|p| p.as_mut().chunks_mut(RUN)).collect();
    let runs = columns.first().map_or(0, |c| c.len());
    (0..runs).map(|_| columns.iter_mut().map(|c| c.next().expect("planes have equal lengths")).collect()).collect()
}

/// A plane's flat residues, in standard order.
fn flat(plane: &ArrayD<u32>) -> &[u32] {
    plane.as_slice().expect("CRT planes are kept in standard layout")
}

/// A plane of `shape` over `residues`.
fn plane(shape: &[usize], residues: Vec<u32>) -> ArrayD<u32> {
    ArrayD::from_shape_vec(IxDyn(shape), residues).expect("length is the shape's product")
}

impl<M: CrtModuli> CrtTensor<M> {
    /// The residue planes, one per modulus, each in standard layout with entries in [0, m_i).
    pub fn planes(&self) -> &[ArrayD<u32>] {
        &self.planes
    }

    fn from_planes(planes: Vec<ArrayD<u32>>) -> Self {
        let planes = planes
            .into_iter()
            .map(|p| if p.is_standard_layout() { p } else { p.as_standard_layout().into_owned() })
            .collect();
        CrtTensor { planes, packed: Arc::default(), moduli: PhantomData }
    }

    /// The moduli as `u32` (all are below 2^21).
    fn moduli_u32() -> Vec<u32> {
        M::MODULI.iter().map(|&m| m as u32).collect()
    }

    /// The planes for writing: drops the packed copy, which would no longer match.
    fn planes_mut(&mut self) -> &mut [ArrayD<u32>] {
        self.packed = Arc::default();
        &mut self.planes
    }

    /// This matrix packed for few-row products, when this is at least the second few-row
    /// product that reads it as its right operand (see [`PackedCopy`]).
    fn packed_rows(&self) -> Option<&PackedRows> {
        if self.shape().len() != 2 {
            return None;
        }
        if let Some(rows) = self.packed.rows.get() {
            return rows.as_ref();
        }
        if self.packed.uses.fetch_add(1, Ordering::Relaxed) == 0 {
            return None;
        }
        self.packed
            .rows
            .get_or_init(|| {
                let planes: Vec<_> =
                    self.planes.iter().map(|p| p.view().into_dimensionality::<Ix2>().expect("checked 2-D")).collect();
                PackedRows::new(&planes, &Self::moduli_u32())
            })
            .as_ref()
    }

    /// The tensor of `shape` whose elements are `value(v)` (reduced modulo M) for the
    /// row-major `values`. Each job maps one run of values into a small buffer and reduces it into
    /// every plane (values that fit an `i64` by the cheaper reduction), so no full-size integer
    /// array is built. An error if `values` does not have one value per element of `shape`.
    pub fn from_values<T: Copy + Sync>(
        shape: &[usize],
        values: &[T],
        value: impl Fn(T) -> i128 + Sync,
    ) -> Result<Self> {
        let (n, moduli) = (values.len(), Modulus::all::<M>());
        if n != shape.iter().product::<usize>() {
            return Err(CoreError::InvalidShape {
                op: "from_values",
                shape: shape.to_vec(),
                tensor: vec![n],
                reason: "one value per element of the shape".into(),
            });
        }
        let mut out: Vec<Vec<u32>> = moduli.iter().map(|_| vec![0u32; n]).collect();
        let jobs: Vec<(&[T], Vec<&mut [u32]>)> = values.chunks(RUN).zip(runs_mut(&mut out)).collect();
        run_jobs(jobs, n * moduli.len(), |(v, mut planes)| {
            let v: Vec<i128> = v.iter().map(|&x| value(x)).collect();
            reduce_values(&v, &mut planes, &moduli, false);
        });
        Ok(Self::from_planes(out.into_iter().map(|o| plane(shape, o)).collect()))
    }

    fn flats(&self) -> Vec<&[u32]> {
        self.planes.iter().map(flat).collect()
    }

    /// New planes, plane i filled chunk by chunk by `fill(i, output_range, output_chunk)`, into
    /// uninitialised memory (no zero-fill pass first).
    ///
    /// # Safety
    /// `fill` must write every slot of each chunk it is given.
    unsafe fn build(
        shape: &[usize],
        fill: impl Fn(usize, Range<usize>, &mut [MaybeUninit<u32>]) + Sync + Send,
    ) -> Self {
        let n: usize = shape.iter().product();
        let write = |planes: &mut [&mut [MaybeUninit<u32>]]| {
            let jobs: Vec<(usize, usize, &mut [MaybeUninit<u32>])> = planes
                .iter_mut()
                .enumerate()
                .flat_map(|(i, o)| o.chunks_mut(CHUNK).enumerate().map(move |(c, chunk)| (i, c * CHUNK, chunk)))
                .collect();
            run_jobs(jobs, n * M::MODULI.len(), |(i, start, chunk)| fill(i, start..start + chunk.len(), chunk));
        };
        // SAFETY: the chunks cover every slot of every plane, and the caller's `fill` writes every
        // slot of every chunk.
        unsafe { Self::written_planes(shape, write) }.0
    }

    /// New planes of `shape`, written by `fill` through each plane's uninitialised slots (one
    /// slice per modulus, as many slots as `shape` has elements; no zero-fill pass first), and
    /// what `fill` returns.
    ///
    /// # Safety
    /// `fill` must write every slot of every plane.
    unsafe fn written_planes<R>(shape: &[usize], fill: impl FnOnce(&mut [&mut [MaybeUninit<u32>]]) -> R) -> (Self, R) {
        let n: usize = shape.iter().product();
        let mut out: Vec<Vec<u32>> = M::MODULI.iter().map(|_| Vec::with_capacity(n)).collect();
        let mut slots: Vec<&mut [MaybeUninit<u32>]> =
            out.iter_mut().map(|p| &mut p.spare_capacity_mut()[..n]).collect();
        let result = fill(&mut slots);
        for o in &mut out {
            // SAFETY: the caller's `fill` wrote slots 0..n of every plane.
            unsafe { o.set_len(n) };
        }
        (Self::from_planes(out.into_iter().map(|o| plane(shape, o)).collect()), result)
    }

    /// Elementwise `f(modulus, x, y)` of two tensors of equal shape.
    fn binary(
        &self,
        op: &'static str,
        other: &Self,
        f: impl Fn(Modulus, u32, u32) -> u32 + Sync + Send + Copy,
    ) -> Result<Self> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        let (a, b, moduli) = (self.flats(), other.flats(), Modulus::all::<M>());
        // SAFETY: a and b have the chunk's length (equal shapes), so zip_into writes every slot.
        Ok(unsafe {
            Self::build(self.shape(), |i, range, out| {
                let (a, b, m) = (&a[i][range.clone()], &b[i][range], moduli[i]);
                vectorised_wide(|| zip_into(out, a, b, |x, y| f(m, x, y)));
            })
        })
    }

    /// Elementwise `f(modulus, x, c_i)` with one constant per plane.
    fn unary(&self, constants: &[u32], f: impl Fn(Modulus, u32, u32) -> u32 + Sync + Send + Copy) -> Self {
        let (a, moduli) = (self.flats(), Modulus::all::<M>());
        // SAFETY: a has the chunk's length, so map_into writes every slot.
        unsafe {
            Self::build(self.shape(), |i, range, out| {
                let (a, m, c) = (&a[i][range], moduli[i], constants[i]);
                vectorised_wide(|| map_into(out, a, |x| f(m, x, c)));
            })
        }
    }

    /// In place: x = `f(modulus, x, y)`.
    fn binary_assign(
        &mut self,
        op: &'static str,
        other: &Self,
        f: impl Fn(Modulus, u32, u32) -> u32 + Sync + Send + Copy,
    ) -> Result<()> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        let b = other.flats();
        self.update_chunks(|i, m, start, a| {
            let b = &b[i][start..start + a.len()];
            vectorised_wide(|| zip_assign(a, b, |x, y| f(m, x, y)));
        });
        Ok(())
    }

    /// Runs `update(plane, modulus, start, residues)` on every chunk of every plane, in place:
    /// `residues` are the plane's entries `start..start + residues.len()`.
    fn update_chunks(&mut self, update: impl Fn(usize, Modulus, usize, &mut [u32]) + Sync + Send) {
        let (moduli, n) = (Modulus::all::<M>(), self.len());
        let jobs: Vec<(usize, usize, &mut [u32])> = self
            .planes_mut()
            .iter_mut()
            .enumerate()
            .flat_map(|(i, p)| {
                let a = p.as_slice_mut().expect("CRT planes are kept in standard layout");
                a.chunks_mut(CHUNK).enumerate().map(move |(c, chunk)| (i, c * CHUNK, chunk))
            })
            .collect();
        run_jobs(jobs, n * M::MODULI.len(), |(i, start, a)| update(i, moduli[i], start, a));
    }

    fn try_map_planes(&self, f: impl Fn(&ArrayD<u32>) -> Result<ArrayD<u32>>) -> Result<Self> {
        Ok(Self::from_planes(self.planes.iter().map(f).collect::<Result<_>>()?))
    }

    /// [`Self::try_map_planes`] for maps that depend on each plane's modulus.
    fn try_map_planes_mod(&self, f: impl Fn(&ArrayD<u32>, Modulus) -> Result<ArrayD<u32>>) -> Result<Self> {
        Ok(Self::from_planes(self.planes.iter().zip(Modulus::all::<M>()).map(|(p, m)| f(p, m)).collect::<Result<_>>()?))
    }

    /// Residues of every plane of a matrix product, computed in GEMM groups (pairs of small
    /// moduli share one integer GEMM).
    fn gemm_planes(
        a: &[ndarray::ArrayView2<'_, u32>],
        b: &[ndarray::ArrayView2<'_, u32>],
    ) -> Vec<ndarray::Array2<u32>> {
        kernels::gemm_crt::gemm_mod_planes(a, b, &Self::moduli_u32())
    }

    fn matrices(&self, other: &Self) -> Result<()> {
        let (a, b) = (self.shape(), other.shape());
        if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
            return Err(CoreError::ShapeMismatch { op: "matmul", left: a.to_vec(), right: b.to_vec() });
        }
        Ok(())
    }
}

/// out[i] = f(a[i], b[i]).
#[inline(always)]
fn zip_into(out: &mut [MaybeUninit<u32>], a: &[u32], b: &[u32], f: impl Fn(u32, u32) -> u32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}

/// out[i] = f(a[i]).
#[inline(always)]
fn map_into(out: &mut [MaybeUninit<u32>], a: &[u32], f: impl Fn(u32) -> u32) {
    for (o, &x) in out.iter_mut().zip(a) {
        o.write(f(x));
    }
}

/// a[i] = f(a[i], b[i]).
#[inline(always)]
fn zip_assign(a: &mut [u32], b: &[u32], f: impl Fn(u32, u32) -> u32) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = f(*x, y);
    }
}

impl<M: CrtModuli> RingTensor for CrtTensor<M> {
    const RING: &'static str = M::NAME;
    const BYTES_PER_ELEMENT: usize = M::MODULI.len() * M::RESIDUE_BYTES;

    fn shape(&self) -> &[usize] {
        self.planes[0].shape()
    }
    fn zeros(shape: &[usize]) -> Self {
        Self::from_planes(M::MODULI.iter().map(|_| ArrayD::zeros(IxDyn(shape))).collect())
    }
    fn from_signed(values: ArrayViewD<'_, i128>) -> Self {
        let values = values.as_standard_layout();
        let shape = values.shape().to_vec();
        Self::from_values(&shape, values.as_slice().expect("standard layout"), |v| v)
            .expect("a standard-layout array has one value per element of its shape")
    }
    fn from_i64s(shape: &[usize], values: Vec<i64>) -> Result<Self> {
        Self::from_values(shape, &values, i128::from)
    }
    fn to_signed(&self) -> ArrayD<i128> {
        let rec = Reconstruction::new(M::MODULI);
        let (modulus, half) = (rec.modulus, rec.modulus / 2);
        let signed =
            rec.all(&self.flats(), self.len(), |x| if x > half { x as i128 - modulus as i128 } else { x as i128 });
        ArrayD::from_shape_vec(IxDyn(self.shape()), signed).expect("one value per element")
    }
    fn to_biguint(&self) -> Vec<BigUint> {
        Reconstruction::new(M::MODULI).all(&self.flats(), self.len(), BigUint::from)
    }
    fn random(key: &PrgKey, stream: u64, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        let planes = M::MODULI
            .iter()
            .enumerate()
            .map(|(i, &m)| plane(shape, prg::residues(key, stream, i as u64, m as u32, n)))
            .collect();
        Self::from_planes(planes)
    }

    fn add(&self, other: &Self) -> Result<Self> {
        self.binary("add", other, |m, x, y| m.add(x, y))
    }
    fn sub(&self, other: &Self) -> Result<Self> {
        self.binary("sub", other, |m, x, y| m.sub(x, y))
    }
    fn mul(&self, other: &Self) -> Result<Self> {
        self.binary("mul", other, |m, x, y| m.mul(x, y))
    }
    fn neg(&self) -> Self {
        self.unary(&vec![0; M::MODULI.len()], |m, x, _| m.sub(0, x))
    }
    fn add_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("add", other, |m, x, y| m.add(x, y))
    }
    fn sub_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("sub", other, |m, x, y| m.sub(x, y))
    }
    fn sub_from_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("sub_from", other, |m, x, y| m.sub(y, x))
    }
    fn mul_add_assign(&mut self, a: &Self, b: &Self) -> Result<()> {
        layout::check_same_shape("mul_add", self.shape(), a.shape())?;
        layout::check_same_shape("mul_add", self.shape(), b.shape())?;
        let (a, b) = (a.flats(), b.flats());
        self.update_chunks(|i, m, start, acc| {
            let (a, b) = (&a[i][start..start + acc.len()], &b[i][start..start + acc.len()]);
            vectorised_wide(|| {
                for ((z, &x), &y) in acc.iter_mut().zip(a).zip(b) {
                    *z = m.add(*z, m.mul(x, y));
                }
            });
        });
        Ok(())
    }
    fn add_scaled_assign(&mut self, other: &Self, c: i128) -> Result<()> {
        layout::check_same_shape("add_scaled", self.shape(), other.shape())?;
        let constants: Vec<u32> = Modulus::all::<M>().iter().map(|m| m.reduce_signed(c)).collect();
        let b = other.flats();
        self.update_chunks(|i, m, start, a| {
            let (b, c) = (&b[i][start..start + a.len()], constants[i]);
            vectorised_wide(|| zip_assign(a, b, |x, y| m.add(x, m.mul(y, c))));
        });
        Ok(())
    }
    fn mul_add_pair_assign(&mut self, (a1, b1): (&Self, &Self), (a2, b2): (&Self, &Self)) -> Result<()> {
        for t in [a1, b1, a2, b2] {
            layout::check_same_shape("mul_add_pair", self.shape(), t.shape())?;
        }
        let [x1, y1, x2, y2] = [a1, b1, a2, b2].map(|t| t.flats());
        self.update_chunks(|i, m, start, acc| {
            let at = start..start + acc.len();
            let terms = x1[i][at.clone()].iter().zip(&y1[i][at.clone()]).zip(x2[i][at.clone()].iter().zip(&y2[i][at]));
            vectorised_wide(|| {
                for (z, ((&x1, &y1), (&x2, &y2))) in acc.iter_mut().zip(terms) {
                    *z = m.add(*z, m.add(m.mul(x1, y1), m.mul(x2, y2)));
                }
            });
        });
        Ok(())
    }
    fn add_broadcast_assign(&mut self, other: &Self) -> Result<()> {
        let (moduli, runs) = (Modulus::all::<M>(), layout::broadcast_runs(other.shape(), self.shape()));
        let shape = self.shape().to_vec();
        for ((plane, other), m) in self.planes.iter_mut().zip(&other.planes).zip(moduli) {
            if let (Some((_, _, inner)), Some(out), Some(values)) = (runs, plane.as_slice_mut(), other.as_slice()) {
                crate::parallel::zip_assign_runs(out, values, inner, |x, y| m.add(x, y));
                continue;
            }
            crate::parallel::zip_assign(plane.view_mut(), layout::broadcast_view(other, &shape)?, |x, y| m.add(x, y));
        }
        Ok(())
    }
    fn add_scalar(&self, c: i128) -> Self {
        let constants: Vec<u32> = Modulus::all::<M>().iter().map(|m| m.reduce_signed(c)).collect();
        self.unary(&constants, |m, x, c| m.add(x, c))
    }
    fn add_scalar_assign(&mut self, c: i128) {
        let constants: Vec<u32> = Modulus::all::<M>().iter().map(|m| m.reduce_signed(c)).collect();
        self.update_chunks(|i, m, _, a| {
            let c = constants[i];
            vectorised_wide(|| a.iter_mut().for_each(|x| *x = m.add(*x, c)));
        });
    }
    fn mul_scalar(&self, c: i128) -> Self {
        let constants: Vec<u32> = Modulus::all::<M>().iter().map(|m| m.reduce_signed(c)).collect();
        self.unary(&constants, |m, x, c| m.mul(x, c))
    }

    fn matmul(&self, other: &Self) -> Result<Self> {
        self.matrices(other)?;
        fn views<M: CrtModuli>(t: &CrtTensor<M>) -> Vec<ndarray::ArrayView2<'_, u32>> {
            t.planes.iter().map(|p| p.view().into_dimensionality::<Ix2>().expect("checked 2-D")).collect()
        }
        let packed = if self.shape()[0] <= kernels::gemm_crt::SMALL_M { other.packed_rows() } else { None };
        let planes = match packed {
            Some(b) => kernels::gemm_crt::few_rows_packed(&views(self), b),
            None => Self::gemm_planes(&views(self), &views(other)),
        };
        Ok(Self::from_planes(planes.into_iter().map(|p| p.into_dyn()).collect()))
    }

    fn conv2d(&self, filters: &Self, params: Conv2dParams) -> Result<Self> {
        let g = ConvGeometry::new(self.shape(), filters.shape(), params)?;
        let mut out = Self::zeros(&[g.batch, g.filters, g.output.0, g.output.1]);
        out.conv2d_add_assign(self, filters, params)?;
        Ok(out)
    }

    /// Runs im2col and the residue GEMMs on `CONV_CHUNK_ROWS`-row chunks of images; each
    /// chunk's product is added straight into `self`: neither the patch matrix of the whole batch
    /// (C·KH·KW residues per output position and plane) nor a temporary convolution is built.
    /// Per GEMM group of one or two moduli (see [`kernels::gemm_crt::gemm_groups`]), the input and
    /// the filters are first lifted to residues modulo the group's product P (below 2^21, so a
    /// `u32`), and the convolution runs once modulo P: one patch matrix and one GEMM per group
    /// rather than per modulus, with the patches read straight by the GEMM. Each output is then
    /// reduced modulo the group's moduli as it is added in.
    fn conv2d_add_assign(&mut self, x: &Self, filters: &Self, params: Conv2dParams) -> Result<()> {
        let g = ConvGeometry::new(x.shape(), filters.shape(), params)?;
        layout::check_same_shape("conv2d_add", self.shape(), &[g.batch, g.filters, g.output.0, g.output.1])?;
        let positions = g.output.0 * g.output.1;
        let images_per_chunk = (CONV_CHUNK_ROWS / positions.max(1)).max(1);
        let (out_image, moduli, moduli_u32) = (g.filters * positions, Modulus::all::<M>(), Self::moduli_u32());
        // The products modulo P of one chunk of images in NCHW order, reused by every chunk.
        let mut nchw = vec![0u32; images_per_chunk.min(g.batch) * out_image];
        for group in kernels::gemm_crt::gemm_groups(&moduli_u32) {
            let p = moduli_u32[group.clone()].iter().product::<u32>();
            let lifted_x = lift_to_group(&x.planes, group.clone(), &moduli_u32);
            // The filters are small: an owned copy for the reshape.
            let lifted_w = lift_to_group(&filters.planes, group.clone(), &moduli_u32).into_owned();
            let weights = layout::reshape(&lifted_w, &[g.filters, g.patch_cols()])?
                .into_dimensionality::<Ix2>()
                .expect("two axes");
            for first in (0..g.batch).step_by(images_per_chunk) {
                let images = first..(first + images_per_chunk).min(g.batch);
                let chunk = ConvGeometry { batch: images.len(), ..g };
                let patches = kernels::im2col::im2col(lifted_x.slice_axis(Axis(0), images.clone().into()), &chunk);
                let product = kernels::gemm_crt::gemm_mod(patches.view(), weights.t(), p);
                // Every entry of the chunk's part of `nchw` is overwritten, then reduced into
                // each plane of the group in one vectorised pass.
                let nchw = &mut nchw[..images.len() * out_image];
                kernels::im2col::combine_patches_into_nchw(product.view(), &chunk, nchw, |_, v| v);
                for i in group.clone() {
                    let m = moduli[i];
                    let out = self.planes_mut()[i].as_slice_mut().expect("CRT planes are kept in standard layout");
                    let out = &mut out[images.start * out_image..images.end * out_image];
                    vectorised(|| zip_assign(out, nchw, |a, v| m.add(a, m.reduce_small(v))));
                }
            }
        }
        Ok(())
    }

    fn sum_axis(&self, axis: usize) -> Result<Self> {
        self.try_map_planes_mod(|p, m| layout::sum_axis(p, axis, |a, b| m.add(a, b)))
    }
    fn window_sum(&self, window: (usize, usize)) -> Result<Self> {
        self.try_map_planes_mod(|p, m| layout::window_sum(p, window, |a, b| m.add(a, b)))
    }
    fn reshape(&self, shape: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::reshape(p, shape))
    }
    fn into_reshaped(self, shape: &[usize]) -> Result<Self> {
        let planes = self.planes.into_iter().map(|p| layout::into_reshaped(p, shape)).collect::<Result<_>>()?;
        Ok(Self::from_planes(planes))
    }
    fn permute(&self, axes: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::permute(p, axes))
    }
    fn slice_axis(&self, axis: usize, range: Range<usize>) -> Result<Self> {
        self.try_map_planes(|p| layout::slice_axis(p, axis, range.clone()))
    }
    fn concat(axis: usize, parts: &[&Self]) -> Result<Self> {
        let planes = (0..M::MODULI.len())
            .map(|i| {
                let arrays: Vec<&ArrayD<u32>> = parts.iter().map(|p| &p.planes[i]).collect();
                layout::concat(axis, &arrays)
            })
            .collect::<Result<_>>()?;
        Ok(Self::from_planes(planes))
    }
    fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::broadcast_to(p, shape))
    }

    fn write_bytes(&self, out: &mut Vec<u8>) {
        let width = M::RESIDUE_BYTES;
        let (n, start) = (self.len(), out.len());
        let len = n * Self::BYTES_PER_ELEMENT;
        out.reserve(len);
        let flats = self.flats();
        // Written straight into the spare capacity: no zero-fill first.
        let jobs: Vec<(usize, usize, &mut [MaybeUninit<u8>])> = out.spare_capacity_mut()[..len]
            .chunks_mut(n.max(1) * width)
            .enumerate()
            .flat_map(|(i, dst)| dst.chunks_mut(CHUNK * width).enumerate().map(move |(c, d)| (i, c * CHUNK, d)))
            .collect();
        run_jobs(jobs, n * M::MODULI.len(), |(i, first, dst)| {
            let src = &flats[i][first..first + dst.len() / width];
            vectorised(|| encode_residues::<M>(src, dst));
        });
        // SAFETY: the jobs cover the `len` spare bytes, one plane's n residues of `width` bytes
        // after the other, and `encode_residues` writes every byte of its chunk.
        unsafe { out.set_len(start + len) };
    }
    /// Decodes and adds chunk by chunk (a chunk-sized buffer per job, no decoded tensor).
    fn add_from_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let (n, width) = (self.len(), M::RESIDUE_BYTES);
        let expected = n * Self::BYTES_PER_ELEMENT;
        if bytes.len() != expected {
            return Err(CoreError::BadEncoding {
                ring: M::NAME,
                shape: self.shape().to_vec(),
                expected,
                got: bytes.len(),
            });
        }
        let unreduced = std::sync::atomic::AtomicBool::new(false);
        self.update_chunks(|i, m, start, acc| {
            let src = &bytes[(i * n + start) * width..(i * n + start + acc.len()) * width];
            if !vectorised(|| decode_add_residues::<M>(src, acc, m)) {
                unreduced.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        if unreduced.into_inner() {
            return Err(unreduced_residue::<M>(bytes, n));
        }
        Ok(())
    }
    fn from_bytes(shape: &[usize], bytes: &[u8]) -> Result<Self> {
        let n: usize = shape.iter().product();
        let expected = n * Self::BYTES_PER_ELEMENT;
        if bytes.len() != expected {
            return Err(CoreError::BadEncoding { ring: M::NAME, shape: shape.to_vec(), expected, got: bytes.len() });
        }
        let width = M::RESIDUE_BYTES;
        let moduli = Modulus::all::<M>();
        let unreduced = std::sync::atomic::AtomicBool::new(false);
        // SAFETY: src holds the chunk's length of residues (the length was checked above), so
        // decode_residues writes every slot.
        let decoded = unsafe {
            Self::build(shape, |i, range, out| {
                let src = &bytes[(i * n + range.start) * width..(i * n + range.end) * width];
                let m = moduli[i].m;
                if !vectorised(|| decode_residues::<M>(src, out, m)) {
                    unreduced.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        if unreduced.into_inner() {
            return Err(unreduced_residue::<M>(bytes, n));
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The packed copy is built on the second few-row product that reads a tensor as its right
    /// operand (not for many rows), for both moduli sets, and dropped by an in-place change.
    #[test]
    fn packed_copy_is_built_on_reuse_and_dropped_on_change() {
        fn check<M: CrtModuli>() {
            let key = PrgKey::from_seed(3);
            let (x, mut w) = (CrtTensor::<M>::random(&key, 0, &[2, 70]), CrtTensor::random(&key, 1, &[70, 9]));
            let built = |w: &CrtTensor<M>| w.packed.rows.get().is_some_and(Option::is_some);
            let first = x.matmul(&w).unwrap();
            assert!(!built(&w), "one use builds nothing");
            assert_eq!(x.matmul(&w).unwrap(), first);
            assert!(built(&w), "the second use builds the copy");
            assert_eq!(x.matmul(&w).unwrap(), first, "the packed copy gives the same product");
            let delta = w.clone();
            w.add_assign(&delta).unwrap();
            assert!(!built(&w), "an in-place change drops it");
            let tall = CrtTensor::<M>::random(&key, 2, &[kernels::gemm_crt::SMALL_M + 1, 70]);
            let fresh = CrtTensor::<M>::random(&key, 3, &[70, 9]);
            for _ in 0..3 {
                tall.matmul(&fresh).unwrap();
            }
            assert!(!built(&fresh), "products with many rows use the u32 planes");
        }
        check::<TfeModuli>();
        check::<WideModuli>();
    }

    fn floor_log2(m: &BigUint) -> u32 {
        (m.bits() - 1) as u32
    }

    #[test]
    fn moduli_sets_are_pairwise_coprime_and_sized_as_declared() {
        fn check<M: CrtModuli>() {
            for (i, &a) in M::MODULI.iter().enumerate() {
                assert!(a < 1 << 21);
                for &b in &M::MODULI[i + 1..] {
                    assert_eq!(num_integer_gcd(a, b), 1, "{a} and {b} share a factor");
                }
                assert!(a < 1 << (8 * M::RESIDUE_BYTES));
            }
            assert_eq!(floor_log2(&Crt::<M>::modulus()), M::MODULUS_BITS);
            assert!(Crt::<M>::modulus() < BigUint::from(1u8) << 127);
        }
        fn num_integer_gcd(mut a: u64, mut b: u64) -> u64 {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        }
        check::<TfeModuli>();
        check::<WideModuli>();
    }

    fn any_modulus() -> impl Strategy<Value = u64> {
        prop_oneof![
            prop::sample::select(TfeModuli::MODULI.to_vec()),
            prop::sample::select(WideModuli::MODULI.to_vec()),
            2u64..(1 << 21),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn modular_kernels_match_plain_arithmetic((m, x, y) in any_modulus().prop_flat_map(|m| (Just(m), 0..m, 0..m))) {
            let r = Modulus::new(m);
            let (x32, y32) = (x as u32, y as u32);
            prop_assert_eq!(u64::from(r.add(x32, y32)), (x + y) % m);
            prop_assert_eq!(u64::from(r.sub(x32, y32)), (x + m - y) % m);
            prop_assert_eq!(u64::from(r.mul(x32, y32)), x * y % m);
            prop_assert_eq!(u64::from(r.sub(0, x32)), (m - x) % m);
        }

        #[test]
        fn signed_reduction_matches_rem_euclid(
            m in any_modulus(),
            v in any::<i128>(),
            near in -(1i128 << 107)..(1i128 << 107),
            w in any::<i64>(),
            z in 0u32..(1 << 31),
        ) {
            let r = Modulus::new(m);
            prop_assert_eq!(i128::from(r.reduce_signed(v)), v.rem_euclid(i128::from(m)));
            // Values around 2^106 take either path of reduce_signed.
            prop_assert_eq!(i128::from(r.reduce_signed(near)), near.rem_euclid(i128::from(m)));
            prop_assert_eq!(u64::from(r.reduce_small(z)), u64::from(z) % m);
            prop_assert_eq!(i128::from(r.reduce_i64(w)), i128::from(w).rem_euclid(i128::from(m)));
            prop_assert_eq!(u64::from(r.reduce_u64(w as u64)), (w as u64) % m);
        }
    }

    /// v mod m through [`limb_reduce`] (written, and added to a residue `base`), for `values` in their
    /// range, against `rem_euclid`; `None` when some value is out of range.
    fn limb_reductions(values: &[i128], m: u64, base: u32) -> Option<()> {
        let r = Modulus::new(m);
        let base = base % m as u32;
        let (mut written, mut added) = (vec![0u32; values.len()], vec![base; values.len()]);
        if !limb_reduce(values, &mut [&mut written], &[r], false) {
            return None;
        }
        assert!(limb_reduce(values, &mut [&mut added], &[r], true));
        for ((&v, &w), &a) in values.iter().zip(&written).zip(&added) {
            let expected = v.rem_euclid(i128::from(m));
            assert_eq!(i128::from(w), expected, "{v} mod {m}");
            assert_eq!(i128::from(a), (expected + i128::from(base)) % i128::from(m), "{base} + {v} mod {m}");
        }
        Some(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Limb reduction is exact for every value in [-2^119, 2^119) (every length up to past
        /// two blocks, so the vector loop, its remainder and a short last block run) and refuses
        /// values outside.
        #[test]
        fn limb_reduction_matches_rem_euclid(
            m in any_modulus(),
            bits in 1u32..=LIMBS_MAX_BITS,
            words in prop::collection::vec(any::<i128>(), 0..2 * LIMB_BLOCK + 40),
            base in any::<u32>(),
        ) {
            let values: Vec<i128> = words.iter().map(|&w| w >> (128 - bits)).collect();
            prop_assert!(limb_reductions(&values, m, base).is_some());
            let mut out_of_range = values;
            out_of_range.push(1 << LIMBS_MAX_BITS);
            prop_assert!(limb_reductions(&out_of_range, m, base).is_none());
        }
    }

    #[test]
    fn limb_reduction_at_the_extremes() {
        let edge = (1i128 << LIMBS_MAX_BITS) - 1;
        let values =
            [0, 1, -1, edge, -edge, 1 << 106, -(1 << 106), i64::MAX as i128, i64::MIN as i128, 1 << 96, -(1 << 96)];
        for m in [2u64, 3, 1039, 1433, 2097143, (1 << 21) - 1] {
            assert!(limb_reductions(&values, m, u32::MAX).is_some());
        }
        assert!(limb_reductions(&[-(1i128 << LIMBS_MAX_BITS)], 1433, 7).is_some());
        assert!(limb_reductions(&[-(1i128 << LIMBS_MAX_BITS) - 1], 1433, 7).is_none());
    }

    #[test]
    fn reductions_at_the_extremes() {
        for m in [2u64, 3, 1039, 1433, 2097143, (1 << 21) - 1] {
            let r = Modulus::new(m);
            let edges = [1i128 << 106, (1 << 106) - 1, -(1 << 106), -(1 << 106) + 1, -(1 << 106) - 1];
            for v in [0i128, 1, -1, i128::MAX, i128::MIN, i64::MAX as i128, i64::MIN as i128, m as i128, -(m as i128)]
                .into_iter()
                .chain(edges)
            {
                assert_eq!(i128::from(r.reduce_signed(v)), v.rem_euclid(m as i128), "{v} mod {m}");
            }
            assert_eq!(u64::from(r.reduce_u64(u64::MAX)), u64::MAX % m);
            assert_eq!(u64::from(r.mul(m as u32 - 1, m as u32 - 1)), 1 % m);
        }
    }

    /// The element with canonical value `x`, built residue by residue with big integers.
    fn element<M: CrtModuli>(x: &BigUint) -> Vec<u32> {
        M::MODULI.iter().map(|&m| (x % m).iter_u32_digits().next().unwrap_or(0)).collect()
    }

    fn reconstruction_is_exact_near_zero_half_and_m<M: CrtModuli>() {
        let modulus = Crt::<M>::modulus();
        let rec = Reconstruction::new(M::MODULI);
        let one = BigUint::from(1u8);
        let half = &modulus / 2u8;
        let values = [
            BigUint::default(),
            one.clone(),
            BigUint::from(2u8),
            &modulus - &one,
            &modulus - 2u8,
            half.clone(),
            &half + &one,
            &half - &one,
            BigUint::from(u128::MAX) % &modulus,
        ];
        for x in &values {
            let r = element::<M>(x);
            assert_eq!(BigUint::from(rec.reconstruct(|i| r[i])), *x);
        }
        // Signed representatives: (M-1)/2 stays positive, (M+1)/2 is the most negative.
        let planes: Vec<ArrayD<u32>> = (0..M::MODULI.len())
            .map(|i| {
                ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.iter().map(|x| element::<M>(x)[i]).collect())
                    .unwrap()
            })
            .collect();
        let t = CrtTensor::<M>::from_planes(planes);
        let signed = t.to_signed();
        let m = i128::try_from(modulus.clone()).unwrap();
        assert_eq!(signed[[3]], -1);
        assert_eq!(signed[[5]], (m - 1) / 2);
        assert_eq!(signed[[6]], -(m - 1) / 2);
        assert_eq!(CrtTensor::<M>::from_signed(signed.view()), t);
        assert_eq!(t.to_biguint(), values.to_vec());
    }

    #[test]
    fn reconstruction_extremes() {
        reconstruction_is_exact_near_zero_half_and_m::<TfeModuli>();
        reconstruction_is_exact_near_zero_half_and_m::<WideModuli>();
    }

    /// Big tensors take the parallel, chunked paths: compare them with per-element scalar code.
    fn large_tensors_match_scalar_reference<M: CrtModuli>() {
        let key = PrgKey::from_seed(21);
        let n = 3 * CHUNK + 11;
        let (a, b) = (CrtTensor::<M>::random(&key, 0, &[n]), CrtTensor::<M>::random(&key, 1, &[n]));
        let (sum, diff, prod, neg) = (a.add(&b).unwrap(), a.sub(&b).unwrap(), a.mul(&b).unwrap(), a.neg());
        let scaled = a.mul_scalar(-123_456_789_012);
        let mut inplace = a.clone();
        inplace.sub_assign(&b).unwrap();
        let mut from = b.clone();
        from.sub_from_assign(&a).unwrap();
        assert_eq!(from, diff);
        let mut fused = sum.clone();
        fused.mul_add_assign(&a, &b).unwrap();
        assert_eq!(fused, sum.add(&prod).unwrap());
        let mut decoded = sum.clone();
        decoded.add_from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(decoded, sum.add(&b).unwrap());
        for (i, &m) in M::MODULI.iter().enumerate() {
            let c = (-123_456_789_012i128).rem_euclid(i128::from(m)) as u64;
            for j in (0..n).step_by(97).chain([n - 1]) {
                let (x, y) = (u64::from(a.planes[i][[j]]), u64::from(b.planes[i][[j]]));
                assert!(x < m && y < m);
                assert_eq!(u64::from(sum.planes[i][[j]]), (x + y) % m);
                assert_eq!(u64::from(diff.planes[i][[j]]), (x + m - y) % m);
                assert_eq!(u64::from(inplace.planes[i][[j]]), (x + m - y) % m);
                assert_eq!(u64::from(prod.planes[i][[j]]), x * y % m);
                assert_eq!(u64::from(neg.planes[i][[j]]), (m - x) % m);
                assert_eq!(u64::from(scaled.planes[i][[j]]), x * c % m);
            }
        }
        let signed = a.to_signed();
        assert_eq!(CrtTensor::<M>::from_signed(signed.view()), a);
        let big = a.to_biguint();
        let m = Crt::<M>::modulus();
        for j in (0..n).step_by(1009) {
            let s = signed[[j]];
            let expected = if s < 0 { &m - BigUint::from(s.unsigned_abs()) } else { BigUint::from(s as u128) };
            assert_eq!(big[j], expected);
        }
        let bytes = a.to_bytes();
        assert_eq!(CrtTensor::<M>::from_bytes(&[n], &bytes).unwrap(), a);
        // One unreduced residue, in the last plane, is found and rejected.
        let mut bad = bytes.clone();
        let last = M::MODULI[M::MODULI.len() - 1];
        let at = bad.len() - 5 * M::RESIDUE_BYTES;
        bad[at..at + M::RESIDUE_BYTES].copy_from_slice(&last.to_le_bytes()[..M::RESIDUE_BYTES]);
        let err = CrtTensor::<M>::from_bytes(&[n], &bad).unwrap_err().to_string();
        assert!(err.contains(&format!("residue {last} is not reduced modulo {last}")), "{err}");
        let err = a.clone().add_from_bytes(&bad).unwrap_err().to_string();
        assert!(err.contains(&format!("residue {last} is not reduced modulo {last}")), "{err}");
    }

    #[test]
    fn large_tensors() {
        large_tensors_match_scalar_reference::<TfeModuli>();
        large_tensors_match_scalar_reference::<WideModuli>();
    }

    /// A batch of `n` images convolved in one call (several chunks of [`CONV_CHUNK_ROWS`] rows
    /// when n is large) equals the images convolved one by one (a single chunk each, checked
    /// against a big-integer reference by the ring-law tests), and accumulating adds it.
    fn chunked_convolution_equals_image_by_image<M: CrtModuli>(seed: u64, n: usize, params: Conv2dParams) {
        let key = PrgKey::from_seed(seed);
        let x = CrtTensor::<M>::random(&key, 0, &[n, 2, 28, 28]);
        let w = CrtTensor::<M>::random(&key, 1, &[3, 2, 5, 5]);
        let y = x.conv2d(&w, params).unwrap();
        let images: Vec<_> = (0..n).map(|i| x.slice_axis(0, i..i + 1).unwrap().conv2d(&w, params).unwrap()).collect();
        assert_eq!(y, CrtTensor::concat(0, &images.iter().collect::<Vec<_>>()).unwrap());
        let mut acc = y.mul_scalar(3);
        acc.pooled_conv2d_add_assign(&x, &w, params, (1, 1)).unwrap();
        assert_eq!(acc, y.mul_scalar(4));
        assert!(acc.pooled_conv2d_add_assign(&x.slice_axis(0, 0..1).unwrap(), &w, params, (1, 1)).is_err());
        // Window sums chunk by chunk equal the window sums of the whole convolution.
        let window = (2, if y.shape()[3] % 3 == 0 { 3 } else { 1 });
        let mut pooled = CrtTensor::<M>::zeros(y.window_sum(window).unwrap().shape());
        pooled.pooled_conv2d_add_assign(&x, &w, params, window).unwrap();
        assert_eq!(pooled, y.window_sum(window).unwrap());
        assert!(pooled.pooled_conv2d_add_assign(&x, &w, params, (5, 5)).is_err());
    }

    #[test]
    fn chunked_convolution() {
        let padded = Conv2dParams { stride: (2, 2), padding: (2, 2) };
        // 576 output positions per image: 28 images per chunk, so 61 images are three chunks.
        chunked_convolution_equals_image_by_image::<TfeModuli>(1, 61, Conv2dParams::VALID);
        chunked_convolution_equals_image_by_image::<WideModuli>(2, 30, Conv2dParams::VALID);
        chunked_convolution_equals_image_by_image::<TfeModuli>(3, 3, padded);
    }

    fn random_pair<M: CrtModuli>(seed: u64, len: usize) -> (CrtTensor<M>, CrtTensor<M>) {
        let key = PrgKey::from_seed(seed);
        (CrtTensor::random(&key, 0, &[len]), CrtTensor::random(&key, 1, &[len]))
    }

    /// `add_shifted` of `c` into `z` equals z + ((c + add) mod M) >> shift + offset computed on
    /// canonical integers, `shifted` equals ((c + add) mod M) >> shift + offset, and both refuse
    /// add = M.
    fn check_add_shifted<M: CrtModuli>(c: &CrtTensor<M>, z: &CrtTensor<M>, add: u128, shift: u32, offset: i128) {
        let modulus = u128::try_from(Crt::<M>::modulus()).unwrap();
        let mut fused = z.clone();
        fused.add_shifted(c, add, shift, offset).unwrap();
        assert!(fused.clone().add_shifted(c, modulus, shift, offset).is_err());
        let shifted: Vec<i128> = c
            .to_biguint()
            .iter()
            .map(|x| (((u128::try_from(x).unwrap() + add) % modulus) >> shift) as i128 + offset)
            .collect();
        let shifted =
            CrtTensor::<M>::from_signed(ndarray::ArrayD::from_shape_vec(IxDyn(&[c.len()]), shifted).unwrap().view());
        assert_eq!(&fused, &z.add(&shifted).unwrap(), "add {add}, shift {shift}, offset {offset}");
        // The same values as a new tensor (written without zeros where the fast path applies).
        let fresh = CrtTensor::shifted(c, add, shift, offset).unwrap();
        assert_eq!(fresh, shifted, "new tensor: add {add}, shift {shift}, offset {offset}");
        assert!(CrtTensor::shifted(c, modulus, shift, offset).is_err());
    }

    /// Values of c where the low-bits path cannot trust its f64 estimate (c near 0 or M, c + add
    /// near M) are reconstructed exactly: they match the formula like any other, among
    /// ordinary values, at the truncation's own add and shift and at others, in the kernel's
    /// first block and in a later one.
    #[test]
    fn add_shifted_is_exact_where_the_estimate_is_not_trusted() {
        fn check<M: CrtModuli>() {
            let k = Crt::<M>::PRODUCT_BITS;
            for (add, shift) in [(1u128 << k, 36), (1u128 << k, 0), (3, 52), (0, 17), ((1u128 << 99) + 12345, 50)] {
                let mut edges = vec![0i128, 1, 2, -1, -2, 1 << 80, (1 << 80) + 7, -(1 << 80), 12345, -(add as i128)];
                edges.extend((-3i128..=3).map(|d| d - add as i128));
                let mut values = edges.clone();
                values.extend((0..1100).map(|i| (i * 0x1234_5678_9abc_def1i128) << 30));
                values.extend(edges);
                let c = CrtTensor::<M>::from_signed(
                    ndarray::ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).unwrap().view(),
                );
                let z = CrtTensor::random(&PrgKey::from_seed(3), 0, c.shape());
                check_add_shifted(&c, &z, add, shift, -(1i128 << 40) + 5);
            }
        }
        check::<TfeModuli>();
        check::<WideModuli>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The fused truncation kernel equals its formula computed through full-size signed
        /// integers: z + ((c + add) mod M) >> shift + offset. Shifts up to 52 take the low-bits
        /// path of `shift.rs`, larger ones the exact reconstruction.
        #[test]
        fn add_shifted_matches_the_unfused_formula(
            seed in any::<u64>(),
            len in 1usize..3 * RUN,
            add_bits in 0u32..100,
            shift in 0u32..100,
            offset in -(1i128 << 90)..(1i128 << 90),
        ) {
            let add = (1u128 << add_bits) - 1;
            let (c, z) = random_pair::<TfeModuli>(seed, len);
            check_add_shifted(&c, &z, add, shift, offset);
            let (c, z) = random_pair::<WideModuli>(seed, len);
            check_add_shifted(&c, &z, add, shift, offset);
        }

        /// Building from mapped values equals mapping to signed integers first.
        #[test]
        fn from_values_matches_from_signed(words in prop::collection::vec(any::<u128>(), 0..2 * RUN), bits in 1u32..127) {
            let value = |w: u128| -((w >> (128 - bits)) as i128);
            let signed: Vec<i128> = words.iter().map(|&w| value(w)).collect();
            let signed = ndarray::ArrayD::from_shape_vec(IxDyn(&[words.len()]), signed).unwrap();
            prop_assert_eq!(
                CrtTensor::<TfeModuli>::from_values(&[words.len()], &words, value).unwrap(),
                CrtTensor::<TfeModuli>::from_signed(signed.view())
            );
            prop_assert!(CrtTensor::<TfeModuli>::from_values(&[words.len() + 1], &words, value).is_err());
        }
    }

    #[test]
    fn wire_format_is_plane_major_little_endian() {
        let t = CrtTensor::<WideModuli>::from_signed(ndarray::arr1(&[1i128, -1]).into_dyn().view());
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), 2 * 5 * 3);
        // Plane 0: residues 1 and m0 - 1, three little-endian bytes each.
        let m0 = WideModuli::MODULI[0] as u32 - 1;
        assert_eq!(&bytes[..6], &[1, 0, 0, m0 as u8, (m0 >> 8) as u8, (m0 >> 16) as u8]);
    }

    #[test]
    fn non_standard_planes_are_normalised() {
        let key = PrgKey::from_seed(4);
        let t = CrtTensor::<TfeModuli>::random(&key, 0, &[3, 5]);
        let transposed = t.permute(&[1, 0]).unwrap();
        assert!(transposed.planes().iter().all(|p| p.is_standard_layout()));
        // Same shape and values, column-major memory.
        let planes: Vec<_> = t.planes.iter().map(|p| p.t().as_standard_layout().into_owned().reversed_axes()).collect();
        assert!(planes.iter().all(|p| !p.is_standard_layout()));
        let back = CrtTensor::<TfeModuli>::from_planes(planes);
        assert!(back.planes().iter().all(|p| p.is_standard_layout()));
        assert_eq!(back, t);
        assert_eq!(back.add(&t).unwrap(), t.mul_scalar(2));
    }
}
