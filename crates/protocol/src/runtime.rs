//! The local runtime: the same program as three parties on three threads of one process, over
//! in-memory channels.

use crate::error::{ProtocolError, Result};
use crate::session::{KeySetup, Session, DEFAULT_TIMEOUT};
use crate::transport::{InMemoryTransport, Role, Transport};
use std::time::Duration;

/// Options of a local run.
#[derive(Debug, Clone, Copy)]
pub struct LocalConfig {
    /// Seed for the pairwise keys: same seed, bit-identical outputs and transcripts.
    pub seed: u64,
    /// Receive deadline of every party.
    pub timeout: Duration,
}

impl LocalConfig {
    /// A seeded run with the default deadline.
    pub fn seeded(seed: u64) -> Self {
        LocalConfig { seed, timeout: DEFAULT_TIMEOUT }
    }
}

/// Runs `program` as server0, server1 and cp on three threads; returns each party's result,
/// indexed by [`Role::index`]. A party that fails or panics drops its channels, so the other
/// two stop with [`ProtocolError::Disconnected`] instead of hanging.
pub fn run_local_parties<T, F>(config: LocalConfig, program: F) -> [Result<T>; 3]
where
    T: Send,
    F: Fn(&mut Session) -> Result<T> + Sync,
{
    run_local_with(config, |t| Box::new(t) as Box<dyn Transport>, program)
}

/// Like [`run_local_parties`], with each party's transport wrapped by `wrap` first (e.g. to
/// record transcripts).
pub fn run_local_with<T, F, W>(config: LocalConfig, wrap: W, program: F) -> [Result<T>; 3]
where
    T: Send,
    F: Fn(&mut Session) -> Result<T> + Sync,
    W: Fn(InMemoryTransport) -> Box<dyn Transport> + Sync,
{
    let transports = InMemoryTransport::connected();
    std::thread::scope(|scope| {
        let handles = transports.map(|t| {
            let role = t.role();
            let (program, wrap) = (&program, &wrap);
            let handle = std::thread::Builder::new()
                .name(role.to_string())
                .spawn_scoped(scope, move || {
                    let mut session = Session::new(wrap(t), config.seed, KeySetup::Seed(config.seed), config.timeout)?;
                    let pool = party_pool(role)?;
                    let outcome = pool.install(|| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program(&mut session))).unwrap_or_else(
                            |panic| Err(ProtocolError::Panicked { role, message: panic_message(panic) }),
                        )
                    });
                    if let Err(e) = &outcome {
                        session.abort(e);
                    }
                    outcome
                })
                .map_err(|e| ProtocolError::Usage { op: "run_local", reason: format!("cannot spawn {role}: {e}") });
            (role, handle)
        });
        handles.map(|(role, handle)| match handle {
            Ok(h) => {
                h.join().unwrap_or_else(|panic| Err(ProtocolError::Panicked { role, message: panic_message(panic) }))
            }
            Err(e) => Err(e),
        })
    })
}

/// The rayon pool a party runs in: one per party, as many threads as cores, so that each party's
/// parallel loops run on its own threads, as they would in three processes. With one pool for
/// all three, the work a party hands to rayon queued behind the other parties' jobs (a party
/// thread outside the pool enters through rayon's global queue, which workers serve only when
/// their own deques are empty): cp's share of a batch of inputs, on the critical path, waited
/// for the end of server0's first-layer product. The party's program runs on a thread of its
/// pool, so its parallel loops also start there, without a hand-off to another thread.
fn party_pool(role: Role) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .thread_name(move |i| format!("{role}-{i}"))
        .build()
        .map_err(|e| ProtocolError::Usage { op: "run_local", reason: format!("cannot start {role}'s threads: {e}") })
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Runs `program` on three local parties and returns the three outputs, or the error that
/// started a failure: a party's own error is preferred over the `Disconnected` errors it caused
/// in the others.
pub fn run_local<T, F>(config: LocalConfig, program: F) -> Result<[T; 3]>
where
    T: Send,
    F: Fn(&mut Session) -> Result<T> + Sync,
{
    collect_outputs(run_local_parties(config, program))
}

/// Turns three per-party results into one, picking the root-cause error.
pub fn collect_outputs<T>(results: [Result<T>; 3]) -> Result<[T; 3]> {
    if results.iter().all(|r| r.is_ok()) {
        return Ok(results.map(|r| r.unwrap_or_else(|_| unreachable!("all results are Ok"))));
    }
    let mut errors: Vec<ProtocolError> = results.into_iter().filter_map(|r| r.err()).collect();
    let root = errors
        .iter()
        .position(|e| {
            !matches!(
                e,
                ProtocolError::Disconnected { .. } | ProtocolError::Timeout { .. } | ProtocolError::PeerAborted { .. }
            )
        })
        .unwrap_or(0);
    Err(errors.swap_remove(root))
}

/// Runs a program on three parties where only `role`'s output matters (e.g. the output owner).
pub fn output_of<T>(outputs: [T; 3], role: Role) -> T {
    outputs.into_iter().nth(role.index()).unwrap_or_else(|| unreachable!("three outputs"))
}
