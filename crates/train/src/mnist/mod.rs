//! MNIST end to end: tf-encrypted's benchmark networks A-D (and S), their plaintext training with
//! pond's own layers, and private inference over the test set.

pub mod infer;
pub mod nets;
pub mod train;

pub use nets::Net;

use crate::data::Dataset;
use crate::error::DataError;
use crate::idx::{repo_data_dir, Mnist};
use std::path::{Path, PathBuf};

/// The repository's `data/mnist` directory (the shipped copy of the four IDX files).
pub fn default_data_dir() -> PathBuf {
    repo_data_dir(env!("CARGO_MANIFEST_DIR")).unwrap_or_else(|| PathBuf::from("data")).join("mnist")
}

/// The repository's `models` directory (committed trained networks).
pub fn default_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|p| p.join("models"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Loads MNIST from `dir`.
pub fn load(dir: &Path) -> Result<Mnist, DataError> {
    Mnist::load(dir)
}

/// Loads MNIST's test set only from `dir`.
pub fn load_test(dir: &Path) -> Result<Dataset, DataError> {
    Mnist::load_test(dir)
}
