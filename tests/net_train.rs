//! Private logistic-regression training across three `pond party train-logreg` processes on
//! 127.0.0.1: server0 (the data owner) reads the breast-cancer CSV, server1 (the model owner)
//! writes the trained weights, and they equal, bit for bit, the weights of the same program on
//! three local threads with the same seed.

mod net_support;

use net_support::{json_lines, local_setup, Proc, TempDir};
use pond_protocol::Role;
use pond_train::csv::LabelColumn;
use pond_train::experiments::logreg::{prepare_data, train_private_local, DataSource, LogregConfig, SigmoidApprox};
use pond_train::experiments::MODEL_OWNER;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SEED: u64 = 7;
const EPOCHS: usize = 5;

fn csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/breast-cancer/breast_cancer.csv")
}

/// `pond party` arguments of the training job for `role`: the same settings everywhere, the
/// data on server0, the output on server1.
fn job(role: Role, epochs: usize, model_out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["--seed", &SEED.to_string(), "--json", "train-logreg"].map(String::from).to_vec();
    args.extend(["--epochs", &epochs.to_string(), "--batch", "32", "--lr", "0.05"].map(String::from));
    match role {
        Role::Server0 => args.extend(["--data".into(), csv().display().to_string(), "--label".into(), "target".into()]),
        Role::Server1 => args.extend(["--model-out".into(), model_out.display().to_string()]),
        Role::Cp => {}
    }
    args
}

fn start(config: &Path, role: Role, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::party(config, role, &args)
}

#[test]
fn logreg_training_over_three_processes_equals_the_local_run_bit_for_bit() {
    let dir = TempDir::new("train");
    let (config, _) = local_setup(dir.path());
    let stem = dir.path().join("trained");
    let started = Instant::now();
    let mut parties = Role::ALL.map(|role| start(&config, role, &job(role, EPOCHS, &stem)));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(60));
        let summary = json_lines(&party.stdout());
        assert_eq!(summary[0]["epochs"], EPOCHS, "{}", party.name);
    }
    eprintln!("three processes trained {EPOCHS} epochs in {:?}", started.elapsed());
    let got = pond_layers::io::load_weights(&stem.with_extension("safetensors")).expect("server1's weights");

    let cfg = LogregConfig {
        data: DataSource::Csv { path: csv(), label: LabelColumn::parse("target") },
        epochs: EPOCHS,
        batch: 32,
        lr: 0.05,
        momentum: 0.0,
        seed: SEED,
        sigmoid: SigmoidApprox::Poly9,
        frac_bits: 20,
        progress: false,
    };
    let (train, _) = prepare_data(&cfg.data, SEED).expect("breast-cancer data");
    let outcomes = train_private_local(&cfg, &train).expect("local run");
    let expected = outcomes[MODEL_OWNER.index()].weights.clone().expect("the model owner's weights");
    assert!(outcomes.iter().enumerate().all(|(i, o)| (i == MODEL_OWNER.index()) == o.weights.is_some()));

    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, local) in &expected {
        let quic = &got[name];
        assert_eq!(quic.shape(), local.shape(), "{name}");
        let differ = quic.iter().zip(local.iter()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{name}: {differ} values differ between the QUIC and the local run");
    }
    // Training moved the weights away from the initial ones: the comparison has teeth.
    let init = pond_layers::ModelSpec::logistic_regression(30).init(SEED);
    assert_ne!(init["layers.0.weight"], expected["layers.0.weight"]);
}

#[test]
fn a_party_started_with_other_settings_stops_naming_the_data_owner() {
    let dir = TempDir::new("train-mismatch");
    let (config, _) = local_setup(dir.path());
    let stem = dir.path().join("trained");
    // cp was told one epoch more than the data owner.
    let mut parties = Role::ALL.map(|role| {
        let epochs = if role == Role::Cp { EPOCHS + 1 } else { EPOCHS };
        start(&config, role, &job(role, epochs, &stem))
    });
    let stderr = parties[Role::Cp.index()].expect_failure(Duration::from_secs(20));
    assert!(stderr.contains("bad message from server0") && stderr.contains("epochs"), "cp: {stderr}");
    for role in [Role::Server0, Role::Server1] {
        let stderr = parties[role.index()].expect_failure(Duration::from_secs(20));
        assert!(stderr.contains("cp"), "{role} must name cp: {stderr}");
    }
}
