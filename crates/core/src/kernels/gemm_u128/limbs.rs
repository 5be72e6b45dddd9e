//! Z_2^128 products from pond's fast Z_2^64 and CRT GEMMs, for CPUs without AVX-512 IFMA.
//!
//! With every entry split into 64-bit halves, `a = a_lo + 2^64·a_hi` (and so for `b`),
//!
//! `A·B mod 2^128 = P + 2^64·X` with `P = A_lo·B_lo` (exact, as integers) and
//! `X = A_lo·B_hi + A_hi·B_lo mod 2^64`.
//!
//! - `X` is one Z_2^64 GEMM over the inner dimension doubled: `[A_lo | A_hi] · [B_hi ; B_lo]`.
//! - `P` is below `k·(2^64 - 1)^2`. It is computed modulo `t` primes just below 2^21 whose product
//!   exceeds that bound (`t` = 7 for `k` below 2^18, 8 below 2^39, 9 for any `k` that fits in memory)
//!   by the CRT GEMM, which runs each modulus as an exact f64 GEMM, and rebuilt modulo 2^128 from
//!   its residues by Garner's mixed-radix formula: exact, since the mixed-radix digits give `P`
//!   itself as an integer.
//!
//! The work is `t` exact f64 GEMMs and one Z_2^64 GEMM of twice the depth, all on the blocked
//! AVX-512 kernels, against the scalar kernel's three 64-bit multiplies per multiply-add, one
//! lane at a time. Splitting the operands into halves and residues and rebuilding the output are
//! linear passes (memory-bound: 44 bytes written per operand entry); they cost more than the
//! product itself for `A` with few rows, which stays on the scalar kernel (see [`MIN_ROWS`]).
//!
//! Measured on the 2-core AVX-512 VM without IFMA (session 26): 100 × 784 × 128 took 7.7-9.1 ms
//! against 13.6-16.3 ms for the scalar kernel (`pond bench kernels`, a noisy host), and private
//! inference on Z_2^128 (`pond infer --ring z128 --batch 100`, medians of alternated runs) went
//! from 86.8 to 32.8 ms per batch for net A with the polynomial ReLU, 97 to 41 ms with the exact
//! one, and 340 to 175 ms for net S, with identical outputs.

use crate::crt::{inverse_mod, run_vectorised, VectorKernel};
use crate::kernels::gemm_crt::{gemm_mod_planes, to_f64, to_u64, TWO52};
use crate::kernels::gemm_u64::gemm_u64;
use crate::parallel::PARALLEL_MIN_ELEMENTS;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `A` with fewer rows than this takes the scalar kernel: at one row (a matrix-vector product,
/// 784 × 128) splitting `B` into halves and residues costs twice the scalar product (0.6-0.7
/// against 0.3 ms).
const MIN_ROWS: usize = 8;

/// Whether [`gemm`] is the faster path for `A` with `rows` rows on the running CPU. It was
/// measured only where the Z_2^64 and f64 GEMMs run their AVX-512 kernels (F and DQ); other CPUs
/// keep the scalar kernel.
pub(super) fn preferred(rows: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        rows >= MIN_ROWS && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = rows;
        false
    }
}

/// Primes just below 2^21 (the CRT GEMM's largest moduli), the first `t` of which hold `P`.
const PRIMES: [u32; 9] = [2097143, 2097133, 2097131, 2097097, 2097091, 2097083, 2097047, 2097041, 2097031];

/// Fewest rows per block of the splitting and rebuilding passes (a unit of parallel work).
const ROWS_PER_TASK: usize = 16;
/// Fewest entries per block of those passes.
const BLOCK_ELEMENTS: usize = 2048;
/// Entries of a row split at a time, with their limbs in a stack buffer.
const SEGMENT: usize = 256;

