//! Generic property suites, instantiated once per ring: ring laws, agreement with big-integer
//! arithmetic modulo M, matmul and conv2d against a scalar big-integer reference, shape
//! operations, fixed-point round trips and the byte encoding.

use ndarray::{ArrayD, IxDyn};
use num_bigint::BigUint;
use pond_core::{
    Conv2dParams, CoreError, Crt, FixedPoint, Int100, PrgKey, Ring, RingTensor, TfeModuli, WideModuli, Z128, Z64,
};
use proptest::prelude::*;

fn random<R: Ring>(seed: u64, shape: &[usize]) -> R::Tensor {
    R::Tensor::random(&PrgKey::from_seed(seed), 0, shape)
}

fn big<R: Ring>(t: &R::Tensor) -> Vec<BigUint> {
    t.to_biguint()
}

fn ring_laws<R: Ring>(seed: u64, shape: &[usize]) {
    let (a, b, c) = (random::<R>(seed, shape), random::<R>(seed + 1, shape), random::<R>(seed + 2, shape));
    let zero = R::Tensor::zeros(shape);
    let one = zero.add_scalar(1);
    assert_eq!(a.add(&b).unwrap().add(&c).unwrap(), a.add(&b.add(&c).unwrap()).unwrap(), "+ associative");
    assert_eq!(a.add(&b).unwrap(), b.add(&a).unwrap(), "+ commutative");
    assert_eq!(a.mul(&b).unwrap().mul(&c).unwrap(), a.mul(&b.mul(&c).unwrap()).unwrap(), "* associative");
    assert_eq!(a.mul(&b).unwrap(), b.mul(&a).unwrap(), "* commutative");
    assert_eq!(
        a.mul(&b.add(&c).unwrap()).unwrap(),
        a.mul(&b).unwrap().add(&a.mul(&c).unwrap()).unwrap(),
        "distributive"
    );
    assert_eq!(a.add(&a.neg()).unwrap(), zero, "negation");
    assert_eq!(a.sub(&b).unwrap(), a.add(&b.neg()).unwrap(), "sub is add of negation");
    assert_eq!(a.add(&zero).unwrap(), a, "zero");
    assert_eq!(a.mul(&one).unwrap(), a, "one");
    assert_eq!(a.mul_scalar(-1), a.neg(), "scalar -1");
    let mut d = a.clone();
    d.add_assign(&b).unwrap();
    d.sub_assign(&c).unwrap();
    assert_eq!(d, a.add(&b).unwrap().sub(&c).unwrap(), "in-place ops");
}

fn agrees_with_bigint<R: Ring>(seed: u64, shape: &[usize]) {
    let m = R::modulus();
    let (a, b) = (random::<R>(seed, shape), random::<R>(seed + 7, shape));
    let (ba, bb) = (big::<R>(&a), big::<R>(&b));
    let sum: Vec<BigUint> = ba.iter().zip(&bb).map(|(x, y)| (x + y) % &m).collect();
    let prod: Vec<BigUint> = ba.iter().zip(&bb).map(|(x, y)| (x * y) % &m).collect();
    let diff: Vec<BigUint> = ba.iter().zip(&bb).map(|(x, y)| (x + &m - y) % &m).collect();
    assert_eq!(big::<R>(&a.add(&b).unwrap()), sum);
    assert_eq!(big::<R>(&a.mul(&b).unwrap()), prod);
    assert_eq!(big::<R>(&a.sub(&b).unwrap()), diff);
    // Signed representatives map back to the same elements and lie in [-M/2, M/2).
    let signed = a.to_signed();
    assert_eq!(R::Tensor::from_signed(signed.view()), a);
}

/// `from_i64s` gives the elements `from_signed` gives for the same integers, and refuses a count
/// that does not fill the shape.
fn from_i64s_matches_from_signed<R: Ring>(values: &[i64]) {
    let signed = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.iter().map(|&v| i128::from(v)).collect())
        .expect("one value per element");
    assert_eq!(R::Tensor::from_i64s(&[values.len()], values.to_vec()).unwrap(), R::Tensor::from_signed(signed.view()));
    let err = R::Tensor::from_i64s(&[values.len() + 1], values.to_vec()).unwrap_err();
    assert!(matches!(&err, CoreError::InvalidShape { shape, .. } if shape == &[values.len() + 1]), "{err}");
}

