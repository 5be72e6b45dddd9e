//! Typed errors of the protocol.

use crate::transport::{Role, Tag};
use pond_core::CoreError;
use std::time::Duration;
use thiserror::Error;

/// What can go wrong while running the three-party protocol.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// Ring arithmetic or encoding failed (shapes, ranges).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Nothing arrived from `peer` before the receive deadline.
    #[error("no message from {peer} within {waited:?} (waiting for {tag})")]
    Timeout {
        /// The silent peer.
        peer: Role,
        /// The expected tag.
        tag: Tag,
        /// How long we waited.
        waited: Duration,
    },
    /// The connection to `peer` is gone (it stopped, crashed or was killed).
    #[error("lost connection to {peer}")]
    Disconnected {
        /// The lost peer.
        peer: Role,
    },
    /// `peer` stopped with an error and told us why.
    #[error("{peer} stopped: {reason}")]
    PeerAborted {
        /// The party that stopped.
        peer: Role,
        /// Its error.
        reason: String,
    },
    /// `peer` sent a message for a different protocol step: the parties are out of lockstep.
    #[error("message from {peer} out of step: expected {expected}, got {got}")]
    TagMismatch {
        /// The sender.
        peer: Role,
        /// The tag this party expected.
        expected: Tag,
        /// The tag the message carried.
        got: Tag,
    },
    /// `peer` sent bytes that do not decode to what the protocol expects.
    #[error("bad message from {peer}: {reason}")]
    BadMessage {
        /// The sender.
        peer: Role,
        /// What was wrong.
        reason: String,
    },
    /// A party tried to message itself.
    #[error("{role} cannot send a message to itself")]
    SelfMessage {
        /// The role.
        role: Role,
    },
    /// An operation was called in a way that does not fit this party or state.
    #[error("{op}: {reason}")]
    Usage {
        /// The operation.
        op: &'static str,
        /// Why it cannot run.
        reason: String,
    },
    /// A party of the local runtime panicked.
    #[error("{role} panicked: {message}")]
    Panicked {
        /// The role whose thread panicked.
        role: Role,
        /// The panic message.
        message: String,
    },
    /// A transport-specific failure (e.g. TLS, sockets), with the peer it concerns.
    #[error("transport error with {peer}: {reason}")]
    Transport {
        /// The peer involved.
        peer: Role,
        /// What failed.
        reason: String,
    },
}

/// Result alias for the protocol.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
