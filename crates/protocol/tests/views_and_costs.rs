//! What the parties see and what they pay: uniformity of every party's view, traffic and
//! rounds against the formulas of `costs`, determinism, failures and bad input.

mod common;

use common::*;
use pond_core::{Crt, CrtModuli, FixedPoint, Int100, Ring, RingTensor, TfeModuli, WideModuli, Z128, Z64};
use pond_protocol::costs::{self, Cost};
use pond_protocol::polynomial::{RELU, SIGMOID};
use pond_protocol::*;
use std::time::{Duration, Instant};

/// One program touching every operation: input from every owner, mask, products, square,
/// truncation, polynomial. The secret is a fixed, very non-uniform constant.
fn everything<R: ProtocolRing>(s: &mut Session, secret: &R::Tensor) -> Result<()> {
    let fp = FixedPoint::<R>::default_for_ring();
    let shape = secret.shape().to_vec();
    let x = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, secret), &shape)?;
    let y = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, secret), &shape)?;
    let m = s.mask(&y)?;
    let z = s.mul(&x, &m)?;
    let z = s.truncate(&z, fp.frac_bits())?;
    let w = s.square(&z)?;
    let w = s.truncate(&w, fp.frac_bits())?;
    s.sigmoid(&w, fp)?;
    Ok(())
}

fn received_bytes(t: &Transcript) -> Vec<u8> {
    t.received.iter().flat_map(|(_, _, p)| p.iter().copied()).collect()
}

#[test]
fn every_party_view_is_uniform_z64_z128() {
    fn check<R: ProtocolRing>() {
        let fp = FixedPoint::<R>::default_for_ring();
        let secret = fp.encode(ndarray::ArrayD::from_elem(vec![4096], 1.0).view()).unwrap();
        let mut views: [Vec<u8>; 3] = Default::default();
        for seed in 0..4 {
            let (_, transcripts) = run_recorded(seed, |s| everything::<R>(s, &secret));
            for (v, t) in views.iter_mut().zip(&transcripts) {
                v.extend(received_bytes(t));
            }
        }
        let threshold = chi_square_threshold(255);
        for (role, view) in Role::ALL.iter().zip(&views) {
            if view.is_empty() {
                assert_eq!(*role, Role::Cp, "only cp receives nothing");
                continue;
            }
            let stat = chi_square(view.iter().map(|&b| b as usize), 256);
            assert!(stat < threshold, "{}: {role}'s view fails uniformity: chi2 {stat} >= {threshold}", R::NAME);
        }
        // Negative control: the secret's own bytes are far from uniform, so the test can fail.
        let plain = secret.to_bytes().repeat(16);
        assert!(chi_square(plain.iter().map(|&b| b as usize), 256) > threshold);
    }
    check::<Z64>();
    check::<Z128>();
}

/// Chi-square test of plane 0 (residues modulo the first modulus m) of every tensor each party
/// receives, over `bins` equal-width bins of [0, m). With m = 2097143 and 1024 bins a bin holds
/// 2047 or 2048 residues, a relative deviation from uniform of at most 1/2047, far below what
/// the test can detect with these sample sizes.
fn crt_views_are_uniform<M: CrtModuli>(bins: usize) {
    let fp = FixedPoint::<Crt<M>>::default_for_ring();
    let n = 8192;
    let (m, width) = (M::MODULI[0] as usize, M::RESIDUE_BYTES);
    let secret = fp.encode(ndarray::ArrayD::from_elem(vec![n], 1.0).view()).unwrap();
    let mut residues: [Vec<usize>; 3] = Default::default();
    for seed in 0..3 {
        let (_, transcripts) = run_recorded(seed, |s| everything::<Crt<M>>(s, &secret));
        for (r, t) in residues.iter_mut().zip(&transcripts) {
            for (_, _, payload) in &t.received {
                let count = payload.len() / <Crt<M> as Ring>::Tensor::BYTES_PER_ELEMENT;
                r.extend(payload[..width * count].chunks_exact(width).map(|c| {
                    let residue = c.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                    residue * bins / m
                }));
            }
        }
    }
    let threshold = chi_square_threshold(bins - 1);
    for (role, r) in Role::ALL.iter().zip(&residues) {
        if !r.is_empty() {
            let stat = chi_square(r.iter().copied(), bins);
            assert!(stat < threshold, "{}: {role}'s view fails uniformity: chi2 {stat} >= {threshold}", M::NAME);
        }
    }
}