/// a·b modulo M by big integers, for row-major `a` (m×k) and `b` (k×n).
fn matmul_reference<R: Ring>(a: &R::Tensor, b: &R::Tensor, m: usize, k: usize, n: usize) -> Vec<BigUint> {
    let modulus = R::modulus();
    let (ba, bb) = (big::<R>(a), big::<R>(b));
    (0..m)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| (0..k).map(|t| &ba[i * k + t] * &bb[t * n + j]).sum::<BigUint>() % &modulus)
        .collect()
}

/// The product, also with `b` reused as the right operand (as a masked weight is, batch after
/// batch: a ring may keep a faster copy of it), then changed in place, and a clone taken before
/// the change.
fn matmul_matches_reference<R: Ring>(seed: u64, m: usize, k: usize, n: usize) {
    let (a, mut b) = (random::<R>(seed, &[m, k]), random::<R>(seed + 3, &[k, n]));
    let expected = matmul_reference::<R>(&a, &b, m, k, n);
    for use_ in 0..3 {
        assert_eq!(big::<R>(&a.matmul(&b).unwrap()), expected, "use {use_} of the right operand");
    }
    let before = b.clone();
    b.add_assign(&random::<R>(seed + 4, &[k, n])).unwrap();
    let changed = matmul_reference::<R>(&a, &b, m, k, n);
    for use_ in 0..2 {
        assert_eq!(big::<R>(&a.matmul(&b).unwrap()), changed, "use {use_} after an in-place change");
    }
    assert_eq!(big::<R>(&a.matmul(&before).unwrap()), expected, "a clone taken before the change");
}

#[allow(clippy::too_many_arguments)]
fn conv_matches_reference<R: Ring>(seed: u64, n: usize, c: usize, hw: usize, o: usize, k: usize, p: Conv2dParams) {
    let modulus = R::modulus();
    let x = random::<R>(seed, &[n, c, hw, hw]);
    let w = random::<R>(seed + 5, &[o, c, k, k]);
    let Some((oh, ow)) = p.output_size(hw, hw, k, k) else {
        assert!(x.conv2d(&w, p).is_err());
        return;
    };
    let (bx, bw) = (big::<R>(&x), big::<R>(&w));
    let mut expected = Vec::new();
    for b in 0..n {
        for f in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = BigUint::default();
                    for ch in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * p.stride.0 + ky) as isize - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + kx) as isize - p.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= hw as isize || ix >= hw as isize {
                                    continue;
                                }
                                let xi = ((b * c + ch) * hw + iy as usize) * hw + ix as usize;
                                let wi = ((f * c + ch) * k + ky) * k + kx;
                                s += &bx[xi] * &bw[wi];
                            }
                        }
                    }
                    expected.push(s % &modulus);
                }
            }
        }
    }
    let y = x.conv2d(&w, p).unwrap();
    assert_eq!(y.shape(), &[n, o, oh, ow]);
    assert_eq!(big::<R>(&y), expected);
    // Accumulating adds the same convolution, or its window sums.
    let mut acc = y.clone();
    acc.pooled_conv2d_add_assign(&x, &w, p, (1, 1)).unwrap();
    assert_eq!(acc, y.add(&y).unwrap());
    // Pooled: one strided convolution with a widened filter (pooled_conv), for every window
    // that tiles the output; any other window is an error.
    for window in [(2, 1), (1, 2), (2, 2), (3, 3), (oh, ow)] {
        let mut pooled = R::Tensor::zeros(&[n, o, (oh / window.0).max(1), (ow / window.1).max(1)]);
        if oh % window.0 != 0 || ow % window.1 != 0 {
            assert!(pooled.pooled_conv2d_add_assign(&x, &w, p, window).is_err(), "{window:?}");
            continue;
        }
        let sums = y.window_sum(window).unwrap();
        pooled.pooled_conv2d_add_assign(&x, &w, p, window).unwrap();
        assert_eq!(pooled, sums, "window {window:?}, {p:?}");
    }
}

