//! Three `pond party` processes and a `pond client` over QUIC on 127.0.0.1 compute exactly what
//! the same program computes on three local threads with the same seeds.

mod net_support;

use net_support::{client_outputs, hex, json_lines, local_setup, start_parties, Proc, TempDir};
use pond_core::{FixedPoint, Z64};
use pond_net::serve::sigmoid_program;
use pond_net::{serve, serve_local, Splitter, WireTensor};
use pond_protocol::LocalConfig;
use std::time::Duration;

const VALUES: [f64; 7] = [-7.5, -3.0, -1.0, 0.0, 0.3, 2.0, 6.25];
const REQUESTS: u64 = 3;

/// The client's outputs (wire encoding) of `REQUESTS` sigmoid requests on three local threads,
/// with the parties' `seed` and the client's `client_seed`.
fn local_outputs(seed: u64, client_seed: u64) -> Vec<Vec<u8>> {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let x = fp.encode(ndarray::ArrayD::from_shape_vec(vec![VALUES.len()], VALUES.to_vec()).unwrap().view()).unwrap();
    let splitter = Splitter::seeded(client_seed);
    let shares: Vec<[Vec<WireTensor>; 2]> =
        (0..REQUESTS).map(|i| splitter.split_all(std::slice::from_ref(&x), i).expect("split")).collect();
    let served =
        serve_local(LocalConfig::seeded(seed), &shares, |session, source| serve(session, source, sigmoid_program))
            .expect("local run");
    client_outputs(&served)
}

#[test]
fn sigmoid_over_three_processes_equals_the_local_run_bit_for_bit() {
    let dir = TempDir::new("same-seed");
    let (config, _) = local_setup(dir.path());
    let values: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
    let values = values.join(",");
    let repeat = REQUESTS.to_string();

    let mut parties = start_parties(&config, &["--seed", "11", "--json", "sigmoid"]);
    let mut client =
        Proc::client(&config, &["--seed", "5", "--json", "sigmoid", "--values", &values, "--repeat", &repeat]);
    client.expect_success(Duration::from_secs(30));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
        let summary = json_lines(&party.stdout());
        assert_eq!(summary.len(), 1, "{}: {}", party.name, party.stdout());
        assert_eq!(summary[0]["requests"], REQUESTS, "{}", party.name);
        assert!(summary[0]["protocol_bytes"].as_u64().unwrap() > 0);
        assert!(summary[0]["wire_bytes"].as_u64().unwrap() >= summary[0]["protocol_bytes"].as_u64().unwrap());
    }

    let lines = json_lines(&client.stdout());
    assert_eq!(lines.len() as u64, REQUESTS, "client output:\n{}", client.stdout());
    let expected = local_outputs(11, 5);
    for (i, (line, local)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(line["request"], i as u64);
        assert_eq!(line["raw_hex"].as_str().unwrap(), hex(local), "request {i}: QUIC and local runs differ");
        // And the answer is the sigmoid (to the polynomial's accuracy).
        for (got, x) in line["values"].as_array().unwrap().iter().zip(VALUES) {
            let exact = 1.0 / (1.0 + (-x).exp());
            assert!((got.as_f64().unwrap() - exact).abs() < 0.03, "sigmoid({x}) = {got}, expected {exact}");
        }
    }
    // A different party seed changes the shares and the truncation noise: the comparison has teeth.
    assert_ne!(local_outputs(12, 5), expected);
}

#[test]
fn with_fresh_os_keys_the_result_is_still_the_sigmoid() {
    let dir = TempDir::new("os-keys");
    let (config, _) = local_setup(dir.path());
    let mut parties = start_parties(&config, &["sigmoid"]);
    let mut client = Proc::client(&config, &["--json", "sigmoid", "--values", "-2,0,2"]);
    client.expect_success(Duration::from_secs(30));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
    }
    let lines = json_lines(&client.stdout());
    let got: Vec<f64> = lines[0]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (g, x) in got.iter().zip([-2.0f64, 0.0, 2.0]) {
        assert!((g - 1.0 / (1.0 + (-x).exp())).abs() < 0.03, "sigmoid({x}) = {g}");
    }
}
