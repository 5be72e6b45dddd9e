//! Typed errors of the layers crate.

use pond_core::CoreError;
use pond_protocol::ProtocolError;
use thiserror::Error;

/// What can go wrong in a layer, a loss or a backend operation.
#[derive(Debug, Error)]
pub enum LayerError {
    /// The protocol failed (a peer, a message, a ring operation).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Ring arithmetic or fixed-point encoding failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A tensor had the wrong shape for the operation.
    #[error("{op}: {reason}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What did not fit.
        reason: String,
    },
    /// The backend cannot run this operation (yet).
    #[error("{op} is not available on the {backend} backend: {reason}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The backend's name.
        backend: &'static str,
        /// Why, and what to use instead.
        reason: String,
    },
}

/// Result alias of the layers crate.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

pub(crate) fn shape_error(op: &'static str, reason: impl Into<String>) -> LayerError {
    LayerError::Shape { op, reason: reason.into() }
}

/// Lets layer code run inside protocol programs (`run_local` closures return protocol results).
impl From<LayerError> for ProtocolError {
    fn from(e: LayerError) -> ProtocolError {
        match e {
            LayerError::Protocol(p) => p,
            LayerError::Core(c) => ProtocolError::Core(c),
            other => ProtocolError::Usage { op: "layers", reason: other.to_string() },
        }
    }
}