/// Window sums equal the sums of the window entries, taken through signed representatives
/// (wrapping i128 sums: exact modulo 2^128, and far from overflow for the other rings).
fn window_sum_matches_reference<R: Ring>(seed: u64, lead: usize, (oh, ow): (usize, usize), (kh, kw): (usize, usize)) {
    let x = random::<R>(seed, &[lead, 2, oh * kh, ow * kw]);
    let signed = x.to_signed();
    let expected = ndarray::Array4::from_shape_fn((lead, 2, oh, ow), |(n, c, y, xx)| {
        let mut s = 0i128;
        for dy in 0..kh {
            for dx in 0..kw {
                s = s.wrapping_add(signed[[n, c, y * kh + dy, xx * kw + dx]]);
            }
        }
        s
    });
    assert_eq!(x.window_sum((kh, kw)).unwrap(), R::Tensor::from_signed(expected.into_dyn().view()));
    // A window taller than the image does not tile it.
    assert!(x.window_sum((oh * kh + 1, kw)).is_err());
}

fn shape_ops_match_ndarray<R: Ring>(seed: u64, rows: usize, cols: usize) {
    let a = random::<R>(seed, &[rows, cols]);
    let s = a.to_signed();
    let t = a.transpose().unwrap();
    assert_eq!(t.to_signed(), s.t().as_standard_layout().into_owned());
    assert_eq!(a.reshape(&[rows * cols]).unwrap().reshape(&[rows, cols]).unwrap(), a);
    // The owned reshape gives the tensor the copying one gives (of a tensor and its transpose).
    assert_eq!(a.clone().into_reshaped(&[cols, rows]).unwrap(), a.reshape(&[cols, rows]).unwrap());
    assert_eq!(t.clone().into_reshaped(&[rows * cols]).unwrap(), t.reshape(&[rows * cols]).unwrap());
    assert!(a.clone().into_reshaped(&[rows * cols + 1]).is_err());
    let top = a.slice_axis(0, 0..rows / 2).unwrap();
    let bottom = a.slice_axis(0, rows / 2..rows).unwrap();
    assert_eq!(R::Tensor::concat(0, &[&top, &bottom]).unwrap(), a);
    let row = a.slice_axis(0, 0..1).unwrap();
    let b = row.broadcast_to(&[rows, cols]).unwrap();
    for r in 0..rows {
        assert_eq!(b.slice_axis(0, r..r + 1).unwrap(), row);
    }
    // sum over an axis agrees with adding the slices.
    let mut acc = R::Tensor::zeros(&[cols]);
    for r in 0..rows {
        acc.add_assign(&a.slice_axis(0, r..r + 1).unwrap().reshape(&[cols]).unwrap()).unwrap();
    }
    assert_eq!(a.sum_axis(0).unwrap(), acc);
}

fn bytes_round_trip<R: Ring>(seed: u64, shape: &[usize]) {
    let a = random::<R>(seed, shape);
    let bytes = a.to_bytes();
    assert_eq!(bytes.len(), a.len() * R::Tensor::BYTES_PER_ELEMENT);
    assert_eq!(R::Tensor::from_bytes(shape, &bytes).unwrap(), a);
    let err = R::Tensor::from_bytes(shape, &bytes[..bytes.len().saturating_sub(1)]);
    assert!(a.is_empty() || matches!(err, Err(CoreError::BadEncoding { .. })));
}

