//! The client link: an input owner (the prediction client) talking to the two servers.
//!
//! The client holds a certificate naming `client` from the parties' CA. It dials the
//! `client_address` of server0 and of server1 (a QUIC endpoint of its own on each server,
//! separate from the party links, speaking ALPN [`crate::tls::CLIENT_ALPN`]); both sides check
//! the other's certificate: the client checks that each server's certificate names the server it
//! dialed, each server accepts only a certificate naming `client`. A second client while one is
//! being served is refused.
//!
//! The client secret-shares each input itself ([`Splitter`]: x = x0 + x1 with x0 uniform, from
//! fresh OS randomness or, for reproducible runs, a seed), sends share i to server i, and gets
//! back each server's share of the outputs; only the client adds them up ([`reconstruct`]).
//! Neither server sees more than uniformly random shares; cp never talks to the client.
//!
//! # Wire format
//! One bidirectional QUIC stream per server, opened by the client. Each direction starts with
//! [`CLIENT_PREAMBLE`], then carries frames: a 24-byte header of three little-endian `u64`s
//! (message kind, request index, payload length) and the payload. A frame longer than
//! `max_frame_bytes`, an unknown kind or a payload that does not parse ends the link with
//! [`ClientLinkError::BadMessage`] naming the sender. Every receive has a deadline.

use crate::config::PartiesConfig;
use crate::connect::{classify, Failure};
use crate::error::{ClientLinkError, LinkEnd, NetError};
use crate::frame::{encode_words, read_frame, FrameError};
use crate::link::{CLOSE_BAD_FRAME, CLOSE_DONE, CLOSE_REFUSED};
use crate::quic::{self, Streams};
use crate::tls::{peer_names, ClientIdentity, PartyIdentity, CLIENT_NAME};
use bytes::Bytes;
use pond_core::{CoreError, PrgKey, RingTensor};
use pond_protocol::{PrivateTensor, Role};
use quinn::{Connection, Endpoint, ReadExactError, RecvStream, SendStream};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// First bytes of each direction of a client link.
pub const CLIENT_PREAMBLE: [u8; 8] = *b"PONDCLI1";

/// How long dropping a link waits for the peer to acknowledge what was sent.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// How long dropping a link waits for its close to reach the peer.
const CLOSE_DRAIN: Duration = Duration::from_millis(150);
/// First handshake attempt's time limit when dialing; doubled per attempt up to 4 s.
const FIRST_ATTEMPT: Duration = Duration::from_millis(500);
/// Pause between dial attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a server waits for an accepted client to open its stream.
const STREAM_WAIT: Duration = Duration::from_secs(5);
/// The label under which a client seed is turned into its sharing key.
const SPLIT_KEY_LABEL: u64 = 0x00C1_1E17;

const KIND_REQUEST: u64 = 1;
const KIND_RESPONSE: u64 = 2;
const KIND_END: u64 = 3;
const KIND_ERROR: u64 = 4;

/// A tensor on the client link: its ring (by name), shape and elements in the ring's wire
/// encoding. The shape and ring are public; the elements are one server's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireTensor {
    /// The ring's name ([`RingTensor::RING`]).
    pub ring: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements ([`RingTensor::to_bytes`]).
    pub data: Vec<u8>,
}

impl WireTensor {
    /// Encodes `tensor`.
    pub fn from_tensor<T: RingTensor>(tensor: &T) -> WireTensor {
        WireTensor { ring: T::RING.to_string(), shape: tensor.shape().to_vec(), data: tensor.to_bytes() }
    }

    /// This server's share of `x`, or `None` on cp (which holds no share).
    pub fn from_private<R: pond_core::Ring>(x: &PrivateTensor<R>) -> Option<WireTensor> {
        x.share().map(WireTensor::from_tensor)
    }

    /// Decodes the tensor; fails (with a reason) if the ring is not `T`'s or the data does not
    /// fit the shape.
    pub fn to_tensor<T: RingTensor>(&self) -> Result<T, String> {
        if self.ring != T::RING {
            return Err(format!("tensor in ring `{}`, expected `{}`", self.ring, T::RING));
        }
        T::from_bytes(&self.shape, &self.data).map_err(|e| e.to_string())
    }

