//! Exact comparisons: the sign against plaintext for every kind of value, ReLU / max / max-pool /
//! argmax / public comparison exactly equal to plaintext, uniform party views, traffic and
//! rounds against the formulas of `comparison::cost`, pregenerated material, CRT refusal.

mod common;

use common::*;
use ndarray::{ArrayD, IxDyn};
use pond_core::{FixedPoint, Int100, Ring, RingTensor, Z128, Z64};
use pond_protocol::comparison::{cost, ComparisonRing, ComparisonSource};
use pond_protocol::costs::Cost;
use pond_protocol::*;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};

fn tensor<R: Ring>(values: &[i128], shape: &[usize]) -> R::Tensor {
    R::Tensor::from_signed(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap().view())
}

fn signed<T: RingTensor>(outputs: &[Option<T>; 3]) -> Vec<i128> {
    reconstruct(outputs).to_signed().iter().copied().collect()
}

/// Shares `values` from server0 and runs `op` on them; returns the reconstructed outputs.
fn run_op<R: ComparisonRing>(
    seed: u64,
    values: &[i128],
    shape: &[usize],
    op: impl Fn(&mut Session, &PrivateTensor<R>) -> Result<Vec<PrivateTensor<R>>> + Sync,
) -> Vec<Vec<i128>> {
    let x = tensor::<R>(values, shape);
    let out = run(seed, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), shape)?;
        Ok(op(s, &px)?.iter().map(share).collect::<Vec<_>>())
    });
    (0..out[0].len()).map(|i| signed(&[out[0][i].clone(), out[1][i].clone(), out[2][i].clone()])).collect()
}

/// 0, ±1, the extremes of the in-range interval (-2^k, 2^k), values one ulp inside and outside
/// them, and the extremes of the whole ring.
fn special_values<R: Ring>() -> Vec<i128> {
    let k = R::PRODUCT_BITS;
    let bits = if R::NAME == "z64" { 64 } else { 128 };
    let edge = (1i128 << k) - 1;
    let top = if bits == 128 { i128::MAX } else { (1i128 << 63) - 1 };
    let mut v = vec![0, 1, -1, 2, -2, edge, -edge, edge - 1, -edge + 1, edge + 1, -edge - 1, top, -top - 1, top - 1];
    v.extend([-top, 1 << 16, -(1 << 16), (1 << 16) - 1, -(1 << 16) + 1]);
    v
}

fn sign_is_exact<R: ComparisonRing>(seed: u64, values: &[i128]) {
    let n = values.len();
    let out = run_op::<R>(seed, values, &[n], |s, x| {
        let mut src = ComparisonSource::Online;
        Ok(vec![s.drelu(x, &mut src)?, s.sign_bit(x, &mut src)?])
    });
    for (i, &v) in values.iter().enumerate() {
        assert_eq!(out[0][i], i128::from(v >= 0), "{}: drelu({v})", R::NAME);
        assert_eq!(out[1][i], i128::from(v < 0), "{}: sign_bit({v})", R::NAME);
    }
}

#[test]
fn sign_is_exact_on_the_special_values() {
    sign_is_exact::<Z64>(1, &special_values::<Z64>());
    sign_is_exact::<Z128>(2, &special_values::<Z128>());
}

/// `relu_exact_in_range` equals max(x, 0) and [x >= 0] for `values` (each below
/// 2^(PRODUCT_BITS / 2) in magnitude).
fn relu_in_range_is_exact<R: ComparisonRing>(seed: u64, values: &[i128]) {
    let n = values.len();
    let out = run_op::<R>(seed, values, &[n], |s, x| {
        let r = s.relu_exact_in_range(x, &mut ComparisonSource::Online)?;
        Ok(vec![r.output, r.derivative])
    });
    for (i, &v) in values.iter().enumerate() {
        assert_eq!(out[0][i], v.max(0), "{}: relu_in_range({v})", R::NAME);
        assert_eq!(out[1][i], i128::from(v >= 0), "{}: its derivative at {v}", R::NAME);
    }
}

