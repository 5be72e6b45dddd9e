//! cp's material for the CRT ring's statistical truncation, built from its random words in one
//! pass ([`CrtTensor::truncation_masks`]).
//!
//! For each word, r is its low `bits` bits, split as r = h·2^f + l with h = r >> f and
//! l = r mod 2^f. The residues of h come from its 24-bit limbs as in [`limb_reduce`]; then, modulo
//! each m, -(r >> f) is m - h and r is (h·(2^f mod m) + l) mod m. With h and 2^f mod m below 2^21
//! and l below 2^[`MAX_FRAC_BITS`] = 2^48, h·(2^f mod m) + l < 2^49 is exact in f64, so one
//! quotient estimate ([`kernels::gemm_crt::reduce`], exact below 2^53) finishes. No 128-bit value
//! is built per element, and r is never reduced on its own.
//!
//! [`limb_reduce`]: super::limb_reduce

use super::{
    fill_limb, limb_residue, limb_weights, run_jobs, run_vectorised, runs_mut, CrtModuli, CrtTensor, Modulus,
    VectorKernel, LIMBS, LIMBS_MAX_BITS, LIMB_BLOCK, RUN,
};
use crate::error::{CoreError, Result};
use crate::kernels::gemm_crt::{reduce, to_f64, to_u64};
use std::mem::MaybeUninit;

/// A residue slot that the kernel writes before anything reads it.
type Slot = MaybeUninit<u32>;

/// The largest truncation shift f: r mod 2^f is then exact in f64 with room for h·(2^f mod m).
pub(crate) const MAX_FRAC_BITS: u32 = 48;

impl<M: CrtModuli> CrtTensor<M> {
    /// The truncation's two dealt values from cp's random `words`, one per element of `shape`:
    /// with r = w mod 2^`bits`, the tensors r and -(r >> `f`) modulo M (see the module docs).
    ///
    /// An error if `words` does not have one word per element of `shape`, if `bits` is above
    /// 119 (the limbs' range), or if `f` is above `bits` or [`MAX_FRAC_BITS`].
    pub fn truncation_masks(shape: &[usize], words: &[u128], bits: u32, f: u32) -> Result<(Self, Self)> {
        let n = words.len();
        if n != shape.iter().product::<usize>() {
            return Err(CoreError::InvalidShape {
                op: "truncation_masks",
                shape: shape.to_vec(),
                tensor: vec![n],
                reason: "one random word per element of the shape".into(),
            });
        }
        if bits > LIMBS_MAX_BITS || f > bits.min(MAX_FRAC_BITS) {
            return Err(CoreError::InvalidConfig(format!(
                "truncation masks of {bits} bits shifted by {f}: at most {LIMBS_MAX_BITS} bits and a shift of at \
                 most {MAX_FRAC_BITS} bits and the mask's width"
            )));
        }
        let moduli = Modulus::all::<M>();
        let write = |r: &mut [&mut [Slot]], neg_hi: &mut [&mut [Slot]]| {
            let jobs: Vec<_> = words.chunks(RUN).zip(runs_mut(r)).zip(runs_mut(neg_hi)).collect();
            run_jobs(jobs, 2 * n * moduli.len(), |((words, mut r), mut neg_hi)| {
                masks_run(words, bits, f, &moduli, &mut r, &mut neg_hi);
            });
        };
        // SAFETY: the runs cover every slot of both tensors' planes (one word per element), and
        // `masks_kernel` writes every slot of the runs it is given.
        let (r, (neg_hi, ())) =
            unsafe { Self::written_planes(shape, |r| Self::written_planes(shape, |neg_hi| write(r, neg_hi))) };
        Ok((r, neg_hi))
    }
}

/// [`masks_kernel`] compiled for the widest vector instructions the CPU has, as a
/// [`VectorKernel`] (as [`super::limb_reduce`] is), so that `floor` and `mul_add` are inlined.
fn masks_run(words: &[u128], bits: u32, f: u32, moduli: &[Modulus], r: &mut [&mut [Slot]], neg_hi: &mut [&mut [Slot]]) {
    run_vectorised(MasksRun { words, bits, f, moduli, r, neg_hi });
}

/// [`masks_kernel`]'s arguments, run by [`run_vectorised`].
struct MasksRun<'a, 'r, 'n> {
    words: &'a [u128],
    bits: u32,
    f: u32,
    moduli: &'a [Modulus],
    r: &'a mut [&'r mut [Slot]],
    neg_hi: &'a mut [&'n mut [Slot]],
}

impl VectorKernel for MasksRun<'_, '_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        masks_kernel(self.words, self.bits, self.f, self.moduli, self.r, self.neg_hi);
    }
}

