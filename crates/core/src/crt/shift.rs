//! The public part of the CRT truncation, `z += ((c + add) mod M) >> s + offset` elementwise
//! ([`CrtTensor::add_shifted`]), without reconstructing each element of c as a 128-bit integer.
//!
//! With y = (c + add) mod M and every modulus odd, floor(y / 2^s) = (y - (y mod 2^s)) · 2^-s
//! modulo each m_i, and y mod m_i = (c_i + add) mod m_i: only the low s bits of y need the
//! reconstruction. Those are the low bits of sum c_i C_i - k M + add - w M (the reconstruction
//! of [`Reconstruction`], k its quotient and w = 1 when c + add passes M), which wrapping `u64`
//! arithmetic gives exactly once k and w are known. Both come from the f64 sum of c_i t_i / m_i,
//! whose fraction is c / M: k is its integer part and w = 1 when the fraction plus add / M
//! reaches 1. The f64 sum is off by less than 2^-27 (at most ten terms below 2^21, each rounded
//! once, and as many roundings of a sum below 2^25), so elements whose fraction, or fraction
//! plus add / M, lies within [`MARGIN`] = 2^-20 of an integer (where the estimate could be on
//! the wrong side) are reconstructed exactly instead: about one element in 2^18 of uniform c.
//! The rest is 32-bit modular arithmetic in f64 ([`Modulus`]), in loops that vectorise.
//!
//! Shifts above [`MAX_SHIFT`] (none in pond's fixed-point configurations) and moduli sets with a
//! modulus below [`MIN_MODULUS`] take the exact reconstruction for every element.

use super::{
    flat, run_jobs, run_vectorised, runs_mut, CrtModuli, CrtTensor, Modulus, Reconstruction, VectorKernel, RUN,
};
use crate::error::{CoreError, Result};
use crate::layout;
use crate::ring::RingTensor;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Distance to an integer below which the f64 fraction is not trusted (see the module docs).
const MARGIN: f64 = 1.0 / (1u64 << 20) as f64;
/// 1.5·2^52: adding it to an f64 in [-2^51, 2^51] rounds it to an integer held in the low
/// mantissa bits.
const ROUNDER: f64 = 6_755_399_441_055_744.0;
/// Elements per block of the fast path's kernel: its temporaries (17 bytes an element) stay in
/// L1.
const BLOCK: usize = 1024;
/// The largest shift of the fast path: y mod 2^s is then exact in f64.
const MAX_SHIFT: u32 = 52;
/// The smallest modulus of the fast path, for its quotient estimates' error bound (both of
/// pond's moduli sets are above it).
const MIN_MODULUS: u32 = 1 << 10;

impl<M: CrtModuli> CrtTensor<M> {
    /// In place `self += floor(((c + add) mod M) / 2^shift) + offset`, elementwise, with `c`
    /// taken as its canonical value in [0, M) and `add` < M: the public part of the statistical
    /// truncation, in one pass over `c` that writes straight into every plane of `self` (see the
    /// module docs for the method). An error if the shapes differ, `add` is not below M or
    /// `shift` is not below 128.
    pub fn add_shifted(&mut self, c: &Self, add: u128, shift: u32, offset: i128) -> Result<()> {
        layout::check_same_shape("add_shifted", self.shape(), c.shape())?;
        let (rec, moduli) = (checked_reconstruction::<M>(add, shift)?, Modulus::all::<M>());
        let mut planes: Vec<&mut [u32]> = self
            .planes_mut()
            .iter_mut()
            .map(|p| p.as_slice_mut().expect("CRT planes are kept in standard layout"))
            .collect();
        match fast_path(&rec, &moduli, add, shift, offset) {
            Some(fast) => run_fast(&fast, &rec, c, &mut planes),
            None => {
                let jobs: Vec<(usize, Vec<&mut [u32]>)> =
                    runs_mut(&mut planes).into_iter().enumerate().map(|(r, p)| (r * RUN, p)).collect();
                run_jobs(jobs, c.len() * moduli.len(), |(start, mut out)| {
                    let c: Vec<&[u32]> = c.planes.iter().map(|p| &flat(p)[start..start + out[0].len()]).collect();
                    let shifted: Vec<i128> =
                        (0..c[0].len()).map(|j| (exact_shifted(&rec, &c, j, add) >> shift) as i128 + offset).collect();
                    super::reduce_values(&shifted, &mut out, &moduli, true);
                });
            }
        }
        Ok(())
    }

    /// `floor(((c + add) mod M) / 2^shift) + offset` as a new tensor: [`CrtTensor::add_shifted`]
    /// into zeros, with the same errors, written without a zero-filled tensor first where the
    /// fast path applies.
    pub fn shifted(c: &Self, add: u128, shift: u32, offset: i128) -> Result<Self> {
        let (rec, moduli) = (checked_reconstruction::<M>(add, shift)?, Modulus::all::<M>());
        let Some(fast) = fast_path(&rec, &moduli, add, shift, offset) else {
            let mut z = Self::zeros(c.shape());
            z.add_shifted(c, add, shift, offset)?;
            return Ok(z);
        };
        // SAFETY: the runs of `run_fast` cover every slot of every plane (c's shape), and the
        // kernel writes every slot of its runs.
        Ok(unsafe { Self::written_planes(c.shape(), |slots| run_fast(&fast, &rec, c, slots)) }.0)
    }
}