/// `truncate_relu_in_range` by f of x = y·2^f + low (low in [0, 2^f)): the truncation t is y
/// or y + 1 (Z64's dealer-assisted truncation and Z128's local one, [`Session::truncate`]), and
/// the outputs must be max(t, 0) and [t >= 0] for one of the two. With low = 0 the truncation
/// is exact in both rings (no borrow from the low bits), so t = y.
fn truncate_relu_in_range_is_exact<R: ComparisonRing>(seed: u64, ys: &[i128], lows: &[i128], f: u32) {
    let n = ys.len();
    let xs: Vec<i128> = ys.iter().zip(lows).map(|(&y, &low)| (y << f) + low).collect();
    let out = run_op::<R>(seed, &xs, &[n], |s, x| {
        let r = s.truncate_relu_in_range(x, f, &mut ComparisonSource::Online)?;
        Ok(vec![r.output, r.derivative])
    });
    for (i, (&y, &low)) in ys.iter().zip(lows).enumerate() {
        let (relu, bit) = (out[0][i], out[1][i]);
        let candidates = if low == 0 { vec![y] } else { vec![y, y + 1] };
        let ok = candidates.iter().any(|&t| relu == t.max(0) && bit == i128::from(t >= 0));
        assert!(ok, "{}: truncate_relu_in_range(({y} << {f}) + {low}) = ({relu}, {bit})", R::NAME);
    }
}

/// The largest magnitude of an in-range fixed-point value: 2^(PRODUCT_BITS / 2) - 1.
fn fixed_point_edge<R: Ring>() -> i128 {
    (1i128 << (R::PRODUCT_BITS / 2)) - 1
}

fn in_fixed_point_range<R: Ring>() -> impl Strategy<Value = i128> {
    let edge = fixed_point_edge::<R>();
    prop_oneof![
        -edge..=edge,
        -4i128..=4,
        (0i128..4).prop_map(move |d| edge - d),
        (0i128..4).prop_map(move |d| d - edge)
    ]
}

#[test]
fn relu_in_range_is_exact_at_the_edges_of_the_fixed_point_range() {
    for (seed, edge) in [(3, fixed_point_edge::<Z64>()), (4, fixed_point_edge::<Z128>())] {
        let values = [0, 1, -1, edge, -edge, edge - 1, -edge + 1, 1 << 16, -(1 << 16)];
        if seed == 3 {
            relu_in_range_is_exact::<Z64>(seed, &values);
        } else {
            relu_in_range_is_exact::<Z128>(seed, &values);
        }
    }
    // The bound is tight: on Z64 the comparison reads bit 31 as the sign, so 2^31 (just out of
    // range) comes out negative, whatever the randomness, where `relu_exact` is right.
    let out = run_op::<Z64>(5, &[1 << 31], &[1], |s, x| {
        let mut src = ComparisonSource::Online;
        Ok(vec![s.relu_exact_in_range(x, &mut src)?.derivative, s.relu_exact(x, &mut src)?.derivative])
    });
    assert_eq!((out[0][0], out[1][0]), (0, 1));
}

