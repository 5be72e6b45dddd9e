//! Model files: architecture JSON + safetensors weights round-trip, and every failure names the
//! tensor or the file.

use pond_layers::io::{load, save, ModelError};
use pond_layers::{LayerSpec, ModelSpec, ReluMode};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pond-layers-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn spec() -> ModelSpec {
    let mut s = ModelSpec::mlp(&[6, 4, 2], ReluMode::Exact);
    s.layers.insert(0, LayerSpec::Flatten);
    s.input_shape = vec![2, 3];
    s
}

#[test]
fn round_trip_is_exact() {
    let (spec, w) = (spec(), spec().init(5));
    let (j, t) = (tmp("rt.json"), tmp("rt.safetensors"));
    save(&spec, &w, &j, &t).unwrap();
    let (spec2, w2) = load(&j, &t).unwrap();
    assert_eq!(spec, spec2);
    assert_eq!(w, w2);
}

#[test]
fn wrong_shape_missing_tensor_and_bad_files_name_what_is_wrong() {
    let spec = spec();
    let (j, t) = (tmp("bad.json"), tmp("bad.safetensors"));
    // A weights file for a different architecture: wrong shape of layers.1.weight.
    let other = ModelSpec::mlp(&[6, 5, 2], ReluMode::Exact);
    save(&other, &other.init(1), &j, &t).unwrap();
    std::fs::write(&j, serde_json::to_string(&spec).unwrap()).unwrap();
    let err = load(&j, &t).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{msg}");
    assert!(msg.contains("layers.1.weight") && msg.contains("bad.safetensors"), "{msg}");

    let shifted = ModelSpec { input_shape: vec![6], layers: other.layers.clone() };
    let mut wrong = shifted.init(2);
    wrong.insert("layers.0.weight".into(), ndarray::ArrayD::zeros(vec![6, 4]));
    let err = save(&shifted, &wrong, &j, &t).unwrap_err().to_string();
    assert!(err.contains("layers.0.weight") && err.contains("[6, 4]") && err.contains("[6, 5]"), "{err}");

    std::fs::write(&t, b"not a safetensors file").unwrap();
    let err = load(&j, &t).unwrap_err().to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    std::fs::write(&j, "{ \"layers\": 3 }").unwrap();
    let err = load(&j, &t).unwrap_err().to_string();
    assert!(err.contains("bad.json"), "{err}");
    let err = load(&tmp("absent.json"), &t).unwrap_err().to_string();
    assert!(err.contains("absent.json"), "{err}");
}
