//! 2,000 back-to-back private inferences of net A at batch 1 in one session over QUIC: no
//! error, and the parties' resident memory does not grow.
//!
//! How memory is measured: while the client runs, the test reads `VmRSS` of the three
//! `pond party` processes from `/proc/PID/status` every 20 ms, together with the number of
//! answers the client has printed. The base level of a party is its highest RSS while requests
//! 300 to 499 are answered (by then the model is shared and masked, and buffers and QUIC
//! windows have reached their working size: levels still move by a few MiB before request 300);
//! the end level is its highest RSS from request 1900 on.
//!
//! The bound: the end level must stay below the base level plus 4 MiB. A leak of `L` bytes per
//! request adds `L × 1400` or more between the two windows, so a leak of 3 KiB per request
//! alone exceeds the bound (a party sends 28-32 KiB per request; keeping any one of its messages
//! would exceed it by far). Levels tend to fall by 1-5 MiB after request 300, which can hide
//! part of a small leak: an injected leak of 4 KiB per request in the serve loop made the test
//! fail in 2 runs of 2 (on a server, +4.4 and +5.1 MiB); without it, 6 runs passed with every
//! party between -6 and +0.7 MiB.
//!
//! The parties run with `MIMALLOC_PURGE_DELAY=0`: mimalloc then returns freed pages to the
//! system at once instead of after its default delay, so RSS follows the live heap. With the
//! default delay RSS moves up and down by up to 10 MiB in steps that depend only on timing;
//! with the purge at once, every party's level falls or stays flat after request 300.

mod net_support;

use net_support::{json_lines, local_setup, Proc, TempDir};
use pond_protocol::Role;
use std::time::{Duration, Instant};

const REQUESTS: usize = 2000;
/// Requests whose answers set the base level.
const BASE: std::ops::Range<usize> = 300..500;
/// Requests from which on the end level is taken.
const END_FROM: usize = 1900;
/// Allowed growth from the base to the end level, in KiB (see the module doc).
const SLACK_KIB: u64 = 4 << 10;

#[test]
fn net_a_inferences_in_one_session_without_memory_growth() {
    let dir = TempDir::new("memory");
    let (config, _) = local_setup(dir.path());
    let job = ["--seed", "2", "--json", "infer", "--net", "A"];
    let mut parties = Role::ALL.map(|role| Proc::party_with_env(&config, role, &job, &[("MIMALLOC_PURGE_DELAY", "0")]));
    let repeat = REQUESTS.to_string();
    let args = ["--json", "infer", "--net", "A", "--mnist-index", "0", "--batch", "1", "--repeat", &repeat];
    let mut client = Proc::client(&config, &args);

    // (requests answered, RSS of each party in KiB), sampled while the session runs.
    let mut samples: Vec<(usize, [u64; 3])> = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    loop {
        let done = client.stdout_lines();
        let rss = [0, 1, 2].map(|i| parties[i].rss_kib());
        if rss.iter().all(|&r| r > 0) {
            samples.push((done, rss));
        }
        if done >= REQUESTS || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    client.expect_success(Duration::from_secs(10));
    eprintln!("{REQUESTS} net A batch-1 inferences over QUIC in {:?}", start.elapsed());
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
        assert_eq!(json_lines(&party.stdout())[0]["requests"], REQUESTS, "{}", party.name);
    }
    assert_eq!(json_lines(&client.stdout()).len(), REQUESTS);

    let peak = |from: usize, to: usize, party: usize| {
        samples.iter().filter(|(done, _)| (from..to).contains(done)).map(|(_, rss)| rss[party]).max()
    };
    for role in Role::ALL {
        let (Some(base), Some(end)) =
            (peak(BASE.start, BASE.end, role.index()), peak(END_FROM, REQUESTS + 1, role.index()))
        else {
            panic!("too few samples: {:?}", samples.iter().map(|s| s.0).collect::<Vec<_>>());
        };
        eprintln!("{role}: RSS {base} KiB at requests {BASE:?}, {end} KiB from request {END_FROM} on");
        assert!(end < base + SLACK_KIB, "{role}: resident memory grew from {base} to {end} KiB");
    }
}
