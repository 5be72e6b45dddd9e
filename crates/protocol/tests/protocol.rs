//! Correctness of the protocol against plaintext ring arithmetic, per ring: sharing, Beaver
//! products with fresh and reused masks, truncation within its stated error, polynomials within
//! the derived fixed-point bound.

mod common;

use common::*;
use ndarray::{ArrayD, IxDyn};
use pond_core::{Conv2dParams, Crt, FixedPoint, Int100, Ring, RingTensor, TfeModuli, Z128, Z64};
use pond_protocol::polynomial::SIGMOID;
use pond_protocol::*;
use proptest::prelude::*;

fn sharing_reconstructs<R: ProtocolRing>(seed: u64, shape: &[usize], owner: Role) {
    let x = random::<R>(seed, shape);
    // Borrowed and owned values share alike.
    let out = run(seed, |s| {
        let borrowed = share(&s.share_input::<R>(owner, owned(s, owner, &x), shape)?);
        let from_owned = share(&s.share_input_owned::<R>(owner, owned(s, owner, &x).cloned(), shape)?);
        Ok((borrowed, from_owned))
    });
    assert_eq!(reconstruct(&out.clone().map(|o| o.0)), x);
    assert_eq!(reconstruct(&out.map(|o| o.1)), x);
}

fn products_match_plaintext<R: ProtocolRing>(seed: u64, m: usize, k: usize, n: usize) {
    let (x, y) = (random::<R>(seed, &[m, k]), random::<R>(seed + 1, &[k, n]));
    let (u, v) = (random::<R>(seed + 2, &[m, k]), random::<R>(seed + 3, &[m, k]));
    let img = random::<R>(seed + 4, &[2, 2, m + 2, k + 2]);
    let filt = random::<R>(seed + 5, &[3, 2, 3, 3]);
    let p = Conv2dParams { stride: (1, 2), padding: (1, 0) };
    let out = run(seed, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[m, k])?;
        let py = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, &y), &[k, n])?;
        let pu = s.share_input::<R>(Role::Server1, owned(s, Role::Server1, &u), &[m, k])?;
        let pv = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &v), &[m, k])?;
        let pi = s.share_input::<R>(Role::Server1, owned(s, Role::Server1, &img), img.shape())?;
        let pf = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, &filt), filt.shape())?;
        let my = s.mask(&py)?;
        // Inputs cp owns, by masked operands: no opening (Session::product's known-input form).
        let kx = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, &x), &[m, k])?;
        // Owned, so cp keeps this value itself (no copy) for the product.
        let ki = s.share_input_owned::<R>(Role::Cp, owned(s, Role::Cp, &img).cloned(), img.shape())?;
        let ku = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, &u), &[m, k])?;
        let mv = s.mask(&pv)?;
        // Masked together (one round), each with its own mask.
        let [mx, mf]: [MaskedTensor<R>; 2] =
            s.mask_many(vec![px.clone(), pf.clone()])?.try_into().expect("two masked tensors");
        Ok([
            share(&s.matmul(&px, &py)?),
            share(&s.matmul(&px, &my)?),
            share(&s.matmul(&mx, &my)?),
            share(&s.matmul(&mx, &py)?),
            share(&s.mul(&pu, &pv)?),
            share(&s.square(&pu)?),
            share(&s.conv2d(&pi, &pf, p)?),
            share(&s.conv2d(&pi, &mf, p)?),
            // The output is (m + 2) high: one window per column.
            share(&s.pooled_conv2d(&pi, &mf, p, (m + 2, 1))?),
            share(&s.matmul(&kx, &my)?),
            share(&s.mul(&mv, &ku)?),
            share(&s.conv2d(&ki, &mf, p)?),
            share(&s.pooled_conv2d(&ki, &mf, p, (m + 2, 1))?),
        ])
    });
    let take = |i: usize| reconstruct(&[out[0][i].clone(), out[1][i].clone(), out[2][i].clone()]);
    let xy = x.matmul(&y).unwrap();
    for i in 0..4 {
        assert_eq!(take(i), xy, "matmul variant {i}");
    }
    assert_eq!(take(4), u.mul(&v).unwrap());
    assert_eq!(take(5), u.mul(&u).unwrap());
    let conv = img.conv2d(&filt, p).unwrap();
    assert_eq!(take(6), conv);
    assert_eq!(take(7), conv);
    assert_eq!(take(8), conv.window_sum((m + 2, 1)).unwrap());
    assert_eq!(take(9), xy, "known x masked");
    assert_eq!(take(10), u.mul(&v).unwrap(), "masked x known");
    assert_eq!(take(11), conv, "conv2d of a known image");
    assert_eq!(take(12), conv.window_sum((m + 2, 1)).unwrap(), "pooled conv2d of a known image");
}

