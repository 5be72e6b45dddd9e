//! Data loaders against the repository's data/ directory, and their errors.

use pond_train::csv::{load_csv, CsvOptions, LabelColumn};
use pond_train::error::DataError;
use pond_train::idx::{read_idx, read_labels, repo_data_dir, Mnist, IMAGES_MAGIC, LABELS_MAGIC};
use std::io::Write;
use std::path::PathBuf;

fn data() -> PathBuf {
    repo_data_dir(env!("CARGO_MANIFEST_DIR")).expect("the repository's data/ directory")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pond-train-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn mnist_loads_with_the_published_counts() {
    let m = Mnist::load(&data().join("mnist")).unwrap();
    assert_eq!(m.train.features.dim(), (60_000, 784));
    assert_eq!(m.test.features.dim(), (10_000, 784));
    let count = |l: &ndarray::Array1<f64>, d: f64| l.iter().filter(|&&v| v == d).count();
    // Label counts from data/mnist/README.md.
    assert_eq!(count(&m.test.labels, 0.0), 980);
    assert_eq!(count(&m.train.labels, 9.0), 5949);
    assert!(m.train.features.iter().all(|&p| (0.0..=1.0).contains(&p)));
}

#[test]
fn idx_errors_name_the_file_and_what_was_expected() {
    let dir = data().join("mnist");
    // Labels read as images: wrong magic number.
    let err = read_idx(&dir.join("t10k-labels-idx1-ubyte.gz"), IMAGES_MAGIC).unwrap_err();
    assert!(matches!(err, DataError::IdxMagic { found: LABELS_MAGIC, .. }), "{err}");
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte.gz") && err.to_string().contains("0x00000803"), "{err}");
    // Missing file.
    let err = read_labels(&dir.join("nope.gz")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope.gz"), "{err}");
    // Truncated (uncompressed) file: header says 10 labels, 4 present.
    let path = tmp("short-labels-idx1-ubyte");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3, 4]).unwrap();
    drop(f);
    let err = read_labels(&path).unwrap_err().to_string();
    assert!(err.contains("short-labels") && err.contains("expected 18") && err.contains("truncated"), "{err}");
    // Truncated gzip stream.
    let gz = std::fs::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let path = tmp("cut.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let err = read_labels(&path).unwrap_err().to_string();
    assert!(err.contains("cut.gz"), "{err}");
}

#[test]
fn csv_loader_picks_the_label_and_reports_errors() {
    let path = data().join("breast-cancer/breast_cancer.csv");
    let d = load_csv(&path, &CsvOptions { header: true, label: LabelColumn::parse("target") }).unwrap();
    assert_eq!(d.features.dim(), (569, 30));
    assert_eq!(d.labels.iter().filter(|&&l| l == 1.0).count(), 357);
    let by_index = load_csv(&path, &CsvOptions { header: true, label: LabelColumn::Index(-1) }).unwrap();
    assert_eq!(by_index.labels, d.labels);
    let err = load_csv(&path, &CsvOptions { header: true, label: LabelColumn::parse("diagnosis") }).unwrap_err();
    assert!(matches!(err, DataError::MissingColumn { .. }) && err.to_string().contains("diagnosis"), "{err}");
    let bad = tmp("bad.csv");
    std::fs::write(&bad, "a,b,y\n1,2,0\n3,x,1\n").unwrap();
    let err = load_csv(&bad, &CsvOptions { header: true, label: LabelColumn::parse("y") }).unwrap_err().to_string();
    assert!(err.contains("bad.csv:3") && err.contains("`x`"), "{err}");
    let (train, test) = d.split(0.75, 0);
    assert_eq!((train.len(), test.len()), (426, 143));
}
