//! `pond infer --trace FILE` writes a Chrome trace (the JSON array format that Perfetto and
//! chrome://tracing open) with one span per protocol operation on each party's thread, carrying
//! the operation's name, its role, the bytes it sent and its rounds.
//!
//! How the figures are checked exactly: two runs with the same seed and batch size differ only
//! in the number of timed batches (the weights' set-up and the warm-up batch are the same), so
//! the difference of their traces' totals is the traffic of the extra batch, which `--json`
//! reports as `bytes_per_image` (times the batch) and `rounds_per_batch`.

mod net_support;

use net_support::{pond, TempDir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const BATCH: usize = 2;

/// What a trace says of one party: bytes sent and rounds summed over its operations, and how
/// many times each operation ran.
#[derive(Debug, Default)]
struct PartyTotals {
    bytes: u64,
    rounds: u64,
    ops: BTreeMap<String, usize>,
}

/// Runs `pond infer` on net A (Z64, exact ReLU) over `images` test images with a trace, and
/// returns its JSON report and the trace's totals per party (keyed by role).
fn traced_run(dir: &Path, images: usize) -> (Value, BTreeMap<String, PartyTotals>) {
    let trace = dir.join(format!("trace-{images}.json"));
    let out = Command::new(pond())
        .args(["infer", "--net", "A", "--ring", "z64", "--batch", &BATCH.to_string(), "--limit", &images.to_string()])
        .arg("--trace")
        .arg(&trace)
        .arg("--json")
        .output()
        .expect("run pond infer");
    assert!(out.status.success(), "pond infer failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    let events: Vec<Value> = serde_json::from_slice(&std::fs::read(&trace).expect("trace written"))
        .expect("the trace is a JSON array of events");
    (report, party_totals(&events))
}

/// Checks the trace's structure (named party threads, balanced and ordered spans whose ends
/// carry integer bytes and rounds) and sums each party's operations.
fn party_totals(events: &[Value]) -> BTreeMap<String, PartyTotals> {
    let mut role_of_thread = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "M") {
        assert_eq!(e["name"], "thread_name");
        let name = e["args"]["name"].as_str().expect("thread name");
        role_of_thread.insert(e["tid"].as_u64().expect("tid"), name.split('-').next().unwrap_or(name).to_string());
    }
    let mut open: BTreeMap<u64, (String, f64)> = BTreeMap::new();
    let mut totals: BTreeMap<String, PartyTotals> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] != "M") {
        assert_eq!(e["name"], "op", "every span is a protocol operation: {e}");
        let tid = e["tid"].as_u64().expect("tid");
        let role = role_of_thread.get(&tid).unwrap_or_else(|| panic!("thread {tid} has no name")).clone();
        assert_eq!(e["args"]["role"], role.as_str(), "a span's role is its thread's party");
        let op = e["args"]["op"].as_str().expect("op name").to_string();
        let ts = e["ts"].as_f64().expect("timestamp");
        match e["ph"].as_str() {
            Some("B") => assert!(open.insert(tid, (op, ts)).is_none(), "operations do not nest: {e}"),
            Some("E") => {
                let (begun, start) = open.remove(&tid).unwrap_or_else(|| panic!("end without begin: {e}"));
                assert_eq!(begun, op, "a span ends the operation it began");
                assert!(ts >= start, "a span ends after it begins");
                let field = |name: &str| -> u64 {
                    e["args"][name].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{name} in {e}"))
                };
                let party = totals.entry(role).or_default();
                party.bytes += field("bytes_sent");
                party.rounds += field("rounds");
                *party.ops.entry(op).or_default() += 1;
            }
            _ => panic!("unexpected event {e}"),
        }
    }
    assert!(open.is_empty(), "spans left open: {open:?}");
    totals
}

#[test]
fn trace_spans_carry_each_operations_traffic() {
    let dir = TempDir::new("trace");
    let (short, short_totals) = traced_run(dir.path(), 2 * BATCH);
    let (long, long_totals) = traced_run(dir.path(), 3 * BATCH);
    assert_eq!(short["bytes_per_image"], long["bytes_per_image"]);
    assert_eq!(long_totals.keys().collect::<Vec<_>>(), ["cp", "server0", "server1"]);

    // Net A with exact ReLU: the operations of a private dense network, on every party (the
    // hidden layers' truncations fused with their ReLUs, the logits' truncation on its own).
    for (role, party) in &long_totals {
        for op in ["share_input", "matmul", "truncate_relu", "truncate", "reveal_to"] {
            assert!(party.ops.contains_key(op), "{role} has no {op} span: {:?}", party.ops);
        }
    }
    for (i, role) in ["server0", "server1", "cp"].into_iter().enumerate() {
        let bytes_per_image = long["bytes_per_image"][i].as_f64().expect("bytes_per_image");
        let extra_bytes = long_totals[role].bytes - short_totals[role].bytes;
        assert_eq!(extra_bytes as f64, bytes_per_image * BATCH as f64, "{role}'s bytes in the extra batch");
        assert!(short_totals[role].bytes > 0, "{role} sent nothing in the trace");
    }
    // `rounds_per_batch` counts server0's rounds (server1 also counts the sends that follow its
    // receipts from cp).
    let extra_rounds = long_totals["server0"].rounds - short_totals["server0"].rounds;
    assert_eq!(extra_rounds as f64, long["rounds_per_batch"].as_f64().expect("rounds"), "server0's rounds");
}
