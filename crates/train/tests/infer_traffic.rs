//! The traffic of private MNIST inference equals the protocol's formula
//! ([`pond_layers::cost::inference_batch`]: the per-operation formulas summed over each layer's
//! forward pass), byte for byte and per party, for every network and ring, including a partial
//! last batch. Nets without a committed model run with random weights: traffic does not depend
//! on the values.

use pond_layers::ReluMode;
use pond_train::mnist::infer::{run, InferConfig, RingChoice};
use pond_train::mnist::{self, Net};

fn check(net: Net, ring: RingChoice, relu: ReluMode) {
    let data = mnist::load_test(&mnist::default_data_dir()).expect("data/mnist");
    let cfg = InferConfig {
        net,
        ring,
        relu,
        batch: 3,
        limit: Some(5),
        model_dir: mnist::default_model_dir(),
        seed: 1,
        progress: false,
    };
    let report = run(&cfg, &data).expect("private inference");
    assert_eq!(report.images, 5);
    assert_eq!(
        report.bytes_per_image,
        report.expected_bytes_per_image,
        "net {} ring {}: measured bytes per image (server0, server1, cp) differ from the formula",
        net.name(),
        ring.name()
    );
}

#[test]
fn z64_exact_relu_traffic_matches_the_formula_for_every_net() {
    for net in Net::ALL {
        check(net, RingChoice::Z64, ReluMode::Exact);
    }
}

#[test]
fn z128_and_crt_traffic_matches_the_formula() {
    check(Net::A, RingChoice::Z128, ReluMode::Exact);
    check(Net::D, RingChoice::Z128, ReluMode::Polynomial);
    check(Net::A, RingChoice::Int100, ReluMode::Polynomial);
    check(Net::S, RingChoice::Int100, ReluMode::Polynomial);
    check(Net::A, RingChoice::Crt10, ReluMode::Polynomial);
}