/// How many of [`PRIMES`] it takes for their product to exceed k·(2^64 - 1)^2, the bound on
/// `P`'s entries: log2 of the product of the first t is above 20.99·t, so t primes hold every
/// k < 2^bits with 128 + bits <= 20.99·t. An operand of k `u128` entries fits in memory only
/// for k < 2^59, which nine primes hold.
fn moduli_for(k: usize) -> usize {
    let bits = usize::BITS - k.leading_zeros(); // k < 2^bits
    (7..=PRIMES.len())
        .find(|&t| 128 + bits as usize <= (2099 * t) / 100)
        .expect("k < 2^59 (an operand in memory) fits nine primes (188 bits)")
}

/// Accumulates `A · B` (wrapping) into the zero-initialised `c`, all dimensions non-zero.
pub(super) fn gemm(a: ArrayView2<'_, u128>, b: ArrayView2<'_, u128>, c: ArrayViewMut2<'_, u128>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let moduli = &PRIMES[..moduli_for(k)];
    let left = Split::new(a, moduli, Layout::SideBySide);
    let right = Split::new(b, moduli, Layout::Stacked);
    let left_halves = ArrayView2::from_shape((m, 2 * k), &left.halves).expect("m × 2k halves");
    let right_halves = ArrayView2::from_shape((2 * k, n), &right.halves).expect("2k × n halves");
    let x = gemm_u64(left_halves, right_halves);
    let p = gemm_mod_planes(&planes(&left.residues, m, k), &planes(&right.residues, k, n), moduli);
    rebuild(&p, &x, moduli, c);
}

/// The residue planes as `rows × cols` matrices.
fn planes(residues: &[Vec<u32>], rows: usize, cols: usize) -> Vec<ArrayView2<'_, u32>> {
    residues.iter().map(|r| ArrayView2::from_shape((rows, cols), r).expect("one residue per entry")).collect()
}

/// Where an operand's 64-bit halves go, so that the Z_2^64 product of the left operand's halves
/// and the right one's pairs each low half with a high half.
#[derive(Clone, Copy)]
enum Layout {
    /// The left operand (m × k): row i is [lo | hi] of row i (m × 2k).
    SideBySide,
    /// The right operand (k × n): row p is hi of row p and row k + p its lo (2k × n).
    Stacked,
}

/// One operand's 64-bit halves, laid out by a [`Layout`], and its low halves' residues,
/// `residues[j]` = lo mod `moduli[j]`, row-major like the operand.
struct Split {
    halves: Vec<u64>,
    residues: Vec<Vec<u32>>,
}

impl Split {
    /// Splits `x`, whose halves go where `layout` says.
    fn new(x: ArrayView2<'_, u128>, moduli: &[u32], layout: Layout) -> Split {
        let x = x.as_standard_layout();
        let (rows, cols) = x.dim();
        let flat = x.as_slice().expect("standard layout is contiguous");
        let mut halves: Vec<u64> = Vec::with_capacity(2 * rows * cols);
        let mut residues: Vec<Vec<u32>> = moduli.iter().map(|_| Vec::with_capacity(rows * cols)).collect();
        {
            // Work in blocks of whole rows, each block's destinations taken once.
            let block = block_rows(cols) * cols;
            let spare = &mut halves.spare_capacity_mut()[..2 * rows * cols];
            let block_halves: Vec<BlockHalves<'_>> = match layout {
                Layout::SideBySide => spare.chunks_mut(2 * block).map(BlockHalves::SideBySide).collect(),
                Layout::Stacked => {
                    let (hi, lo) = spare.split_at_mut(rows * cols);
                    lo.chunks_mut(block)
                        .zip(hi.chunks_mut(block))
                        .map(|(lo, hi)| BlockHalves::Stacked { lo, hi })
                        .collect()
                }
            };
            let reducers: Vec<LimbReducer> = moduli.iter().map(|&m| LimbReducer::new(m)).collect();
            let mut plane_blocks: Vec<_> =
                residues.iter_mut().map(|plane| plane.spare_capacity_mut()[..rows * cols].chunks_mut(block)).collect();
            let work: Vec<_> = flat
                .chunks(block)
                .zip(block_halves)
                .map(|(src, halves)| {
                    let planes = plane_blocks
                        .iter_mut()
                        .map(|blocks| blocks.next().expect("a residue block per block"))
                        .collect();
                    SplitBlock { src, cols, halves, planes, reducers: &reducers }
                })
                .collect();
            if rows * cols >= PARALLEL_MIN_ELEMENTS {
                work.into_par_iter().for_each(run_vectorised);
            } else {
                work.into_iter().for_each(run_vectorised);
            }
        }
        // SAFETY: the blocks' kernels wrote every slot of both buffers (each row its `cols` slots
        // of lo and of hi, and of every plane).
        unsafe {
            halves.set_len(2 * rows * cols);
            residues.iter_mut().for_each(|plane| plane.set_len(rows * cols));
        }
        Split { halves, residues }
    }
}