    /// The public part: ring and shape.
    pub fn header(&self) -> TensorHeader {
        TensorHeader { ring: self.ring.clone(), shape: self.shape.clone() }
    }
}

/// The public description of a tensor: ring and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorHeader {
    /// The ring's name.
    pub ring: String,
    /// The shape.
    pub shape: Vec<usize>,
}

impl std::fmt::Display for TensorHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:?}", self.ring, self.shape)
    }
}

/// A message on the client link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Client to server: the server's shares of the inputs of request `index`.
    Request {
        /// 0, 1, 2, ... in order.
        index: u64,
        /// One share per input tensor.
        inputs: Vec<WireTensor>,
    },
    /// Server to client: the server's shares of the outputs of request `index`.
    Response {
        /// The request answered.
        index: u64,
        /// One share per output tensor.
        outputs: Vec<WireTensor>,
    },
    /// Client to server: no more requests; the session ends normally.
    End,
    /// Either way: the sender stops because of `reason`.
    Error {
        /// The sender's error.
        reason: String,
    },
}

impl ClientMessage {
    /// The frame header fields (kind, index) and the payload.
    fn encode(&self) -> (u64, u64, Vec<u8>) {
        match self {
            ClientMessage::Request { index, inputs } => (KIND_REQUEST, *index, encode_tensors(inputs)),
            ClientMessage::Response { index, outputs } => (KIND_RESPONSE, *index, encode_tensors(outputs)),
            ClientMessage::End => (KIND_END, 0, Vec::new()),
            ClientMessage::Error { reason } => (KIND_ERROR, 0, reason.as_bytes().to_vec()),
        }
    }

    fn decode(kind: u64, index: u64, payload: &[u8]) -> Result<ClientMessage, String> {
        match kind {
            KIND_REQUEST => Ok(ClientMessage::Request { index, inputs: decode_tensors(payload)? }),
            KIND_RESPONSE => Ok(ClientMessage::Response { index, outputs: decode_tensors(payload)? }),
            KIND_END if payload.is_empty() => Ok(ClientMessage::End),
            KIND_END => Err(format!("end message with a {}-byte payload", payload.len())),
            KIND_ERROR => Ok(ClientMessage::Error { reason: String::from_utf8_lossy(payload).into_owned() }),
            other => Err(format!("unknown message kind {other}")),
        }
    }

    fn describe(&self) -> String {
        match self {
            ClientMessage::Request { index, .. } => format!("request {index}"),
            ClientMessage::Response { index, .. } => format!("response {index}"),
            ClientMessage::End => "end".into(),
            ClientMessage::Error { .. } => "error".into(),
        }
    }
}

/// u32 count; per tensor: u8 ring-name length, name, u8 rank, rank u64 dims, u64 data length,
/// data (all little-endian).
pub(crate) fn encode_tensors(tensors: &[WireTensor]) -> Vec<u8> {
    let size: usize = tensors.iter().map(|t| 2 + t.ring.len() + 8 * t.shape.len() + 8 + t.data.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for t in tensors {
        out.push(t.ring.len().min(255) as u8);
        out.extend_from_slice(&t.ring.as_bytes()[..t.ring.len().min(255)]);
        out.push(t.shape.len().min(255) as u8);
        for &d in t.shape.iter().take(255) {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&t.data);
    }
    out
}

pub(crate) fn decode_tensors(payload: &[u8]) -> Result<Vec<WireTensor>, String> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!("payload ends inside {what}"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn u64(&mut self, what: &str) -> Result<u64, String> {
            let mut b = [0u8; 8];
            b.copy_from_slice(self.take(8, what)?);
            Ok(u64::from_le_bytes(b))
        }
    }
    let mut r = Reader(payload);
    let mut count = [0u8; 4];
    count.copy_from_slice(r.take(4, "the tensor count")?);
    let count = u32::from_le_bytes(count);
    let mut tensors = Vec::new();
    for i in 0..count {
        let name_len = r.take(1, "a ring name")?[0] as usize;
        let ring = std::str::from_utf8(r.take(name_len, "a ring name")?)
            .map_err(|_| format!("tensor {i}: ring name is not UTF-8"))?
            .to_string();
        let rank = r.take(1, "a rank")?[0] as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = r.u64("a shape")?;
            shape.push(usize::try_from(d).map_err(|_| format!("tensor {i}: dimension {d} too large"))?);
        }
        shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor {i}: shape {shape:?} has too many elements"))?;
        let len = r.u64("a data length")?;
        let len = usize::try_from(len).map_err(|_| format!("tensor {i}: data length {len} too large"))?;
        let data = r.take(len, "tensor data")?.to_vec();
        tensors.push(WireTensor { ring, shape, data });
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last tensor", r.0.len()));
    }
    Ok(tensors)
}

