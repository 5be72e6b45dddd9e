//! How bytes move between the three parties: the [`Transport`] trait, an in-memory
//! implementation for three threads, and [`CountingTransport`], which counts bytes and rounds
//! around any transport.

use crate::backlog::Backlog;
use crate::error::{ProtocolError, Result};
use std::fmt;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One of the three parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// First compute server (holds share 0).
    Server0,
    /// Second compute server (holds share 1).
    Server1,
    /// Crypto producer: deals correlated randomness, never holds a share of data.
    Cp,
}

impl Role {
    /// The three roles in index order.
    pub const ALL: [Role; 3] = [Role::Server0, Role::Server1, Role::Cp];

    /// 0, 1 or 2.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The other compute server, for a server.
    pub fn peer(self) -> Option<Role> {
        match self {
            Role::Server0 => Some(Role::Server1),
            Role::Server1 => Some(Role::Server0),
            Role::Cp => None,
        }
    }

    /// True for server0 and server1.
    pub fn is_server(self) -> bool {
        self != Role::Cp
    }

    /// The role named `name` ("server0", "server1", "cp").
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.to_string() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server0 => "server0",
            Role::Server1 => "server1",
            Role::Cp => "cp",
        })
    }
}

/// Identifies a message: the session it belongs to and the protocol step that sent it. The
/// three SPMD copies of a program take the same steps, so sender and receiver agree on the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Session id, the same on all three parties.
    pub session: u64,
    /// Step counter at the time of sending.
    pub step: u64,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {} step {}", self.session, self.step)
    }
}

/// Sends tagged byte messages to a role and receives them from a role, blocking.
///
/// Messages between two parties arrive in the order they were sent. `recv` returns the next
/// message from `from`; if its tag differs from `tag` that is an error naming both tags, and if
/// nothing arrives within `timeout` that is an error naming the peer.
pub trait Transport: Send {
    /// The role this transport speaks for.
    fn role(&self) -> Role;
    /// Sends `payload` to `to`.
    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<()>;
    /// Receives the next message from `from`, which must carry `tag`.
    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>>;
}

type Message = (Tag, Vec<u8>);

/// How long an in-memory receive polls (yielding the core between polls) before it blocks.
const SPIN_BEFORE_BLOCKING: Duration = Duration::from_micros(50);

/// Bytes that cp may have in flight to server1 on an in-memory link (see [`Backlog`]).
pub const CP_BACKLOG_BYTES: usize = 64 << 20;

/// The step number of an abort notice: a failing party sends one to each peer, with its error
/// as the payload, so the peers stop with an error that names the party that failed first.
pub const ABORT_STEP: u64 = u64::MAX;

/// Checks a received message against the expected tag; every transport's `recv` ends here.
/// An abort notice becomes [`ProtocolError::PeerAborted`], another tag a `TagMismatch`.
pub fn accept_message(from: Role, expected: Tag, got: Tag, payload: Vec<u8>) -> Result<Vec<u8>> {
    if got.step == ABORT_STEP {
        return Err(ProtocolError::PeerAborted { peer: from, reason: String::from_utf8_lossy(&payload).into_owned() });
    }
    if got != expected {
        return Err(ProtocolError::TagMismatch { peer: from, expected, got });
    }
    Ok(payload)
}

/// In-process transport over channels, for running the three parties as three threads.
///
/// Dropping a party's transport (because it returned or panicked) disconnects its channels, so
/// its peers' pending and future receives fail at once with [`ProtocolError::Disconnected`].
/// cp's link to server1 is budgeted by a [`Backlog`] of [`CP_BACKLOG_BYTES`]; the other links
/// carry at most an operation's messages at a time and are unbounded.
pub struct InMemoryTransport {
    role: Role,
    to: [Option<Sender<Message>>; 3],
    from: [Option<Receiver<Message>>; 3],
    /// The budget of the link this party sends on (cp: to server1), or receives on (server1:
    /// from cp), indexed by the peer's role.
    backlogs: [Option<Arc<Backlog>>; 3],
}

