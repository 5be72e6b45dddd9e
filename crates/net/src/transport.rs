//! [`QuicTransport`]: pond's [`Transport`] between three processes over QUIC with mutual TLS.

use crate::config::PartiesConfig;
use crate::connect::{establish, Link};
use crate::error::NetError;
use crate::link::{read_frames, write_frames, Incoming, Outgoing, CLOSE_DONE};
use crate::quic::{self, Streams};
use crate::tls::PartyIdentity;
use pond_protocol::transport::{accept_message, ABORT_STEP};
use pond_protocol::{ProtocolError, Role, Tag, Transport};
use quinn::{Connection, Endpoint, TokioRuntime};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// How long dropping a transport waits for peers to acknowledge the messages already sent.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// How long dropping a transport waits for its close to reach the peers.
const CLOSE_DRAIN: Duration = Duration::from_millis(150);
/// Tokio worker threads per transport: enough to drive two connections in parallel.
const WORKER_THREADS: usize = 2;

/// The link to one peer, as seen from the blocking side.
struct PeerLink {
    connection: Connection,
    /// Queue to the writer task; `None` once shutting down.
    outgoing: Option<UnboundedSender<Outgoing>>,
    /// Messages (or the error that ended the stream) from the reader task.
    incoming: Receiver<Incoming>,
    writer: Option<JoinHandle<()>>,
}

