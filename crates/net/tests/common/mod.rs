//! Helpers shared by the pond-net integration tests: free loopback ports, local configs,
//! three parties on three threads, and a deadline for every test.
#![allow(dead_code)]

use pond_net::{write_local_config, NetError, PartiesConfig, QuicTransport};
use pond_protocol::Role;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Three distinct free UDP ports on 127.0.0.1.
pub fn free_ports() -> [u16; 3] {
    pond_net::free_loopback_ports().expect("free loopback ports")
}

/// Certificates and a `parties.toml` for three local parties in `dir`, with short timeouts.
pub fn local_config(dir: &Path) -> PartiesConfig {
    let mut config = write_local_config(dir, free_ports()).expect("write local config");
    config.connect_timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    config
}

/// Connects the three parties of `config` on three threads (starting `role` after
/// `delays[role.index()]`) and runs `body` on each connected transport.
pub fn run_parties<R: Send>(
    config: &PartiesConfig,
    delays: [Duration; 3],
    body: impl Fn(Role, QuicTransport) -> R + Sync,
) -> [Result<R, NetError>; 3] {
    let results = run_some_parties(config, &Role::ALL, delays, body);
    let mut results = results.into_iter();
    std::array::from_fn(|_| results.next().expect("one result per role"))
}

/// Like [`run_parties`] for the parties in `roles` only (the others never start).
pub fn run_some_parties<R: Send>(
    config: &PartiesConfig,
    roles: &[Role],
    delays: [Duration; 3],
    body: impl Fn(Role, QuicTransport) -> R + Sync,
) -> Vec<Result<R, NetError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = roles
            .iter()
            .map(|&role| {
                let body = &body;
                scope.spawn(move || {
                    std::thread::sleep(delays[role.index()]);
                    QuicTransport::connect(config, role).map(|transport| body(role, transport))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("party thread panicked")).collect()
    })
}

/// Runs `test` on its own thread and fails if it takes longer than `limit`, so that no test can
/// hang the suite.
pub fn with_deadline<R: Send + 'static>(limit: Duration, test: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, finished) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let result = test();
        let _ = done.send(());
        result
    });
    match finished.recv_timeout(limit) {
        Ok(()) => runner.join().expect("test thread panicked"),
        // The sender is dropped without a message when the test panics.
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}

/// A temporary directory for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}