/// Rows per block of the splitting and rebuilding passes: at least [`ROWS_PER_TASK`], and
/// enough for [`BLOCK_ELEMENTS`] entries when rows are short (a convolution's patches).
fn block_rows(cols: usize) -> usize {
    ROWS_PER_TASK.max(BLOCK_ELEMENTS / cols.max(1))
}

/// Slots to be written.
type Slots<'a, T> = &'a mut [MaybeUninit<T>];

/// Where a block of rows puts its halves (see [`Layout`]).
enum BlockHalves<'a> {
    /// Each row's lo then its hi.
    SideBySide(Slots<'a, u64>),
    /// The rows' lo halves in one run, their hi halves in another.
    Stacked { lo: Slots<'a, u64>, hi: Slots<'a, u64> },
}

impl BlockHalves<'_> {
    /// Row `r`'s (lo, hi) slots, `cols` each.
    #[inline(always)]
    fn row(&mut self, r: usize, cols: usize) -> (Slots<'_, u64>, Slots<'_, u64>) {
        match self {
            BlockHalves::SideBySide(both) => both[2 * r * cols..][..2 * cols].split_at_mut(cols),
            BlockHalves::Stacked { lo, hi } => (&mut lo[r * cols..][..cols], &mut hi[r * cols..][..cols]),
        }
    }
}

/// One block of rows of [`Split::new`]: the halves of `src` (whole rows of `cols` entries) into
/// `halves`, and the low halves' residues into `planes` (one per reducer), every slot written.
struct SplitBlock<'a> {
    src: &'a [u128],
    cols: usize,
    halves: BlockHalves<'a>,
    planes: Vec<Slots<'a, u32>>,
    reducers: &'a [LimbReducer],
}

impl VectorKernel for SplitBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn run(mut self) {
        // The low halves' limbs of a segment of a row, one array each, on the stack (so that
        // the loops below run on whole vectors and nothing is allocated per row).
        let mut limbs = [[0f64; SEGMENT]; 3];
        for (r, row) in self.src.chunks_exact(self.cols).enumerate() {
            let (lo, hi) = self.halves.row(r, self.cols);
            for start in (0..self.cols).step_by(SEGMENT) {
                let len = SEGMENT.min(self.cols - start);
                let [l0, l1, l2] = &mut limbs;
                let limbs_out = l0[..len].iter_mut().zip(&mut l1[..len]).zip(&mut l2[..len]);
                for (((l, h), &v), ((x0, x1), x2)) in
                    lo[start..].iter_mut().zip(&mut hi[start..]).zip(&row[start..start + len]).zip(limbs_out)
                {
                    l.write(v as u64);
                    h.write((v >> 64) as u64);
                    [*x0, *x1, *x2] = LimbReducer::limbs(v as u64);
                }
                for (plane, reducer) in self.planes.iter_mut().zip(self.reducers) {
                    let out = &mut plane[r * self.cols + start..][..len];
                    for (o, ((&x0, &x1), &x2)) in out.iter_mut().zip(l0.iter().zip(l1.iter()).zip(l2.iter())) {
                        o.write(reducer.reduce(&[x0, x1, x2]));
                    }
                }
            }
        }
    }
}