#[test]
fn every_party_view_is_uniform_crt() {
    // tf-encrypted's moduli: one bin per residue modulo 1201.
    crt_views_are_uniform::<TfeModuli>(1201);
    crt_views_are_uniform::<WideModuli>(1024);
}

/// Measures one operation's traffic on every party (after a setup that ends in a receive on
/// both servers, so the operation's first send starts a round).
fn measure<R: ProtocolRing>(
    n: usize,
    op: impl Fn(&mut Session, &PrivateTensor<R>, &MaskedTensor<R>) -> Result<()> + Sync,
) -> [Traffic; 3] {
    let x = random::<R>(1, &[n, n]);
    run(9, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[n, n])?;
        let m = s.mask(&px)?;
        let before = s.traffic();
        op(s, &px, &m)?;
        Ok(s.traffic().since(&before))
    })
}

/// One operation's traffic on every party for an input that cp owns, of shape `x`
/// ([`PrivateTensor::known_to_cp`]), and a masked input of server0's, of shape `y`.
fn measure_known<R: ProtocolRing>(
    x: &[usize],
    y: &[usize],
    op: impl Fn(&mut Session, &PrivateTensor<R>, &MaskedTensor<R>) -> Result<()> + Sync,
) -> [Traffic; 3] {
    let (xv, yv) = (random::<R>(1, x), random::<R>(2, y));
    run(9, |s| {
        let known = s.share_input::<R>(Role::Cp, owned(s, Role::Cp, &xv), x)?;
        let py = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &yv), y)?;
        let m = s.mask(&py)?;
        let before = s.traffic();
        op(s, &known, &m)?;
        Ok(s.traffic().since(&before))
    })
}

fn assert_cost(name: &str, measured: [Traffic; 3], expected: Cost) {
    let bytes = measured.map(|t| t.total_sent());
    assert_eq!(bytes, expected.bytes, "{name}: bytes sent by [server0, server1, cp]");
    assert_eq!(measured[0].rounds, expected.rounds, "{name}: server0 rounds");
    assert_eq!(measured[1].rounds, expected.rounds, "{name}: server1 rounds");
}