#[test]
fn truncate_relu_in_range_is_exact_at_the_edges() {
    // y + 1 must stay in range too: the truncation may round up by one.
    for (seed, f) in [(6, 16), (7, 1), (8, 32)] {
        let edge = fixed_point_edge::<Z64>() - 1;
        let ys = [0, 1, -1, -2, edge, -edge, edge - 1, -edge + 1, 1 << 16, -(1 << 16)];
        let top = (1i128 << f) - 1;
        let lows = [0, top, 0, top, top, 0, 1, top, 0, 1];
        truncate_relu_in_range_is_exact::<Z64>(seed, &ys, &lows, f);
    }
    let edge = fixed_point_edge::<Z128>() - 1;
    let ys = [0, 1, -1, -2, edge, -edge, 1 << 16, -(1 << 16)];
    truncate_relu_in_range_is_exact::<Z128>(9, &ys, &[0, 1, 0, 65535, 65535, 0, 3, 7], 16);
    // A shift that leaves fewer than 32 bits above it cannot fuse: a typed error, no message.
    let err = run_local(LocalConfig::seeded(1), |s| {
        let x = PrivateTensor::<Z64>::from_share(&[1], s.role().peer().map(|_| pond_core::ZTensor::zeros(&[1])));
        s.truncate_relu_in_range(&x, 33, &mut ComparisonSource::Online).map(drop)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("truncation by 33"), "{err}");
}

fn in_range<R: Ring>() -> impl Strategy<Value = i128> {
    let edge = (1i128 << R::PRODUCT_BITS) - 1;
    prop_oneof![
        -edge..=edge,
        -4i128..=4,
        (0i128..4).prop_map(move |d| edge - d),
        (0i128..4).prop_map(move |d| -edge + d),
        -(1i128 << 20)..(1i128 << 20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sign_equals_plaintext_z64(values in prop::collection::vec(in_range::<Z64>(), 1..200), seed in 0u64..1000) {
        sign_is_exact::<Z64>(seed, &values);
    }

    #[test]
    fn sign_equals_plaintext_z128(values in prop::collection::vec(in_range::<Z128>(), 1..200), seed in 0u64..1000) {
        sign_is_exact::<Z128>(seed, &values);
    }

    #[test]
    fn relu_in_range_equals_plaintext(
        z64 in prop::collection::vec(in_fixed_point_range::<Z64>(), 1..200),
        z128 in prop::collection::vec(in_fixed_point_range::<Z128>(), 1..100),
        seed in 0u64..1000,
    ) {
        relu_in_range_is_exact::<Z64>(seed, &z64);
        relu_in_range_is_exact::<Z128>(seed, &z128);
    }

    #[test]
    fn truncate_relu_in_range_equals_plaintext(
        z64 in prop::collection::vec((in_fixed_point_range::<Z64>(), 0i128..1 << 16), 1..200),
        z128 in prop::collection::vec((in_fixed_point_range::<Z128>(), 0i128..1 << 16), 1..100),
        seed in 0u64..1000,
    ) {
        // Keep y + 1 in range (the truncation may round up).
        let (y64, low64): (Vec<i128>, Vec<i128>) = z64.into_iter().map(|(y, l)| (y.min(fixed_point_edge::<Z64>() - 1), l)).unzip();
        let (y128, low128): (Vec<i128>, Vec<i128>) = z128.into_iter().map(|(y, l)| (y.min(fixed_point_edge::<Z128>() - 1), l)).unzip();
        truncate_relu_in_range_is_exact::<Z64>(seed, &y64, &low64, 16);
        truncate_relu_in_range_is_exact::<Z128>(seed, &y128, &low128, 16);
    }

    #[test]
    fn sign_is_exact_on_the_whole_ring_z64(values in prop::collection::vec(any::<i64>(), 1..200), seed in 0u64..1000) {
        sign_is_exact::<Z64>(seed, &values.iter().map(|&v| i128::from(v)).collect::<Vec<_>>());
    }

    #[test]
    fn relu_max_and_public_compare_equal_plaintext(
        xs in prop::collection::vec(-1000.0f64..1000.0, 1..100),
        c in -1000.0f64..1000.0,
        seed in 0u64..1000,
    ) {
        relu_max_compare::<Z64>(seed, &xs, c);
        relu_max_compare::<Z128>(seed, &xs, c);
    }

    #[test]
    fn maxpool_and_argmax_equal_plaintext(
        xs in prop::collection::vec(prop_oneof![-3.0f64..3.0, Just(1.5), Just(-0.25)], 2 * 3 * 7 * 6),
        seed in 0u64..1000,
    ) {
        maxpool_matches::<Z64>(seed, &xs, [2, 3, 7, 6], (2, 2), (2, 2));
        maxpool_matches::<Z64>(seed, &xs, [2, 3, 7, 6], (3, 3), (1, 2));
        maxpool_matches::<Z128>(seed, &xs, [2, 3, 7, 6], (2, 3), (2, 1));
        argmax_matches::<Z64>(seed, &xs, &[42, 6]);
        argmax_matches::<Z64>(seed, &xs[..40], &[4, 10]);
        argmax_matches::<Z128>(seed, &xs[..45], &[9, 5]);
    }
}

fn encode<R: Ring>(xs: &[f64], shape: &[usize]) -> (FixedPoint<R>, Vec<i128>, R::Tensor) {
    let fp = FixedPoint::<R>::default_for_ring();
    let t = fp.encode(ArrayD::from_shape_vec(IxDyn(shape), xs.to_vec()).unwrap().view()).unwrap();
    let ints = t.to_signed().iter().copied().collect();
    (fp, ints, t)
}

fn relu_max_compare<R: ComparisonRing>(seed: u64, xs: &[f64], c: f64) {
    let n = xs.len();
    let (fp, ints, _) = encode::<R>(xs, &[n]);
    let ys: Vec<i128> = ints.iter().rev().copied().collect();
    let c_enc = fp.encode_scalar(c, 0).unwrap();
    let y_tensor = tensor::<R>(&ys, &[n]);
    let public = tensor::<R>(&ys, &[n]);
    let out = run_op::<R>(seed, &ints, &[n], |s, x| {
        let mut src = ComparisonSource::Online;
        let y = s.share_input::<R>(Role::Server1, owned(s, Role::Server1, &y_tensor), &[n])?;
        let relu = s.relu_exact(x, &mut src)?;
        Ok(vec![
            relu.output,
            relu.derivative,
            s.max_exact(x, &y, &mut src)?,
            s.greater_equal_scalar(x, c_enc, &mut src)?,
            s.less_than_scalar(x, c_enc, &mut src)?,
            s.greater_equal_public(x, &PublicTensor::new(public.clone()), &mut src)?,
        ])
    });
    for i in 0..n {
        let v = ints[i];
        assert_eq!(out[0][i], v.max(0), "relu({v})");
        assert_eq!(out[1][i], i128::from(v >= 0), "relu'({v})");
        assert_eq!(out[2][i], v.max(ys[i]), "max({v}, {})", ys[i]);
        assert_eq!(out[3][i], i128::from(v >= c_enc), "{v} >= {c_enc}");
        assert_eq!(out[4][i], i128::from(v < c_enc), "{v} < {c_enc}");
        assert_eq!(out[5][i], i128::from(v >= ys[i]), "{v} >= public {}", ys[i]);
    }
}

/// Plaintext max-pool: maximum of each window and one-hot at its first maximum.
fn plain_maxpool(
    x: &[i128],
    [n, c, h, w]: [usize; 4],
    k: (usize, usize),
    st: (usize, usize),
) -> (Vec<i128>, Vec<i128>) {
    let (oh, ow) = ((h - k.0) / st.0 + 1, (w - k.1) / st.1 + 1);
    let (mut out, mut mask) = (Vec::new(), Vec::new());
    for p in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let win: Vec<i128> = (0..k.0)
                    .flat_map(|a| (0..k.1).map(move |b| (a, b)))
                    .map(|(a, b)| x[p * h * w + (i * st.0 + a) * w + j * st.1 + b])
                    .collect();
                let (arg, max) = first_max(&win);
                out.push(max);
                mask.extend((0..win.len()).map(|t| i128::from(t == arg)));
            }
        }
    }
    (out, mask)
}

