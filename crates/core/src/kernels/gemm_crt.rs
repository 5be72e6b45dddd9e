//! Matrix products modulo a small modulus (one CRT plane) as exact f64 GEMMs.
//!
//! Residues are centred to (-m/2, m/2], so every product is at most m^2/4 in absolute value and a
//! sum of `k` of them stays exact in f64 while k * m^2 / 4 <= 2^53. Longer inner dimensions are
//! split into chunks of that length, each reduced before the chunks are added.

use ndarray::{s, Array2, ArrayView2, Zip};

/// Largest inner dimension whose centred residue dot products are exact in f64 for modulus `m`.
pub fn exact_chunk(m: u64) -> usize {
    let bound = (m / 2 + 1) as u128;
    ((1u128 << 53) / (bound * bound)).min(usize::MAX as u128) as usize
}

fn centred(x: ArrayView2<'_, u64>, m: u64) -> Array2<f64> {
    let half = m / 2;
    let zip = Zip::from(&x);
    let f = move |&r: &u64| {
        if r > half {
            r as f64 - m as f64
        } else {
            r as f64
        }
    };
    if x.len() >= crate::parallel::PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(f)
    } else {
        zip.map_collect(f)
    }
}

/// x mod m for an exact integer-valued f64 with |x| < 2^53, into [0, m).
fn reduce(x: f64, m: f64, inv_m: f64) -> f64 {
    let r = x - (x * inv_m).floor() * m;
    if r < 0.0 {
        r + m
    } else if r >= m {
        r - m
    } else {
        r
    }
}

/// A·B mod m for residue matrices with entries in [0, m), m < 2^26.
pub fn gemm_mod(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>, m: u64) -> Array2<u64> {
    assert!(m < 1 << 26, "CRT moduli are below 2^26");
    assert_eq!(a.ncols(), b.nrows(), "callers check matmul shapes");
    let af = centred(a, m);
    let bf = centred(b, m);
    let (mf, inv_m) = (m as f64, 1.0 / m as f64);
    let k = a.ncols();
    let mut acc: Option<Array2<f64>> = None;
    for start in (0..k).step_by(exact_chunk(m).max(1)) {
        let end = (start + exact_chunk(m)).min(k);
        let mut part = af.slice(s![.., start..end]).dot(&bf.slice(s![start..end, ..]));
        part.par_mapv_inplace(|p| reduce(p, mf, inv_m));
        acc = Some(match acc {
            None => part,
            Some(mut sum) => {
                // Both terms are in [0, m): their sum is exact and below 2m.
                Zip::from(&mut sum).and(&part).par_for_each(|s, &p| *s = reduce(*s + p, mf, inv_m));
                sum
            }
        });
    }
    let acc = acc.unwrap_or_else(|| Array2::zeros((a.nrows(), b.ncols())));
    let zip = Zip::from(&acc);
    if acc.len() >= crate::parallel::PARALLEL_MIN_ELEMENTS {
        zip.par_map_collect(|&x| x as u64)
    } else {
        zip.map_collect(|&x| x as u64)
    }
}

/// The plain scalar reference: u128 accumulation, then one reduction.
pub fn gemm_mod_reference(a: ArrayView2<'_, u64>, b: ArrayView2<'_, u64>, m: u64) -> Array2<u64> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        let sum: u128 = (0..a.ncols()).map(|t| a[[i, t]] as u128 * b[[t, j]] as u128).sum();
        (sum % m as u128) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn residues(m: u64, r: usize, c: usize) -> impl Strategy<Value = Array2<u64>> {
        proptest::collection::vec(0..m, r * c).prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn matches_reference(
            (m, a, b) in (prop::sample::select(vec![1201u64, 1039, 2097143, 2097091]), 1usize..40, 1usize..70, 1usize..40)
                .prop_flat_map(|(m, r, k, c)| (Just(m), residues(m, r, k), residues(m, k, c)))
        ) {
            prop_assert_eq!(gemm_mod(a.view(), b.view(), m), gemm_mod_reference(a.view(), b.view(), m));
        }
    }

    #[test]
    fn long_inner_dimension_is_split_and_still_exact() {
        let m = 2097143u64;
        let k = exact_chunk(m) * 2 + 3;
        // All residues at the centred extreme: the worst case for exactness.
        let a = Array2::from_elem((2, k), m / 2);
        let b = Array2::from_elem((k, 3), m / 2);
        assert_eq!(gemm_mod(a.view(), b.view(), m), gemm_mod_reference(a.view(), b.view(), m));
        assert_eq!(exact_chunk(m), 8192);
    }
}
