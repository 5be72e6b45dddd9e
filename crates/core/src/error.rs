//! Typed errors of pond-core.

use thiserror::Error;

/// Everything that can go wrong in ring arithmetic, encoding and configuration.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// Two operands of `op` have shapes that do not fit together.
    #[error("{op}: shape mismatch between {left:?} and {right:?}")]
    ShapeMismatch {
        /// The operation that was attempted.
        op: &'static str,
        /// Shape of the left operand.
        left: Vec<usize>,
        /// Shape of the right operand.
        right: Vec<usize>,
    },
    /// A shape argument is invalid for the tensor it is applied to.
    #[error("{op}: invalid shape {shape:?} for a tensor of shape {tensor:?}: {reason}")]
    InvalidShape {
        /// The operation that was attempted.
        op: &'static str,
        /// The shape (or axes) that was asked for.
        shape: Vec<usize>,
        /// The shape of the tensor it was applied to.
        tensor: Vec<usize>,
        /// Why it is invalid.
        reason: String,
    },
    /// A real value does not fit the fixed-point range.
    #[error("value {value} at index {index} is outside the fixed-point range (-{bound}, {bound}) of {int_bits} integer bits")]
    OutOfRange {
        /// The offending value.
        value: f64,
        /// Its flat index in the input.
        index: usize,
        /// The exclusive bound 2^int_bits.
        bound: f64,
        /// Integer bits of the configuration.
        int_bits: u32,
    },
    /// A ring or fixed-point configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A byte buffer that does not decode to the expected tensor.
    #[error("cannot decode {ring} tensor of shape {shape:?}: expected {expected} bytes, got {got}")]
    BadEncoding {
        /// The ring's name.
        ring: &'static str,
        /// The shape that was expected.
        shape: Vec<usize>,
        /// Expected byte count.
        expected: usize,
        /// Received byte count.
        got: usize,
    },
}

/// Result alias for pond-core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