fn first_max(v: &[i128]) -> (usize, i128) {
    v.iter().enumerate().fold((0, v[0]), |(ai, am), (i, &x)| if x > am { (i, x) } else { (ai, am) })
}

fn maxpool_matches<R: ComparisonRing>(seed: u64, xs: &[f64], shape: [usize; 4], k: (usize, usize), st: (usize, usize)) {
    let (_, ints, _) = encode::<R>(xs, &shape);
    let out = run_op::<R>(seed, &ints, &shape, |s, x| {
        let mut src = ComparisonSource::Online;
        let with = s.maxpool_exact(x, k, st, true, &mut src)?;
        let without = s.maxpool_exact(x, k, st, false, &mut src)?;
        assert!(without.mask.is_none());
        Ok(vec![with.output, with.mask.unwrap(), without.output])
    });
    let (max, mask) = plain_maxpool(&ints, shape, k, st);
    assert_eq!(out[0], max, "{} maxpool {k:?} stride {st:?}", R::NAME);
    assert_eq!(out[1], mask, "{} maxpool mask {k:?} stride {st:?}", R::NAME);
    assert_eq!(out[2], max);
}

fn argmax_matches<R: ComparisonRing>(seed: u64, xs: &[f64], shape: &[usize]) {
    let (_, ints, _) = encode::<R>(xs, shape);
    let m = *shape.last().unwrap();
    let out = run_op::<R>(seed, &ints, shape, |s, x| {
        let a = s.argmax_exact(x, &mut ComparisonSource::Online)?;
        Ok(vec![a.max, a.one_hot, a.index])
    });
    for (r, row) in ints.chunks(m).enumerate() {
        let (arg, max) = first_max(row);
        assert_eq!(out[0][r], max);
        assert_eq!(out[2][r], arg as i128, "{} argmax of {row:?}", R::NAME);
        for t in 0..m {
            assert_eq!(out[1][r * m + t], i128::from(t == arg));
        }
    }
}

#[test]
fn argmax_and_maxpool_edge_shapes() {
    // One candidate per row, two, all equal (first index wins), odd counts.
    let fp = FixedPoint::<Z64>::default_for_ring();
    argmax_matches::<Z64>(1, &[0.5, -1.0, 2.0], &[3, 1]);
    argmax_matches::<Z64>(2, &[0.5, 0.5, -1.0, 2.0], &[2, 2]);
    argmax_matches::<Z64>(3, &[1.0; 14], &[2, 7]);
    let big = fp.bound() - fp.ulp();
    argmax_matches::<Z64>(4, &[-big, big, big, -big, 0.0, -big], &[2, 3]);
    maxpool_matches::<Z64>(5, &[1.0; 16], [1, 1, 4, 4], (2, 2), (2, 2));
    maxpool_matches::<Z64>(
        6,
        &(0..25).map(|i| f64::from(i % 7) - 3.0).collect::<Vec<_>>(),
        [1, 1, 5, 5],
        (5, 5),
        (1, 1),
    );
    maxpool_matches::<Z64>(7, &(0..8).map(f64::from).collect::<Vec<_>>(), [1, 2, 2, 2], (1, 1), (1, 1));
}

// ---- costs -------------------------------------------------------------------------------

