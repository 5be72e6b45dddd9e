//! `pond bench protocol`: each protocol operation on three local parties, against the same
//! operation in f64 on plaintext, with measured and expected traffic.

use super::timing::{median_ms, median_of_slowest};
use ndarray::{Array2, ArrayD, IxDyn};
use pond_core::kernels::im2col::{im2col, ConvGeometry};
use pond_core::{Conv2dParams, Crt, FixedPoint, PrgKey, Ring, RingTensor, TfeModuli, WideModuli, Z128, Z64};
use pond_protocol::costs::{self, Cost};
use pond_protocol::polynomial::SIGMOID;
use pond_protocol::{
    run_local, Bilinear, LocalConfig, MaskedTensor, PrivateTensor, ProtocolRing, Result, Role, Session,
};
use serde::Serialize;
use std::time::Instant;

/// One protocol benchmark line.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolRow {
    /// Operation name.
    pub name: &'static str,
    /// Ring name.
    pub ring: &'static str,
    /// Shape of the main operand(s).
    pub shape: Vec<Vec<usize>>,
    /// Median milliseconds of the operation on three local parties, cp dealing online.
    pub ms: f64,
    /// Median milliseconds with the operation's correlations pregenerated (online phase only).
    pub online_ms: f64,
    /// Median milliseconds of the same operation in f64 on plaintext.
    pub plain_ms: f64,
    /// ms / plain_ms.
    pub ratio: f64,
    /// Bytes sent by server0, server1, cp during one operation.
    pub bytes: [u64; 3],
    /// The formula's bytes for the operation (`pond_protocol::costs`).
    pub expected_bytes: [u64; 3],
    /// Server rounds of one operation.
    pub rounds: u64,
}

/// What one party measured.
struct PartyTimes {
    online_dealer: Vec<f64>,
    pregenerated: Vec<f64>,
    sent: u64,
    rounds: u64,
}

/// Milliseconds `f` takes.
pub(crate) fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Times `op` on three parties: `reps` runs with cp dealing online, `reps` runs with the
/// correlations recorded beforehand; returns (ms, online_ms, bytes, rounds), each time the
/// median over runs of the slowest party. The parties sync before every timed run, so each
/// time is one operation's latency with all three starting together (none of them still busy
/// with the previous run or already working on the next one).
fn measure<R: ProtocolRing, S>(
    reps: usize,
    setup: impl Fn(&mut Session) -> Result<S> + Sync,
    op: impl Fn(&mut Session, &S) -> Result<()> + Sync,
) -> Result<(f64, f64, [u64; 3], u64)> {
    let parties = run_local(LocalConfig::seeded(7), |s| {
        let state = setup(s)?;
        op(s, &state)?; // warm-up
        let before = s.traffic();
        op(s, &state)?;
        let traffic = s.traffic().since(&before);
        let mut online_dealer = Vec::with_capacity(reps);
        let mut pregenerated = Vec::with_capacity(reps);
        for _ in 0..reps {
            s.sync()?;
            online_dealer.push(timed(|| op(s, &state))?);
            pregenerated.push(s.time_replayed::<R, _>(|s| op(s, &state))?.as_secs_f64() * 1e3);
        }
        Ok(PartyTimes { online_dealer, pregenerated, sent: traffic.total_sent(), rounds: traffic.rounds })
    })?;
    let slowest = |pick: fn(&PartyTimes) -> &Vec<f64>| median_of_slowest(&parties.each_ref().map(|p| &pick(p)[..]));
    Ok((
        slowest(|p| &p.online_dealer),
        slowest(|p| &p.pregenerated),
        [parties[0].sent, parties[1].sent, parties[2].sent],
        parties[0].rounds,
    ))
}

fn random<R: Ring>(stream: u64, shape: &[usize]) -> R::Tensor {
    R::Tensor::random(&PrgKey::from_seed(11), stream, shape)
}

fn input<R: Ring>(s: &mut Session, value: &R::Tensor) -> Result<PrivateTensor<R>> {
    let owner = Role::Server0;
    s.share_input::<R>(owner, (s.role() == owner).then_some(value), value.shape())
}

/// One line of `pond bench protocol` from a measurement `(ms, online_ms, bytes, rounds)`.
pub(super) fn row<R: ProtocolRing>(
    name: &'static str,
    shape: Vec<Vec<usize>>,
    measured: (f64, f64, [u64; 3], u64),
    plain_ms: f64,
    expected: Cost,
) -> ProtocolRow {
    let (ms, online_ms, bytes, rounds) = measured;
    ProtocolRow {
        name,
        ring: R::NAME,
        shape,
        ms,
        online_ms,
        plain_ms,
        ratio: ms / plain_ms,
        bytes,
        expected_bytes: expected.bytes,
        rounds,
    }
}

fn f64_array(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| (i % 13) as f64 * 0.1 - 0.6).collect()).expect("n elements")
}