/// How the client splits its inputs into two additive shares.
#[derive(Clone)]
pub struct Splitter {
    key: PrgKey,
}

impl std::fmt::Debug for Splitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Splitter { .. }")
    }
}

impl Splitter {
    /// Shares from a seed: reproducible runs and tests only (anyone with the seed can undo the
    /// sharing).
    pub fn seeded(seed: u64) -> Splitter {
        Splitter { key: PrgKey::from_seed(seed).derive(SPLIT_KEY_LABEL) }
    }

    /// Shares from fresh operating-system randomness.
    pub fn from_os() -> Splitter {
        Splitter { key: PrgKey::from_os() }
    }

    /// Splits `x`, input number `input` of request `request`, into `[x0, x1]` with
    /// `x0 + x1 = x`, `x0` uniform.
    pub fn split<T: RingTensor>(&self, x: &T, request: u64, input: u64) -> Result<[T; 2], CoreError> {
        let stream = request.wrapping_mul(1 << 8).wrapping_add(input);
        let x0 = T::random(&self.key, stream, x.shape());
        let x1 = x.sub(&x0)?;
        Ok([x0, x1])
    }

    /// Splits every tensor of `inputs` (request `request`) into the two servers' lists of shares.
    pub fn split_all<T: RingTensor>(&self, inputs: &[T], request: u64) -> Result<[Vec<WireTensor>; 2], CoreError> {
        let mut shares = [Vec::new(), Vec::new()];
        for (i, x) in inputs.iter().enumerate() {
            let [x0, x1] = self.split(x, request, i as u64)?;
            shares[0].push(WireTensor::from_tensor(&x0));
            shares[1].push(WireTensor::from_tensor(&x1));
        }
        Ok(shares)
    }
}

/// Adds the two servers' shares of an output; fails (with a reason) if they differ in ring or
/// shape or do not decode.
pub fn reconstruct<T: RingTensor>(share0: &WireTensor, share1: &WireTensor) -> Result<T, String> {
    if share0.header() != share1.header() {
        return Err(format!("server0 sent a {} share, server1 a {} share", share0.header(), share1.header()));
    }
    let a: T = share0.to_tensor().map_err(|e| format!("server0's share: {e}"))?;
    let b: T = share1.to_tensor().map_err(|e| format!("server1's share: {e}"))?;
    a.add(&b).map_err(|e| e.to_string())
}

/// The tokio runtime and QUIC endpoint behind one end of the client links.
struct LinkRuntime {
    runtime: Option<Runtime>,
    endpoint: Endpoint,
}

impl LinkRuntime {
    fn handle(&self) -> Option<&Handle> {
        self.runtime.as_ref().map(Runtime::handle)
    }
}

impl Drop for LinkRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.endpoint.close(CLOSE_DONE, b"done");
        if Handle::try_current().is_ok() {
            runtime.shutdown_background();
            return;
        }
        let endpoint = self.endpoint.clone();
        runtime.block_on(async move {
            let _ = tokio::time::timeout(CLOSE_DRAIN, endpoint.wait_idle()).await;
        });
        runtime.shutdown_timeout(CLOSE_DRAIN);
    }
}

/// A tokio runtime with one worker and a QUIC endpoint on `socket`.
fn start_runtime(
    name: &str,
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    startup_error: impl Fn(String) -> NetError,
) -> Result<LinkRuntime, NetError> {
    quic::enlarge_socket_buffers(&socket);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| startup_error(format!("tokio runtime: {e}")))?;
    let endpoint = {
        let _context = runtime.enter();
        Endpoint::new(quic::endpoint_config(), server, socket, Arc::new(quinn::TokioRuntime))
            .map_err(|e| startup_error(format!("QUIC endpoint: {e}")))?
    };
    Ok(LinkRuntime { runtime: Some(runtime), endpoint })
}