/// The work of [`CrtTensor::truncation_masks`] on one run of words, block by block: h's limbs
/// and l as f64s, then one pass per modulus over them, writing every slot of `r` and `neg_hi`
/// from `words`' first on. `bits` and `f` are checked by the caller.
#[inline(always)]
fn masks_kernel(
    words: &[u128],
    bits: u32,
    f: u32,
    moduli: &[Modulus],
    r: &mut [&mut [Slot]],
    neg_hi: &mut [&mut [Slot]],
) {
    let weights = limb_weights(moduli);
    let shifted: Vec<f64> = moduli.iter().map(|m| ((1u128 << f) % u128::from(m.m)) as f64).collect();
    let (mask, low_mask) = ((1u128 << bits) - 1, (1u64 << f) - 1);
    let (mut hi, mut low) = ([0i128; LIMB_BLOCK], [0.0f64; LIMB_BLOCK]);
    let mut limbs = [[0.0; LIMB_BLOCK]; LIMBS];
    for (b, block) in words.chunks(LIMB_BLOCK).enumerate() {
        let (start, n) = (b * LIMB_BLOCK, block.len());
        for ((h, l), &w) in hi.iter_mut().zip(low.iter_mut()).zip(block) {
            let r = w & mask;
            *h = (r >> f) as i128;
            *l = to_f64(r as u64 & low_mask);
        }
        let [l0, l1, l2, l3, l4] = &mut limbs;
        fill_limb::<0>(&hi[..n], l0);
        fill_limb::<1>(&hi[..n], l1);
        fill_limb::<2>(&hi[..n], l2);
        fill_limb::<3>(&hi[..n], l3);
        fill_limb::<4>(&hi[..n], l4);
        let limbs = limbs.each_ref().map(|l| &l[..n]);
        let low = &low[..n];
        for (i, &m) in moduli.iter().enumerate() {
            let (mf, inv, weights, shifted) = (f64::from(m.m), m.inv, &weights[i], shifted[i]);
            let (r, neg_hi) = (&mut r[i][start..start + n], &mut neg_hi[i][start..start + n]);
            for (k, (r, neg_hi)) in r.iter_mut().zip(neg_hi.iter_mut()).enumerate() {
                let h = limb_residue(limbs, weights, k, mf, inv);
                neg_hi.write(m.sub(0, h));
                r.write(to_u64(reduce(f64::from(h).mul_add(shifted, low[k]), mf, inv)) as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TfeModuli, WideModuli};
    use proptest::prelude::*;

    /// Both tensors equal the values built one by one from 128-bit integers.
    fn check<M: CrtModuli>(words: &[u128], bits: u32, f: u32) {
        let (r, neg_hi) = CrtTensor::<M>::truncation_masks(&[words.len()], words, bits, f).unwrap();
        let r_of = |w: u128| w & ((1u128 << bits) - 1);
        let expected_r = CrtTensor::<M>::from_values(&[words.len()], words, |w| r_of(w) as i128).unwrap();
        let expected_neg = CrtTensor::<M>::from_values(&[words.len()], words, |w| -((r_of(w) >> f) as i128)).unwrap();
        assert_eq!(r, expected_r, "{}: r, {bits} bits, f = {f}", M::NAME);
        assert_eq!(neg_hi, expected_neg, "{}: -(r >> f), {bits} bits, f = {f}", M::NAME);
    }

    proptest! {
        /// Random words, widths and shifts (up to the limits), over more than one block and run.
        #[test]
        fn masks_match_the_values_built_one_by_one(
            words in prop::collection::vec(any::<u128>(), 0..2 * RUN + 3),
            bits in 1u32..=LIMBS_MAX_BITS,
            f in 0u32..=MAX_FRAC_BITS,
        ) {
            let f = f.min(bits);
            check::<WideModuli>(&words, bits, f);
            check::<TfeModuli>(&words, bits, f);
        }
    }

    /// The extremes: all-ones words (h and l at their maxima) and zero, at pond's widths and at
    /// the limits.
    #[test]
    fn masks_at_the_edges() {
        let words = [u128::MAX, 0, 1, u128::MAX >> 1, 1u128 << 102, (1u128 << 103) - 1];
        for (bits, f) in [(103, 16), (103, 40), (LIMBS_MAX_BITS, MAX_FRAC_BITS), (48, 48), (1, 0), (1, 1)] {
            check::<WideModuli>(&words, bits, f);
            check::<TfeModuli>(&words, bits, f);
        }
    }

    /// A word count that does not fit the shape, a width past the limbs and a shift past either
    /// limit are errors.
    #[test]
    fn bad_arguments_are_errors() {
        let words = [1u128, 2, 3];
        assert!(CrtTensor::<WideModuli>::truncation_masks(&[4], &words, 103, 16).is_err());
        assert!(CrtTensor::<WideModuli>::truncation_masks(&[3], &words, LIMBS_MAX_BITS + 1, 16).is_err());
        assert!(CrtTensor::<WideModuli>::truncation_masks(&[3], &words, 103, MAX_FRAC_BITS + 1).is_err());
        assert!(CrtTensor::<WideModuli>::truncation_masks(&[3], &words, 10, 11).is_err());
    }
}
