//! Typed errors of data loading and training.

use pond_layers::LayerError;
use pond_protocol::ProtocolError;
use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong loading a data set.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened or read (e.g. it does not exist).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CSV file is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The label column is not in the CSV header.
    #[error("{}: no column `{column}`; the header has {available:?}", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The columns present.
        available: Vec<String>,
    },
    /// An IDX file has the wrong magic number (not the expected kind of IDX file).
    #[error("{}: magic number {found:#010x}, expected {expected:#010x} ({what})", path.display())]
    IdxMagic {
        /// The file.
        path: PathBuf,
        /// The magic number expected.
        expected: u32,
        /// The magic number found.
        found: u32,
        /// What the expected magic number means.
        what: &'static str,
    },
    /// An IDX file's length does not match its header.
    #[error("{}: {reason}", path.display())]
    IdxLength {
        /// The file.
        path: PathBuf,
        /// Expected vs found.
        reason: String,
    },
    /// An IDX file's dimensions are not the expected ones.
    #[error("{}: dimensions {found:?}, expected {expected}", path.display())]
    IdxDims {
        /// The file.
        path: PathBuf,
        /// The dimensions in the header.
        found: Vec<usize>,
        /// What was expected.
        expected: String,
    },
    /// Two files that must agree do not (e.g. image and label counts).
    #[error("{reason}")]
    Mismatch {
        /// What disagrees.
        reason: String,
    },
}

/// What can go wrong while training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A layer or backend operation failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The protocol failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A fixed-point setting was refused.
    #[error(transparent)]
    Core(#[from] pond_core::CoreError),
    /// A model file failed.
    #[error(transparent)]
    Model(#[from] pond_layers::ModelError),
    /// The settings do not make sense.
    #[error("{0}")]
    Config(String),
}

/// Result alias of pond-train.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