/// One end's view of the link to one peer: blocking send and receive over background tasks.
struct Peer {
    me: LinkEnd,
    peer: LinkEnd,
    connection: Connection,
    /// Queue to the writer task; `None` once shutting down.
    outgoing: Option<UnboundedSender<ClientMessage>>,
    incoming: Receiver<Result<ClientMessage, ClientLinkError>>,
    writer: Option<JoinHandle<()>>,
    /// Kept last so that the runtime outlives the flush in `drop`.
    runtime: Arc<LinkRuntime>,
}

impl Peer {
    fn start(
        me: LinkEnd,
        peer: LinkEnd,
        runtime: Arc<LinkRuntime>,
        handle: &Handle,
        connection: Connection,
        streams: (SendStream, RecvStream),
        max_frame_bytes: u64,
    ) -> Peer {
        let (outgoing, outgoing_queue) = tokio::sync::mpsc::unbounded_channel();
        let (incoming_queue, incoming) = std::sync::mpsc::channel();
        let writer = handle.spawn(write_messages(streams.0, outgoing_queue));
        handle.spawn(read_messages(me, peer, streams.1, incoming_queue, max_frame_bytes, connection.clone()));
        Peer { me, peer, connection, outgoing: Some(outgoing), incoming, writer: Some(writer), runtime }
    }

    fn lost(&self) -> ClientLinkError {
        ClientLinkError::Disconnected {
            me: self.me,
            peer: self.peer,
            reason: self.connection.close_reason().map(|r| r.to_string()),
        }
    }

    fn send(&self, message: ClientMessage) -> Result<(), ClientLinkError> {
        match &self.outgoing {
            Some(queue) if self.connection.close_reason().is_none() => queue.send(message).map_err(|_| self.lost()),
            _ => Err(self.lost()),
        }
    }

    fn recv(&self, timeout: Duration, waiting_for: &str) -> Result<ClientMessage, ClientLinkError> {
        match self.incoming.recv_timeout(timeout) {
            Ok(Ok(ClientMessage::Error { reason })) => {
                Err(ClientLinkError::PeerFailed { me: self.me, peer: self.peer, reason })
            }
            Ok(Ok(message)) => Ok(message),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Err(ClientLinkError::Timeout {
                me: self.me,
                peer: self.peer,
                waited: timeout,
                waiting_for: waiting_for.to_string(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(self.lost()),
        }
    }

    fn wire_bytes(&self) -> (u64, u64) {
        let stats = self.connection.stats();
        (stats.udp_tx.bytes, stats.udp_rx.bytes)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing the queue makes the writer finish the stream after the queued messages; wait
        // (bounded) until the peer has them, then close.
        self.outgoing = None;
        if let (Some(writer), Some(handle)) = (self.writer.take(), self.runtime.handle()) {
            if Handle::try_current().is_err() {
                let _ = handle.block_on(async move { tokio::time::timeout(CLOSE_LINGER, writer).await });
            }
        }
        self.connection.close(CLOSE_DONE, b"done");
    }
}

/// Writes each queued message as one frame; finishes the stream when the queue closes.
async fn write_messages(mut stream: SendStream, mut queue: UnboundedReceiver<ClientMessage>) {
    while let Some(message) = queue.recv().await {
        let (kind, index, payload) = message.encode();
        let header = encode_words([kind, index, payload.len() as u64]);
        let mut chunks = [Bytes::copy_from_slice(&header), Bytes::from(payload)];
        if stream.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
    }
    if stream.finish().is_ok() {
        let _ = stream.stopped().await;
    }
}

/// Parses frames from `peer` into `queue`. A lost connection or clean end just returns (the
/// receiver then reports the peer disconnected); a bad frame queues a `BadMessage` and closes
/// the connection.
async fn read_messages(
    me: LinkEnd,
    peer: LinkEnd,
    mut stream: RecvStream,
    queue: Sender<Result<ClientMessage, ClientLinkError>>,
    max_frame_bytes: u64,
    connection: Connection,
) {
    let bad = |reason: String| {
        connection.close(CLOSE_BAD_FRAME, reason.as_bytes());
        let _ = queue.send(Err(ClientLinkError::BadMessage { me, peer, reason }));
    };
    loop {
        let known_kind = |[kind, _, _]: [u64; 3]| {
            if (KIND_REQUEST..=KIND_ERROR).contains(&kind) {
                Ok(String::new())
            } else {
                Err(format!("unknown message kind {kind}"))
            }
        };
        let message = match read_frame(&mut stream, max_frame_bytes, known_kind).await {
            Ok(([kind, index, _], payload)) => ClientMessage::decode(kind, index, &payload),
            Err(FrameError::Closed) => return,
            Err(FrameError::Malformed(reason)) => return bad(reason),
        };
        match message {
            Ok(message) => {
                if queue.send(Ok(message)).is_err() {
                    return;
                }
            }
            Err(reason) => return bad(reason),
        }
    }
}

/// The first socket address `address` resolves to.
fn resolve(address: &str) -> Result<SocketAddr, String> {
    address.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "resolves to no address".to_string())
}

/// A server's end of the client link: a QUIC endpoint on its `client_address` that accepts one
/// authenticated client.
pub struct ClientListener {
    role: Role,
    address: SocketAddr,
    max_frame_bytes: u64,
    /// Authenticated connections with their stream, or why a connection was refused.
    accepted: Receiver<Result<(Connection, SendStream, RecvStream), String>>,
    /// Set once a client is being served: later connections are refused.
    busy: Arc<AtomicBool>,
    runtime: Arc<LinkRuntime>,
}

impl std::fmt::Debug for ClientListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientListener").field("role", &self.role).field("address", &self.address).finish()
    }
}