/// Truncating x by f must give floor(x / 2^f) or floor(x / 2^f) + 1 (error below 1 ulp), and so
/// must the masked truncation, whose result is also a consistent masked tensor: the servers'
/// mask shares add up to cp's whole mask, and both servers hold the value minus that mask.
fn truncation_within_one_ulp<R: ProtocolRing>(seed: u64, values: &[i128], f: u32) {
    let x = R::Tensor::from_signed(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap().view());
    let out = run(seed, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[values.len()])?;
        let m = s.truncate_masked(&px, f)?;
        Ok((share(&s.truncate(&px, f)?), share(&m.value), m.mask.into_tensor(), m.masked))
    });
    let plain = reconstruct(&out.clone().map(|o| o.0));
    let value = reconstruct(&out.clone().map(|o| o.1));
    assert_consistent_masked::<R>(&value, out.map(|o| (o.2, o.3)));
    for got in [plain, value] {
        check_truncated::<R>(values, f, &got);
    }
}

/// A masked tensor's (mask, difference) as server0, server1 and cp hold them fit its `value`:
/// the servers' mask shares add up to cp's whole mask, both servers hold the same difference,
/// and difference + mask is the value.
fn assert_consistent_masked<R: ProtocolRing>(value: &R::Tensor, parts: [(R::Tensor, Option<R::Tensor>); 3]) {
    let [(mask0, masked0), (mask1, masked1), (whole, _)] = parts;
    assert_eq!(mask0.add(&mask1).unwrap(), whole, "{}: mask shares add up to cp's mask", R::NAME);
    let masked = masked0.expect("server0 holds the opened difference");
    assert_eq!(Some(&masked), masked1.as_ref(), "{}: both servers hold the same difference", R::NAME);
    assert_eq!(&masked.add(&whole).unwrap(), value, "{}: value = difference + mask", R::NAME);
}

fn check_truncated<R: ProtocolRing>(values: &[i128], f: u32, got: &R::Tensor) {
    let got = got.to_signed();
    for (v, g) in values.iter().zip(got.iter()) {
        let floor = v >> f;
        assert!(
            *g == floor || *g == floor + 1,
            "{}: truncate({v}, {f}) = {g}, expected {floor} or {}",
            R::NAME,
            floor + 1
        );
    }
}

/// Fixed-point matmul then truncation: each decoded entry is within 1 ulp (2^-f) of the exact
/// product of the encoded inputs, by the truncation bound above.
fn fixed_point_matmul<R: ProtocolRing>(seed: u64, xs: Vec<f64>, ys: Vec<f64>, m: usize, k: usize, n: usize) {
    let fp = FixedPoint::<R>::new(16, 8).unwrap();
    let x = fp.encode(ArrayD::from_shape_vec(IxDyn(&[m, k]), xs).unwrap().view()).unwrap();
    let y = fp.encode(ArrayD::from_shape_vec(IxDyn(&[k, n]), ys).unwrap().view()).unwrap();
    let out = run(seed, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[m, k])?;
        let py = s.share_input::<R>(Role::Server1, owned(s, Role::Server1, &y), &[k, n])?;
        let z = s.matmul(&px, &py)?;
        Ok(share(&s.truncate(&z, 16)?))
    });
    let got = fp.decode(&reconstruct(&out));
    let exact = x.matmul(&y).unwrap().to_signed().mapv(|v| v as f64 / (1u64 << 32) as f64);
    for (g, e) in got.iter().zip(exact.iter()) {
        assert!((g - e).abs() <= fp.ulp(), "{}: {g} vs exact {e}", R::NAME);
    }
}