/// c = P + 2^64·x (wrapping), with P rebuilt from its residues `p[j]` modulo `moduli[j]`.
///
/// Garner: P = Σ_j v_j·W_j with W_j = m_0···m_{j-1} and digits v_j in [0, m_j), v_0 = p_0 and
/// v_i = (p_i - Σ_{j<i} v_j·W_j)·W_i⁻¹ mod m_i. The digits are computed a row of outputs at a
/// time in f64 (every value below 2^48, so exact), and the sum modulo 2^128 in wrapping `u128`.
fn rebuild(p: &[Array2<u32>], x: &Array2<u64>, moduli: &[u32], mut c: ArrayViewMut2<'_, u128>) {
    let t = moduli.len();
    let garner = Garner::new(moduli);
    let n = x.ncols();
    let rows = block_rows(n);
    let x = x.as_slice().expect("GEMM outputs are in standard layout");
    let block = |(b, mut c_rows): (usize, ArrayViewMut2<'_, u128>)| {
        // One scratch for the block's rows.
        let (mut digits, mut sums) = (vec![0f64; t * n], vec![0f64; n]);
        for (r, c_row) in c_rows.axis_iter_mut(Axis(0)).enumerate() {
            let i = b * rows + r;
            run_vectorised(Digits { p, i, garner: &garner, digits: &mut digits, sums: &mut sums });
            let c_row = c_row.into_slice().expect("c is in standard layout");
            for (l, (out, &hi)) in c_row.iter_mut().zip(&x[i * n..][..n]).enumerate() {
                let digit = |j: usize| u128::from(to_u64(digits[j * n + l]));
                let sum = (0..t).fold(0u128, |s, j| s.wrapping_add(digit(j).wrapping_mul(garner.weights[j])));
                *out = sum.wrapping_add(u128::from(hi) << 64);
            }
        }
    };
    if c.len() >= PARALLEL_MIN_ELEMENTS {
        c.axis_chunks_iter_mut(Axis(0), rows).into_par_iter().enumerate().for_each(block);
    } else {
        c.axis_chunks_iter_mut(Axis(0), rows).enumerate().for_each(block);
    }
}

/// Garner's digits of row `i` of the residue planes `p` into `digits` (t·n values, with
/// `digits[j·n + l]` = v_j of entry l), using `sums` (n values) as scratch.
struct Digits<'a> {
    p: &'a [Array2<u32>],
    i: usize,
    garner: &'a Garner,
    digits: &'a mut [f64],
    sums: &'a mut [f64],
}

impl VectorKernel for Digits<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let n = self.p[0].ncols();
        let (digits, sums) = (self.digits, self.sums);
        let row = |j: usize| &self.p[j].as_slice().expect("GEMM outputs are in standard layout")[self.i * n..][..n];
        for (d, &r) in digits[..n].iter_mut().zip(row(0)) {
            *d = f64::from(r);
        }
        for (step, reducer) in self.garner.reducers.iter().enumerate().skip(1) {
            let (done, rest) = digits.split_at_mut(step * n);
            sums.fill(0.0);
            for (j, &coefficient) in self.garner.coefficients[step].iter().enumerate() {
                for (s, &d) in sums.iter_mut().zip(&done[j * n..(j + 1) * n]) {
                    *s += d * coefficient;
                }
            }
            let inverse = self.garner.inverses[step];
            // p_i + m_i·2^26 - s is positive (s < 9·2^42) and below 2^48.
            let offset = reducer.m * f64::from(1u32 << 26);
            for ((d, &s), &r) in rest[..n].iter_mut().zip(sums.iter()).zip(row(step)) {
                *d = reducer.residue(reducer.residue(f64::from(r) + offset - s) * inverse);
            }
        }
    }
}

/// Residues modulo one of [`PRIMES`] in f64 arithmetic with no `floor` and no fused multiply-add
/// (so the loops that use it vectorise with AVX-512 and stay exact if a closure is not inlined):
/// every value is an integer below 2^50, every product exact.
#[derive(Clone, Copy)]
struct LimbReducer {
    m: f64,
    inv: f64,
    /// 2^22 mod m and 2^44 mod m.
    powers: [f64; 2],
}