fn costs_match_formulas<R: ProtocolRing>() {
    let n = 7;
    let e = (n * n) as u64;
    let sh = [n, n];
    let fp = FixedPoint::<R>::default_for_ring();
    let v = random::<R>(4, &sh);
    for owner in Role::ALL {
        assert_cost(
            "share_input",
            measure::<R>(n, |s, _, _| s.share_input::<R>(owner, owned(s, owner, &v), &sh).map(drop)),
            costs::share_input::<R>(owner, e),
        );
    }
    assert_cost("reveal", measure::<R>(n, |s, x, _| s.reveal(x).map(drop)), costs::open::<R>(e));
    assert_cost("mask", measure::<R>(n, |s, x, _| s.mask(x).map(drop)), costs::open::<R>(e));
    // Three tensors masked together: their bytes, one round.
    assert_cost(
        "mask_many",
        measure::<R>(n, |s, x, _| s.mask_many(vec![x.clone(), x.clone(), x.clone()]).map(drop)),
        costs::open::<R>(3 * e),
    );
    let mul = costs::product::<R>(Bilinear::Mul, &sh, false, &sh, false);
    assert_cost("mul", measure::<R>(n, |s, x, _| s.mul(x, x).map(drop)), mul);
    let mm = |xm, ym| costs::product::<R>(Bilinear::Matmul, &sh, xm, &sh, ym);
    assert_cost("matmul fresh", measure::<R>(n, |s, x, _| s.matmul(x, x).map(drop)), mm(false, false));
    assert_cost("matmul reused rhs", measure::<R>(n, |s, x, m| s.matmul(x, m).map(drop)), mm(false, true));
    assert_cost("matmul both masked", measure::<R>(n, |s, _, m| s.matmul(m, m).map(drop)), mm(true, true));
    let p = pond_core::Conv2dParams::VALID;
    let img = [1, 1, n, n];
    let conv = costs::product::<R>(Bilinear::Conv2d(p), &img, false, &[2, 1, 3, 3], false);
    assert_cost(
        "conv2d",
        measure::<R>(n, |s, x, _| {
            let img = s.reshape(x, &[1, 1, n, n])?;
            let filt = s.slice_axis(&s.reshape(x, &[n * n])?, 0, 0..18)?;
            let filt = s.reshape(&filt, &[2, 1, 3, 3])?;
            s.conv2d(&img, &filt, p).map(drop)
        }),
        conv,
    );
    // n = 7, 3x3 filters: a 5x5 output, whose (5, 1) windows tile it.
    let pooled = Bilinear::PooledConv2d { params: p, window: (5, 1) };
    assert_cost(
        "pooled conv2d",
        measure::<R>(n, |s, x, _| {
            let img = s.reshape(x, &[1, 1, n, n])?;
            let filt = s.slice_axis(&s.reshape(x, &[n * n])?, 0, 0..18)?;
            let filt = s.reshape(&filt, &[2, 1, 3, 3])?;
            s.pooled_conv2d(&img, &filt, p, (5, 1)).map(drop)
        }),
        costs::product::<R>(pooled, &img, false, &[2, 1, 3, 3], false),
    );
    // An input cp owns, by a masked operand: nothing opened, no server round, cp's correction.
    let known = |op: Bilinear, x: &[usize], y: &[usize]| costs::product::<R>(op, x, true, y, true);
    assert_eq!((known(Bilinear::Matmul, &sh, &sh).rounds, known(Bilinear::Matmul, &sh, &sh).bytes[0]), (0, 0));
    let mm = known(Bilinear::Matmul, &sh, &sh);
    assert_cost("known x masked", measure_known::<R>(&sh, &sh, |s, k, m| s.matmul(k, m).map(drop)), mm);
    assert_cost("masked x known", measure_known::<R>(&sh, &sh, |s, k, m| s.matmul(m, k).map(drop)), mm);
    let mul = known(Bilinear::Mul, &sh, &sh);
    assert_cost("mul known", measure_known::<R>(&sh, &sh, |s, k, m| s.mul(k, m).map(drop)), mul);
    let filt = [2, 1, 3, 3];
    assert_cost(
        "pooled conv2d of a known image",
        measure_known::<R>(&img, &filt, |s, k, m| s.pooled_conv2d(k, m, p, (5, 1)).map(drop)),
        known(pooled, &img, &filt),
    );
    assert_cost(
        "relu polynomial",
        measure::<R>(n, |s, x, _| s.relu_poly(x, fp).map(drop)),
        costs::polynomial::<R>(&RELU, e, false),
    );
    assert_cost("square", measure::<R>(n, |s, x, _| s.square(x).map(drop)), costs::square::<R>(e));
    assert_cost("truncate", measure::<R>(n, |s, x, _| s.truncate(x, 16).map(drop)), costs::truncation::<R>(e));
    assert_cost(
        "masked truncation",
        measure::<R>(n, |s, x, _| s.truncate_masked(x, 16).map(drop)),
        R::masked_truncation_cost(e),
    );
    assert_cost(
        "sigmoid",
        measure::<R>(n, |s, x, _| s.sigmoid(x, fp).map(drop)),
        costs::polynomial::<R>(&SIGMOID, e, false),
    );
}

#[test]
fn lift_traffic_equals_the_formula() {
    let e = 49;
    assert_cost("lift", measure::<Z64>(7, |s, x, _| s.lift_to_z128(x).map(drop)), pond_protocol::lift::lift_cost(e));
}

/// Above the lift's cut-off a Z64 polynomial stays in Z64; its traffic still follows the formula.
#[test]
fn large_z64_polynomials_follow_their_formula() {
    let n = 65; // 4225 elements, above LIFT_MAX_ELEMENTS
    assert!(n * n > pond_protocol::truncation::LIFT_MAX_ELEMENTS);
    let fp = FixedPoint::<Z64>::default_for_ring();
    let cost = costs::polynomial::<Z64>(&SIGMOID, (n * n) as u64, false);
    assert_eq!(cost.rounds, 9, "the Z64 power tree of the sigmoid: 2 per level + 1");
    assert_cost("large sigmoid", measure::<Z64>(n, |s, x, _| s.sigmoid(x, fp).map(drop)), cost);
    let small = costs::polynomial::<Z64>(&SIGMOID, 49, false);
    assert_eq!(small.rounds, 5, "a lifted sigmoid: one round to lift, then one per level");
}