impl InMemoryTransport {
    /// Three connected transports, indexed by [`Role::index`].
    pub fn connected() -> [InMemoryTransport; 3] {
        let mut senders: [[Option<Sender<Message>>; 3]; 3] = Default::default();
        let mut receivers: [[Option<Receiver<Message>>; 3]; 3] = Default::default();
        for a in 0..3 {
            for b in 0..3 {
                if a != b {
                    let (tx, rx) = channel();
                    senders[a][b] = Some(tx);
                    receivers[b][a] = Some(rx);
                }
            }
        }
        let mut out = Role::ALL.map(|role| InMemoryTransport {
            role,
            to: Default::default(),
            from: Default::default(),
            backlogs: Default::default(),
        });
        for (i, t) in out.iter_mut().enumerate() {
            t.to = std::mem::take(&mut senders[i]);
            t.from = std::mem::take(&mut receivers[i]);
        }
        let backlog = Arc::new(Backlog::new(CP_BACKLOG_BYTES));
        out[Role::Cp.index()].backlogs[Role::Server1.index()] = Some(Arc::clone(&backlog));
        out[Role::Server1.index()].backlogs[Role::Cp.index()] = Some(backlog);
        out
    }

    /// Takes a received message off `from`'s budget, if that link has one.
    fn released(&self, from: Role, message: Message) -> Message {
        if let Some(backlog) = &self.backlogs[from.index()] {
            if message.0.step != ABORT_STEP {
                backlog.release(message.1.len());
            }
        }
        message
    }
}

impl Drop for InMemoryTransport {
    /// A receiver that goes away releases a sender waiting on its budget.
    fn drop(&mut self) {
        if self.role.is_server() {
            self.backlogs.iter().flatten().for_each(|b| b.close());
        }
    }
}

impl Transport for InMemoryTransport {
    fn role(&self) -> Role {
        self.role
    }

    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<()> {
        let sender = self.to[to.index()].as_ref().ok_or(ProtocolError::SelfMessage { role: to })?;
        // An abort notice never waits for room: the peer may never drain the link again.
        let room = match &self.backlogs[to.index()] {
            Some(backlog) if tag.step != ABORT_STEP => backlog.reserve(payload.len()),
            _ => true,
        };
        if room && sender.send((tag, payload)).is_ok() {
            return Ok(());
        }
        // The peer is gone: report its abort notice if it left one, else the lost connection.
        let notice = self.from[to.index()].as_ref().and_then(|rx| rx.try_iter().find(|(t, _)| t.step == ABORT_STEP));
        Err(match notice {
            Some((t, payload)) => {
                accept_message(to, t, t, payload).err().unwrap_or(ProtocolError::Disconnected { peer: to })
            }
            None => ProtocolError::Disconnected { peer: to },
        })
    }

    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>> {
        let receiver = self.from[from.index()].as_ref().ok_or(ProtocolError::SelfMessage { role: from })?;
        // Most messages arrive within microseconds of being awaited: poll briefly before
        // sleeping, since waking a blocked thread costs more than a protocol round's work.
        let spin_until = Instant::now() + SPIN_BEFORE_BLOCKING;
        let polled = loop {
            match receiver.try_recv() {
                Ok(message) => break Some(self.released(from, message)),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break None,
                Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < spin_until => std::thread::yield_now(),
                Err(std::sync::mpsc::TryRecvError::Empty) => break None,
            }
        };
        if let Some((got, payload)) = polled {
            return accept_message(from, tag, got, payload);
        }
        let message = receiver.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => ProtocolError::Timeout { peer: from, tag, waited: timeout },
            RecvTimeoutError::Disconnected => ProtocolError::Disconnected { peer: from },
        })?;
        let (got, payload) = self.released(from, message);
        accept_message(from, tag, got, payload)
    }
}

/// Traffic seen by one party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Payload bytes sent to each role (indexed by [`Role::index`]).
    pub bytes_sent: [u64; 3],
    /// Payload bytes received from each role.
    pub bytes_received: [u64; 3],
    /// Messages sent.
    pub messages_sent: u64,
    /// Communication rounds: a send that follows a receive (or is the party's first send)
    /// starts a new round, so a round is one batch of messages sent before waiting for answers.
    pub rounds: u64,
}

impl Traffic {
    /// Total payload bytes sent.
    pub fn total_sent(&self) -> u64 {
        self.bytes_sent.iter().sum()
    }

