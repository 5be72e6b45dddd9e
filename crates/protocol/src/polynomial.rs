//! Polynomial evaluation on shares, and the polynomial approximations of sigmoid and ReLU.
//!
//! A polynomial p is given in t = x / S with S = 2^s (s = `scale_bits`), so that on the stated
//! interval |t| <= 1. It is evaluated on the scaled powers u_i = S·t^i = x^i / S^(i-1), which
//! stay in [-S, S]: u_1 = x needs no scaling step, and u_(a+b) = u_a·u_b / S, so every product
//! is truncated by f + s bits. The powers are computed level by level, u_i = u_a·u_b with both
//! factors of lower levels, so u_i is ready after ceil(log2 i) levels; [`PowerPlan`] picks the
//! splits that compute the fewest powers. Each power is masked
//! once, Pond-style ([`crate::MaskedTensor`]), when a level first needs it as a factor: a level
//! opens the factors it is the first to use (one round, [`Session::mask_many`]), then each of its
//! products is a Beaver multiplication of two masked operands (cp's correction only, no opening,
//! no concatenated copy of the operands), and the level's products are truncated together where
//! truncation takes a round (one truncation; Z128 truncates each locally).
//! So each power is opened once however often it is a factor (the sigmoid's u_2 is a factor of
//! u_3, u_4 and u_9), and cp deals one mask per power instead of two per product. The terms
//! (c_i / S)·u_i
//! take c_i encoded at scale 2^f, which is c_i / S at scale 2^(f+s); their sum, at scale
//! 2^(2f+s), is truncated once by f + s.
//!
//! Why not Horner or dealer-supplied powers: Horner needs deg(p) sequential multiplications
//! (2·deg(p) rounds with truncation), while the power tree needs ceil(log2 deg(p)) levels; dealer
//! powers (open x - r once, expand (c + r)^i) would need shares of r^i at scale 2^(i·f), which
//! leaves the fixed-point range of Z64 from i = 3 on.
//!
//! In the CRT rings the truncation that produces a level's powers also masks them
//! ([`Session::truncate_masked`], at no extra traffic), so a later level opens nothing: only
//! t itself is opened, at the first level. The last level's powers, factors of nothing, take
//! the plain truncation (the masked one costs server1 a pass). The final truncation is masked
//! too: the result carries its masked form ([`crate::PrivateTensor::form`]), so the product
//! that consumes it (the next dense layer's) opens nothing, and a polynomial whose input carries
//! its form does not open t either.
//!
//! Rounds per server: the power tree takes 2 per level + 1 (final truncation) in Z64, levels + 2
//! in CRT (the opening of t, one truncation per level, the final truncation; levels + 1 when t
//! carries its masked form), and 1 per level
//! in Z128, which truncates locally. Z64
//! tensors of at most [`crate::truncation::LIFT_MAX_ELEMENTS`] elements are lifted to Z128 first
//! ([`crate::lift`], one round, exact), the tree runs there, and each server keeps the low 64
//! bits of its result (local): 1 + levels rounds instead of 2·levels + 1 (the sigmoid: 5 instead
//! of 9). The error bound is unchanged: the fractional bits are the same, and Z128's local
//! truncation also errs by at most one ulp (it fails with probability below 2^(k+1-128) for
//! values below 2^k, and k <= 62 here). Bytes per server of the tree: for each level with m
//! products of n elements whose factors include k powers not opened before, k·n·B plus the
//! truncation's m·n·B (Z64, CRT; in CRT k is 0 from the second level on); cp sends m·n·B of
//! product corrections per level plus the
//! truncation's material (Z64, CRT); the final truncation n·B (Z64, CRT). A lifted Z64 tensor has B = 16 (Z128) plus the lift ([`crate::lift::lift_cost`]).
//! The sigmoid (powers 1, 2, 3, 4, 5, 7, 9; six products) opens 5·n elements per server in Z64
//! (n in CRT), where opening both factors of every product would open 12·n.
//!
//! Precision ([`Polynomial::error_bound`]): every truncation error (at most one ulp = 2^-f) hits
//! a scaled power u_i, so it is an error of ulp / S on t^i.

use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::{MaskedTensor, PrivateTensor};
use crate::truncation::ProtocolRing;
use pond_core::{FixedPoint, RingTensor};
use std::collections::BTreeMap;