/// In the CRT rings the truncation masks the powers it produces, so only t itself is opened:
/// one round per level and one for the opening and the final truncation each, and no opening of
/// n·B per server for t^2 (ReLU) or for t^2, t^3, t^4, t^7 (sigmoid).
#[test]
fn crt_polynomials_open_only_their_input() {
    fn check<M: CrtModuli>() {
        let n = 49;
        let (relu, sigmoid) =
            (costs::polynomial::<Crt<M>>(&RELU, n, false), costs::polynomial::<Crt<M>>(&SIGMOID, n, false));
        assert_eq!((relu.rounds, sigmoid.rounds), (4, 6));
        let b = <Crt<M> as Ring>::Tensor::BYTES_PER_ELEMENT as u64;
        // Per server: the opening of t, then the truncations: t^2, t^4 and the sum (ReLU);
        // t^2, t^3 and t^4, t^5 and t^7, t^9 and the sum (sigmoid).
        assert_eq!(relu.bytes[0], n * b * (1 + 3), "ReLU: t opened, three truncations");
        assert_eq!(sigmoid.bytes[0], n * b * (1 + 7), "sigmoid: t opened, seven truncations");
    }
    check::<WideModuli>();
    check::<TfeModuli>();
}

/// What a polynomial's output costs its consumers: in CRT it carries its masked form, so
/// masking it is free and a polynomial of it does not open it; elsewhere both pay as usual.
fn consumers_of_a_polynomial_pay_as_the_formulas_say<R: ProtocolRing>() {
    let n = 7;
    let e = (n * n) as u64;
    let fp = FixedPoint::<R>::default_for_ring();
    let output_masked = costs::polynomial_output_masked::<R>(&RELU);
    assert_eq!(output_masked, R::MASKED_TRUNCATION);
    let x = random::<R>(1, &[n, n]);
    let measured = run(9, |s| {
        let px = s.share_input::<R>(Role::Server0, owned(s, Role::Server0, &x), &[n, n])?;
        // The polynomial ends in a receive on both servers, so the mask's first send starts a round.
        let y = s.relu_poly(&px, fp)?;
        let before = s.traffic();
        s.mask(&y)?;
        s.relu_poly(&y, fp)?;
        Ok((y.form().is_some(), s.traffic().since(&before)))
    });
    assert!(measured.iter().all(|(formed, _)| *formed == output_masked), "{}: the output's masked form", R::NAME);
    let mask = if output_masked { Cost::default() } else { costs::open::<R>(e) };
    assert_cost(R::NAME, measured.map(|(_, t)| t), mask + costs::polynomial::<R>(&RELU, e, output_masked));
}

#[test]
fn measured_traffic_equals_the_formulas() {
    costs_match_formulas::<Z64>();
    costs_match_formulas::<Z128>();
    costs_match_formulas::<Int100>();
    costs_match_formulas::<Crt<TfeModuli>>();
    consumers_of_a_polynomial_pay_as_the_formulas_say::<Z64>();
    consumers_of_a_polynomial_pay_as_the_formulas_say::<Z128>();
    consumers_of_a_polynomial_pay_as_the_formulas_say::<Int100>();
    consumers_of_a_polynomial_pay_as_the_formulas_say::<Crt<TfeModuli>>();
}

#[test]
fn same_seed_gives_identical_outputs_and_transcripts() {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let secret = fp.encode(ndarray::ArrayD::from_elem(vec![64], 0.75).view()).unwrap();
    let program = |s: &mut Session| {
        everything::<Z64>(s, &secret)?;
        let x = s.share_input::<Z64>(Role::Cp, owned(s, Role::Cp, &secret), &[64])?;
        let y = s.sigmoid(&x, fp)?;
        Ok(share(&y))
    };
    let (out_a, log_a) = run_recorded(42, program);
    let (out_b, log_b) = run_recorded(42, program);
    let (out_c, _) = run_recorded(43, program);
    assert_eq!(out_a, out_b);
    assert_eq!(log_a, log_b);
    assert_ne!(out_a, out_c, "a different seed gives different shares");
}

