//! Typed errors of pond-net: each names the file, field, address, role or peer concerned.

use pond_protocol::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// What can go wrong while configuring or connecting the parties.
///
/// Failures after the links are up (a lost peer, a bad frame) are reported by
/// [`pond_protocol::Transport`] calls as [`pond_protocol::ProtocolError`]s naming the peer.
#[derive(Debug, Error)]
pub enum NetError {
    /// A config file does not parse as TOML or a field has the wrong type.
    #[error("{}: {reason}", file.display())]
    ConfigSyntax {
        /// The config file.
        file: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A config field is missing, unknown or has an unusable value.
    #[error("{}: field `{field}`: {reason}", file.display())]
    ConfigField {
        /// The config file.
        file: PathBuf,
        /// The field, as a dotted path (`server1.address`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("read", "write", "create directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating a certificate failed.
    #[error("cannot generate certificate for `{name}`: {reason}")]
    Keygen {
        /// The party (or "CA").
        name: String,
        /// Why.
        reason: String,
    },
    /// Building the TLS configuration from the loaded certificates failed.
    #[error("TLS setup for {role}: {reason}")]
    Tls {
        /// The party being set up.
        role: Role,
        /// Why.
        reason: String,
    },
    /// A party's address does not resolve to a socket address.
    #[error("{role}: cannot resolve address `{address}` of {of}: {reason}")]
    Resolve {
        /// The party connecting.
        role: Role,
        /// The party whose address it is.
        of: Role,
        /// The address as configured.
        address: String,
        /// Why.
        reason: String,
    },
    /// The party's own UDP address cannot be bound (e.g. the port is already in use).
    #[error("{role} cannot bind its address {address}: {source}")]
    Bind {
        /// The party.
        role: Role,
        /// The address it tried to bind.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The link to `peer` was refused: its certificate does not chain to the CA or does not
    /// name `peer`, or `peer` refused ours, or it speaks another protocol.
    #[error("{role}: link with {peer} at {address} refused: {reason}")]
    PeerRefused {
        /// The party connecting.
        role: Role,
        /// The peer.
        peer: Role,
        /// The address involved (the peer's configured address, or where a connection came from).
        address: String,
        /// Why.
        reason: String,
    },
    /// No authenticated link to `peer` came up before the connect timeout.
    #[error("{role}: no link with {peer} ({address}) within {waited:?}{}",
        last_error.as_ref().map(|e| format!("; last problem: {e}")).unwrap_or_default())]
    ConnectTimeout {
        /// The party connecting.
        role: Role,
        /// The peer that did not show up.
        peer: Role,
        /// The peer's configured address.
        address: String,
        /// The connect timeout.
        waited: Duration,
        /// The last failed attempt or refused connection, if any.
        last_error: Option<String>,
    },
    /// Starting the background runtime or the QUIC endpoint failed.
    #[error("{role}: cannot start networking: {reason}")]
    Startup {
        /// The party.
        role: Role,
        /// Why.
        reason: String,
    },
    /// Building the client's TLS configuration failed.
    #[error("TLS setup for the client: {reason}")]
    ClientTls {
        /// Why.
        reason: String,
    },
    /// A server cannot bind its client-link address (e.g. the port is already in use).
    #[error("{role} cannot bind its client-link address {address}: {source}")]
    BindClientLink {
        /// The server.
        role: Role,
        /// The address it tried to bind.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::QuicTransport::connect`] was called on a thread that runs an async runtime; it
    /// blocks, so it must run on a plain thread.
    #[error("{role}: QuicTransport::connect must not be called from inside an async runtime")]
    InsideRuntime {
        /// The party.
        role: Role,
    },
}

/// One end of a client link: the client or one of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkEnd {
    /// The client (input owner, prediction client).
    Client,
    /// server0 or server1.
    Server(Role),
}

impl std::fmt::Display for LinkEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkEnd::Client => f.write_str(crate::tls::CLIENT_NAME),
            LinkEnd::Server(role) => write!(f, "{role}"),
        }
    }
}

/// What can go wrong on a client link ([`crate::client`]); every variant names both ends.
#[derive(Debug, Error)]
pub enum ClientLinkError {
    /// Setting up (config, certificates, binding, runtime) failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// No link with `peer` came up before the deadline.
    #[error("{me}: no link with {peer} ({address}) within {waited:?}{}",
        last_error.as_ref().map(|e| format!("; last problem: {e}")).unwrap_or_default())]
    ConnectTimeout {
        /// This end.
        me: LinkEnd,
        /// The peer that did not show up.
        peer: LinkEnd,
        /// The peer's address (or our own, for a server waiting for the client).
        address: String,
        /// How long we waited.
        waited: Duration,
        /// The last failed attempt or refused connection, if any.
        last_error: Option<String>,
    },
    /// The link to `peer` was refused: a certificate from another CA, a certificate naming the
    /// wrong party, or another protocol.
    #[error("{me}: link with {peer} at {address} refused: {reason}")]
    Refused {
        /// This end.
        me: LinkEnd,
        /// The peer.
        peer: LinkEnd,
        /// The peer's address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Nothing arrived from `peer` before the receive deadline.
    #[error("{me}: no message from {peer} within {waited:?} (waiting for {waiting_for})")]
    Timeout {
        /// This end.
        me: LinkEnd,
        /// The silent peer.
        peer: LinkEnd,
        /// The deadline.
        waited: Duration,
        /// What we were waiting for.
        waiting_for: String,
    },
    /// The connection to `peer` is gone (it stopped, crashed or was killed).
    #[error("{me}: lost connection to {peer}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Disconnected {
        /// This end.
        me: LinkEnd,
        /// The lost peer.
        peer: LinkEnd,
        /// What the connection reported, if anything.
        reason: Option<String>,
    },
    /// `peer` sent a frame or message that does not parse, is too large, or does not fit the
    /// conversation.
    #[error("{me}: bad message from {peer}: {reason}")]
    BadMessage {
        /// This end.
        me: LinkEnd,
        /// The sender.
        peer: LinkEnd,
        /// What was wrong.
        reason: String,
    },
    /// `peer` stopped with an error and told us why.
    #[error("{me}: {peer} stopped: {reason}")]
    PeerFailed {
        /// This end.
        me: LinkEnd,
        /// The party that stopped.
        peer: LinkEnd,
        /// Its error.
        reason: String,
    },
}
