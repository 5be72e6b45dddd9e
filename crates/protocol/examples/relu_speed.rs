//! Speed of the exact ReLU on Z64 (three local parties in one process), and a fingerprint of
//! every message of a fixed-seed run of relu_exact / maxpool / argmax on Z64 and Z128, to check
//! that a change to the comparison kernels leaves the protocol's bytes unchanged.
//!
//! `cargo run --release -p pond-protocol --example relu_speed [reps]`

use ndarray::{ArrayD, IxDyn};
use pond_core::{FixedPoint, PrgKey, RingTensor, Z128, Z64};
use pond_protocol::comparison::{ComparisonRing, ComparisonSource};
use pond_protocol::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Median per party (ms) of `reps` timed relu_exact calls on n Z64 elements, after one warm-up.
fn time_relu(n: usize, reps: usize) -> [f64; 3] {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let reals = ArrayD::from_shape_fn(IxDyn(&[n]), |i| ((i[0] * 7919) % 1280) as f64 * 0.01 - 6.4);
    let x = fp.encode(reals.view()).expect("encodable");
    let times = run_local(LocalConfig::seeded(1), |s| {
        let mine = (s.role() == Role::Server0).then_some(&x);
        let px = s.share_input::<Z64>(Role::Server0, mine, &[n])?;
        let mut out = Vec::new();
        for rep in 0..=reps {
            s.reveal(&px)?; // synchronise the parties
            let t = Instant::now();
            s.relu_exact(&px, &mut ComparisonSource::Online)?;
            if rep > 0 {
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(out)
    })
    .expect("protocol run failed");
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    })
}

/// A hash of every message every party sent in a fixed-seed run of the comparison operations.
fn fingerprint<R: ComparisonRing>(n: usize) -> u64 {
    let x = R::Tensor::random(&PrgKey::from_seed(5), 99, &[n]);
    let logs: [Arc<Mutex<Transcript>>; 3] = Default::default();
    let results = run_local_with(
        LocalConfig::seeded(7),
        |t| {
            let log = logs[t.role().index()].clone();
            Box::new(RecordingTransport::new(t, log)) as Box<dyn Transport>
        },
        |s| {
            let mine = (s.role() == Role::Server0).then_some(&x);
            let px = s.share_input::<R>(Role::Server0, mine, &[n])?;
            let mut src = ComparisonSource::Online;
            let r = s.relu_exact(&px, &mut src)?;
            let img = s.reshape(&px, &[n / 64, 1, 8, 8])?;
            s.maxpool_exact(&img, (2, 2), (2, 2), true, &mut src)?;
            s.argmax_exact(&s.reshape(&px, &[n / 10, 10])?, &mut src)?;
            Ok((r.output.share().cloned(), r.derivative.share().cloned()))
        },
    );
    let outs = collect_outputs(results).expect("protocol run failed");
    let mut h = DefaultHasher::new();
    for log in &logs {
        let log = log.lock().expect("log");
        for (to, tag, payload) in &log.sent {
            (to.index(), format!("{tag:?}"), payload).hash(&mut h);
        }
    }
    for (o, d) in &outs {
        for t in [o, d].into_iter().flatten() {
            t.to_signed().iter().for_each(|v| v.hash(&mut h));
        }
    }
    h.finish()
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|v| v.parse().ok()).unwrap_or(5);
    println!("fingerprint z64  {:016x}", fingerprint::<Z64>(64 * 10 * 50));
    println!("fingerprint z128 {:016x}", fingerprint::<Z128>(64 * 10 * 5));
    for n in [12_800, 1_000_000] {
        let reps = if n < 100_000 { reps * 10 } else { reps };
        let t = time_relu(n, reps);
        println!(
            "relu_exact z64 n={n:>9}: server0 {:8.2} ms, server1 {:8.2} ms, cp {:8.2} ms (median of {reps})",
            t[0], t[1], t[2]
        );
    }
}