#[test]
fn pregenerated_triples_give_the_same_products_and_check_the_plan() {
    let (m, k, n) = (5, 6, 4);
    let x = random::<Z64>(1, &[m, k]);
    let w = random::<Z64>(2, &[k, n]);
    let out = run(3, |s| {
        let px = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &x), &[m, k])?;
        let pw = s.share_input::<Z64>(Role::Cp, owned(s, Role::Cp, &w), &[k, n])?;
        let mw = s.mask(&pw)?;
        let x_shape = [m, k];
        let plan = [Correlation::Product {
            op: Bilinear::Matmul,
            lhs: dealer::MaskSide::Fresh(&x_shape),
            rhs: dealer::MaskSide::Reused(&mw.mask),
        }; 2];
        let source = PregeneratedTriples::<Z64>::generate(s, &plan)?;
        s.use_triple_source::<Z64>(Box::new(source));
        let before = s.traffic();
        let a = s.matmul(&px, &mw)?;
        let b = s.matmul(&px, &mw)?;
        let online_cp_bytes = s.traffic().since(&before).total_sent();
        // The plan is used up: a third product is refused rather than silently dealt online.
        let err = s.matmul(&px, &mw).unwrap_err().to_string();
        Ok((share(&a), share(&b), online_cp_bytes, err))
    });
    let xw = x.matmul(&w).unwrap();
    assert_eq!(reconstruct(&[out[0].0.clone(), out[1].0.clone(), None]), xw);
    assert_eq!(reconstruct(&[out[0].1.clone(), out[1].1.clone(), None]), xw);
    assert_eq!(out[2].2, 0, "cp sends nothing in the online phase");
    assert!(out[0].3.contains("exhausted"), "{}", out[0].3);
}

#[test]
fn a_party_that_fails_stops_the_others_with_an_error_naming_it() {
    let start = Instant::now();
    let results = run_local_parties(LocalConfig { seed: 1, timeout: Duration::from_secs(20) }, |s| {
        let x = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[10])), &[10])?;
        if s.role() == Role::Cp {
            return Err(ProtocolError::Usage { op: "test", reason: "cp gives up".into() });
        }
        // server1 waits for cp's correction of the product; server0, which needs nothing from
        // cp here, waits for server1's share of the result.
        let z = s.mul(&x, &x)?;
        s.reveal(&z)?;
        Ok(())
    });
    assert!(start.elapsed() < Duration::from_secs(5), "no one waits for the deadline");
    assert!(matches!(results[2], Err(ProtocolError::Usage { .. })));
    for r in &results[..2] {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("cp"), "server error names cp: {e} / {results:?}");
    }
    // The root cause is what run_local reports.
    let err = collect_outputs(results).unwrap_err().to_string();
    assert!(err.contains("cp gives up"), "{err}");
}

#[test]
fn a_panicking_party_stops_the_others() {
    let results = run_local_parties(LocalConfig::seeded(1), |s| {
        let x = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[10])), &[10])?;
        assert!(s.role() != Role::Server1, "server1 crashes");
        s.mul(&x, &x)?;
        Ok(())
    });
    assert!(
        matches!(&results[1], Err(ProtocolError::Panicked { role: Role::Server1, message }) if message.contains("crashes"))
    );
    assert!(results[0].as_ref().unwrap_err().to_string().contains("server1"));
}

#[test]
fn a_stalled_party_makes_the_others_time_out_naming_it() {
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let results = run_local_parties(LocalConfig { seed: 1, timeout }, |s| {
        let x = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[10])), &[10])?;
        if s.role() == Role::Server1 {
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        s.mul(&x, &x)?;
        Ok(())
    });
    assert!(start.elapsed() < Duration::from_secs(3));
    match &results[0] {
        Err(ProtocolError::Timeout { peer: Role::Server1, .. }) => {}
        other => panic!("server0 should time out waiting for server1, got {other:?}"),
    }
}

