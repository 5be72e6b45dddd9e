//! `pond bench protocol`, exact comparisons: `relu_exact`, `relu_exact_in_range`,
//! `truncate_relu_in_range` (the layers' ReLU, with the truncation of the product before it),
//! `maxpool_exact` and `argmax_exact` on three local parties, with `relu_poly` (the
//! polynomial ReLU) measured in the same run as the baseline, against the same operation on
//! plaintext ring values.
//!
//! `ms` has cp dealing during the operation. `online_ms` has the offline material dealt
//! beforehand: for the comparisons, [`ComparisonSource::pregenerate`] (the mask r and its bit
//! shares); cp's answer in each comparison's second round is part of the online phase by
//! construction and is included. For `relu_poly`, the correlations are recorded by a
//! [`RecordingDealer`] run and replayed. Times are medians over runs of the slowest party.

use super::protocol::{row, timed};
use super::timing::{median_ms, median_of_slowest};
use ndarray::{ArrayD, IxDyn};
use pond_core::{FixedPoint, Ring, RingTensor, Z128, Z64};
use pond_protocol::comparison::{cost, ComparisonRing, ComparisonSource};
use pond_protocol::costs;
use pond_protocol::polynomial::RELU;
use pond_protocol::{run_local, LocalConfig, PrivateTensor, Result, Role, Session};

/// One benchmark line: the same fields as the other `pond bench protocol` lines (`rounds` is
/// server1's, the critical path of a comparison).
pub type CompareRow = super::protocol::ProtocolRow;

/// How one operation is prepared for its online timing on every party.
enum Offline {
    /// Pregenerate comparison material for this many comparisons.
    Comparisons(usize),
    /// Pregenerate in-range comparison material for this many comparisons.
    InRange(usize),
    /// Pregenerate material for this many comparisons fused with a truncation by this many bits.
    Truncating(usize, u32),
    /// Record the correlations (products, truncations) once and replay them.
    Recorded,
}

struct PartyTimes {
    total: Vec<f64>,
    online: Vec<f64>,
    sent: u64,
    rounds: u64,
}

type Op<'a, R> = dyn Fn(&mut Session, &PrivateTensor<R>, &mut ComparisonSource<R>) -> Result<()> + Sync + 'a;

/// (ms, online_ms, bytes, rounds) of `op` on the shared `x`.
fn measure<R: ComparisonRing>(
    reps: usize,
    x: &R::Tensor,
    offline: Offline,
    op: &Op<'_, R>,
) -> Result<(f64, f64, [u64; 3], u64)> {
    let parties = run_local(LocalConfig::seeded(7), |s| {
        let px = s.share_input::<R>(Role::Server0, (s.role() == Role::Server0).then_some(x), x.shape())?;
        op(s, &px, &mut ComparisonSource::Online)?; // warm-up
        s.reveal(&px)?; // ends in a receive on both servers, so the next send starts a round
        let before = s.traffic();
        op(s, &px, &mut ComparisonSource::Online)?;
        let traffic = s.traffic().since(&before);
        let (mut total, mut online) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        for _ in 0..reps {
            s.sync()?;
            total.push(timed(|| op(s, &px, &mut ComparisonSource::Online))?);
            match offline {
                Offline::Comparisons(count) | Offline::InRange(count) | Offline::Truncating(count, _) => {
                    let mut source = match offline {
                        Offline::InRange(_) => ComparisonSource::pregenerate_in_range(s, count)?,
                        Offline::Truncating(_, shift) => ComparisonSource::pregenerate_truncating(s, count, shift)?,
                        _ => ComparisonSource::pregenerate(s, count)?,
                    };
                    s.sync()?;
                    online.push(timed(|| op(s, &px, &mut source))?);
                }
                Offline::Recorded => {
                    let replayed = s.time_replayed::<R, _>(|s| op(s, &px, &mut ComparisonSource::Online))?;
                    online.push(replayed.as_secs_f64() * 1e3);
                }
            }
        }
        Ok(PartyTimes { total, online, sent: traffic.total_sent(), rounds: traffic.rounds })
    })?;
    let slowest = |pick: fn(&PartyTimes) -> &Vec<f64>| median_of_slowest(&parties.each_ref().map(|p| &pick(p)[..]));
    let rounds = parties[0].rounds.max(parties[1].rounds);
    Ok((slowest(|p| &p.total), slowest(|p| &p.online), [parties[0].sent, parties[1].sent, parties[2].sent], rounds))
}

/// In-range fixed-point values in [-6.4, 6.4), deterministic.
fn values<R: Ring>(shape: &[usize]) -> Result<(R::Tensor, ArrayD<i128>)> {
    let n: usize = shape.iter().product();
    let reals = ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| ((i * 7919) % 1280) as f64 * 0.01 - 6.4).collect())
        .map_err(|e| pond_protocol::ProtocolError::Usage { op: "bench values", reason: e.to_string() })?;
    let t = FixedPoint::<R>::default_for_ring().encode(reals.view())?;
    let ints = t.to_signed();
    Ok((t, ints))
}