/// A polynomial approximation in t = x / 2^`scale_bits`, valid on `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Polynomial {
    /// Coefficients of t^0, t^1, ... (in t, not in x).
    pub coeffs: &'static [f64],
    /// s in t = x / 2^s: the interval is [-2^s, 2^s].
    pub scale_bits: u32,
    /// Maximum absolute error against the approximated function on the interval, in real
    /// arithmetic (fixed-point error comes on top).
    pub max_error: f64,
}

/// Sigmoid on [-8, 8]: the degree-9 Chebyshev interpolant (least squares on 4000 Chebyshev
/// nodes) of 1/(1+e^-x) in t = x/8; max error 0.0123 on [-8, 8]. Outside the interval the
/// polynomial diverges: use exact comparisons to clip when inputs can leave it.
pub const SIGMOID: Polynomial = Polynomial {
    coeffs: &[
        0.5,
        0.2295622592 * 8.0,
        0.0,
        -0.01107128432 * 512.0,
        0.0,
        0.0003398609868 * 32768.0,
        0.0,
        -5.052365568e-06 * 2097152.0,
        0.0,
        2.827773385e-08 * 134217728.0,
    ],
    scale_bits: 3,
    max_error: 0.0123,
};

/// ReLU on [-4, 4]: the degree-4 Chebyshev interpolant of max(x, 0) in t = x/4 (the kind of
/// approximation tf-encrypted's Pond uses); max error 0.255 on [-4, 4].
pub const RELU: Polynomial = Polynomial {
    coeffs: &[0.2546480726, 0.5 * 4.0, 0.1909858908 * 16.0, 0.0, -0.005305162724 * 256.0],
    scale_bits: 2,
    max_error: 0.255,
};

impl Polynomial {
    /// p(x) in plain f64 (the reference for tests and the plaintext backend).
    pub fn eval(&self, x: f64) -> f64 {
        let t = x / f64::from(1u32 << self.scale_bits);
        self.coeffs.iter().rev().fold(0.0, |acc, c| acc * t + c)
    }

    /// Bound on |p(x) on shares - p(x) in real arithmetic| for |x| <= 2^s (the interval) with
    /// fixed-point resolution `ulp` = 2^-f, from the evaluation described in the module docs.
    ///
    /// With E_i the absolute error of the scaled power u_i (|u_i| <= S): E_1 = ulp/2 (encoding
    /// x), and u_(a+b) = u_a·u_b / S truncated, so E_(a+b) is at most
    /// (|u_a| E_b + |u_b| E_a + E_a E_b) / S plus one ulp, hence E_a + E_b + E_a E_b / S + ulp.
    /// Term i contributes |c_i| E_i / S plus the rounding of c_i / S at resolution ulp / S times
    /// |u_i| <= S, i.e. ulp / 2; the final truncation adds ulp and encoding the constant c_0 ulp / 2.
    pub fn error_bound(&self, ulp: f64) -> f64 {
        let scale = f64::from(1u32 << self.scale_bits);
        let mut e = BTreeMap::from([(1usize, ulp / 2.0)]);
        let plan = PowerPlan::new(self.coeffs);
        for i in plan.powers().into_iter().filter(|&i| i > 1) {
            let (a, b) = plan.split(i);
            let v = e[&a] + e[&b] + e[&a] * e[&b] / scale + ulp;
            e.insert(i, v);
        }
        let terms: f64 = self
            .coeffs
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, c)| **c != 0.0)
            .map(|(i, c)| c.abs() * e[&i] / scale + ulp / 2.0)
            .sum();
        terms + ulp + ulp / 2.0
    }

    /// Degree.
    pub fn degree(&self) -> usize {
        self.coeffs.len().saturating_sub(1)
    }
}

/// The level at which t^i is computed: ceil(log2 i).
pub fn power_level(i: usize) -> u32 {
    usize::BITS - (i - 1).leading_zeros()
}

/// Up to this degree [`PowerPlan`] searches for the fewest powers (at most 2^(degree - 2)
/// candidate sets of bits, under a microsecond for the sigmoid's 16); above it, it splits each
/// power as a + b with a the largest power of two below it.
const PLAN_SEARCH_MAX_DEGREE: usize = 12;