#[test]
fn shape_mismatches_are_typed_errors_naming_both_shapes() {
    let out = run_local(LocalConfig::seeded(1), |s| {
        let a = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[2, 3])), &[2, 3])?;
        let b = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[4, 5])), &[4, 5])?;
        Ok((
            s.matmul(&a, &b).unwrap_err().to_string(),
            s.mul(&a, &b).unwrap_err().to_string(),
            s.add(&a, &b).unwrap_err().to_string(),
        ))
    })
    .unwrap();
    for e in [&out[0].0, &out[0].1, &out[0].2] {
        assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
    }
    // Restructuring a private tensor wrongly fails on every party, cp (which holds no share
    // and checks the shape on a proxy) included, and restructuring rightly gives cp the shape.
    let out = run_local(LocalConfig::seeded(1), |s| {
        let a = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &random::<Z64>(1, &[2, 3])), &[2, 3])?;
        let bad = [
            s.reshape(&a, &[4]).is_err(),
            s.permute(&a, &[0, 0]).is_err(),
            s.slice_axis(&a, 1, 2..4).is_err(),
            s.sum_axis(&a, 2).is_err(),
            s.broadcast_to(&a, &[2, 4]).is_err(),
        ];
        let good = [
            s.reshape(&a, &[3, 2])?.shape().to_vec(),
            s.transpose(&a)?.shape().to_vec(),
            s.slice_axis(&a, 1, 1..3)?.shape().to_vec(),
            s.sum_axis(&a, 0)?.shape().to_vec(),
            s.broadcast_to(&s.reshape(&a, &[1, 6])?, &[4, 6])?.shape().to_vec(),
        ];
        Ok((bad, good))
    })
    .unwrap();
    for (bad, good) in &out {
        assert_eq!(bad, &[true; 5]);
        assert_eq!(good, &[vec![3, 2], vec![3, 2], vec![2, 2], vec![3], vec![4, 6]]);
    }
    // And a wrongly declared input shape names both shapes too.
    let err = run_local(LocalConfig::seeded(1), |s| {
        s.share_input::<Z128>(Role::Server0, owned(s, Role::Server0, &random::<Z128>(1, &[3])), &[4]).map(drop)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("[3]") && err.contains("[4]"), "{err}");
}

/// cp's transport with every payload cut to half its length.
struct HalvingTransport(InMemoryTransport);

impl Transport for HalvingTransport {
    fn role(&self) -> Role {
        self.0.role()
    }
    fn send(&mut self, to: Role, tag: Tag, mut payload: Vec<u8>) -> Result<()> {
        payload.truncate(payload.len() / 2);
        self.0.send(to, tag, payload)
    }
    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>> {
        self.0.recv(from, tag, timeout)
    }
}

#[test]
fn a_dealer_message_of_the_wrong_length_is_an_error_naming_cp() {
    let x = random::<Z64>(1, &[5]);
    let results = run_local_with(
        LocalConfig::seeded(3),
        |t| match t.role() {
            Role::Cp => Box::new(HalvingTransport(t)) as Box<dyn Transport>,
            _ => Box::new(t),
        },
        |s| {
            let px = s.share_input::<Z64>(Role::Server0, owned(s, Role::Server0, &x), &[5])?;
            s.truncate(&px, 16).map(drop)
        },
    );
    match &results[1] {
        Err(e @ ProtocolError::BadMessage { peer: Role::Cp, .. }) => assert!(e.to_string().contains("cp"), "{e}"),
        other => panic!("server1 should reject cp's short message, got {other:?}"),
    }
}

#[test]
fn sync_returns_only_once_every_party_has_reached_it() {
    // Each party arrives at the sync after a different delay; no one may leave before the
    // last one (cp, after 200 ms) has arrived.
    let start = Instant::now();
    let left = run_local(LocalConfig::seeded(1), |s| {
        std::thread::sleep(Duration::from_millis(100 * s.role().index() as u64));
        s.sync()?;
        Ok(start.elapsed())
    })
    .unwrap();
    for (role, elapsed) in Role::ALL.into_iter().zip(left) {
        assert!(elapsed >= Duration::from_millis(200), "{role} left the sync after {elapsed:?}");
    }
}

#[test]
fn a_party_missing_a_sync_makes_the_others_fail_naming_it() {
    let timeout = Duration::from_millis(300);
    let results = run_local_parties(LocalConfig { seed: 1, timeout }, |s| {
        if s.role() == Role::Cp {
            std::thread::sleep(Duration::from_secs(1));
            return Ok(());
        }
        s.sync()
    });
    for r in &results[..2] {
        assert!(matches!(r, Err(ProtocolError::Timeout { peer: Role::Cp, .. })), "{r:?}");
    }
}