/// A [`Transport`] for one party over QUIC: one mutually authenticated connection to each of
/// the two other parties, a long-lived stream per direction, and a tokio runtime of its own on
/// background threads.
///
/// `send` queues the message for the background writer and returns at once; `recv` blocks on
/// the messages the background reader has parsed, up to its timeout, and checks them with
/// [`accept_message`] (tag, abort notices). A peer whose connection ends makes pending and
/// later receives from it fail with [`ProtocolError::Disconnected`];
/// a malformed or oversized frame fails the receive with [`ProtocolError::BadMessage`] and
/// closes that connection. Dropping the transport waits (up to a few seconds) for the peers
/// to acknowledge what was sent, then closes the connections and stops the runtime.
pub struct QuicTransport {
    role: Role,
    max_frame_bytes: u64,
    /// Indexed by [`Role::index`]; `None` at our own index.
    links: [Option<PeerLink>; 3],
    endpoint: Endpoint,
    /// `Some` until dropped.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport").field("role", &self.role).finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// Starts party `role` as described by `config`: binds its address, dials the parties with
    /// a higher role index and accepts the ones with a lower index (retrying until
    /// `config.connect_timeout`), authenticates each peer by its certificate, and returns once
    /// both links are up.
    ///
    /// Blocks; call it from a plain thread, not from inside an async runtime.
    pub fn connect(config: &PartiesConfig, role: Role) -> Result<QuicTransport, NetError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(NetError::InsideRuntime { role });
        }
        let identity = PartyIdentity::from_config(config, role)?;
        let bind_addr = resolve(config, role, role)?;
        let dial: Vec<(Role, SocketAddr)> = Role::ALL
            .into_iter()
            .filter(|&peer| peer > role)
            .map(|peer| resolve(config, role, peer).map(|addr| (peer, addr)))
            .collect::<Result<_, _>>()?;
        let accept: Vec<Role> = Role::ALL.into_iter().filter(|&peer| peer < role).collect();

        // A socket bound to a loopback address only ever talks to loopback peers.
        let loopback = bind_addr.ip().is_loopback();
        let transport_config =
            Arc::new(quic::transport_config(config, &role.to_string(), Streams::OneEachWay, loopback)?);
        let server_config =
            if accept.is_empty() { None } else { Some(identity.server_config(transport_config.clone())?) };
        let client_config = identity.client_config(transport_config)?;

        let socket = std::net::UdpSocket::bind(bind_addr).map_err(|source| NetError::Bind {
            role,
            address: bind_addr,
            source,
        })?;
        quic::enlarge_socket_buffers(&socket);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name(format!("pond-net-{role}"))
            .enable_all()
            .build()
            .map_err(|e| NetError::Startup { role, reason: format!("tokio runtime: {e}") })?;
        let mut endpoint = {
            let _context = runtime.enter();
            Endpoint::new(quic::endpoint_config(), server_config, socket, Arc::new(TokioRuntime))
                .map_err(|e| NetError::Startup { role, reason: format!("QUIC endpoint on {bind_addr}: {e}") })?
        };
        endpoint.set_default_client_config(client_config);

        let established = runtime.block_on(establish(endpoint.clone(), config.clone(), role, dial, accept));
        let links = match established {
            Ok(links) => links,
            Err(e) => {
                endpoint.close(CLOSE_DONE, b"connect failed");
                runtime.shutdown_timeout(CLOSE_DRAIN);
                return Err(e);
            }
        };
        // All peers are linked: from now on nobody else may connect.
        endpoint.set_server_config(None);

        let mut transport = QuicTransport {
            role,
            max_frame_bytes: config.max_frame_bytes,
            links: [None, None, None],
            endpoint,
            runtime: None,
        };
        for Link { peer, connection, send, recv } in links {
            let (outgoing, outgoing_queue) = tokio::sync::mpsc::unbounded_channel();
            let (incoming_queue, incoming) = std::sync::mpsc::channel();
            let writer = runtime.spawn(write_frames(send, outgoing_queue));
            runtime.spawn(read_frames(peer, recv, incoming_queue, config.max_frame_bytes, connection.clone()));
            transport.links[peer.index()] =
                Some(PeerLink { connection, outgoing: Some(outgoing), incoming, writer: Some(writer) });
        }
        transport.runtime = Some(runtime);
        Ok(transport)
    }

    /// UDP bytes sent on the connection to each peer so far (QUIC headers, TLS, acks and
    /// retransmissions included), indexed by [`Role::index`]; 0 at our own index.
    pub fn wire_bytes_sent(&self) -> [u64; 3] {
        self.per_peer(|c| c.stats().udp_tx.bytes)
    }

    /// UDP bytes received on the connection from each peer so far, indexed by [`Role::index`].
    pub fn wire_bytes_received(&self) -> [u64; 3] {
        self.per_peer(|c| c.stats().udp_rx.bytes)
    }

    /// quinn's full statistics (packets, losses, round-trip time) of the connection to `peer`.
    pub fn connection_stats(&self, peer: Role) -> Option<quinn::ConnectionStats> {
        self.links[peer.index()].as_ref().map(|l| l.connection.stats())
    }

    /// A handle that reads this transport's wire statistics later, e.g. after the transport has
    /// moved into a [`pond_protocol::Session`].
    pub fn wire_stats(&self) -> WireStats {
        WireStats { connections: std::array::from_fn(|i| self.links[i].as_ref().map(|l| l.connection.clone())) }
    }

    /// Writes `bytes` to the stream to `to` as they are, outside the framing, after the messages
    /// already queued. Only for testing how a peer handles malformed input (a garbled or
    /// truncated frame): a party never calls it.
    pub fn send_unframed(&mut self, to: Role, bytes: Vec<u8>) -> Result<(), ProtocolError> {
        self.link(to)?.enqueue(to, Outgoing::Unframed(bytes))
    }

    /// The largest payload a message may carry.
    pub fn max_frame_bytes(&self) -> u64 {
        self.max_frame_bytes
    }

    fn per_peer(&self, f: impl Fn(&Connection) -> u64) -> [u64; 3] {
        std::array::from_fn(|i| self.links[i].as_ref().map_or(0, |l| f(&l.connection)))
    }

    fn link(&self, peer: Role) -> Result<&PeerLink, ProtocolError> {
        self.links[peer.index()].as_ref().ok_or(ProtocolError::SelfMessage { role: peer })
    }
}

/// The wire statistics of a [`QuicTransport`]'s connections, readable while the transport is
/// in use elsewhere (and after it is dropped: the last values stay readable).
#[derive(Clone)]
pub struct WireStats {
    connections: [Option<Connection>; 3],
}

impl std::fmt::Debug for WireStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireStats").field("bytes_sent", &self.bytes_sent()).finish()
    }
}