impl ClientListener {
    /// Binds `role`'s `client_address` (a server's) and starts accepting clients in the
    /// background; [`ClientListener::accept`] takes the first authenticated one.
    pub fn bind(config: &PartiesConfig, role: Role) -> Result<ClientListener, NetError> {
        if !role.is_server() {
            return Err(NetError::ConfigField {
                file: config.file(),
                field: "cp.client_address".into(),
                reason: "only server0 and server1 accept the client".into(),
            });
        }
        let address = config.client_address(role)?;
        let bind_addr = resolve(address).map_err(|reason| NetError::ConfigField {
            file: config.file(),
            field: format!("{role}.client_address"),
            reason: format!("cannot resolve `{address}`: {reason}"),
        })?;
        let identity = PartyIdentity::from_config(config, role)?;
        let transport =
            quic::transport_config(config, "client link", Streams::OneBidirectional, bind_addr.ip().is_loopback())?;
        let server_config = identity.client_link_server_config(Arc::new(transport))?;
        let socket = std::net::UdpSocket::bind(bind_addr).map_err(|source| NetError::BindClientLink {
            role,
            address: bind_addr,
            source,
        })?;
        let runtime =
            Arc::new(start_runtime(&format!("pond-client-link-{role}"), socket, Some(server_config), |reason| {
                NetError::Startup { role, reason: format!("client link: {reason}") }
            })?);
        let (found, accepted) = std::sync::mpsc::channel();
        let busy = Arc::new(AtomicBool::new(false));
        if let Some(handle) = runtime.handle() {
            handle.spawn(accept_clients(runtime.endpoint.clone(), found, busy.clone()));
        }
        Ok(ClientListener {
            role,
            address: bind_addr,
            max_frame_bytes: config.max_frame_bytes,
            accepted,
            busy,
            runtime,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Waits up to `timeout` for an authenticated client. Connections that fail to
    /// authenticate are refused and waiting goes on; the last such problem is reported if no
    /// client comes.
    pub fn accept(&mut self, timeout: Duration) -> Result<ClientConnection, ClientLinkError> {
        let me = LinkEnd::Server(self.role);
        let deadline = std::time::Instant::now() + timeout;
        let mut last_error = None;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.accepted.recv_timeout(left) {
                Ok(Ok((connection, send, recv))) => {
                    self.busy.store(true, Ordering::SeqCst);
                    let handle = self.runtime.handle().ok_or_else(|| {
                        ClientLinkError::Net(NetError::Startup { role: self.role, reason: "runtime stopped".into() })
                    })?;
                    let peer = Peer::start(
                        me,
                        LinkEnd::Client,
                        self.runtime.clone(),
                        &handle.clone(),
                        connection,
                        (send, recv),
                        self.max_frame_bytes,
                    );
                    return Ok(ClientConnection { peer });
                }
                Ok(Err(problem)) => last_error = Some(problem),
                Err(_) => {
                    return Err(ClientLinkError::ConnectTimeout {
                        me,
                        peer: LinkEnd::Client,
                        address: self.address.to_string(),
                        waited: timeout,
                        last_error,
                    })
                }
            }
        }
    }
}

/// Accepts client connections, authenticates them (certificate naming `client`, preambles) and
/// passes them on; refuses everyone once `busy`.
async fn accept_clients(
    endpoint: Endpoint,
    found: Sender<Result<(Connection, SendStream, RecvStream), String>>,
    busy: Arc<AtomicBool>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (found, busy) = (found.clone(), busy.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let outcome = async {
                let connecting = incoming.accept().map_err(|e| format!("connection from {remote} failed: {e}"))?;
                let connection = connecting.await.map_err(|e| format!("connection from {remote} failed: {e}"))?;
                if let Err(reason) = peer_names(&connection, CLIENT_NAME) {
                    connection.close(CLOSE_REFUSED, reason.as_bytes());
                    return Err(format!("refused connection from {remote}: {reason}"));
                }
                if busy.load(Ordering::SeqCst) {
                    connection.close(CLOSE_REFUSED, b"busy: the servers already serve a client");
                    return Err(format!("refused a second client from {remote}"));
                }
                let streams = async {
                    let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
                    let mut preamble = [0u8; 8];
                    recv.read_exact(&mut preamble).await.map_err(|e| e.to_string())?;
                    if preamble != CLIENT_PREAMBLE {
                        return Err(format!("client speaks another protocol (its stream starts {preamble:?})"));
                    }
                    send.write_all(&CLIENT_PREAMBLE).await.map_err(|e| e.to_string())?;
                    Ok((send, recv))
                };
                match tokio::time::timeout(STREAM_WAIT, streams).await {
                    Ok(Ok((send, recv))) => Ok((connection, send, recv)),
                    Ok(Err(reason)) => {
                        connection.close(CLOSE_REFUSED, reason.as_bytes());
                        Err(format!("client at {remote}: {reason}"))
                    }
                    Err(_) => {
                        connection.close(CLOSE_REFUSED, b"no stream opened in time");
                        Err(format!("client at {remote} opened no stream within {STREAM_WAIT:?}"))
                    }
                }
            };
            let _ = found.send(outcome.await);
        });
    }
}