    /// Component-wise difference `self - earlier`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            bytes_sent: std::array::from_fn(|i| self.bytes_sent[i] - earlier.bytes_sent[i]),
            bytes_received: std::array::from_fn(|i| self.bytes_received[i] - earlier.bytes_received[i]),
            messages_sent: self.messages_sent - earlier.messages_sent,
            rounds: self.rounds - earlier.rounds,
        }
    }
}

/// Counts payload bytes and rounds of any transport (a wrapper, swanky's `TrackChannel` style).
pub struct CountingTransport<T: Transport> {
    inner: T,
    traffic: Traffic,
    received_since_send: bool,
}

impl<T: Transport> CountingTransport<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        CountingTransport { inner, traffic: Traffic::default(), received_since_send: true }
    }

    /// Counters so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The wrapped transport.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Transport> Transport for CountingTransport<T> {
    fn role(&self) -> Role {
        self.inner.role()
    }

    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<()> {
        if self.received_since_send {
            self.traffic.rounds += 1;
            self.received_since_send = false;
        }
        self.traffic.bytes_sent[to.index()] += payload.len() as u64;
        self.traffic.messages_sent += 1;
        self.inner.send(to, tag, payload)
    }

    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>> {
        let payload = self.inner.recv(from, tag, timeout)?;
        self.traffic.bytes_received[from.index()] += payload.len() as u64;
        self.received_since_send = true;
        Ok(payload)
    }
}

/// Every message one party sent and received, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// (destination, tag, payload) of each message sent.
    pub sent: Vec<(Role, Tag, Vec<u8>)>,
    /// (source, tag, payload) of each message received.
    pub received: Vec<(Role, Tag, Vec<u8>)>,
}

/// Records a party's transcript into a shared [`Transcript`] (for tests of determinism and of
/// what each party sees).
pub struct RecordingTransport<T: Transport> {
    inner: T,
    transcript: std::sync::Arc<std::sync::Mutex<Transcript>>,
}

impl<T: Transport> RecordingTransport<T> {
    /// Wraps `inner`, appending to `transcript`.
    pub fn new(inner: T, transcript: std::sync::Arc<std::sync::Mutex<Transcript>>) -> Self {
        RecordingTransport { inner, transcript }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Transcript> {
        // A poisoned lock only means another recorder panicked; the transcript is still usable.
        self.transcript.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Transport> Transport for RecordingTransport<T> {
    fn role(&self) -> Role {
        self.inner.role()
    }

    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<()> {
        self.log().sent.push((to, tag, payload.clone()));
        self.inner.send(to, tag, payload)
    }

    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>> {
        let payload = self.inner.recv(from, tag, timeout)?;
        self.log().received.push((from, tag, payload.clone()));
        Ok(payload)
    }
}

impl Transport for Box<dyn Transport> {
    fn role(&self) -> Role {
        (**self).role()
    }

    fn send(&mut self, to: Role, tag: Tag, payload: Vec<u8>) -> Result<()> {
        (**self).send(to, tag, payload)
    }

    fn recv(&mut self, from: Role, tag: Tag, timeout: Duration) -> Result<Vec<u8>> {
        (**self).recv(from, tag, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_runs_at_most_its_backlog_ahead_of_server1() {
        let [_s0, mut s1, mut cp] = InMemoryTransport::connected();
        let message = CP_BACKLOG_BYTES / 8;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let dealer = {
            let sent = Arc::clone(&sent);
            std::thread::spawn(move || {
                for step in 1..=16 {
                    cp.send(Role::Server1, Tag { session: 0, step }, vec![0; message])?;
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, ProtocolError>(())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 8, "cp must stop at its backlog");
        for step in 1..=16 {
            s1.recv(Role::Cp, Tag { session: 0, step }, Duration::from_secs(5)).unwrap();
        }
        dealer.join().unwrap().unwrap();
    }

    #[test]
    fn a_dealer_waiting_for_room_fails_when_server1_goes_away() {
        let [_s0, s1, mut cp] = InMemoryTransport::connected();
        cp.send(Role::Server1, Tag { session: 0, step: 1 }, vec![0; CP_BACKLOG_BYTES]).unwrap();
        let dealer = std::thread::spawn(move || cp.send(Role::Server1, Tag { session: 0, step: 2 }, vec![0; 8]));
        std::thread::sleep(Duration::from_millis(50));
        drop(s1);
        assert!(matches!(dealer.join().unwrap(), Err(ProtocolError::Disconnected { peer: Role::Server1 })));
    }
}