/// The fused in-place operations equal their unfused definitions.
fn fused_ops_match<R: Ring>(seed: u64, shape: &[usize]) {
    let (a, b, c) = (random::<R>(seed, shape), random::<R>(seed ^ 1, shape), random::<R>(seed ^ 2, shape));
    let mut fused = c.clone();
    fused.mul_add_assign(&a, &b).unwrap();
    assert_eq!(fused, c.add(&a.mul(&b).unwrap()).unwrap());
    let d = random::<R>(seed ^ 3, shape);
    let mut pair = c.clone();
    pair.mul_add_pair_assign((&a, &b), (&d, &c)).unwrap();
    assert_eq!(pair, c.add(&a.mul(&b).unwrap()).unwrap().add(&d.mul(&c).unwrap()).unwrap());
    let longer = random::<R>(seed ^ 4, &[a.len() + 1]);
    assert!(pair.mul_add_pair_assign((&a, &b), (&d, &longer)).is_err(), "a shape mismatch is an error");
    // A scalar anywhere in i128: small, negative, and far above every ring's modulus.
    let scalar = (seed as i128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835u128 as i128) >> (seed % 127);
    let mut scaled = c.clone();
    scaled.add_scaled_assign(&a, scalar).unwrap();
    assert_eq!(scaled, c.add(&a.mul_scalar(scalar)).unwrap());
    assert!(scaled.add_scaled_assign(&longer, scalar).is_err(), "a shape mismatch is an error");
    let mut shifted = c.clone();
    shifted.add_scalar_assign(scalar);
    assert_eq!(shifted, c.add_scalar(scalar));
    // Broadcast operands: every other axis of the shape cut to 1, from the first (a bias-like
    // tensor, repeated in runs) and from the second (for three axes or more, not in runs).
    for parity in [0, 1] {
        let cut: Vec<usize> = shape.iter().enumerate().map(|(i, &d)| if i % 2 == parity { 1 } else { d }).collect();
        let bias = random::<R>(seed ^ 5, &cut);
        let mut biased = c.clone();
        biased.add_broadcast_assign(&bias).unwrap();
        assert_eq!(biased, c.add(&bias.broadcast_to(shape).unwrap()).unwrap(), "{cut:?} broadcast to {shape:?}");
    }
    let mut biased = c.clone();
    assert!(biased.add_broadcast_assign(&longer).is_err(), "incompatible shapes are an error");
    let mut from = a.clone();
    from.sub_from_assign(&b).unwrap();
    assert_eq!(from, b.sub(&a).unwrap());
    let mut opened = c.clone();
    opened.add_from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(opened, c.add(&a).unwrap());
    let short = &a.to_bytes()[1..];
    assert!(matches!(opened.add_from_bytes(short), Err(CoreError::BadEncoding { .. })));
}

fn fixed_point_round_trip<R: Ring>(values: &[f64]) {
    let fp = FixedPoint::<R>::default_for_ring();
    let x = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.iter().map(|v| v * fp.bound()).collect()).unwrap();
    let decoded = fp.decode(&fp.encode(x.view()).unwrap());
    // Round to nearest: error at most half an ulp, 2^-(f+1).
    let bound = fp.ulp() / 2.0;
    for (d, v) in decoded.iter().zip(x.iter()) {
        assert!((d - v).abs() <= bound, "{v} decoded as {d}, error above 2^-(f+1) = {bound}");
    }
}

macro_rules! ring_suite {
    ($name:ident, $ring:ty) => {
        mod $name {
            use super::*;
            type R = $ring;
            fn shape() -> impl Strategy<Value = Vec<usize>> {
                prop::collection::vec(1usize..5, 1..4)
            }
            /// Above the size where the elementwise loops go parallel.
            #[test]
            fn fused_parallel() {
                fused_ops_match::<R>(9, &[3, 70_001]);
            }
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(48))]
                #[test]
                fn laws(seed in any::<u64>(), shape in shape()) { ring_laws::<R>(seed, &shape) }
                #[test]
                fn bigint(seed in any::<u64>(), shape in shape()) { agrees_with_bigint::<R>(seed, &shape) }
                #[test]
                fn matmul(seed in any::<u64>(), m in 1usize..9, k in 1usize..19, n in 1usize..9) {
                    matmul_matches_reference::<R>(seed, m, k, n)
                }
                #[test]
                fn conv(seed in any::<u64>(), n in 1usize..3, c in 1usize..3, hw in 1usize..8, o in 1usize..3,
                        k in 1usize..4, s in 1usize..3, s2 in 1usize..4, p in 0usize..2, p2 in 0usize..2) {
                    conv_matches_reference::<R>(seed, n, c, hw, o, k, Conv2dParams { stride: (s, s2), padding: (p, p2) })
                }
                #[test]
                fn window_sum(seed in any::<u64>(), lead in 1usize..3, oh in 1usize..4, ow in 1usize..4,
                              kh in 1usize..4, kw in 1usize..4) {
                    window_sum_matches_reference::<R>(seed, lead, (oh, ow), (kh, kw))
                }
                #[test]
                fn shape_ops(seed in any::<u64>(), rows in 1usize..7, cols in 1usize..7) {
                    shape_ops_match_ndarray::<R>(seed, rows, cols)
                }
                #[test]
                fn fused(seed in any::<u64>(), shape in shape()) { fused_ops_match::<R>(seed, &shape) }
                #[test]
                fn bytes(seed in any::<u64>(), shape in prop::collection::vec(0usize..5, 0..4)) {
                    bytes_round_trip::<R>(seed, &shape)
                }
                #[test]
                fn from_i64s(values in prop::collection::vec(any::<i64>(), 0..100)) {
                    from_i64s_matches_from_signed::<R>(&values)
                }
                #[test]
                fn fixed_point(values in prop::collection::vec(-0.999_999f64..0.999_999, 1..64)) {
                    fixed_point_round_trip::<R>(&values)
                }
            }
        }
    };
}

