//! Shared helpers of the protocol tests.
#![allow(dead_code)]

use pond_core::{PrgKey, Ring, RingTensor};
use pond_protocol::{run_local, LocalConfig, PrivateTensor, Result, Session};

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