/// The reconstruction of M's moduli, or an error if `add` is not below M or `shift` not below 128.
fn checked_reconstruction<M: CrtModuli>(add: u128, shift: u32) -> Result<Reconstruction> {
    let rec = Reconstruction::new(M::MODULI);
    if add >= rec.modulus || shift >= 128 {
        return Err(CoreError::InvalidConfig(format!(
            "add_shifted: add {add} must be below M and the shift {shift} below 128"
        )));
    }
    Ok(rec)
}

/// The fast path's constants, if it applies: shifts up to [`MAX_SHIFT`] and moduli from
/// [`MIN_MODULUS`] on.
fn fast_path(rec: &Reconstruction, moduli: &[Modulus], add: u128, shift: u32, offset: i128) -> Option<LowBits> {
    (shift <= MAX_SHIFT && moduli.iter().all(|m| m.m >= MIN_MODULUS))
        .then(|| LowBits::new(rec, moduli, add, shift, offset))
}

/// The fast path over every run of `c` and of the output planes `out` (one per modulus, each of
/// c's length), in parallel when large.
fn run_fast<M: CrtModuli, O: Slot>(fast: &LowBits, rec: &Reconstruction, c: &CrtTensor<M>, out: &mut [&mut [O]]) {
    let c: Vec<&[u32]> = c.planes.iter().map(flat).collect();
    let jobs: Vec<(usize, Vec<&mut [O]>)> = runs_mut(out).into_iter().enumerate().map(|(r, p)| (r * RUN, p)).collect();
    run_jobs(jobs, c.len() * c.first().map_or(0, |p| p.len()), |(start, mut out)| {
        let c: Vec<&[u32]> = c.iter().map(|p| &p[start..start + out[0].len()]).collect();
        fast.run(rec, &c, &mut out);
    });
}

/// An output residue of the fast path's kernel: added to (`u32`, already a residue) or written
/// (`MaybeUninit<u32>`, a new tensor's slot).
/// [`LowBits::run`]'s arguments, run by [`run_vectorised`].
struct ShiftRun<'a, 'c, 'o, O> {
    low_bits: &'a LowBits,
    rec: &'a Reconstruction,
    c: &'a [&'c [u32]],
    out: &'a mut [&'o mut [O]],
}

impl<O: Slot> VectorKernel for ShiftRun<'_, '_, '_, O> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        self.low_bits.kernel(self.rec, self.c, self.out);
    }
}

trait Slot: Send {
    /// Puts the residue `v` modulo `m` into the slot.
    fn put(&mut self, m: Modulus, v: u32);
}

impl Slot for u32 {
    #[inline(always)]
    fn put(&mut self, m: Modulus, v: u32) {
        *self = m.add(*self, v);
    }
}

impl Slot for MaybeUninit<u32> {
    #[inline(always)]
    fn put(&mut self, _: Modulus, v: u32) {
        self.write(v);
    }
}

/// (c + add) mod M for element `j` of the planes `c`, by exact reconstruction.
#[inline(always)]
fn exact_shifted(rec: &Reconstruction, c: &[&[u32]], j: usize, add: u128) -> u128 {
    // x + add < 2M < 2^128: no overflow.
    let y = rec.reconstruct(|p| c[p][j]) + add;
    if y >= rec.modulus {
        y - rec.modulus
    } else {
        y
    }
}

/// The constants of the fast path for one (add, shift, offset).
struct LowBits {
    /// t_i / m_i: the f64 weights of the quotient estimate.
    weights: Vec<f64>,
    /// C_i mod 2^64: the reconstruction coefficients' low words.
    coefficients: Vec<u64>,
    /// M mod 2^64.
    modulus: u64,
    /// add.
    add: u128,
    /// add / M in f64.
    add_fraction: f64,
    /// 2^shift - 1.
    mask: u64,
    /// Per modulus: the modulus, add mod m, 2^-shift mod m and offset mod m.
    per_modulus: Vec<(Modulus, u32, u32, u32)>,
}

impl LowBits {
    fn new(rec: &Reconstruction, moduli: &[Modulus], add: u128, shift: u32, offset: i128) -> Self {
        let per_modulus = moduli
            .iter()
            .map(|&m| {
                let big = u128::from(m.m);
                let two_s = ((1u128 << shift) % big) as u64;
                let inverse = super::inverse_mod(two_s, u64::from(m.m)) as u32;
                (m, (add % big) as u32, inverse, m.reduce_signed(offset))
            })
            .collect();
        LowBits {
            weights: rec.weights.clone(),
            coefficients: rec.coefficients.iter().map(|&c| c as u64).collect(),
            modulus: rec.modulus as u64,
            add,
            add_fraction: add as f64 / rec.modulus as f64,
            mask: (1u64 << shift) - 1,
            per_modulus,
        }
    }