impl WireStats {
    /// UDP bytes sent on the connection to each peer so far, indexed by [`Role::index`].
    pub fn bytes_sent(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.connections[i].as_ref().map_or(0, |c| c.stats().udp_tx.bytes))
    }

    /// UDP bytes received on the connection from each peer so far, indexed by [`Role::index`].
    pub fn bytes_received(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.connections[i].as_ref().map_or(0, |c| c.stats().udp_rx.bytes))
    }

    /// UDP datagrams sent to each peer so far, indexed by [`Role::index`].
    pub fn datagrams_sent(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.connections[i].as_ref().map_or(0, |c| c.stats().udp_tx.datagrams))
    }

    /// Packets to each peer that QUIC declared lost (and retransmitted), indexed by
    /// [`Role::index`].
    pub fn lost_packets(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.connections[i].as_ref().map_or(0, |c| c.stats().path.lost_packets))
    }

    /// The current path MTU towards each peer, indexed by [`Role::index`].
    pub fn mtu(&self) -> [u16; 3] {
        std::array::from_fn(|i| self.connections[i].as_ref().map_or(0, |c| c.stats().path.current_mtu))
    }
}

impl Transport for QuicTransport {
    fn role(&self) -> Role {
        self.role
    }

    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<(), ProtocolError> {
        let max = self.max_frame_bytes;
        let link = self.link(to)?;
        if payload.len() as u64 > max {
            return Err(ProtocolError::Transport {
                peer: to,
                reason: format!("message of {} bytes ({tag}) exceeds max_frame_bytes = {max}", payload.len()),
            });
        }
        link.enqueue(to, Outgoing::Frame(tag, payload))
    }

    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>, ProtocolError> {
        let link = self.link(from)?;
        match link.incoming.recv_timeout(timeout) {
            // Tag check and abort notices, as for every transport.
            Ok(Ok((got, payload))) => accept_message(from, tag, got, payload),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Err(ProtocolError::Timeout { peer: from, tag, waited: timeout }),
            Err(RecvTimeoutError::Disconnected) => Err(ProtocolError::Disconnected { peer: from }),
        }
    }
}

impl PeerLink {
    /// Queues `outgoing` for the writer; if the link to `to` is gone, reports why.
    fn enqueue(&self, to: Role, outgoing: Outgoing) -> Result<(), ProtocolError> {
        let sent = match &self.outgoing {
            Some(queue) if self.connection.close_reason().is_none() => queue.send(outgoing).is_ok(),
            _ => false,
        };
        if sent {
            return Ok(());
        }
        // The peer is gone: report its abort notice if it left one, else the lost connection.
        let notice = self.incoming.try_iter().find_map(|m| m.ok().filter(|(t, _)| t.step == ABORT_STEP));
        Err(match notice {
            Some((t, payload)) => {
                accept_message(to, t, t, payload).err().unwrap_or(ProtocolError::Disconnected { peer: to })
            }
            None => ProtocolError::Disconnected { peer: to },
        })
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let mut writers = Vec::new();
        let mut connections = Vec::new();
        for link in self.links.iter_mut().flatten() {
            // Closing the queue makes the writer finish its stream after the queued messages.
            link.outgoing = None;
            writers.extend(link.writer.take());
            connections.push(link.connection.clone());
        }
        let endpoint = self.endpoint.clone();
        let (done, wait_done) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let flushed = async {
                for writer in writers {
                    let _ = writer.await;
                }
            };
            let _ = tokio::time::timeout(CLOSE_LINGER, flushed).await;
            for connection in &connections {
                connection.close(CLOSE_DONE, b"done");
            }
            let _ = tokio::time::timeout(CLOSE_DRAIN, endpoint.wait_idle()).await;
            let _ = done.send(());
        });
        let _ = wait_done.recv_timeout(CLOSE_LINGER + CLOSE_DRAIN + Duration::from_millis(500));
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking on a runtime's shutdown is not allowed inside another runtime.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(CLOSE_DRAIN);
        }
    }
}

/// The socket address of `of` (first one its configured address resolves to).
fn resolve(config: &PartiesConfig, role: Role, of: Role) -> Result<SocketAddr, NetError> {
    let address = &config.party(of).address;
    let error = |reason: String| NetError::Resolve { role, of, address: address.clone(), reason };
    address
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("resolves to no address".into()))
}