/// Which scaled powers a polynomial's evaluation computes, and the product giving each.
///
/// Every power t^i with a nonzero coefficient is computed at level ceil(log2 i) (so the rounds
/// are fixed by the degree), as t^a·t^b with a + b = i and both factors of lower levels. Among
/// such plans this one has the fewest powers, so the fewest products (not necessarily the
/// fewest distinct factors, i.e. openings: each split takes the largest a): the sigmoid's powers
/// 1, 3, 5, 7, 9 take 2, 3, 4, 5, 7 and 9 = 7 + 2 (six products), where always splitting off the
/// largest power of two (9 = 8 + 1) would also compute t^8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerPlan {
    /// For every computed power i > 1, its factors (a, b): a + b = i, a >= b.
    splits: BTreeMap<usize, (usize, usize)>,
}

impl PowerPlan {
    /// The plan for the coefficients `coeffs` (of t^0, t^1, ...).
    pub fn new(coeffs: &[f64]) -> Self {
        let targets: Vec<usize> =
            coeffs.iter().enumerate().skip(1).filter(|(_, c)| **c != 0.0).map(|(i, _)| i).collect();
        let degree = targets.last().copied().unwrap_or(1);
        let searched = (degree <= PLAN_SEARCH_MAX_DEGREE).then(|| fewest_powers(&targets, degree)).flatten();
        let powers = searched.unwrap_or_else(|| power_of_two_closure(&targets));
        let splits = powers
            .iter()
            .filter(|&&i| i > 1)
            .map(|&i| (i, best_split(i, |j| powers.contains(&j)).expect("every chosen power has a split")))
            .collect();
        PowerPlan { splits }
    }

    /// Every computed power, t^1 included, in increasing order.
    pub fn powers(&self) -> Vec<usize> {
        std::iter::once(1).chain(self.splits.keys().copied()).collect()
    }

    /// The factors (a, b) of power i > 1 of the plan.
    pub fn split(&self, i: usize) -> (usize, usize) {
        self.splits[&i]
    }

    /// The powers computed at `level` (see [`power_level`]), in increasing order.
    pub fn at_level(&self, level: u32) -> Vec<usize> {
        self.splits.keys().copied().filter(|&i| power_level(i) == level).collect()
    }

    /// The last level (0 when only t^1 is needed).
    pub fn top_level(&self) -> u32 {
        self.splits.keys().map(|&i| power_level(i)).max().unwrap_or(0)
    }

    /// Whether power j is a factor of a product at a level above `level`.
    pub fn needed_after(&self, j: usize, level: u32) -> bool {
        self.splits.iter().any(|(&i, &(a, b))| power_level(i) > level && (a == j || b == j))
    }
}

/// The factors (a, b) of i among the powers `has` accepts, a + b = i, both of lower level; the
/// largest a wins.
fn best_split(i: usize, has: impl Fn(usize) -> bool) -> Option<(usize, usize)> {
    (i.div_ceil(2)..i)
        .rev()
        .map(|a| (a, i - a))
        .find(|&(a, b)| has(a) && has(b) && power_level(a).max(power_level(b)) < power_level(i))
}

/// The smallest set of powers containing 1 and `targets` (degree <= 63) in which every power
/// above 1 has a [`best_split`]: sets of the optional powers 2..=degree are tried by increasing
/// size, as bit masks (bit i for t^i).
fn fewest_powers(targets: &[usize], degree: usize) -> Option<std::collections::BTreeSet<usize>> {
    let base = targets.iter().fold(1u64 << 1, |m, &i| m | 1 << i);
    let optional: Vec<usize> = (2..=degree).filter(|&i| base >> i & 1 == 0).collect();
    let mut choices: Vec<u32> = (0..1u32 << optional.len()).collect();
    choices.sort_by_key(|c| (c.count_ones(), *c));
    let closed = |set: u64| (2..=degree).all(|i| set >> i & 1 == 0 || best_split(i, |j| set >> j & 1 == 1).is_some());
    choices.into_iter().find_map(|c| {
        let set = optional.iter().enumerate().filter(|(k, _)| c >> k & 1 == 1).fold(base, |m, (_, &i)| m | 1 << i);
        closed(set).then(|| (1..=degree).filter(|&i| set >> i & 1 == 1).collect())
    })
}

