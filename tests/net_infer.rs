//! Private MNIST inference (net A) across three `pond party` processes and a `pond client`:
//! the client's logits equal, bit for bit, those of the same program on three local threads
//! with the same seeds.

mod net_support;

use net_support::{json_lines, local_setup, start_parties, Proc, TempDir};
use pond_core::{FixedPoint, Ring, RingTensor, Z64};
use pond_layers::{Activation, AnyLayer, PrivateBackend, ReluMode, Sequential};
use pond_net::serve::serve_in;
use pond_net::{reconstruct, QueuedRequests, RequestSource, Splitter, WireTensor};
use pond_protocol::{run_local, LocalConfig, ProtocolError, Role};
use pond_train::mnist::{infer::load_model, nets::with_relu, train::as_input, Net};
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
    let x = fp.encode(as_input(&Net::A.spec(ReluMode::Exact), &images).view()).expect("encode");
    let splitter = Splitter::seeded(client_seed);
    let shares: Vec<[Vec<WireTensor>; 2]> =
        (0..REQUESTS).map(|i| splitter.split_all(std::slice::from_ref(&x), i).expect("split")).collect();
    let outputs = run_local(LocalConfig::seeded(seed), |s| {
        let role = s.role();
        let mut queue =
            role.is_server().then(|| QueuedRequests::new(shares.iter().map(|r| r[role.index()].clone()).collect()));
        let mut b = PrivateBackend::<Z64>::new(s, fp);
        let mut model = Sequential::input(&mut b, &spec, Role::Server0, (role == Role::Server0).then_some(&weights))?;
        for layer in &mut model.layers {
            match layer {
                AnyLayer::Dense(d) => d.prepare_weight(&mut b)?,
                AnyLayer::Conv2d(c) => c.prepare_weight(&mut b)?,
                _ => {}
            }
        }
        let mut context = (b, model);
        serve_in(
            &mut context,
            |(b, _)| b.session(),
            queue.as_mut().map(|q| q as &mut dyn RequestSource),
            |(b, model), request| {
                let x = request.input::<Z64>(0)?;
                let (z, _) = model.forward(b, Activation::Value(x))?;
                Ok(vec![WireTensor::from_private(&z)])
            },
        )
        .map_err(|e| ProtocolError::Usage { op: "serve", reason: e.to_string() })?;
        Ok(queue.map(|q| q.responses))
    })
    .expect("local run");
    let (Some(r0), Some(r1)) = (&outputs[0], &outputs[1]) else { panic!("servers have responses") };
    r0.iter()
        .zip(r1)
        .map(|((_, o0), (_, o1))| {
            let z: <Z64 as Ring>::Tensor = reconstruct(&o0[0], &o1[0]).expect("reconstruct");
            z.to_bytes()
        })
        .collect()
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
        let hex: String = local.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(line["raw_hex"].as_str().unwrap(), hex, "request {i}: QUIC and local logits differ");
        let predictions = line["predictions"].as_array().unwrap();
        let labels = line["labels"].as_array().unwrap();
        let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
        assert!(correct >= BATCH - 1, "request {i}: {correct}/{BATCH} correct");
    }
}
