//! 1,000 back-to-back private inferences of net A at batch 1 in one session over QUIC: no
//! error, and the parties' resident memory does not grow.
//!
//! How memory is measured: while the client runs, the test reads `VmRSS` of the three
//! `pond party` processes from `/proc/PID/status` every 20 ms, together with the number of
//! answers the client has printed. The warm-up level of a party is its highest RSS while
//! requests 100 to 199 are answered (the model is shared and masked, buffers and QUIC windows
//! have reached their working size); the end level is its highest RSS from request 900 on.
//! The end level must stay below 1.10 times the warm-up level.

mod net_support;

use net_support::{json_lines, local_setup, start_parties, Proc, TempDir};
use pond_protocol::Role;
use std::time::{Duration, Instant};

const REQUESTS: usize = 1000;

#[test]
fn a_thousand_net_a_inferences_in_one_session_without_memory_growth() {
    let dir = TempDir::new("memory");
    let (config, _) = local_setup(dir.path());
    let mut parties = start_parties(&config, &["--seed", "2", "--json", "infer", "--net", "A"]);
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
        let (Some(warm), Some(end)) = (peak(100, 200, role.index()), peak(900, REQUESTS + 1, role.index())) else {
            panic!("too few samples: {:?}", samples.iter().map(|s| s.0).collect::<Vec<_>>());
        };
        eprintln!("{role}: RSS {warm} KiB after warm-up (requests 100-199), {end} KiB from request 900 on");
        assert!((end as f64) < warm as f64 * 1.10, "{role}: resident memory grew from {warm} to {end} KiB");
    }
}