impl LimbReducer {
    fn new(m: u32) -> Self {
        let m64 = u64::from(m);
        LimbReducer {
            m: f64::from(m),
            inv: 1.0 / f64::from(m),
            powers: [((1u64 << 22) % m64) as f64, ((1u64 << 44) % m64) as f64],
        }
    }

    /// `x` as three limbs of 22, 22 and 20 bits.
    #[inline(always)]
    fn limbs(x: u64) -> [f64; 3] {
        let mask = (1 << 22) - 1;
        [to_f64(x & mask), to_f64((x >> 22) & mask), to_f64(x >> 44)]
    }

    /// The residue of the `u64` with these limbs: l0 + l1·(2^22 mod m) + l2·(2^44 mod m) < 2^45.
    #[inline(always)]
    fn reduce(&self, limbs: &[f64; 3]) -> u32 {
        let y = limbs[0] + limbs[1] * self.powers[0] + limbs[2] * self.powers[1];
        to_u64(self.residue(y)) as u32
    }

    /// y mod m for an integer 0 <= y < 2^50: the quotient rounded to nearest (by adding 2^52) is
    /// the true quotient or one above it (y·inv is within 2^-2 of y/m), so y - q·m is in [-m, m).
    #[inline(always)]
    fn residue(&self, y: f64) -> f64 {
        let q = (y * self.inv + TWO52) - TWO52;
        let r = y - q * self.m;
        if r < 0.0 {
            r + self.m
        } else {
            r
        }
    }
}

/// Garner's constants for `moduli`: `coefficients[i][j]` = W_j mod m_i (j < i), `inverses[i]` =
/// W_i⁻¹ mod m_i, `weights[j]` = W_j mod 2^128, where W_j = m_0···m_{j-1}, and a reducer per
/// modulus.
struct Garner {
    reducers: Vec<LimbReducer>,
    coefficients: Vec<Vec<f64>>,
    inverses: Vec<f64>,
    weights: Vec<u128>,
}

impl Garner {
    fn new(moduli: &[u32]) -> Self {
        let w_mod = |j: usize, m: u64| moduli[..j].iter().fold(1u64, |w, &q| w * u64::from(q) % m);
        let coefficients =
            moduli.iter().enumerate().map(|(i, &m)| (0..i).map(|j| w_mod(j, u64::from(m)) as f64).collect()).collect();
        let inverses =
            moduli.iter().enumerate().map(|(i, &m)| inverse_mod(w_mod(i, u64::from(m)), u64::from(m)) as f64).collect();
        let weights =
            (0..moduli.len()).map(|j| moduli[..j].iter().fold(1u128, |w, &q| w.wrapping_mul(u128::from(q)))).collect();
        let reducers = moduli.iter().map(|&m| LimbReducer::new(m)).collect();
        Garner { reducers, coefficients, inverses, weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    #[test]
    fn the_chosen_primes_hold_the_exact_low_product() {
        let max_term = BigUint::from(u64::MAX).pow(2);
        for k in [1usize, 784, (1 << 18) - 1, 1 << 18, (1 << 39) - 1, 1 << 39, 1 << 58, (1 << 59) - 1] {
            let t = moduli_for(k);
            let product: BigUint = PRIMES[..t].iter().map(|&p| BigUint::from(p)).product();
            assert!(product > &max_term * k, "k = {k}: {t} primes");
        }
        assert_eq!((moduli_for(784), moduli_for(1 << 18), moduli_for(1 << 39)), (7, 8, 9));
    }

    #[test]
    fn primes_are_distinct_primes_below_2_21() {
        for (i, &p) in PRIMES.iter().enumerate() {
            assert!(p < 1 << 21 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0), "{p}");
            assert!(!PRIMES[..i].contains(&p));
        }
    }
}