/// 1, `targets`, and recursively the factors of i = a + b with a the largest power of two below i.
fn power_of_two_closure(targets: &[usize]) -> std::collections::BTreeSet<usize> {
    let mut powers: std::collections::BTreeSet<usize> = std::iter::once(1).chain(targets.iter().copied()).collect();
    let mut stack: Vec<usize> = powers.iter().copied().collect();
    while let Some(i) = stack.pop() {
        if i > 1 {
            let a = 1usize << (usize::BITS - 1 - (i - 1).leading_zeros());
            for j in [a, i - a] {
                if powers.insert(j) {
                    stack.push(j);
                }
            }
        }
    }
    powers
}

/// `acc` + (c_i / S)·u_i, the term of the scaled power u_i (none if c_i = 0), added in `acc`'s
/// buffer: c_i encoded at scale 2^f is c_i / S at scale 2^(f+s), so the term is c_i t^i at scale
/// 2^(2f+s).
fn add_term<R: ProtocolRing>(
    s: &Session,
    acc: Option<PrivateTensor<R>>,
    u: &PrivateTensor<R>,
    p: &Polynomial,
    i: usize,
    fp: FixedPoint<R>,
) -> Result<Option<PrivateTensor<R>>> {
    let c = p.coeffs.get(i).copied().unwrap_or(0.0);
    if c == 0.0 {
        return Ok(acc);
    }
    let c = fp.encode_scalar(c, i)?;
    Ok(Some(match acc {
        None => s.mul_scalar(u, c),
        Some(mut a) => {
            s.add_scaled_assign(&mut a, u, c)?;
            a
        }
    }))
}

/// The factors of a level's products that are not masked yet, in order, each once: the level
/// masks them in one opening, and every later product reuses the masks.
pub fn fresh_factors<T>(splits: &[(usize, usize)], masked: &BTreeMap<usize, T>) -> Vec<usize> {
    let factors: std::collections::BTreeSet<usize> = splits.iter().flat_map(|&(a, b)| [a, b]).collect();
    factors.into_iter().filter(|j| !masked.contains_key(j)).collect()
}

/// Truncates flat tensors of equal length by `shift` in one truncation where the ring's
/// truncation takes a round (concatenated, truncated, split again), each on its own where it is
/// local (Z128: no round to save, so no copies).
fn truncate_together<R: ProtocolRing>(
    s: &mut Session,
    parts: Vec<PrivateTensor<R>>,
    shift: u32,
) -> Result<Vec<PrivateTensor<R>>> {
    if parts.len() == 1 || R::LOCAL_TRUNCATION {
        return parts.iter().map(|p| s.truncate(p, shift)).collect();
    }
    let n = parts.first().map_or(0, |p| p.len());
    let joint = s.truncate(&s.concat(&parts.iter().collect::<Vec<_>>())?, shift)?;
    (0..parts.len()).map(|k| s.slice_axis(&joint, 0, k * n..(k + 1) * n)).collect()
}

/// Whether the truncation of `level`'s powers `at_level` gives them masked: where the ring's
/// truncation masks for free ([`ProtocolRing::MASKED_TRUNCATION`]) and a later level has one of
/// them as a factor (the masked form costs a pass on server1, so the last level skips it).
pub fn masks_in_truncation<R: ProtocolRing>(plan: &PowerPlan, at_level: &[usize], level: u32) -> bool {
    R::MASKED_TRUNCATION && at_level.iter().any(|&i| plan.needed_after(i, level))
}

/// [`truncate_together`] with masked results ([`Session::truncate_masked`]), for rings whose
/// truncation masks for free ([`ProtocolRing::MASKED_TRUNCATION`]): every part is split off
/// the joint result with its mask and opened difference.
fn truncate_together_masked<R: ProtocolRing>(
    s: &mut Session,
    parts: Vec<PrivateTensor<R>>,
    shift: u32,
) -> Result<Vec<MaskedTensor<R>>> {
    if let [part] = &parts[..] {
        return Ok(vec![s.truncate_masked(part, shift)?]);
    }
    let n = parts.first().map_or(0, |p| p.len());
    let joint = s.truncate_masked(&s.concat(&parts.iter().collect::<Vec<_>>())?, shift)?;
    (0..parts.len())
        .map(|k| {
            let range = k * n..(k + 1) * n;
            Ok(MaskedTensor {
                value: s.slice_axis(&joint.value, 0, range.clone())?,
                mask: joint.mask.try_map(|t| t.slice_axis(0, range.clone()))?,
                masked: joint.masked.as_ref().map(|t| t.slice_axis(0, range.clone())).transpose()?,
            })
        })
        .collect()
}

