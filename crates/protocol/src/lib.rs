//! pond-protocol: the three-party Pond/SPDZ protocol with a dealer.
//!
//! # Threat model
//! Semi-honest, non-colluding parties: server0, server1 and the crypto producer (cp) follow the
//! protocol, and no two of them pool what they see. Under that assumption any single party
//! learns nothing beyond its own inputs and the outputs revealed to it: every share it holds
//! and every value opened to it is uniformly random (or, for CRT truncation, within statistical
//! distance 2^-40 of uniform). Not protected: a malicious party can make results wrong without
//! being detected; two colluding parties learn everything; tensor shapes, the sequence of
//! operations and traffic sizes are public.
//!
//! # Execution model
//! SPMD: every party runs the same program with its [`Role`]. Each protocol step advances the
//! [`Session`]'s step counter and tags its messages with it, so the three copies stay in
//! lockstep without a coordinator; PRG streams are addressed by the same counter.
#![deny(missing_docs)]

pub mod backlog;
pub mod beaver;
pub mod comparison;
pub mod costs;
pub mod dealer;
pub mod error;
pub mod lift;
pub mod linear;
pub mod polynomial;
pub mod runtime;
pub mod session;
pub mod sharing;
pub mod tensors;
pub mod transport;
pub mod truncation;

pub use beaver::Operand;
pub use dealer::{
    Bilinear, Correlation, DealtProduct, OnlineDealer, PregeneratedTriples, ProductShare, Recording, RecordingDealer,
    TripleSource,
};
pub use error::{ProtocolError, Result};
pub use runtime::{collect_outputs, run_local, run_local_parties, run_local_with, LocalConfig};
pub use session::{KeySetup, OpStats, Session};
pub use tensors::{Held, MaskedForm, MaskedTensor, PrivateTensor, PublicTensor};
pub use transport::{
    CountingTransport, InMemoryTransport, RecordingTransport, Role, Tag, Traffic, Transcript, Transport,
};
pub use truncation::ProtocolRing;