/// A server's link to the client it serves.
pub struct ClientConnection {
    peer: Peer,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection").field("server", &self.peer.me).finish()
    }
}

impl ClientConnection {
    /// The next message from the client, waiting up to `timeout`. An `Error` from the client
    /// is returned as [`ClientLinkError::PeerFailed`].
    pub fn recv(&mut self, timeout: Duration) -> Result<ClientMessage, ClientLinkError> {
        self.peer.recv(timeout, "the client's next request")
    }

    /// Queues `message` to the client.
    pub fn send(&mut self, message: ClientMessage) -> Result<(), ClientLinkError> {
        self.peer.send(message)
    }

    /// UDP bytes (sent, received) on this link so far.
    pub fn wire_bytes(&self) -> (u64, u64) {
        self.peer.wire_bytes()
    }
}

/// The client's end: authenticated links to server0 and server1.
pub struct ClientLink {
    /// server0's, then server1's.
    servers: [Peer; 2],
    timeout: Duration,
    next_index: u64,
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink").field("next_index", &self.next_index).finish_non_exhaustive()
    }
}

impl ClientLink {
    /// Dials both servers' `client_address` with the `[client]` certificate of `config`,
    /// retrying until `config.connect_timeout` while a server is not up; each server must
    /// present a certificate naming it. Receives wait up to `config.receive_timeout`.
    ///
    /// Blocks; call it from a plain thread, not from inside an async runtime.
    pub fn connect(config: &PartiesConfig) -> Result<ClientLink, ClientLinkError> {
        let me = LinkEnd::Client;
        let identity = ClientIdentity::from_config(config)?;
        let mut targets = Vec::new();
        for server in [Role::Server0, Role::Server1] {
            let address = config.client_address(server)?.to_string();
            let addr = resolve(&address).map_err(|reason| NetError::ConfigField {
                file: config.file(),
                field: format!("{server}.client_address"),
                reason: format!("cannot resolve `{address}`: {reason}"),
            })?;
            targets.push((server, address, addr));
        }
        let loopback = quic::all_loopback(targets.iter().map(|(_, _, addr)| addr));
        let transport = quic::transport_config(config, "client", Streams::OneBidirectional, loopback)?;
        let client_config = identity.client_config(Arc::new(transport))?;
        let any: SocketAddr = if targets[0].2.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
            .parse()
            .map_err(|_| NetError::ClientTls { reason: "wildcard address".into() })?;
        let socket = std::net::UdpSocket::bind(any)
            .map_err(|e| NetError::ClientTls { reason: format!("cannot bind a UDP socket: {e}") })?;
        let mut link_runtime = start_runtime("pond-client", socket, None, |reason| NetError::ClientTls { reason })?;
        link_runtime.endpoint.set_default_client_config(client_config);
        let runtime = Arc::new(link_runtime);
        let handle =
            runtime.handle().cloned().ok_or_else(|| NetError::ClientTls { reason: "runtime stopped".into() })?;
        let deadline = Instant::now() + config.connect_timeout;
        let waited = config.connect_timeout;
        let dials = targets.into_iter().map(|(server, address, addr)| {
            let endpoint = runtime.endpoint.clone();
            handle.spawn(async move { dial_server(&endpoint, server, address, addr, deadline, waited).await })
        });
        let dials: Vec<_> = dials.collect();
        let mut peers = Vec::new();
        for dial in dials {
            let joined =
                handle.block_on(dial).map_err(|e| NetError::ClientTls { reason: format!("dial task: {e}") })?;
            let (server, connection, streams) = joined?;
            peers.push(Peer::start(
                me,
                LinkEnd::Server(server),
                runtime.clone(),
                &handle,
                connection,
                streams,
                config.max_frame_bytes,
            ));
        }
        let mut peers = peers.into_iter();
        let (Some(s0), Some(s1)) = (peers.next(), peers.next()) else {
            return Err(NetError::ClientTls { reason: "expected two server links".into() }.into());
        };
        Ok(ClientLink { servers: [s0, s1], timeout: config.receive_timeout, next_index: 0 })
    }