impl Session {
    /// p(x) on shares, as the ring evaluates it ([`ProtocolRing::polynomial`]; see the module
    /// docs for the method, rounds and traffic).
    pub fn polynomial<R: ProtocolRing>(
        &mut self,
        x: &PrivateTensor<R>,
        p: &Polynomial,
        fp: FixedPoint<R>,
    ) -> Result<PrivateTensor<R>> {
        self.polynomial_owned(x.clone(), p, fp)
    }

    /// [`Session::polynomial`] of a tensor the caller no longer needs: x's share and masked
    /// form become the first power's (no copy, unless another copy of the tensor shares the
    /// form).
    pub fn polynomial_owned<R: ProtocolRing>(
        &mut self,
        x: PrivateTensor<R>,
        p: &Polynomial,
        fp: FixedPoint<R>,
    ) -> Result<PrivateTensor<R>> {
        self.op("polynomial", |s| R::polynomial(s, x, p, fp))
    }

    /// p(x) by the power tree in ring `R` itself (the module docs).
    pub fn power_tree<R: ProtocolRing>(
        &mut self,
        x: PrivateTensor<R>,
        p: &Polynomial,
        fp: FixedPoint<R>,
    ) -> Result<PrivateTensor<R>> {
        let s = self;
        let shift = fp.frac_bits() + p.scale_bits;
        let (n, shape) = (x.len(), x.shape().to_vec());
        let plan = PowerPlan::new(p.coeffs);
        // Scaled powers as flat [n] tensors, and those already masked (opened once, reused).
        let mut powers: BTreeMap<usize, PrivateTensor<R>> = BTreeMap::from([(1, s.reshape_owned(x, &[n])?)]);
        let mut masked: BTreeMap<usize, MaskedTensor<R>> = BTreeMap::new();
        let mut acc = add_term(s, None, &powers[&1], p, 1, fp)?;
        for level in 1..=plan.top_level() {
            let at_level = plan.at_level(level);
            let splits: Vec<(usize, usize)> = at_level.iter().map(|&i| plan.split(i)).collect();
            let fresh = fresh_factors(&splits, &masked);
            if !fresh.is_empty() {
                // A power is only a factor once masked: it moves into its masked tensor.
                let values = fresh.iter().map(|j| powers.remove(j).expect("a factor is computed before it is used"));
                let opened = s.mask_many(values.collect())?;
                masked.extend(fresh.into_iter().zip(opened));
            }
            let products = splits.iter().map(|(a, b)| s.mul(&masked[a], &masked[b])).collect::<Result<Vec<_>>>()?;
            // Factors no later level uses go before the truncation (each is three tensors of
            // the input's size: value, mask and opened difference).
            masked.retain(|&j, _| plan.needed_after(j, level));
            if masks_in_truncation::<R>(&plan, &at_level, level) {
                // The truncation masks the new powers: no later level opens them again.
                for (u, &i) in truncate_together_masked(s, products, shift)?.into_iter().zip(&at_level) {
                    acc = add_term(s, acc, &u.value, p, i, fp)?;
                    if plan.needed_after(i, level) {
                        masked.insert(i, u);
                    }
                }
            } else {
                for (u, &i) in truncate_together(s, products, shift)?.into_iter().zip(&at_level) {
                    acc = add_term(s, acc, &u, p, i, fp)?;
                    powers.insert(i, u);
                }
            }
            powers.retain(|&j, _| plan.needed_after(j, level));
        }
        let constant = fp.encode_scalar(p.coeffs.first().copied().unwrap_or(0.0), 0)?;
        let Some(acc) = acc else {
            // No term of degree 1 or more: the plan has no levels, so x is still the first power.
            let x = powers.get(&1).ok_or_else(|| ProtocolError::Usage {
                op: "polynomial",
                reason: "a constant polynomial's input went missing".into(),
            })?;
            return Ok(s.add_scalar(&s.reshape_owned(s.mul_scalar(x, 0), &shape)?, constant));
        };
        // The sum takes x's shape and c_0 (at its scale 2^(2f+s)) before the final truncation:
        // floor((A + c_0·2^shift) / 2^shift) = floor(A / 2^shift) + c_0, so the result is the
        // same, and where the ring's truncation masks for free, its masked form is the result's
        // as it stands (no reshaped or shifted copy of mask and difference), so the product that
        // consumes it (the next layer's) opens nothing.
        let acc = s.add_scalar_owned(s.reshape_owned(acc, &shape)?, constant << shift);
        s.truncate_keeping_form(&acc, shift)
    }