macro_rules! ring_protocol_suite {
    ($name:ident, $ring:ty, $max_abs:expr) => {
        mod $name {
            use super::*;
            type R = $ring;
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(24))]
                #[test]
                fn sharing(seed in any::<u64>(), shape in prop::collection::vec(0usize..6, 0..4),
                           owner in prop::sample::select(Role::ALL.to_vec())) {
                    sharing_reconstructs::<R>(seed, &shape, owner)
                }
                #[test]
                fn products(seed in any::<u64>(), m in 1usize..6, k in 1usize..7, n in 1usize..6) {
                    products_match_plaintext::<R>(seed, m, k, n)
                }
                #[test]
                fn truncation(seed in any::<u64>(), values in prop::collection::vec(-$max_abs..$max_abs, 1..50), f in 1u32..40) {
                    truncation_within_one_ulp::<R>(seed, &values, f)
                }
                #[test]
                fn fixed_point(seed in any::<u64>(), (m, k, n, xs, ys) in (1usize..5, 1usize..9, 1usize..5).prop_flat_map(|(m, k, n)| (
                    Just(m), Just(k), Just(n),
                    prop::collection::vec(-15.0f64..15.0, m * k),
                    prop::collection::vec(-15.0f64..15.0, k * n)))) {
                    fixed_point_matmul::<R>(seed, xs, ys, m, k, n)
                }
            }

            #[test]
            fn truncation_at_the_edges_of_the_range() {
                let max: i128 = $max_abs;
                let edges = [0, 1, -1, 2, -2, max - 1, -max, -max + 1, max - 2, 1 << 20, -(1 << 20) - 1];
                for f in [1, 16, 24, 40] {
                    truncation_within_one_ulp::<R>(f as u64, &edges, f);
                }
            }
        }
    };
}

ring_protocol_suite!(z64, Z64, 1i128 << 62);
ring_protocol_suite!(z128, Z128, 1i128 << 87);
ring_protocol_suite!(crt10, Crt<TfeModuli>, 1i128 << 60);
ring_protocol_suite!(crt5, Int100, 1i128 << 62);

/// Z128's local truncation fails with probability below 2^(k+1-128) per element for
/// abs(x) < 2^k; at the documented k = 87 that is 2^-40, so 1e6 draws never see a failure
/// unless the protocol is wrong.
#[test]
fn z128_local_truncation_never_fails_over_a_million_draws() {
    let n = 1_000_000;
    let words = random::<Z128>(5, &[n]);
    let values = words.to_signed().mapv(|v| v >> (128 - 88)); // uniform in [-2^87, 2^87)
    let x = <Z128 as Ring>::Tensor::from_signed(values.view());
    let out = run(6, |s| {
        let px = s.share_input::<Z128>(Role::Cp, owned(s, Role::Cp, &x), &[n])?;
        Ok(share(&s.truncate(&px, 24)?))
    });
    let got = reconstruct(&out).to_signed();
    let failures = values.iter().zip(got.iter()).filter(|(v, g)| **g != *v >> 24 && **g != (*v >> 24) + 1).count();
    assert_eq!(failures, 0);
}

/// The sigmoid as the ring evaluates it (Z64: lifted to Z128 at these sizes) or, with
/// `in_ring`, by the power tree in the ring itself (what large Z64 tensors use).
fn sigmoid_within_bound<R: ProtocolRing>(values: &[f64], in_ring: bool) {
    let fp = FixedPoint::<R>::default_for_ring();
    let x = fp.encode(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap().view()).unwrap();
    let out = run(3, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[values.len()])?;
        let y = if in_ring { s.power_tree(px.clone(), &SIGMOID, fp)? } else { s.sigmoid(&px, fp)? };
        Ok(share(&y))
    });
    let got = fp.decode(&reconstruct(&out));
    let bound = SIGMOID.error_bound(fp.ulp());
    for (v, g) in values.iter().zip(got.iter()) {
        let want = SIGMOID.eval(*v);
        assert!((g - want).abs() <= bound, "{}: sigmoid_poly({v}) = {g}, plaintext {want}, bound {bound}", R::NAME);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn sigmoid_polynomial_matches_plaintext(values in prop::collection::vec(-8.0f64..8.0, 1..64)) {
        sigmoid_within_bound::<Z64>(&values, false);
        sigmoid_within_bound::<Z64>(&values, true);
        sigmoid_within_bound::<Z128>(&values, false);
        sigmoid_within_bound::<Int100>(&values, false);
        sigmoid_within_bound::<Crt<TfeModuli>>(&values, false);
    }
}

