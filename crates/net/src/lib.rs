//! pond-net: the three parties of pond talking over QUIC with mutual TLS.
//!
//! [`QuicTransport`] implements [`pond_protocol::Transport`] between `server0`, `server1` and
//! `cp`: one QUIC connection per pair of parties (the lower role dials the higher), one
//! long-lived unidirectional stream per direction carrying length-prefixed frames, and every
//! peer authenticated by a certificate from the parties' own CA that names its role.
//!
//! - [`config`]: the `parties.toml` file ([`PartiesConfig`]).
//! - [`certs`]: `pond keygen`, a CA plus one certificate per party ([`generate_certificates`]).
//! - [`tls`]: TLS configurations and reading a peer's role from its certificate.
//! - [`frame`]: the wire format of one message.
//! - [`transport`]: the [`QuicTransport`] itself.
//! - [`client`]: the client link, an input owner sending shares to the two servers and
//!   reconstructing the outputs ([`ClientLink`], [`ClientListener`]).
//! - [`serve`](mod@serve): serving a client's requests in a session, the same on three processes
//!   and in a local run.
//!
//! Tokio runs on background threads owned by each transport; the blocking `send`/`recv` of the
//! protocol reach it through channels, so protocol (and rayon) work never runs on a tokio
//! worker.
#![deny(missing_docs)]

pub mod certs;
pub mod client;
pub mod config;
mod connect;
pub mod error;
pub mod frame;
mod link;
mod quic;
pub mod serve;
pub mod tls;
pub mod transport;

pub use certs::{generate_certificates, GeneratedCertificates, PartyFiles};
pub use client::{reconstruct, ClientConnection, ClientLink, ClientListener, ClientMessage, Splitter, WireTensor};
pub use config::{
    free_loopback_port_set, free_loopback_ports, write_local_config, write_local_config_with_client, ClientFiles,
    PartiesConfig, PartyConfig,
};
pub use error::{ClientLinkError, LinkEnd, NetError};
pub use serve::{
    serve, serve_local, LocalServed, QueuedRequests, RequestSource, ServeError, ServeReport, ServedRequest,
};
pub use transport::{QuicTransport, WireStats};