    /// The polynomial sigmoid [`SIGMOID`].
    pub fn sigmoid<R: ProtocolRing>(&mut self, x: &PrivateTensor<R>, fp: FixedPoint<R>) -> Result<PrivateTensor<R>> {
        self.polynomial(x, &SIGMOID, fp)
    }

    /// The polynomial ReLU [`RELU`].
    pub fn relu_poly<R: ProtocolRing>(&mut self, x: &PrivateTensor<R>, fp: FixedPoint<R>) -> Result<PrivateTensor<R>> {
        self.polynomial(x, &RELU, fp)
    }

    /// Concatenation of 1-D private tensors.
    pub fn concat<R: ProtocolRing>(&self, parts: &[&PrivateTensor<R>]) -> Result<PrivateTensor<R>> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let shares: Option<Vec<&R::Tensor>> = parts.iter().map(|p| p.share()).collect();
        let share = match shares {
            Some(sh) if parts.len() == 1 => Some(sh[0].clone()),
            Some(sh) => Some(<R::Tensor as pond_core::RingTensor>::concat(0, &sh)?),
            None => None,
        };
        Ok(PrivateTensor::from_share(&[len], share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_tree() {
        assert_eq!(power_level(2), 1);
        assert_eq!(power_level(4), 2);
        assert_eq!(power_level(5), 3);
        assert_eq!(power_level(9), 4);
        let sigmoid = PowerPlan::new(SIGMOID.coeffs);
        assert_eq!(sigmoid.powers(), vec![1, 2, 3, 4, 5, 7, 9]);
        assert_eq!([2, 3, 4, 5, 7, 9].map(|i| sigmoid.split(i)), [(1, 1), (2, 1), (2, 2), (4, 1), (4, 3), (7, 2)]);
        assert_eq!(sigmoid.top_level(), 4);
        let relu = PowerPlan::new(RELU.coeffs);
        assert_eq!(relu.powers(), vec![1, 2, 4]);
        // Every split is valid: factors computed, of lower level, summing to the power.
        for coeffs in [SIGMOID.coeffs, RELU.coeffs, &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0][..], &[1.0; 20][..]] {
            let plan = PowerPlan::new(coeffs);
            let powers = plan.powers();
            for &i in powers.iter().filter(|&&i| i > 1) {
                let (a, b) = plan.split(i);
                assert!(a + b == i && powers.contains(&a) && powers.contains(&b));
                assert!(power_level(a) < power_level(i) && power_level(b) < power_level(i));
            }
            let targets = coeffs.iter().enumerate().skip(1).filter(|(_, c)| **c != 0.0).map(|(i, _)| i);
            assert!(targets.into_iter().all(|i| powers.contains(&i)));
        }
        // t^6 alone: 2, 3 (= 2 + 1) and 6 = 3 + 3, not 4 and 6 = 4 + 2.
        assert_eq!(PowerPlan::new(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]).powers().len(), 4);
    }

    #[test]
    fn approximations_meet_their_stated_error() {
        for (p, f, lo, hi) in [
            (&SIGMOID, (|x: f64| 1.0 / (1.0 + (-x).exp())) as fn(f64) -> f64, -8.0, 8.0),
            (&RELU, (|x: f64| x.max(0.0)) as fn(f64) -> f64, -4.0, 4.0),
        ] {
            let worst = (0..=20_000)
                .map(|i| lo + (hi - lo) * i as f64 / 20_000.0)
                .map(|x| (p.eval(x) - f(x)).abs())
                .fold(0.0, f64::max);
            assert!(worst <= p.max_error, "max error {worst} above stated {}", p.max_error);
        }
    }
}