/// One operation's traffic on every party, after a setup that ends in a receive on both servers.
fn measure<R: ComparisonRing>(
    shape: &[usize],
    op: impl Fn(&mut Session, &PrivateTensor<R>) -> Result<()> + Sync,
) -> [Traffic; 3] {
    let x = random::<R>(1, shape);
    run(9, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), shape)?;
        s.reveal(&px)?;
        let before = s.traffic();
        op(s, &px)?;
        Ok(s.traffic().since(&before))
    })
}

fn assert_cost(name: &str, measured: [Traffic; 3], expected: Cost, server0_rounds: u64) {
    let bytes = measured.map(|t| t.total_sent());
    assert_eq!(bytes, expected.bytes, "{name}: bytes sent by [server0, server1, cp]");
    assert_eq!(measured[1].rounds, expected.rounds, "{name}: server1 rounds");
    assert_eq!(measured[0].rounds, server0_rounds, "{name}: server0 rounds");
}

fn costs_match<R: ComparisonRing>() {
    let sh = [2, 3, 6, 5];
    let e: u64 = sh.iter().product::<usize>() as u64;
    let online = || ComparisonSource::<R>::Online;
    let one = cost::server0_rounds(1);
    assert_cost("drelu", measure::<R>(&sh, |s, x| s.drelu(x, &mut online()).map(drop)), cost::drelu::<R>(e), one);
    assert_cost("sign_bit", measure::<R>(&sh, |s, x| s.sign_bit(x, &mut online()).map(drop)), cost::drelu::<R>(e), one);
    assert_cost(
        "relu_exact",
        measure::<R>(&sh, |s, x| s.relu_exact(x, &mut online()).map(drop)),
        cost::relu_exact::<R>(e),
        one,
    );
    assert_cost(
        "relu_exact_in_range",
        measure::<R>(&sh, |s, x| s.relu_exact_in_range(x, &mut online()).map(drop)),
        cost::relu_exact_in_range::<R>(e),
        one,
    );
    assert_cost(
        "truncate_relu_in_range",
        measure::<R>(&sh, |s, x| s.truncate_relu_in_range(x, 16, &mut online()).map(drop)),
        cost::truncate_relu_in_range::<R>(e),
        one,
    );
    assert_cost(
        "max_exact",
        measure::<R>(&sh, |s, x| s.max_exact(x, &s.neg(x), &mut online()).map(drop)),
        cost::max_exact::<R>(e),
        one,
    );
    assert_cost(
        "greater_equal_scalar",
        measure::<R>(&sh, |s, x| s.greater_equal_scalar(x, 12345, &mut online()).map(drop)),
        cost::compare_public::<R>(e),
        one,
    );
    for (k, st, mask) in
        [((2, 2), (2, 2), true), ((2, 2), (2, 2), false), ((3, 3), (1, 1), true), ((1, 2), (1, 1), true)]
    {
        let levels = cost::tournament_rounds(k.0 * k.1) / 2;
        assert_cost(
            &format!("maxpool {k:?} {st:?} mask {mask}"),
            measure::<R>(&sh, |s, x| s.maxpool_exact(x, k, st, mask, &mut online()).map(drop)),
            cost::maxpool_exact::<R>(&sh, k, st, mask).unwrap(),
            cost::server0_rounds(levels),
        );
    }
    for shape in [[36, 5], [18, 10], [180, 1]] {
        let m = shape[1];
        let levels = cost::tournament_rounds(m) / 2;
        assert_cost(
            &format!("argmax {shape:?}"),
            measure::<R>(&sh, |s, x| s.argmax_exact(&s.reshape(x, &shape)?, &mut online()).map(drop)),
            cost::argmax_exact::<R>(&shape),
            cost::server0_rounds(levels),
        );
    }
    // Pregenerated: the offline phase is exactly the material, the online phase the rest.
    let need = cost::maxpool_comparisons(&sh, (2, 2), (2, 2)).unwrap();
    let total = cost::maxpool_exact::<R>(&sh, (2, 2), (2, 2), true).unwrap();
    let phases = measure::<R>(&sh, |s, x| {
        let before = s.traffic();
        let mut src = ComparisonSource::<R>::pregenerate(s, need as usize)?;
        let offline = s.traffic().since(&before);
        assert_eq!(offline.total_sent(), cost::material::<R>(need).bytes[s.role().index()]);
        s.maxpool_exact(x, (2, 2), (2, 2), true, &mut src)?;
        assert_eq!(src.remaining(), Some(0));
        Ok(())
    });
    assert_eq!(phases.map(|t| t.total_sent()), total.bytes);
}