fn plain_maxpool(x: &ArrayD<i128>) -> ArrayD<i128> {
    let s = x.shape();
    let (oh, ow) = (s[2] / 2, s[3] / 2);
    ArrayD::from_shape_fn(IxDyn(&[s[0], s[1], oh, ow]), |i| {
        let at = |a: usize, b: usize| x[[i[0], i[1], 2 * i[2] + a, 2 * i[3] + b]];
        at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1))
    })
}

fn plain_argmax(x: &ArrayD<i128>, m: usize) -> Vec<usize> {
    let flat: Vec<i128> = x.iter().copied().collect();
    flat.chunks(m)
        .map(|row| {
            row.iter().enumerate().fold((0, row[0]), |(ai, am), (i, &v)| if v > am { (i, v) } else { (ai, am) }).0
        })
        .collect()
}

fn run_ring<R: ComparisonRing>(sizes: &[usize], reps: usize, emit: &mut impl FnMut(CompareRow)) -> Result<()> {
    let fp = FixedPoint::<R>::default_for_ring();
    let plain_reps = if reps > 1 { 11 } else { 3 };
    for &n in sizes {
        // ReLU: polynomial baseline first, then exact, in the same run.
        let shape = [n];
        let (x, ints) = values::<R>(&shape)?;
        let plain = median_ms(plain_reps, || drop(std::hint::black_box(ints.mapv(|v| v.max(0)))));
        let m = measure::<R>(reps, &x, Offline::Recorded, &|s, x, _| s.relu_poly(x, fp).map(drop))?;
        emit(row::<R>("relu_poly", vec![shape.to_vec()], m, plain, costs::polynomial::<R>(&RELU, n as u64, false)));
        let m = measure::<R>(reps, &x, Offline::Comparisons(n), &|s, x, src| s.relu_exact(x, src).map(drop))?;
        emit(row::<R>("relu_exact", vec![shape.to_vec()], m, plain, cost::relu_exact::<R>(n as u64)));
        let m = measure::<R>(reps, &x, Offline::InRange(n), &|s, x, src| s.relu_exact_in_range(x, src).map(drop))?;
        emit(row::<R>("relu_exact_in_range", vec![shape.to_vec()], m, plain, cost::relu_exact_in_range::<R>(n as u64)));
        // The layers' ReLU of a product at scale 2^2f, its truncation fused in; plaintext: the
        // shift and the max.
        let f = fp.frac_bits();
        let scaled = R::Tensor::from_signed(ints.mapv(|v| v << f).view());
        let plain = median_ms(plain_reps, || drop(std::hint::black_box(ints.mapv(|v| (v << f >> f).max(0)))));
        let m = measure::<R>(reps, &scaled, Offline::Truncating(n, f), &|s, x, src| {
            s.truncate_relu_in_range(x, f, src).map(drop)
        })?;
        emit(row::<R>(
            "truncate_relu_in_range",
            vec![shape.to_vec()],
            m,
            plain,
            cost::truncate_relu_in_range::<R>(n as u64),
        ));

        // Max-pool 2x2, stride 2, with the argmax mask, on [n/1e5, 10, 100, 100].
        let shape = [n.div_ceil(100_000), 10, 100, 100];
        let (x, ints) = values::<R>(&shape)?;
        let plain = median_ms(plain_reps, || drop(std::hint::black_box(plain_maxpool(&ints))));
        let count = cost::maxpool_comparisons(&shape, (2, 2), (2, 2))? as usize;
        let m = measure::<R>(reps, &x, Offline::Comparisons(count), &|s, x, src| {
            s.maxpool_exact(x, (2, 2), (2, 2), true, src).map(drop)
        })?;
        emit(row::<R>(
            "maxpool_exact",
            vec![shape.to_vec()],
            m,
            plain,
            cost::maxpool_exact::<R>(&shape, (2, 2), (2, 2), true)?,
        ));

        // Argmax over 10 classes.
        let shape = [n / 10, 10];
        let (x, ints) = values::<R>(&shape)?;
        let plain = median_ms(plain_reps, || drop(std::hint::black_box(plain_argmax(&ints, 10))));
        let count = cost::argmax_comparisons(&shape) as usize;
        let m = measure::<R>(reps, &x, Offline::Comparisons(count), &|s, x, src| s.argmax_exact(x, src).map(drop))?;
        emit(row::<R>("argmax_exact", vec![shape.to_vec()], m, plain, cost::argmax_exact::<R>(&shape)));
    }
    Ok(())
}

/// Runs the comparison benchmark on Z64 and Z128 (1e5 and 1e6 elements; `quick`: 1e4 only, one
/// run), calling `emit` with each row as soon as it is measured. CRT has no exact comparison
/// (it is refused with a typed error), so it has no lines.
pub fn run(quick: bool, mut emit: impl FnMut(CompareRow)) -> Result<()> {
    let (sizes, reps): (&[usize], usize) = if quick { (&[10_000], 1) } else { (&[100_000, 1_000_000], 3) };
    run_ring::<Z64>(sizes, reps, &mut emit)?;
    run_ring::<Z128>(sizes, reps, &mut emit)
}