/// Lifting Z64 shares to Z128 is exact for every |x| < 2^62, and narrowing takes any Z128 value
/// back to its residue mod 2^64.
fn lift_and_narrow_are_exact(seed: u64, values: &[i128]) {
    let n = values.len();
    let x = <Z64 as Ring>::Tensor::from_signed(ArrayD::from_shape_vec(IxDyn(&[n]), values.to_vec()).unwrap().view());
    let out = run(seed, |s| {
        let px = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &x), &[n])?;
        let wide = s.lift_to_z128(&px)?;
        Ok((share(&wide), share(&s.narrow_to_z64(&wide))))
    });
    let wide = reconstruct(&out.clone().map(|o| o.0)).to_signed();
    let narrow = reconstruct(&out.map(|o| o.1)).to_signed();
    for ((v, w), m) in values.iter().zip(wide.iter()).zip(narrow.iter()) {
        assert_eq!(w, v, "lift_to_z128({v})");
        assert_eq!(m, v, "narrow_to_z64(lift_to_z128({v}))");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn lift_to_z128_is_exact(seed in any::<u64>(), values in prop::collection::vec(-(1i128 << 62) + 1..(1i128 << 62), 1..50)) {
        lift_and_narrow_are_exact(seed, &values);
    }
}

#[test]
fn lift_to_z128_at_the_edges_of_the_range() {
    let max = (1i128 << 62) - 1;
    lift_and_narrow_are_exact(9, &[0, 1, -1, max, -max, max - 1, -max + 1, 1 << 40, -(1 << 40)]);
}

#[test]
fn narrowing_keeps_the_residue_mod_2_64() {
    let x = random::<Z128>(4, &[257]);
    let out = run(8, |s| {
        let px = s.share_input::<Z128>(Role::Server1, owned(s, Role::Server1, &x), &[257])?;
        Ok(share(&s.narrow_to_z64(&px)))
    });
    let got = reconstruct(&out);
    let want = x.array().mapv(|v| v as u64);
    assert_eq!(got.array(), &want);
}

/// A CRT polynomial's output carries its masked form: the servers' mask shares add up to cp's
/// whole mask, both servers hold the value minus it, and a Beaver product that takes the mask
/// from the form (mask, then square) is the exact ring product of the value. An owned reshape
/// (which keeps the buffers) reshapes the form with the value, and it stays consistent.
fn polynomial_outputs_carry_a_consistent_masked_form<R: ProtocolRing>(values: &[f64]) {
    let n = values.len();
    let fp = FixedPoint::<R>::default_for_ring();
    let x = fp.encode(ArrayD::from_shape_vec(IxDyn(&[n]), values.to_vec()).unwrap().view()).unwrap();
    let out = run(5, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[n])?;
        let y = s.relu_poly(&px, fp)?;
        let form = y.form().cloned().expect("CRT polynomials keep the masked form");
        let m = s.mask(&y)?;
        let square = share(&s.mul(&m, &m)?);
        let y_share = share(&y);
        let z = s.reshape_owned(y, &[n, 1])?;
        let z_form = z.form().cloned().expect("an owned reshape keeps the masked form");
        let z_form = (z_form.mask.into_tensor(), z_form.masked);
        Ok(((y_share, form.mask.into_tensor(), form.masked, square), (share(&z), z_form)))
    });
    let y = reconstruct(&out.clone().map(|o| o.0 .0));
    let square = reconstruct(&out.clone().map(|o| o.0 .3));
    assert_consistent_masked::<R>(&y, out.clone().map(|o| (o.0 .1, o.0 .2)));
    assert_eq!(square, y.mul(&y).unwrap(), "{}: the product through the form is exact", R::NAME);
    let z = reconstruct(&out.clone().map(|o| o.1 .0));
    assert_eq!(z, y.reshape(&[n, 1]).unwrap(), "{}: the owned reshape of the value", R::NAME);
    assert_consistent_masked::<R>(&z, out.map(|o| o.1 .1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn crt_polynomial_outputs_carry_a_consistent_masked_form(values in prop::collection::vec(-4.0f64..4.0, 1..40)) {
        polynomial_outputs_carry_a_consistent_masked_form::<Int100>(&values);
        polynomial_outputs_carry_a_consistent_masked_form::<Crt<TfeModuli>>(&values);
    }
}