#[test]
fn measured_traffic_equals_the_formulas() {
    costs_match::<Z64>();
    costs_match::<Z128>();
    // The headline numbers: bytes per element of ReLU.
    assert_eq!(cost::relu_exact::<Z64>(1), Cost { bytes: [72, 72, 79], rounds: 2 });
    assert_eq!(cost::relu_exact::<Z128>(1), Cost { bytes: [144, 144, 159], rounds: 2 });
    // In range, 32 of Z64's bits and 64 of Z128's are compared.
    assert_eq!(cost::relu_exact_in_range::<Z64>(1), Cost { bytes: [40, 40, 47], rounds: 2 });
    assert_eq!(cost::relu_exact_in_range::<Z128>(1), Cost { bytes: [80, 80, 95], rounds: 2 });
    // Fused with the truncation before it: Z64 saves the truncation's opening and round; Z128's
    // truncation is local anyway.
    let separate = pond_protocol::costs::truncation::<Z64>(1) + cost::relu_exact_in_range::<Z64>(1);
    assert_eq!(separate, Cost { bytes: [48, 48, 63], rounds: 3 });
    assert_eq!(cost::truncate_relu_in_range::<Z64>(1), Cost { bytes: [40, 40, 71], rounds: 2 });
    assert_eq!(cost::truncate_relu_in_range::<Z128>(1), cost::relu_exact_in_range::<Z128>(1));
    assert_eq!(cost::tournament_rounds(4), 4);
    assert_eq!(cost::tournament_rounds(10), 8);
}

#[test]
fn pregenerated_material_gives_the_same_results_and_runs_out_loudly() {
    let values: Vec<i128> = (-50..50).map(|v| v * 7919).collect();
    let out = run_op::<Z64>(3, &values, &[100], |s, x| {
        let mut src = ComparisonSource::pregenerate(s, 150)?;
        let before = s.traffic();
        let a = s.relu_exact(x, &mut src)?;
        let cp_online = s.traffic().since(&before);
        if s.role() == Role::Cp {
            assert_eq!(
                cp_online.total_sent(),
                cost::relu_exact::<Z64>(100).bytes[2] - cost::material::<Z64>(100).bytes[2]
            );
        }
        // Material is dealt for one width: the in-range ReLU compares fewer bits.
        let err = s.relu_exact_in_range(x, &mut src).unwrap_err().to_string();
        assert!(err.contains("50 comparisons of 64 bits left") && err.contains("100 of 32 bits"), "{err}");
        let err = s.relu_exact(x, &mut src).unwrap_err().to_string();
        assert!(err.contains("50 comparisons of 64 bits left"), "{err}");
        // In-range material: the offline traffic is its 31 bit shares per comparison.
        let before = s.traffic();
        let mut src = ComparisonSource::pregenerate_in_range(s, 100)?;
        let offline = s.traffic().since(&before).total_sent();
        let b = s.relu_exact_in_range(x, &mut src)?;
        let bit_shares = 100 * (pond_protocol::comparison::fixed_point_terms::<Z64>() as u64 - 1);
        assert_eq!(offline, if s.role() == Role::Cp { bit_shares } else { 0 });
        assert_eq!(bit_shares, 3100);
        assert_eq!(src.remaining(), Some(0));
        // Material for the truncating ReLU: the bit shares of r >> 16 and the truncation's two
        // corrections; it serves only that shift.
        let scaled = s.mul_scalar(x, 1 << 16);
        let before = s.traffic();
        let mut src = ComparisonSource::pregenerate_truncating(s, 100, 16)?;
        let offline = s.traffic().since(&before).total_sent();
        assert_eq!(offline, if s.role() == Role::Cp { bit_shares + 2 * 100 * 8 } else { 0 });
        let err = s.truncate_relu_in_range(&scaled, 15, &mut src).unwrap_err().to_string();
        assert!(err.contains("100 comparisons of 32 bits after a shift by 16 left"), "{err}");
        let c = s.truncate_relu_in_range(&scaled, 16, &mut src)?;
        assert_eq!(src.remaining(), Some(0));
        Ok(vec![a.output, b.output, c.output])
    });
    let relu: Vec<i128> = values.iter().map(|&v| v.max(0)).collect();
    assert_eq!((&out[0], &out[1], &out[2]), (&relu, &relu, &relu));
}