    /// Sends request `index` (the next one) with `shares[i]` to server i and waits for both
    /// servers' shares of the outputs. Returns them as `[server0's, server1's]`.
    pub fn request(&mut self, shares: [Vec<WireTensor>; 2]) -> Result<[Vec<WireTensor>; 2], ClientLinkError> {
        let index = self.next_index;
        self.next_index += 1;
        for (peer, inputs) in self.servers.iter().zip(shares) {
            peer.send(ClientMessage::Request { index, inputs })?;
        }
        let mut outputs: [Vec<WireTensor>; 2] = Default::default();
        for (peer, out) in self.servers.iter().zip(outputs.iter_mut()) {
            match peer.recv(self.timeout, &format!("the response to request {index}"))? {
                ClientMessage::Response { index: got, outputs } if got == index => *out = outputs,
                other => {
                    return Err(ClientLinkError::BadMessage {
                        me: LinkEnd::Client,
                        peer: peer.peer,
                        reason: format!("expected response {index}, got {}", other.describe()),
                    })
                }
            }
        }
        Ok(outputs)
    }

    /// The index the next request will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Tells both servers there are no more requests and closes the links (after the servers
    /// have received everything sent).
    pub fn finish(self) -> Result<(), ClientLinkError> {
        for peer in &self.servers {
            peer.send(ClientMessage::End)?;
        }
        Ok(())
    }

    /// Tells both servers the client stops because of `reason` (best effort).
    pub fn fail(self, reason: &str) {
        for peer in &self.servers {
            let _ = peer.send(ClientMessage::Error { reason: reason.to_string() });
        }
    }

    /// UDP bytes (sent, received) on the link to each server so far.
    pub fn wire_bytes(&self) -> [(u64, u64); 2] {
        [self.servers[0].wire_bytes(), self.servers[1].wire_bytes()]
    }
}

