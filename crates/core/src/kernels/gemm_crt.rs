//! Matrix products modulo small moduli (CRT planes) as exact f64 GEMMs.
//!
//! Residues are centred to (-P/2, P/2], so every product is at most P^2/4 in absolute value and a
//! sum of `k` of them stays exact in f64 while k * P^2 / 4 <= 2^53. Longer inner dimensions are
//! split into chunks of that length, each reduced before the chunks are added.
//!
//! Moduli are multiplied in groups: two moduli whose product P is at most 2^21 (tf-encrypted's ten
//! moduli pair up this way) share one GEMM modulo P, whose result is then reduced modulo each of
//! them. Centring (with the CRT combination of a pair), the GEMM's inputs in f64 and the final
//! reduction to `u32` residues are each one fused pass, parallel and vectorised when large.

use crate::crt::{inverse_mod, vectorised};
use crate::parallel::PARALLEL_MIN_ELEMENTS;
use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;
use std::ops::Range;

/// Largest product of a group of moduli that share one GEMM: keeps exact chunks at least 8192 long.
pub const GROUP_MODULUS_MAX: u64 = 1 << 21;

/// Elements per unit of parallel work in the conversion passes.
const CHUNK: usize = 1 << 15;

/// Largest inner dimension whose centred residue dot products are exact in f64 for modulus `m`.
pub fn exact_chunk(m: u64) -> usize {
    let bound = (m / 2 + 1) as u128;
    ((1u128 << 53) / (bound * bound)).min(usize::MAX as u128) as usize
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

/// Below this many elements a conversion pass stays on the calling thread: it takes well under
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
fn reduce(x: f64, m: f64, inv_m: f64) -> f64 {
    let q = (x * inv_m).floor();
    let r = (-q).mul_add(m, x);
    let r = if r < 0.0 { r + m } else { r };
    if r >= m {
        r - m
    } else {
        r
    }
}

/// One group of moduli with its combined modulus P and CRT constant.
#[derive(Clone, Copy)]
struct Group {
    /// The group's moduli (the second is 1 for a single modulus).
    m: [f64; 2],
    /// P = m[0] * m[1].
    p: f64,
    /// m[0]^-1 mod m[1].
    inv01: f64,
}

impl Group {
    fn new(moduli: &[u32]) -> Self {
        assert!(!moduli.is_empty() && moduli.len() <= 2, "GEMM groups have one or two moduli");
        let m0 = u64::from(moduli[0]);
        let m1 = moduli.get(1).map_or(1, |&m| u64::from(m));
        assert!(m0 * m1 < 1 << 26, "GEMM group moduli are below 2^26");
        let inv01 = if m1 == 1 { 0 } else { inverse_mod(m0, m1) };
        Group { m: [m0 as f64, m1 as f64], p: (m0 * m1) as f64, inv01: inv01 as f64 }
    }

    /// The residue modulo P of (r0 mod m0, r1 mod m1), centred to (-P/2, P/2].
    #[inline(always)]
    fn centred(self, r0: u32, r1: u32) -> f64 {
        let r0 = f64::from(r0 as i32);
        // Garner: x = r0 + m0 * ((r1 - r0) * m0^-1 mod m1), all products below 2^43.
        let t = (f64::from(r1 as i32) - r0) * self.inv01;
        let x = reduce(t, self.m[1], 1.0 / self.m[1]).mul_add(self.m[0], r0);
        if x > (self.p / 2.0).floor() {
            x - self.p
        } else {
            x
        }
    }
}

/// The group's residues of a matrix, centred, as one f64 matrix in the same memory order.
fn centred(planes: &[ArrayView2<'_, u32>], group: Group) -> Array2<f64> {
    let dim = planes[0].dim();
    if let Some(flats) = planes.iter().map(|p| p.as_slice()).collect::<Option<Vec<_>>>() {
        return Array2::from_shape_vec(dim, centred_flat(&flats, group)).expect("one value per element");
    }
    let transposed: Vec<_> = planes.iter().map(|p| p.t()).collect();
    if let Some(flats) = transposed.iter().map(|p| p.as_slice()).collect::<Option<Vec<_>>>() {
        let t = Array2::from_shape_vec((dim.1, dim.0), centred_flat(&flats, group)).expect("one value per element");
        return t.reversed_axes();
    }
    let standard: Vec<_> = planes.iter().map(|p| p.as_standard_layout().into_owned()).collect();
    let views: Vec<_> = standard.iter().map(|p| p.view()).collect();
    centred(&views, group)
}

fn centred_flat(flats: &[&[u32]], group: Group) -> Vec<f64> {
    let mut out = vec![0f64; flats[0].len()];
    for_chunks(&mut out, |start, out| {
        let r0 = &flats[0][start..start + out.len()];
        if let Some(r1) = flats.get(1) {
            let r1 = &r1[start..start + out.len()];
            vectorised(|| {
                for ((o, &x), &y) in out.iter_mut().zip(r0).zip(r1) {
                    *o = group.centred(x, y);
                }
            });
        } else {
            vectorised(|| {
                for (o, &x) in out.iter_mut().zip(r0) {
                    *o = group.centred(x, 0);
                }
            });
        }
    });
    out
}

/// Residues of the (standard-layout) exact product `acc` modulo `m`.
fn residues(acc: &Array2<f64>, m: f64) -> Array2<u32> {
    let flat = acc.as_slice().expect("GEMM results are in standard layout");
    let mut out = vec![0u32; flat.len()];
    let inv_m = 1.0 / m;
    for_chunks(&mut out, |start, out| {
        let src = &flat[start..start + out.len()];
        vectorised(|| {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = reduce(x, m, inv_m) as i32 as u32;
            }
        });
    });
    Array2::from_shape_vec(acc.dim(), out).expect("one residue per element")
}

/// A_i·B_i mod m_i for every modulus of one GEMM group (one or two moduli whose product is below
/// 2^26; see [`gemm_groups`]), with residue matrices `a[i]`, `b[i]` with entries in [0, m_i).
/// Costs one f64 GEMM per [`exact_chunk`] of the inner dimension.
pub fn gemm_mod_group(a: &[ArrayView2<'_, u32>], b: &[ArrayView2<'_, u32>], moduli: &[u32]) -> Vec<Array2<u32>> {
    assert!(a.len() == moduli.len() && b.len() == moduli.len(), "one matrix per modulus");
    assert!(a.iter().chain(b).all(|x| x.dim() == a[0].dim() || x.dim() == b[0].dim()), "equal shapes per side");
    assert_eq!(a[0].ncols(), b[0].nrows(), "callers check matmul shapes");
    let group = Group::new(moduli);
    let (af, bf) = (centred(a, group), centred(b, group));
    let k = af.ncols();
    let chunk = exact_chunk(group.p as u64).max(1);
    let acc = if k <= chunk {
        af.dot(&bf)
    } else {
        let (p, inv_p) = (group.p, 1.0 / group.p);
        let mut acc = Array2::<f64>::zeros((af.nrows(), bf.ncols()));
        for start in (0..k).step_by(chunk) {
            let end = (start + chunk).min(k);
            let part = af.slice(s![.., start..end]).dot(&bf.slice(s![start..end, ..]));
            // Each term is reduced into [0, P): the sum of fewer than 2^27 of them is exact.
            ndarray::Zip::from(&mut acc).and(&part).par_for_each(|s, &x| *s += reduce(x, p, inv_p));
        }
        acc
    };
    let acc = if acc.is_standard_layout() { acc } else { acc.as_standard_layout().into_owned() };
    moduli.iter().map(|&m| residues(&acc, f64::from(m))).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn residues(m: u32, r: usize, c: usize) -> impl Strategy<Value = Array2<u32>> {
        proptest::collection::vec(0..m, r * c).prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
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

    #[test]
    fn long_inner_dimension_is_split_and_still_exact() {
        let m = 2097143u32;
        let k = exact_chunk(m as u64) * 2 + 3;
        // All residues at the centred extreme: the worst case for exactness.
        let a = Array2::from_elem((2, k), m / 2);
        let b = Array2::from_elem((k, 3), m / 2);
        assert_eq!(gemm_mod(a.view(), b.view(), m), gemm_mod_reference(a.view(), b.view(), m));
        assert_eq!(exact_chunk(m as u64), 8192);
    }

    #[test]
    fn long_pairs_at_the_centred_extremes_stay_exact() {
        let (m0, m1) = (1433u32, 1367u32);
        let p = m0 * m1;
        let k = exact_chunk(p as u64) + 5;
        // Residues of P/2 and P/2 + 1, the largest centred magnitudes of either sign.
        for x in [p / 2, p / 2 + 1] {
            let a = [Array2::from_elem((2, k), x % m0), Array2::from_elem((2, k), x % m1)];
            let b = [Array2::from_elem((k, 2), x % m0), Array2::from_elem((k, 2), x % m1)];
            let out = gemm_mod_group(&[a[0].view(), a[1].view()], &[b[0].view(), b[1].view()], &[m0, m1]);
            assert_eq!(out[0], gemm_mod_reference(a[0].view(), b[0].view(), m0));
            assert_eq!(out[1], gemm_mod_reference(a[1].view(), b[1].view(), m1));
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
}
