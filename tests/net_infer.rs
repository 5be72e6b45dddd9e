//! Private MNIST inference (net A) across three `pond party` processes and a `pond client`:
//! the client's logits equal, bit for bit, those of the same program on three local threads
//! with the same seeds.

mod net_support;

use net_support::{client_outputs, hex, json_lines, local_setup, start_parties, Proc, TempDir};
use pond_core::{FixedPoint, Z64};
use pond_layers::ReluMode;
use pond_net::{serve_local, Splitter, WireTensor};
use pond_protocol::{LocalConfig, Role};
use pond_train::mnist::infer::{load_model, serve_infer};
use pond_train::mnist::{nets::with_relu, train::as_input, Net};
use std::time::Duration;

const BATCH: usize = 10;
const REQUESTS: u64 = 2;

/// The client's logits (wire encoding) per request on three local threads: the program of
/// `pond party infer` (server0 shares and prepares the model once, then each request's shares
/// go through the network).
fn local_logits(seed: u64, client_seed: u64) -> Vec<Vec<u8>> {
    let (trained, weights) =
        load_model(Net::A, ReluMode::Exact, &pond_train::mnist::default_model_dir()).expect("net A model");
    let spec = with_relu(&trained, ReluMode::Exact);
    let mnist = pond_train::mnist::load(&pond_train::mnist::default_data_dir()).expect("MNIST");
    let rows: Vec<usize> = (0..BATCH).collect();
    let images = mnist.test.features.select(ndarray::Axis(0), &rows);
    let fp = FixedPoint::<Z64>::default_for_ring();
    let x = fp.encode(as_input(&Net::A.spec(ReluMode::Exact), images.view()).view()).expect("encode");
    let splitter = Splitter::seeded(client_seed);
    let shares: Vec<[Vec<WireTensor>; 2]> =
        (0..REQUESTS).map(|i| splitter.split_all(std::slice::from_ref(&x), i).expect("split")).collect();
    let served = serve_local(LocalConfig::seeded(seed), &shares, |s, source| {
        let owned = (s.role() == Role::Server0).then_some(&weights);
        serve_infer(s, source, &spec, owned)
    })
    .expect("local run");
    client_outputs(&served)
}

#[test]
fn net_a_inference_over_three_processes_equals_the_local_run_bit_for_bit() {
    let dir = TempDir::new("infer");
    let (config, _) = local_setup(dir.path());
    let mut parties = start_parties(&config, &["--seed", "4", "--json", "infer", "--net", "A"]);
    let (batch, repeat) = (BATCH.to_string(), REQUESTS.to_string());
    let mut client = Proc::client(
        &config,
        &["--seed", "6", "--json", "infer", "--net", "A", "--mnist-index", "0", "--batch", &batch, "--repeat", &repeat],
    );
    client.expect_success(Duration::from_secs(60));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
    }
    let lines = json_lines(&client.stdout());
    assert_eq!(lines.len() as u64, REQUESTS);
    let expected = local_logits(4, 6);
    for (i, (line, local)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(line["raw_hex"].as_str().unwrap(), hex(local), "request {i}: QUIC and local logits differ");
        let predictions = line["predictions"].as_array().unwrap();
        let labels = line["labels"].as_array().unwrap();
        let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
        assert!(correct >= BATCH - 1, "request {i}: {correct}/{BATCH} correct");
    }
}
