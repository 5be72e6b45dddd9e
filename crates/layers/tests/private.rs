//! Every layer's private forward and backward pass against the plaintext backend, within a
//! bound derived from the fixed-point settings (Z64, f = 16 fractional bits, u = 2^-16):
//!
//! - every input (x, weights, biases, dy) is encoded with error at most e0 = u/2;
//! - a product of k terms of encoded values a~ = a + da, b~ = b + db is exact in the ring, so
//!   before truncation it is off by at most k (|a| e0 + |b| e0 + e0^2); truncation adds < u;
//! - public scalars (1/K of average pooling) carry k = 62 - 16 - 15 = 31 fractional bits:
//!   error |x| 2^-32 before their truncation (< u);
//! - sums (bias gradient, col2im overlaps) add the errors of their terms;
//! - exact comparisons (ReLU, max-pool) are exact on the encoded values: inputs are kept at
//!   least 0.05 >> u from 0 and from each other, so no decision flips;
//! - polynomials: the power-tree bound of pond-protocol's tests (each power's error from its
//!   factors plus one truncation, each coefficient's rounding, the final truncation).

mod common;

use common::*;
use ndarray::ArrayD;
use pond_core::{FixedPoint, Z64};
use pond_layers::activation::{RELU_GRAD, SIGMOID_GRAD};
use pond_layers::*;
use pond_protocol::polynomial::{Polynomial, RELU, SIGMOID};
use pond_protocol::{comparison, costs, run_local, Bilinear, LocalConfig, Role};

fn max_abs(a: &ArrayD<f64>) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Error of a k-term product of values bounded by `a` and `b`, each encoded (e0), truncated once.
fn product(k: usize, a: f64, b: f64, u: f64) -> f64 {
    let e0 = u / 2.0;
    k as f64 * (a * e0 + b * e0 + e0 * e0) + u
}

/// (bound on y, bound on dx, bounds on the parameter gradients) for one case.
fn bounds(case: &Case, w: &Weights, dy: &ArrayD<f64>, u: f64) -> (f64, f64, Vec<f64>) {
    let e0 = u / 2.0;
    let (xm, dym) = (max_abs(&case.x), max_abs(dy));
    let wm = w.values().map(max_abs).fold(0.0, f64::max);
    let n = case.x.shape()[0];
    let poly = |p: &Polynomial, d: &Polynomial| {
        let (bp, bd) = (p.error_bound(u), d.error_bound(u));
        let dm = case.x.iter().map(|&v| d.eval(v).abs()).fold(0.0, f64::max);
        (bp, dym * bd + dm * e0 + e0 * bd + u, vec![])
    };
    match case.spec.layers[0] {
        LayerSpec::Dense { inputs, outputs } => {
            (product(inputs, xm, wm, u) + e0, product(outputs, dym, wm, u), vec![product(n, xm, dym, u), n as f64 * e0])
        }
        LayerSpec::Conv2d { in_channels, out_channels, kernel, stride, .. } => {
            let rows = dy.len() / out_channels;
            let overlaps = kernel.0.div_ceil(stride.0) * kernel.1.div_ceil(stride.1);
            (
                product(in_channels * kernel.0 * kernel.1, xm, wm, u) + e0,
                overlaps as f64 * product(out_channels, dym, wm, u),
                vec![product(rows, xm, dym, u), rows as f64 * e0],
            )
        }
        LayerSpec::AvgPool2d { size, stride } => {
            let k = (size.0 * size.1) as f64;
            let overlaps = (size.0.div_ceil(stride.0) * size.1.div_ceil(stride.1)) as f64;
            let scalar = 2f64.powi(-32);
            (e0 + k * xm * scalar + u, overlaps * (e0 / k + dym * scalar + u), vec![])
        }
        LayerSpec::MaxPool2d { size, stride } => {
            (e0, (size.0.div_ceil(stride.0) * size.1.div_ceil(stride.1)) as f64 * e0, vec![])
        }
        LayerSpec::Flatten | LayerSpec::Relu { mode: ReluMode::Exact } => (e0, e0, vec![]),
        LayerSpec::Relu { mode: ReluMode::Polynomial } => poly(&RELU, &RELU_GRAD),
        LayerSpec::Sigmoid => poly(&SIGMOID, &SIGMOID_GRAD),
    }
}

