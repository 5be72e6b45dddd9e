//! pond-train: data loaders, optimisers, training loops, metrics, and the experiment and
//! benchmark runners that the `pond` CLI and the criterion benches share.
#![deny(missing_docs)]

pub mod bench;