#[test]
fn crt_is_refused_with_a_typed_error_before_any_message() {
    let x = random::<Int100>(1, &[8]);
    let out = run_local(LocalConfig::seeded(1), |s| {
        let px = s.share_input::<Int100>(Role::Server0, owned(s, Role::Server0, &x), &[8])?;
        let before = s.traffic();
        let mut src = ComparisonSource::Online;
        let errors = [
            s.relu_exact(&px, &mut src).map(drop),
            s.drelu(&px, &mut src).map(drop),
            s.argmax_exact(&s.reshape(&px, &[2, 4])?, &mut src).map(drop),
            s.maxpool_exact(&s.reshape(&px, &[1, 2, 2, 2])?, (2, 2), (2, 2), true, &mut src).map(drop),
            ComparisonSource::<Int100>::pregenerate(s, 4).map(drop),
        ];
        let sent = s.traffic().since(&before).total_sent();
        Ok((errors.map(|e| e.unwrap_err()), sent))
    })
    .unwrap();
    for (errors, sent) in &out {
        assert_eq!(*sent, 0);
        for e in errors {
            assert!(matches!(e, ProtocolError::Usage { .. }), "{e:?}");
            assert!(e.to_string().contains("power-of-two ring") && e.to_string().contains("crt"), "{e}");
        }
    }
}

// ---- views -------------------------------------------------------------------------------

fn run_recorded<T: Send>(seed: u64, program: impl Fn(&mut Session) -> Result<T> + Sync) -> [Transcript; 3] {
    let logs: [Arc<Mutex<Transcript>>; 3] = Default::default();
    let results = run_local_with(
        LocalConfig::seeded(seed),
        |t| {
            let log = logs[t.role().index()].clone();
            Box::new(RecordingTransport::new(t, log)) as Box<dyn Transport>
        },
        program,
    );
    collect_outputs(results).expect("protocol run failed");
    logs.map(|l| l.lock().unwrap().clone())
}

/// Every party's received bytes are uniform: ring elements over the 256 byte values, the
/// small-field messages (bit shares to server1, blinded terms to cp) over Z_p. For cp, also
/// the reconstructed terms d0 + d1: per element, a zero with probability 1/2 at a uniform
/// position, the other terms uniform over Z_p^*. The secret is a fixed non-uniform constant.
/// The program is the exact ReLU and a max-pool over the whole word ([`Viewed::WholeWord`]),
/// the in-range ReLU (fewer terms per element), or the in-range ReLU fused with the truncation
/// of a product (the secret then at scale 2^(2f)).
fn views_are_uniform<R: ComparisonRing>(program: Viewed) {
    let l = <R::Word as pond_core::Word>::BITS as usize;
    let prime = if l == 64 { 67 } else { 131 };
    let in_range = program != Viewed::WholeWord;
    let p = if in_range { pond_protocol::comparison::fixed_point_terms::<R>() } else { l };
    let fp = FixedPoint::<R>::default_for_ring();
    let n = 2048;
    let f = fp.frac_bits();
    let secret = match program {
        // 1.5 as a product at scale 2^(2f).
        Viewed::TruncatingInRange => tensor::<R>(&vec![3i128 << (2 * f - 1); n], &[n]),
        _ => fp.encode(ArrayD::from_elem(vec![n], 1.5).view()).unwrap(),
    };
    let shape = [2, 4, 16, 16];
    let (mut ring, mut field): ([Vec<u8>; 3], [Vec<u8>; 3]) = Default::default();
    let (mut zeros, mut positions, mut nonzero, mut elements) = (0usize, Vec::new(), Vec::new(), 0usize);
    for seed in 0..3 {
        let logs = run_recorded(seed, |s| {
            let x = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &secret), &[n])?;
            let mut src = ComparisonSource::Online;
            match program {
                Viewed::InRange => return s.relu_exact_in_range(&x, &mut src).map(drop),
                Viewed::TruncatingInRange => return s.truncate_relu_in_range(&x, f, &mut src).map(drop),
                Viewed::WholeWord => {}
            }
            s.relu_exact(&x, &mut src)?;
            let img = s.reshape(&x, &shape)?;
            s.maxpool_exact(&img, (2, 2), (2, 2), true, &mut src)?;
            Ok(())
        });
        for (role, log) in Role::ALL.iter().zip(&logs) {
            for (_, _, payload) in &log.received {
                // A ring message has bytes above p with overwhelming probability.
                if payload.iter().all(|&b| (b as usize) < prime) {
                    field[role.index()].extend(payload);
                } else {
                    ring[role.index()].extend(payload);
                }
            }
        }
        let cp = &logs[2].received;
        for pair in cp.chunks(2) {
            let [(Role::Server0, t0, d0), (Role::Server1, t1, d1)] = pair else { panic!("cp receives in pairs") };
            assert_eq!(t0, t1);
            for (a, b) in d0.chunks(p).zip(d1.chunks(p)) {
                elements += 1;
                let d: Vec<usize> = a.iter().zip(b).map(|(&x, &y)| (x as usize + y as usize) % prime).collect();
                let z: Vec<usize> = (0..p).filter(|&i| d[i] == 0).collect();
                assert!(z.len() <= 1, "at most one zero term");
                zeros += z.len();
                positions.extend(z);
                nonzero.extend(d.iter().filter(|&&v| v != 0).map(|&v| v - 1));
            }
        }
    }
    for role in Role::ALL {
        if !ring[role.index()].is_empty() {
            let stat = chi_square(ring[role.index()].iter().map(|&b| b as usize), 256);
            let t = chi_square_threshold(255);
            assert!(stat < t, "{}: {role}'s ring bytes fail uniformity: chi2 {stat} >= {t}", R::NAME);
        }
        if !field[role.index()].is_empty() {
            let stat = chi_square(field[role.index()].iter().map(|&b| b as usize), prime);
            let t = chi_square_threshold(prime - 1);
            assert!(stat < t, "{}: {role}'s Z_p bytes fail uniformity: chi2 {stat} >= {t}", R::NAME);
        }
    }
    assert!(ring[2].is_empty(), "cp receives only blinded terms");
    assert!(field[0].is_empty(), "server0 receives no Z_p values");
    // The reconstructed terms: zero-bearing elements ~ Binomial(elements, 1/2) (6 sigma).
    let sigma = (elements as f64 / 4.0).sqrt();
    assert!((zeros as f64 - elements as f64 / 2.0).abs() < 6.0 * sigma, "{zeros} zeros in {elements} elements");
    let stat = chi_square(positions.into_iter(), p);
    assert!(stat < chi_square_threshold(p - 1), "zero positions not uniform: {stat}");
    let stat = chi_square(nonzero.into_iter(), prime - 1);
    assert!(stat < chi_square_threshold(prime - 2), "nonzero terms not uniform on Z_p^*: {stat}");
}

