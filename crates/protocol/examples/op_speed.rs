//! The online phase of the basic Z64 protocol operations on three local parties, for profiling
//! (`perf record`): elementwise mul and truncation of 1e6 elements, with every correlation
//! pregenerated, so only the servers' work and messages are timed.
//!
//! `small` instead times the fixed cost per operation: 10,000 rounds of mul + truncate on 100
//! elements with online dealing (what a logistic-regression step is made of), in us per op.
//!
//! `cargo run --release -p pond-protocol --example op_speed [mul|truncate|small|all] [reps]`

use pond_core::{PrgKey, RingTensor, ZTensor, Z64};
use pond_protocol::*;

const N: usize = 1_000_000;

/// Median (ms, slowest party) of `reps` online runs of `op` on the inputs made by `setup`.
fn time<S>(
    reps: usize,
    setup: impl Fn(&mut Session) -> Result<S> + Sync,
    op: impl Fn(&mut Session, &S) -> Result<()> + Sync,
) -> f64 {
    let times = run_local(LocalConfig::seeded(1), |s| {
        let state = setup(s)?;
        let mut out = Vec::new();
        for _ in 0..reps {
            // A reveal ends in a receive on both servers: the parties start each run together.
            s.reveal(&PrivateTensor::<Z64>::from_share(&[1], s.role().peer().map(|_| ZTensor::zeros(&[1]))))?;
            out.push(s.time_replayed::<Z64, _>(|s| op(s, &state))?.as_secs_f64() * 1e3);
        }
        Ok(out)
    })
    .expect("protocol run failed");
    let mut slowest: Vec<f64> = (0..reps).map(|i| times.iter().map(|t| t[i]).fold(0.0, f64::max)).collect();
    slowest.sort_by(f64::total_cmp);
    slowest[reps / 2]
}

fn input(s: &mut Session, shape: &[usize], stream: u64) -> Result<PrivateTensor<Z64>> {
    let x = ZTensor::<u64>::random(&PrgKey::from_seed(3), stream, shape);
    let mine = (s.role() == Role::Server0).then_some(&x);
    s.share_input::<Z64>(Role::Server0, mine, shape)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".into());
    let reps: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(9);
    if which == "mul" || which == "all" {
        let ms = time(reps, |s| Ok((input(s, &[N], 1)?, input(s, &[N], 2)?)), |s, (x, y)| s.mul(x, y).map(drop));
        println!("mul 1e6 online: {ms:.2} ms");
    }
    if which == "truncate" || which == "all" {
        let ms = time(reps, |s| input(s, &[N], 1), |s, x| s.truncate(x, 16).map(drop));
        println!("truncate 1e6 online: {ms:.2} ms");
    }
    if which == "small" || which == "all" {
        const OPS: usize = 10_000;
        // Slowest party's us per op, with online dealing or with the correlations replayed.
        let per_op = |replayed: bool| {
            let us = run_local(LocalConfig::seeded(1), |s| {
                let x = input(s, &[100], 1)?;
                let pairs = |s: &mut Session| -> Result<()> {
                    for _ in 0..OPS / 2 {
                        let y = s.mul(&x, &x)?;
                        s.truncate(&y, 16)?;
                    }
                    Ok(())
                };
                let elapsed = if replayed {
                    s.time_replayed::<Z64, _>(pairs)?
                } else {
                    let start = std::time::Instant::now();
                    pairs(s)?;
                    start.elapsed()
                };
                Ok(elapsed.as_secs_f64() * 1e6 / OPS as f64)
            })
            .expect("protocol run failed");
            us.into_iter().fold(0.0, f64::max)
        };
        let (total, online) = (per_op(false), per_op(true));
        println!("mul/truncate of 100 elements: {total:.2} us per op with online dealing, {online:.2} us online");
    }
}
