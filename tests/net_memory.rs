//! 1,000 back-to-back requests in one session over QUIC: no error, and the parties' resident
//! memory does not grow (under 10% between request 100 and the end).

mod net_support;

use net_support::{json_lines, local_setup, start_parties, Proc, TempDir};
use pond_protocol::Role;
use std::time::{Duration, Instant};

#[test]
fn a_thousand_requests_in_one_session_without_memory_growth() {
    let dir = TempDir::new("memory");
    let (config, _) = local_setup(dir.path());
    let mut parties = start_parties(&config, &["--seed", "2", "--json", "sigmoid"]);
    // One MNIST image's worth of values per request.
    let values: Vec<String> = (0..784).map(|i| format!("{:.3}", (i % 17) as f64 / 4.0 - 2.0)).collect();
    let mut client = Proc::client(&config, &["--json", "sigmoid", "--values", &values.join(","), "--repeat", "1000"]);

    // (requests answered, RSS of each party in KiB), sampled while the session runs.
    let mut samples: Vec<(usize, [u64; 3])> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = client.stdout().lines().count();
        let rss = [0, 1, 2].map(|i| parties[i].rss_kib());
        if rss.iter().all(|&r| r > 0) {
            samples.push((done, rss));
        }
        if done >= 1000 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    client.expect_success(Duration::from_secs(10));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
        assert_eq!(json_lines(&party.stdout())[0]["requests"], 1000, "{}", party.name);
    }
    assert_eq!(json_lines(&client.stdout()).len(), 1000);

    let peak = |from: usize, to: usize, party: usize| {
        samples.iter().filter(|(done, _)| (from..to).contains(done)).map(|(_, rss)| rss[party]).max()
    };
    for role in Role::ALL {
        let (Some(early), Some(late)) = (peak(100, 200, role.index()), peak(800, 1001, role.index())) else {
            panic!("too few samples: {:?}", samples.iter().map(|s| s.0).collect::<Vec<_>>());
        };
        eprintln!("{role}: RSS {early} KiB after 100-200 requests, {late} KiB after 800+");
        assert!((late as f64) < early as f64 * 1.10, "{role}: resident memory grew from {early} to {late} KiB");
    }
}