/// Dials `server`'s client link until it is up, a certificate is refused, or `deadline`.
async fn dial_server(
    endpoint: &Endpoint,
    server: Role,
    address: String,
    addr: SocketAddr,
    deadline: Instant,
    waited: Duration,
) -> Result<(Role, Connection, (SendStream, RecvStream)), ClientLinkError> {
    let (me, peer) = (LinkEnd::Client, LinkEnd::Server(server));
    let refused = |reason: String| ClientLinkError::Refused { me, peer, address: address.clone(), reason };
    let mut attempt = FIRST_ATTEMPT;
    let mut last_error = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ClientLinkError::ConnectTimeout { me, peer, address: address.clone(), waited, last_error });
        }
        // The server name is the role: the server's certificate must name it.
        let connecting =
            endpoint.connect(addr, &server.to_string()).map_err(|e| refused(format!("cannot dial: {e}")))?;
        match tokio::time::timeout_at((now + attempt).min(deadline), connecting).await {
            Err(_) => last_error = Some(format!("no handshake within {attempt:?}")),
            Ok(Err(e)) => match classify(&e) {
                Failure::Retry(reason) => last_error = Some(reason),
                Failure::Fatal(reason) | Failure::Aborted(reason) => return Err(refused(reason)),
            },
            Ok(Ok(connection)) => {
                let streams = async {
                    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
                    send.write_all(&CLIENT_PREAMBLE).await.map_err(|e| e.to_string())?;
                    let mut preamble = [0u8; 8];
                    recv.read_exact(&mut preamble).await.map_err(|e| match e {
                        ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => match classify(&e) {
                            Failure::Retry(r) | Failure::Fatal(r) | Failure::Aborted(r) => r,
                        },
                        e => e.to_string(),
                    })?;
                    if preamble != CLIENT_PREAMBLE {
                        return Err(format!("server speaks another protocol (its stream starts {preamble:?})"));
                    }
                    Ok((send, recv))
                };
                return match tokio::time::timeout_at(deadline, streams).await {
                    Ok(Ok(streams)) => Ok((server, connection, streams)),
                    Ok(Err(reason)) => Err(refused(reason)),
                    Err(_) => {
                        connection.close(CLOSE_REFUSED, b"streams not opened in time");
                        Err(ClientLinkError::ConnectTimeout {
                            me,
                            peer,
                            address: address.clone(),
                            waited,
                            last_error: Some("handshake done but the server did not answer".into()),
                        })
                    }
                };
            }
        }
        attempt = (attempt * 2).min(Duration::from_secs(4));
        tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pond_core::Z64;

    #[test]
    fn messages_round_trip() {
        let t = WireTensor { ring: "z64".into(), shape: vec![2, 3], data: (0..48).collect() };
        for m in [
            ClientMessage::Request { index: 3, inputs: vec![t.clone(), t.clone()] },
            ClientMessage::Response { index: 9, outputs: vec![t] },
            ClientMessage::Request { index: 0, inputs: vec![] },
            ClientMessage::End,
            ClientMessage::Error { reason: "boom".into() },
        ] {
            let (kind, index, payload) = m.encode();
            assert_eq!(ClientMessage::decode(kind, index, &payload), Ok(m));
        }
    }

    #[test]
    fn truncated_or_padded_payloads_are_refused() {
        let t = WireTensor { ring: "z64".into(), shape: vec![2], data: vec![0; 16] };
        let (kind, index, payload) = ClientMessage::Request { index: 0, inputs: vec![t] }.encode();
        for cut in 0..payload.len() {
            assert!(ClientMessage::decode(kind, index, &payload[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = payload.clone();
        padded.push(0);
        assert!(ClientMessage::decode(kind, index, &padded).is_err());
        assert!(ClientMessage::decode(99, 0, &[]).is_err());
    }

    #[test]
    fn shares_add_up_and_seeded_splits_repeat() {
        let x = <Z64 as pond_core::Ring>::Tensor::from_signed(
            ndarray::ArrayD::from_shape_vec(vec![2, 2], vec![1i128, -2, 3, 1 << 40]).unwrap().view(),
        );
        let s = Splitter::seeded(5);
        let [a, b] = s.split(&x, 1, 0).unwrap();
        assert_eq!(a.add(&b).unwrap(), x);
        assert_eq!(Splitter::seeded(5).split(&x, 1, 0).unwrap()[0], a);
        assert_ne!(Splitter::seeded(5).split(&x, 2, 0).unwrap()[0], a);
        let back: <Z64 as pond_core::Ring>::Tensor =
            reconstruct(&WireTensor::from_tensor(&a), &WireTensor::from_tensor(&b)).unwrap();
        assert_eq!(back, x);
    }
}