    /// The shifted values of the run `c` of c's planes put into `out` (one run of every plane).
    fn run<O: Slot>(&self, rec: &Reconstruction, c: &[&[u32]], out: &mut [&mut [O]]) {
        // A `VectorKernel`, as `limb_reduce`'s is: the kernel is inlined into each copy.
        run_vectorised(ShiftRun { low_bits: self, rec, c, out });
    }

    /// The work of [`LowBits::run`], block by block of [`BLOCK`] elements (whose temporaries stay
    /// in L1).
    #[inline(always)]
    fn kernel<O: Slot>(&self, rec: &Reconstruction, c: &[&[u32]], out: &mut [&mut [O]]) {
        let len = c.first().map_or(0, |p| p.len());
        let mut scratch = ([0.0f64; BLOCK], [0u64; BLOCK], [false; BLOCK]);
        for start in (0..len).step_by(BLOCK) {
            self.block(rec, c, out, start..(start + BLOCK).min(len), &mut scratch);
        }
    }

    /// Elements `range` (at most [`BLOCK`]) of [`LowBits::kernel`]: y mod 2^s for every element
    /// (fast, then exactly where the estimate is not trusted), then one pass per modulus.
    #[inline(always)]
    fn block<O: Slot>(
        &self,
        rec: &Reconstruction,
        c: &[&[u32]],
        out: &mut [&mut [O]],
        range: Range<usize>,
        scratch: &mut ([f64; BLOCK], [u64; BLOCK], [bool; BLOCK]),
    ) {
        let len = range.len();
        let (sum, low, untrusted) = (&mut scratch.0[..len], &mut scratch.1[..len], &mut scratch.2[..len]);
        sum.fill(0.0);
        low.fill(0);
        for ((plane, &w), &coefficient) in c.iter().zip(&self.weights).zip(&self.coefficients) {
            for ((s, l), &r) in sum.iter_mut().zip(low.iter_mut()).zip(&plane[range.clone()]) {
                *s += f64::from(r) * w;
                *l = l.wrapping_add(u64::from(r).wrapping_mul(coefficient));
            }
        }
        for ((s, l), u) in sum.iter().zip(low.iter_mut()).zip(untrusted.iter_mut()) {
            // Round to nearest of s - 1/2 is floor(s) wherever the fraction is trusted; adding
            // 1.5·2^52 rounds to an integer and puts it in the mantissa's low bits, for values
            // from -2^51 on (s - 1/2 >= -1/2 here).
            let rounded = s - 0.5 + ROUNDER;
            let k = rounded.to_bits().wrapping_sub(ROUNDER.to_bits());
            let fraction = s - (rounded - ROUNDER);
            let passed = fraction + self.add_fraction;
            let wraps = u64::from(passed >= 1.0);
            let x = l.wrapping_sub(k.wrapping_mul(self.modulus));
            *l = x.wrapping_add(self.add as u64).wrapping_sub(wraps.wrapping_mul(self.modulus)) & self.mask;
            *u = !(MARGIN..=1.0 - MARGIN).contains(&fraction) | ((passed - 1.0).abs() < MARGIN);
        }
        if untrusted.contains(&true) {
            for (j, l) in low.iter_mut().enumerate().filter(|&(j, _)| untrusted[j]) {
                *l = exact_shifted(rec, c, range.start + j, self.add) as u64 & self.mask;
            }
        }
        // y mod 2^s < 2^52 is exact in f64; `sum` is done with, and takes it.
        let low_bits = sum;
        for (f, &l) in low_bits.iter_mut().zip(low.iter()) {
            *f = l as f64;
        }
        for ((&(m, add, inverse, offset), plane), o) in self.per_modulus.iter().zip(c).zip(out.iter_mut()) {
            let (modulus, add) = (f64::from(m.m), f64::from(add));
            for ((o, &r), &l) in o[range.clone()].iter_mut().zip(&plane[range.clone()]).zip(low_bits.iter()) {
                // v = r + (add mod m) - (y mod 2^s) is y - (y mod 2^s) modulo m, exact in f64
                // (|v| < 2^52). With q the rounded quotient estimate (v·(1/m) is within
                // |v / m|·2^-51 < 2^-8 of v / m for m >= 2^10, so q is within 1/2 + 2^-8), v - q·m
                // is exact in one fused multiply-add and lies in (-m, m); adding 1.5·2^52 leaves
                // it in the low mantissa bits, two's complement as a u32.
                let v = f64::from(r) + add - l;
                let q = (v * m.inv + ROUNDER) - ROUNDER;
                let d = ((-q).mul_add(modulus, v) + ROUNDER).to_bits() as u32;
                let d = d.min(d.wrapping_add(m.m));
                o.put(m, m.add(m.mul(d, inverse), offset));
            }
        }
    }
}