/// Which program [`views_are_uniform`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Viewed {
    WholeWord,
    InRange,
    TruncatingInRange,
}

#[test]
fn every_party_view_is_uniform() {
    views_are_uniform::<Z64>(Viewed::WholeWord);
    views_are_uniform::<Z128>(Viewed::WholeWord);
}

#[test]
fn every_party_view_of_the_in_range_relu_is_uniform() {
    views_are_uniform::<Z64>(Viewed::InRange);
    views_are_uniform::<Z128>(Viewed::InRange);
}

#[test]
fn every_party_view_of_the_truncating_relu_is_uniform() {
    views_are_uniform::<Z64>(Viewed::TruncatingInRange);
}

#[test]
fn same_seed_same_transcripts() {
    let x = random::<Z64>(5, &[300]);
    let program = |s: &mut Session| {
        let px = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &x), &[300])?;
        s.argmax_exact(&s.reshape(&px, &[30, 10])?, &mut ComparisonSource::Online).map(drop)
    };
    assert_eq!(run_recorded(7, program), run_recorded(7, program));
}

/// cp's transport with the last byte of its first message to server1 (a comparison's bit shares
/// in Z_p) raised to p.
struct OutOfFieldBits {
    inner: InMemoryTransport,
    done: bool,
}

impl Transport for OutOfFieldBits {
    fn role(&self) -> Role {
        self.inner.role()
    }
    fn send(&mut self, to: Role, tag: Tag, mut payload: Vec<u8>) -> Result<()> {
        if to == Role::Server1 && !self.done {
            self.done = true;
            if let Some(last) = payload.last_mut() {
                *last = <u64 as pond_protocol::comparison::ComparisonWord>::PRIME;
            }
        }
        self.inner.send(to, tag, payload)
    }
    fn recv(&mut self, from: Role, tag: Tag, timeout: std::time::Duration) -> Result<Vec<u8>> {
        self.inner.recv(from, tag, timeout)
    }
}

/// A bit share outside Z_p, even the last of the message, is a bad message naming cp.
#[test]
fn a_bit_share_outside_the_field_is_an_error_naming_cp() {
    let x = tensor::<Z64>(&[5, -3, 0, 7], &[4]);
    let results = run_local_with(
        LocalConfig::seeded(2),
        |t| match t.role() {
            Role::Cp => Box::new(OutOfFieldBits { inner: t, done: false }) as Box<dyn Transport>,
            _ => Box::new(t),
        },
        |s| {
            let px = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &x), &[4])?;
            s.relu_exact(&px, &mut ComparisonSource::Online).map(drop)
        },
    );
    match &results[1] {
        Err(e @ ProtocolError::BadMessage { peer: Role::Cp, .. }) => {
            assert!(e.to_string().contains("bit shares below 67"), "{e}")
        }
        other => panic!("server1 should reject the out-of-field bit share, got {other:?}"),
    }
}