fn check(name: &str, what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, bound: f64) {
    assert_eq!(got.shape(), want.shape(), "{name}: {what} shape");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(worst <= bound, "{name}: {what} off by {worst:e}, bound {bound:e}");
}

#[test]
fn private_layers_match_plaintext_within_fixed_point_bounds() {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let u = fp.ulp();
    for case in cases() {
        let w: Weights = case
            .spec
            .init(11)
            .into_iter()
            .map(|(k, v)| (k.clone(), if k.ends_with("bias") { v + 0.1 } else { v }))
            .collect();
        let mut pb = PlainBackend;
        let model = Sequential::input(&mut pb, &case.spec, Role::Server0, Some(&w)).unwrap();
        let (y, _) = model.forward(&mut pb, Activation::Value(case.x.clone())).unwrap();
        let dy = uniform(42, y.shape(), 1.0, 0.0);
        let (y_p, dx_p, g_p) = run_layer(&mut pb, &case.spec, &w, &case.x, &dy, (true, true)).unwrap().unwrap();
        let out = run_local(LocalConfig::seeded(7), |s| {
            let owner = (s.role() == Role::Server0, s.role() == Role::Server1);
            let mut b = PrivateBackend::new(s, fp);
            Ok(run_layer(&mut b, &case.spec, &w, &case.x, &dy, owner)?)
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let (y_s, dx_s, g_s) = out[0].clone().expect("server0 receives the outputs");
        assert!(out[1].is_none() && out[2].is_none(), "only the output owner learns the result");
        let (by, bdx, bg) = bounds(&case, &w, &dy, u);
        check(case.name, "forward", &y_s, &y_p, by);
        check(case.name, "input gradient", &dx_s, &dx_p, bdx);
        for (i, ((gs, gp), b)) in g_s.iter().zip(&g_p).zip(&bg).enumerate() {
            check(case.name, &format!("parameter gradient {i}"), gs, gp, *b);
        }
    }
}

/// The CRT ring has no exact comparison: exact ReLU reports a typed error naming the ring.
#[test]
fn exact_relu_on_crt_is_a_clear_error() {
    let fp = FixedPoint::<pond_core::Int100>::default_for_ring();
    let x = uniform(1, &[2, 3], 1.0, 0.1);
    let err = run_local(LocalConfig::seeded(1), |s| {
        let own = s.role() == Role::Server0;
        let mut b = PrivateBackend::new(s, fp);
        let xs = b.input(Role::Server0, own.then_some(&x), &[2, 3])?;
        Ok(b.relu(&xs)?.0.len())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("power-of-two ring"), "{err}");
}

/// One private batch of `spec` in Z64 (seeded): server0 owns the weights (convolution filters
/// prepared once) and the input, the forward pass keeps one cache per layer (checked), and
/// server0 gets the output. Per party: the output it received and the traffic of the whole
/// batch (input sharing, forward pass, reveal), for comparison with
/// [`cost::inference_batch`].
fn private_batch(
    seed: u64,
    spec: &ModelSpec,
    w: &Weights,
    x: &ArrayD<f64>,
) -> [(Option<ArrayD<f64>>, pond_protocol::Traffic); 3] {
    let fp = FixedPoint::<Z64>::default_for_ring();
    run_local(LocalConfig::seeded(seed), |s| {
        let own = s.role() == Role::Server0;
        let mut b = PrivateBackend::new(s, fp);
        let mut model = Sequential::input(&mut b, spec, Role::Server0, own.then_some(w))?;
        for layer in &mut model.layers {
            if let AnyLayer::Conv2d(c) = layer {
                c.prepare_weight(&mut b)?;
            }
        }
        let before = b.session().traffic();
        let xs = b.input(Role::Server0, own.then_some(x), x.shape())?;
        let (ys, caches) = model.forward(&mut b, Activation::Value(xs))?;
        assert_eq!(caches.len(), spec.layers.len(), "one cache per layer");
        let revealed = b.output(&ys, Role::Server0)?;
        Ok((revealed, b.session().traffic().since(&before)))
    })
    .unwrap()
}

/// A convolution followed by a 2x2 average pooling that tiles its output runs fused: one
/// truncation, of the pooled output, by f + 2. The average of four k-term products, each off by
/// at most k (|x| e0 + |w| e0 + e0^2) before that truncation, is off by as much; the truncation
/// adds < u and the bias its encoding error e0. The traffic equals the cost formula, which
/// counts no truncation for the convolution.
#[test]
fn convolution_then_average_pooling_runs_fused() {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let u = fp.ulp();
    let conv = LayerSpec::Conv2d { in_channels: 2, out_channels: 3, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
    let spec = ModelSpec {
        input_shape: vec![2, 4, 6],
        layers: vec![conv, LayerSpec::AvgPool2d { size: (2, 2), stride: (2, 2) }],
    };
    let x = uniform(3, &[2, 2, 4, 6], 2.0, 0.05);
    let w = spec.init(5);
    let mut pb = PlainBackend;
    let model = Sequential::input(&mut pb, &spec, Role::Server0, Some(&w)).unwrap();
    let (y, caches) = model.forward(&mut pb, Activation::Value(x.clone())).unwrap();
    assert_eq!(caches.len(), 2, "one cache per layer");
    let out = private_batch(3, &spec, &w, &x);
    let expected = cost::inference_batch::<Z64>(&spec, 2, Role::Server0, Role::Server0).unwrap();
    for (role, (_, traffic)) in out.iter().enumerate() {
        assert_eq!(traffic.total_sent(), expected.bytes[role], "party {role}: bytes sent vs the formula");
    }
    let wm = w.values().map(max_abs).fold(0.0, f64::max);
    let bound = product(2 * 3 * 3, max_abs(&x), wm, u) + u / 2.0;
    check("conv2d + avg_pool2d", "forward", out[0].0.as_ref().expect("server0 owns the output"), &y, bound);
}

/// A dense layer followed by an exact ReLU runs as one step (`Affine::relu`): in Z64 the
/// layer's truncation is fused with the ReLU's comparison, so the pair takes 2 rounds (the
/// masking of the input is free here: cp owns it) and the traffic equals the cost formula, which
/// counts the fused operation and no separate truncation. Values: the dense output is off by at
/// most `product(k, |x|, |w|, u) + e0` (k = 6 terms, the truncation's u included, e0 for the
/// bias), whether the truncation is fused or not, and ReLU is 1-Lipschitz, so the ReLU is off by
/// as much. The backward pass gets both layers' caches, and its gradients are those of the
/// unfused pass: inputs keep the pre-activations at least 0.05 from 0, so no bit flips and the
/// dense layer's bounds of [`bounds`] apply to the gradients through the ReLU mask.
#[test]
fn dense_then_exact_relu_runs_fused() {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let u = fp.ulp();
    let spec = ModelSpec {
        input_shape: vec![6],
        layers: vec![LayerSpec::Dense { inputs: 6, outputs: 5 }, LayerSpec::Relu { mode: ReluMode::Exact }],
    };
    let x = uniform(4, &[4, 6], 2.0, 0.05);
    let w = spec.init(9);
    let mut pb = PlainBackend;
    let plain = Sequential::input(&mut pb, &spec, Role::Cp, Some(&w)).unwrap();
    let (y, _) = plain.forward(&mut pb, Activation::Value(x.clone())).unwrap();
    let out = run_local(LocalConfig::seeded(5), |s| {
        let (own, client) = (s.role() == Role::Server0, s.role() == Role::Cp);
        let mut b = PrivateBackend::new(s, fp);
        let mut model = Sequential::input(&mut b, &spec, Role::Server0, own.then_some(&w))?;
        for layer in &mut model.layers {
            if let AnyLayer::Dense(d) = layer {
                d.prepare_weight(&mut b)?;
            }
        }
        let xs = b.input(Role::Cp, client.then_some(&x), x.shape())?;
        let before = b.session().traffic();
        let (ys, caches) = model.forward(&mut b, Activation::Value(xs))?;
        assert_eq!(caches.len(), 2, "one cache per layer");
        let traffic = b.session().traffic().since(&before);
        let revealed = b.output(&ys, Role::Server0)?;
        Ok((revealed, traffic))
    })
    .unwrap();
    // The forward pass: cp's product correction (its input needs no mask) and the fused
    // operation; the model's formula is that plus the input's sharing and the reveal.
    let expected = costs::product::<Z64>(Bilinear::Matmul, &[4, 6], true, &[6, 5], true)
        + comparison::cost::truncate_relu_in_range::<Z64>(4 * 5);
    assert_eq!(
        cost::inference_batch::<Z64>(&spec, 4, Role::Cp, Role::Server0).unwrap(),
        costs::share_input::<Z64>(Role::Cp, 4 * 6) + expected + costs::reveal_to::<Z64>(4 * 5, Role::Server0)
    );
    for (role, (_, traffic)) in out.iter().enumerate() {
        assert_eq!(traffic.total_sent(), expected.bytes[role], "party {role}: bytes sent vs the formula");
    }
    assert_eq!(out[1].1.rounds, 2, "server1: the fused truncation and ReLU take 2 rounds");
    assert_eq!(expected.rounds, 2);
    let wm = w.values().map(max_abs).fold(0.0, f64::max);
    let bound = product(6, max_abs(&x), wm, u) + u / 2.0;
    check("dense + relu", "forward", out[0].0.as_ref().expect("server0 owns the output"), &y, bound);
}

/// A convolution, a max-pool and an exact ReLU: the max-pool runs on the convolution's product
/// before its truncation (floor is monotone, so the max commutes with it, and the whole-word
/// comparison is exact for differences of in-range products), and the pooled output's
/// truncation is fused with the ReLU: the traffic equals the formula, which counts no
/// truncation of the convolution's output. Values: each convolution output is off by at most
/// `product(k, |x|, |w|, u) + e0` (k = 9 terms, the truncation's u included, e0 for the bias);
/// max and ReLU are 1-Lipschitz in the largest difference, so the output is off by as much.
#[test]
fn convolution_maxpool_relu_runs_fused() {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let u = fp.ulp();
    let conv = LayerSpec::Conv2d { in_channels: 1, out_channels: 2, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
    let spec = ModelSpec {
        input_shape: vec![1, 4, 6],
        layers: vec![
            conv,
            LayerSpec::MaxPool2d { size: (2, 2), stride: (2, 2) },
            LayerSpec::Relu { mode: ReluMode::Exact },
        ],
    };
    let x = uniform(12, &[3, 1, 4, 6], 2.0, 0.05);
    let w = spec.init(13);
    let mut pb = PlainBackend;
    let plain = Sequential::input(&mut pb, &spec, Role::Server0, Some(&w)).unwrap();
    let (y, _) = plain.forward(&mut pb, Activation::Value(x.clone())).unwrap();
    let out = private_batch(13, &spec, &w, &x);
    let expected = cost::inference_batch::<Z64>(&spec, 3, Role::Server0, Role::Server0).unwrap();
    for (role, (_, traffic)) in out.iter().enumerate() {
        assert_eq!(traffic.total_sent(), expected.bytes[role], "party {role}: bytes sent vs the formula");
    }
    let wm = w.values().map(max_abs).fold(0.0, f64::max);
    let bound = product(9, max_abs(&x), wm, u) + u / 2.0;
    check("conv2d + max_pool2d + relu", "forward", out[0].0.as_ref().expect("server0 owns the output"), &y, bound);
}

/// In the CRT ring (int100) Dense, Conv2D and a fused Conv2D + AvgPool2D add their bias to the
/// product before its one truncation, which masks the result for free: the output carries its
/// masked form, in Z64 it does not, and a polynomial ReLU on it opens nothing (its traffic is
/// the formula's for a masked input, below the one for a fresh input).
///
/// The ReLU's value checks that the form is the value's: the power tree multiplies with the
/// form's mask and difference instead of opening t, so a wrong form would add a uniform ring
/// element. Bounds: the layer output y is off by δ = k (|x| e0 + |w| e0 + e0^2) + u + e0 (as in
/// [`bounds`]; k terms per output, e0 for the bias's encoding, u for the truncation); the
/// polynomial p(x) = Σ c_i (x/4)^i then moves by at most L·δ with L = Σ i |c_i| (V/4)^(i-1) / 4,
/// its Lipschitz constant on |x| <= V = max |y| + δ, and adds its own fixed-point error
/// [`Polynomial::error_bound`].
#[test]
fn crt_affine_outputs_carry_their_masked_form() {
    let fp = FixedPoint::<pond_core::Int100>::default_for_ring();
    let u = fp.ulp();
    let conv = LayerSpec::Conv2d { in_channels: 1, out_channels: 2, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
    let pool = LayerSpec::AvgPool2d { size: (2, 2), stride: (2, 2) };
    let cases = [
        ("dense", vec![LayerSpec::Dense { inputs: 6, outputs: 4 }], vec![5, 6], 6),
        ("conv2d", vec![conv.clone()], vec![2, 1, 4, 4], 9),
        ("conv2d + avg_pool2d", vec![conv, pool], vec![2, 1, 4, 4], 9),
    ];
    for (name, layers, x_shape, k) in cases {
        let spec = ModelSpec { input_shape: x_shape[1..].to_vec(), layers };
        let x = uniform(21, &x_shape, 1.0, 0.05);
        let w: Weights =
            spec.init(5).into_iter().map(|(n, v)| (n.clone(), if n.ends_with("bias") { v + 0.1 } else { v })).collect();
        let mut pb = PlainBackend;
        let plain = Sequential::input(&mut pb, &spec, Role::Server0, Some(&w)).unwrap();
        let (y, _) = plain.forward(&mut pb, Activation::Value(x.clone())).unwrap();
        let private = |with_crt: bool| {
            run_local(LocalConfig::seeded(4), |s| {
                let own = s.role() == Role::Server0;
                if with_crt {
                    let mut b = PrivateBackend::new(s, fp);
                    let mut model = Sequential::input(&mut b, &spec, Role::Server0, own.then_some(&w))?;
                    for layer in &mut model.layers {
                        match layer {
                            AnyLayer::Dense(d) => d.prepare_weight(&mut b)?,
                            AnyLayer::Conv2d(c) => c.prepare_weight(&mut b)?,
                            _ => {}
                        }
                    }
                    let xs = b.input(Role::Server0, own.then_some(&x), x.shape())?;
                    let (ys, _) = model.forward(&mut b, Activation::Value(xs))?;
                    let has_form = ys.form().is_some();
                    let before = b.session().traffic();
                    let relu = b.polynomial(&ys, &RELU)?;
                    let traffic = b.session().traffic().since(&before);
                    Ok((has_form, traffic.total_sent(), traffic.rounds, b.output(&relu, Role::Server0)?))
                } else {
                    let fp64 = FixedPoint::<Z64>::default_for_ring();
                    let mut b = PrivateBackend::new(s, fp64);
                    let model = Sequential::input(&mut b, &spec, Role::Server0, own.then_some(&w))?;
                    let xs = b.input(Role::Server0, own.then_some(&x), x.shape())?;
                    let (ys, _) = model.forward(&mut b, Activation::Value(xs))?;
                    Ok((ys.form().is_some(), 0, 0, None))
                }
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let z64 = private(false);
        assert!(z64.iter().all(|p| !p.0), "{name}: Z64 outputs carry no masked form");
        let out = private(true);
        assert!(out[0].0 && out[1].0, "{name}: the servers' outputs carry their masked form");
        let n = y.len() as u64;
        let (masked, fresh) = (
            pond_protocol::costs::polynomial::<pond_core::Int100>(&RELU, n, true),
            pond_protocol::costs::polynomial::<pond_core::Int100>(&RELU, n, false),
        );
        assert!(masked.rounds < fresh.rounds, "{name}: a masked input saves the opening's round");
        for (role, party) in out.iter().enumerate() {
            assert_eq!(party.1, masked.bytes[role], "{name}: party {role}'s ReLU bytes vs the masked-input formula");
        }
        for (role, party) in out[..2].iter().enumerate() {
            assert_eq!(party.2, masked.rounds, "{name}: server{role}'s ReLU rounds");
        }
        let (e0, xm) = (u / 2.0, max_abs(&x));
        let wm = w.values().map(max_abs).fold(0.0, f64::max);
        let delta = product(k, xm, wm, u) + e0;
        let v = max_abs(&y) + delta;
        let lipschitz: f64 = RELU
            .coeffs
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, c)| i as f64 * c.abs() * (v / 4.0).powi(i as i32 - 1) / 4.0)
            .sum();
        let bound = RELU.error_bound(u) + lipschitz * delta;
        let want = y.mapv(|t| RELU.eval(t));
        check(name, "polynomial ReLU of the output", out[0].3.as_ref().expect("server0 owns the output"), &want, bound);
    }
}

/// Inference (`Sequential::infer`: no caches, the polynomial ReLU and sigmoid taking their
/// input by value) computes exactly what the training forward pass computes: with the same
/// seed the parties exchange the same messages, so the revealed outputs are bit-identical and
/// the traffic is the same. Z64 (exact and polynomial ReLU) and int100 (polynomial ReLU after a
/// fused convolution and pooling, whose output carries its masked form into the power tree).
#[test]
fn inference_is_the_forward_pass_without_caches() {
    fn run<R: pond_protocol::comparison::ComparisonRing>(relu: ReluMode) {
        let fp = FixedPoint::<R>::default_for_ring();
        let conv =
            LayerSpec::Conv2d { in_channels: 1, out_channels: 2, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
        let spec = ModelSpec {
            input_shape: vec![1, 4, 4],
            layers: vec![
                conv,
                LayerSpec::AvgPool2d { size: (2, 2), stride: (2, 2) },
                LayerSpec::Relu { mode: relu },
                LayerSpec::Flatten,
                LayerSpec::Dense { inputs: 8, outputs: 3 },
                LayerSpec::Sigmoid,
            ],
        };
        let x = uniform(8, &[3, 1, 4, 4], 1.0, 0.05);
        let w = spec.init(6);
        let private = |cached: bool| {
            run_local(LocalConfig::seeded(11), |s| {
                let own = s.role() == Role::Server0;
                let mut b = PrivateBackend::new(s, fp);
                let model = Sequential::input(&mut b, &spec, Role::Server0, own.then_some(&w))?;
                let xs = b.input(Role::Server0, own.then_some(&x), x.shape())?;
                let before = b.session().traffic();
                let ys = if cached {
                    let (ys, caches) = model.forward(&mut b, Activation::Value(xs))?;
                    assert_eq!(caches.len(), spec.layers.len(), "one cache per layer");
                    ys
                } else {
                    model.infer(&mut b, Activation::Value(xs))?
                };
                let traffic = b.session().traffic().since(&before);
                Ok((b.output(&ys, Role::Server0)?, traffic.total_sent(), traffic.rounds))
            })
            .unwrap()
        };
        let (trained, inferred) = (private(true), private(false));
        assert!(trained[0].0.is_some(), "server0 owns the output");
        assert_eq!(trained, inferred, "{} {relu:?}: inference differs from the forward pass", R::NAME);
    }
    run::<Z64>(ReluMode::Exact);
    run::<Z64>(ReluMode::Polynomial);
    run::<pond_core::Int100>(ReluMode::Polynomial);
}
