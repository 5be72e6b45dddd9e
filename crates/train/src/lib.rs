//! pond-train: data loaders, optimisers, training loops, metrics, and the experiment and
//! benchmark runners that the `pond` CLI and the criterion benches share.
//!
//! - Data: [`csv::load_csv`] (header, label column by name or index), [`idx`] (MNIST's gzip IDX
//!   files, checked), [`data::Dataset`] (seeded splits, standardisation, one-hot labels).
//! - Training: [`optim::Sgd`] (momentum, schedules) and [`fit::train_epoch`], both generic over
//!   pond-layers' `Backend`, so the same loop trains in plaintext and privately.
//! - [`experiments`]: `pond train logreg` and `pond train mlp`.
#![deny(missing_docs)]

pub mod bench;
pub mod csv;
pub mod data;
pub mod error;
pub mod experiments;
pub mod fit;
pub mod idx;
pub mod metrics;
pub mod optim;
pub mod progress;

pub use error::{DataError, Result, TrainError};
pub mod mnist;