ring_suite!(z64, Z64);
ring_suite!(z128, Z128);
ring_suite!(crt10, Crt<TfeModuli>);
ring_suite!(crt5, Int100);

fn fixed_point_edges<R: Ring>() {
    let fp = FixedPoint::<R>::default_for_ring();
    let edge = fp.bound() - fp.ulp();
    for v in [0.0, -0.0, 1e-9, -1e-9, fp.ulp() / 2.0, edge, -edge] {
        let x = ArrayD::from_elem(IxDyn(&[1]), v);
        let d = fp.decode(&fp.encode(x.view()).unwrap())[[0]];
        assert!((d - v).abs() <= fp.ulp() / 2.0, "{v} decoded as {d}");
    }
    for v in [fp.bound(), -fp.bound(), f64::INFINITY] {
        assert!(fp.encode(ArrayD::from_elem(IxDyn(&[1]), v).view()).is_err(), "{v} must be refused");
    }
}

#[test]
fn fixed_point_edges_round_trip() {
    fixed_point_edges::<Z64>();
    fixed_point_edges::<Z128>();
    fixed_point_edges::<Crt<TfeModuli>>();
    fixed_point_edges::<Crt<WideModuli>>();
}

#[test]
fn owned_reshape_keeps_the_buffer() {
    let a = random::<Z64>(3, &[6, 4]);
    let ptr = a.array().as_ptr();
    let b = a.into_reshaped(&[4, 3, 2]).unwrap();
    assert_eq!(b.shape(), &[4, 3, 2]);
    assert_eq!(b.array().as_ptr(), ptr, "a standard-layout tensor is reshaped without a copy");
}

#[test]
fn shape_errors_name_both_shapes() {
    let a = <Z64 as Ring>::Tensor::zeros(&[2, 3]);
    let b = <Z64 as Ring>::Tensor::zeros(&[4, 5]);
    let err = a.matmul(&b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
    let err = a.add(&b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
    let x = <Z64 as Ring>::Tensor::zeros(&[1, 2, 5, 5]);
    let w = <Z64 as Ring>::Tensor::zeros(&[3, 1, 3, 3]);
    let err = x.conv2d(&w, Conv2dParams::VALID).unwrap_err().to_string();
    assert!(err.contains("[1, 2, 5, 5]") && err.contains("[3, 1, 3, 3]"), "{err}");
    assert!(a.reshape(&[7]).is_err());
    assert!(a.permute(&[0, 0]).is_err());
    assert!(a.slice_axis(1, 2..5).is_err());
    assert!(a.sum_axis(2).is_err());
}

#[test]
fn crt_rejects_unreduced_residues() {
    fn check<R: Ring>() {
        let bytes = vec![0xff; R::Tensor::BYTES_PER_ELEMENT];
        assert!(R::Tensor::from_bytes(&[1], &bytes).is_err(), "{}", R::NAME);
    }
    check::<Int100>();
    check::<Crt<TfeModuli>>();
}