/// Runs every case for ring `R`, emitting rows as they are measured.
fn run_ring<R: ProtocolRing>(quick: bool, emit: &mut impl FnMut(ProtocolRow)) -> Result<()> {
    let reps = if quick { 2 } else { 7 };
    // The matrix products take milliseconds: more runs for a steadier median.
    let matmul_reps = if quick { 2 } else { 31 };
    let n = if quick { 10_000 } else { 1_000_000 };
    let fp = FixedPoint::<R>::default_for_ring();
    let plain_reps = if quick { 3 } else { 11 };

    // Elementwise product.
    let (x, y) = (random::<R>(1, &[n]), random::<R>(2, &[n]));
    let m = measure::<R, _>(reps, |s| Ok((input::<R>(s, &x)?, input::<R>(s, &y)?)), |s, (a, b)| s.mul(a, b).map(drop))?;
    let (fa, fb) = (f64_array(&[n]), f64_array(&[n]));
    let plain = median_ms(plain_reps, || drop(std::hint::black_box(&fa * &fb)));
    emit(row::<R>("mul", vec![vec![n]], m, plain, costs::product::<R>(Bilinear::Mul, &[n], false, &[n], false)));

    // Matrix products with a fresh and a reused weight mask.
    let (bm, k, bn) = (100, 784, 128);
    let (x, w) = (random::<R>(3, &[bm, k]), random::<R>(4, &[k, bn]));
    let (fx, fw) = (Array2::<f64>::from_elem((bm, k), 0.5), Array2::<f64>::from_elem((k, bn), 0.25));
    let plain = median_ms(plain_reps, || drop(std::hint::black_box(fx.dot(&fw))));
    let shapes = vec![vec![bm, k], vec![k, bn]];
    let m = measure::<R, _>(
        matmul_reps,
        |s| Ok((input::<R>(s, &x)?, input::<R>(s, &w)?)),
        |s, (a, b)| s.matmul(a, b).map(drop),
    )?;
    let cost = costs::product::<R>(Bilinear::Matmul, &[bm, k], false, &[k, bn], false);
    emit(row::<R>("matmul_fresh", shapes.clone(), m, plain, cost));
    let m = measure::<R, (PrivateTensor<R>, MaskedTensor<R>)>(
        matmul_reps,
        |s| {
            let w = input(s, &w)?;
            Ok((input(s, &x)?, s.mask(&w)?))
        },
        |s, (a, b)| s.matmul(a, b).map(drop),
    )?;
    let cost = costs::product::<R>(Bilinear::Matmul, &[bm, k], false, &[k, bn], true);
    emit(row::<R>("matmul_reused", shapes, m, plain, cost));

    // Convolution of a batch of MNIST-sized images with a masked filter bank.
    let batch = if quick { 4 } else { 100 };
    let (xs, ws) = (vec![batch, 1, 28, 28], vec![16, 1, 5, 5]);
    let (img, filt) = (random::<R>(5, &xs), random::<R>(6, &ws));
    let g = ConvGeometry::new(&xs, &ws, Conv2dParams::VALID).expect("fixed shapes fit");
    let (fimg, ffilt) = (f64_array(&xs), Array2::<f64>::from_elem((25, 16), 0.1));
    let plain = median_ms(plain_reps, || drop(std::hint::black_box(im2col(fimg.view(), &g).dot(&ffilt))));
    let m = measure::<R, (PrivateTensor<R>, MaskedTensor<R>)>(
        reps,
        |s| {
            let f = input(s, &filt)?;
            Ok((input(s, &img)?, s.mask(&f)?))
        },
        |s, (a, b)| s.conv2d(a, b, Conv2dParams::VALID).map(drop),
    )?;
    let cost = costs::product::<R>(Bilinear::Conv2d(Conv2dParams::VALID), &xs, false, &ws, true);
    emit(row::<R>("conv2d_reused", vec![xs, ws], m, plain, cost));

    // Truncation and the polynomial sigmoid on in-range fixed-point values.
    let reals = f64_array(&[n]).mapv(|v| v * 10.0);
    let encoded = fp.encode(reals.view()).map_err(pond_protocol::ProtocolError::from)?;
    let scale = fp.ulp();
    let plain = median_ms(plain_reps, || drop(std::hint::black_box(reals.mapv(|v| v * scale))));
    let m = measure::<R, _>(reps, |s| input::<R>(s, &encoded), |s, a| s.truncate(a, fp.frac_bits()).map(drop))?;
    emit(row::<R>("truncate", vec![vec![n]], m, plain, costs::truncation::<R>(n as u64)));
    let plain = median_ms(plain_reps, || drop(std::hint::black_box(reals.mapv(|v| 1.0 / (1.0 + (-v).exp())))));
    let m = measure::<R, _>(reps, |s| input::<R>(s, &encoded), |s, a| s.sigmoid(a, fp).map(drop))?;
    emit(row::<R>("sigmoid_poly", vec![vec![n]], m, plain, costs::polynomial::<R>(&SIGMOID, n as u64, false)));
    Ok(())
}

/// Runs the protocol benchmark for Z64, Z128 and both CRT moduli sets, or only for the ring
/// named `only` (a ring's `NAME`: z64, z128, crt10, crt5, or int100 as `pond infer` calls crt5);
/// an unknown name is an error.
pub fn run(quick: bool, only: Option<&str>, mut emit: impl FnMut(ProtocolRow)) -> Result<()> {
    let names = [Z64::NAME, Z128::NAME, Crt::<TfeModuli>::NAME, Crt::<WideModuli>::NAME];
    let only = only.map(|name| if name == "int100" { Crt::<WideModuli>::NAME } else { name });
    if let Some(name) = only.filter(|n| !names.contains(n)) {
        return Err(pond_protocol::ProtocolError::Usage {
            op: "bench protocol",
            reason: format!("unknown ring {name:?}; expected one of {} (or int100 for crt5)", names.join(", ")),
        });
    }
    let wanted = |name: &str| only.is_none_or(|o| o == name);
    if wanted(Z64::NAME) {
        run_ring::<Z64>(quick, &mut emit)?;
    }
    if wanted(Z128::NAME) {
        run_ring::<Z128>(quick, &mut emit)?;
    }
    if wanted(Crt::<TfeModuli>::NAME) {
        run_ring::<Crt<TfeModuli>>(quick, &mut emit)?;
    }
    if wanted(Crt::<WideModuli>::NAME) {
        run_ring::<Crt<WideModuli>>(quick, &mut emit)?;
    }
    Ok(())
}
