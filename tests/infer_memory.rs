//! Issue 7's memory bound: private inference of net S in int100 at batch 1000 (three local
//! parties in one process) peaks below 2 GiB (tf-encrypted needed 22 GiB).
//!
//! How memory is measured: while `pond infer` runs, the test reads the process's `VmHWM` (its
//! peak resident set so far) from `/proc/PID/status` every 20 ms; the last reading before the
//! process exits is its peak up to then, and what follows the private run (plaintext
//! evaluation of 1,000 images) needs far less.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT_KIB: u64 = 2 << 20;

/// `VmHWM` of `pid` in KiB, or `None` once the process is gone.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn net_s_int100_at_batch_1000_peaks_below_2_gib() {
    let args = ["infer", "--net", "S", "--ring", "int100", "--relu", "poly", "--batch", "1000", "--limit", "1000"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_pond"))
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pond infer");
    let (deadline, mut peak) = (Instant::now() + Duration::from_secs(600), 0);
    while child.try_wait().expect("poll pond infer").is_none() {
        assert!(Instant::now() < deadline, "pond infer did not finish in 10 minutes");
        peak = peak_rss_kib(child.id()).unwrap_or(0).max(peak);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("pond infer output");
    assert!(out.status.success(), "pond infer failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["images"], 1000);
    eprintln!(
        "peak RSS {peak} KiB ({:.2} GiB), {} ms per batch",
        peak as f64 / (1 << 20) as f64,
        report["ms_per_batch"]
    );
    assert!(peak > 0, "no reading of the process's memory");
    assert!(peak < LIMIT_KIB, "peak RSS {peak} KiB is above 2 GiB");
}
