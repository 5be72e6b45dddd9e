//! Shared helpers of the protocol tests.
#![allow(dead_code)]

use pond_core::{PrgKey, Ring, RingTensor};
use pond_protocol::{
    collect_outputs, run_local, run_local_with, LocalConfig, PrivateTensor, RecordingTransport, Result, Session,
    Transcript, Transport,
};
use std::sync::{Arc, Mutex};

/// Runs `program` on three local parties and returns the three outputs (panics on error).
pub fn run<T: Send>(seed: u64, program: impl Fn(&mut Session) -> Result<T> + Sync) -> [T; 3] {
    run_local(LocalConfig::seeded(seed), program).expect("protocol run failed")
}

/// A server's share, for reconstruction in the test.
pub fn share<R: Ring>(x: &PrivateTensor<R>) -> Option<R::Tensor> {
    x.share().cloned()
}

/// x0 + x1 from the outputs of the three parties.
pub fn reconstruct<T: RingTensor>(outputs: &[Option<T>; 3]) -> T {
    assert!(outputs[2].is_none(), "cp must not hold a share");
    outputs[0].as_ref().unwrap().add(outputs[1].as_ref().unwrap()).unwrap()
}

/// A uniformly random ring tensor from a seed.
pub fn random<R: Ring>(seed: u64, shape: &[usize]) -> R::Tensor {
    R::Tensor::random(&PrgKey::from_seed(seed), 99, shape)
}

/// `value` on `owner`, `None` elsewhere.
pub fn owned<'a, T>(s: &Session, owner: pond_protocol::Role, value: &'a T) -> Option<&'a T> {
    (s.role() == owner).then_some(value)
}

/// Runs `program` with every party's transport recorded; returns the outputs and transcripts.
pub fn run_recorded<T: Send>(
    seed: u64,
    program: impl Fn(&mut Session) -> Result<T> + Sync,
) -> ([T; 3], [Transcript; 3]) {
    let logs: [Arc<Mutex<Transcript>>; 3] = Default::default();
    let results = run_local_with(
        LocalConfig::seeded(seed),
        |t| {
            let log = logs[t.role().index()].clone();
            Box::new(RecordingTransport::new(t, log)) as Box<dyn Transport>
        },
        program,
    );
    let outputs = collect_outputs(results).expect("protocol run failed");
    (outputs, logs.map(|l| l.lock().unwrap().clone()))
}

/// Pearson's chi-square statistic of `samples` against the uniform distribution on `bins`.
pub fn chi_square(samples: impl Iterator<Item = usize>, bins: usize) -> f64 {
    let mut counts = vec![0u64; bins];
    let mut n = 0u64;
    for s in samples {
        counts[s] += 1;
        n += 1;
    }
    let expected = n as f64 / bins as f64;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

/// Upper 1e-6 quantile of chi-square with `dof` degrees of freedom (Wilson-Hilferty): a
/// uniform view exceeds it with probability about 1e-6, the false-positive rate of each check.
pub fn chi_square_threshold(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 4.753; // standard normal upper 1e-6 quantile
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}
