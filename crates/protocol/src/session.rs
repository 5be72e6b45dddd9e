//! One party's view of a protocol run: its role, its pairwise PRG keys, the step counter that
//! keeps the three SPMD copies in lockstep, the transport (wrapped in a byte/round counter) and
//! per-operation statistics.

use crate::error::{ProtocolError, Result};
use crate::transport::{CountingTransport, Role, Tag, Traffic, Transport};
use pond_core::{PrgKey, RingTensor};
use std::any::Any;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Default receive deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the pairwise PRG keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySetup {
    /// Derived from a seed every party knows: reproducible runs and tests only (not secret).
    Seed(u64),
    /// Fresh keys from the operating system: for each pair, the lower role draws the key and
    /// sends it to the higher one over the (confidential, authenticated) transport.
    Os,
}

/// Counters of one named operation, summed over its calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct OpStats {
    /// Number of calls.
    pub calls: u64,
    /// Traffic of this party during the calls.
    pub traffic: Traffic,
    /// Wall-clock time spent in the calls.
    pub time: Duration,
}

/// One party of a protocol run.
pub struct Session {
    role: Role,
    id: u64,
    transport: CountingTransport<Box<dyn Transport>>,
    keys: [Option<PrgKey>; 3],
    own_key: PrgKey,
    step: u64,
    timeout: Duration,
    stats: BTreeMap<&'static str, OpStats>,
    triple_source: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("role", &self.role).field("id", &self.id).field("step", &self.step).finish()
    }
}

/// The label of the key shared by roles `a` and `b` when keys come from a seed.
fn pair_label(a: Role, b: Role) -> u64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    1 + (lo.index() * 3 + hi.index()) as u64
}

impl Session {
    /// Sets up a session for `transport.role()`: establishes the pairwise keys (which talks to
    /// the peers when `keys` is [`KeySetup::Os`]) and starts at step 0.
    pub fn new(transport: Box<dyn Transport>, session_id: u64, keys: KeySetup, timeout: Duration) -> Result<Session> {
        let role = transport.role();
        let mut session = Session {
            role,
            id: session_id,
            transport: CountingTransport::new(transport),
            keys: Default::default(),
            own_key: match keys {
                KeySetup::Seed(seed) => PrgKey::from_seed(seed).derive(100 + role.index() as u64),
                KeySetup::Os => PrgKey::from_os(),
            },
            step: 0,
            timeout,
            stats: BTreeMap::new(),
            triple_source: None,
        };
        match keys {
            KeySetup::Seed(seed) => {
                let master = PrgKey::from_seed(seed);
                for other in Role::ALL.into_iter().filter(|&r| r != role) {
                    session.keys[other.index()] = Some(master.derive(pair_label(role, other)));
                }
            }
            KeySetup::Os => {
                let tag = session.next_tag();
                for other in Role::ALL.into_iter().filter(|&r| r != role) {
                    let key = if role < other {
                        let key = PrgKey::from_os();
                        session.transport.send(other, tag, key.as_bytes().to_vec())?;
                        key
                    } else {
                        let bytes = session.transport.recv(other, tag, timeout)?;
                        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| ProtocolError::BadMessage {
                            peer: other,
                            reason: format!("key of {} bytes, expected 32", b.len()),
                        })?;
                        PrgKey::from_bytes(bytes)
                    };
                    session.keys[other.index()] = Some(key);
                }
            }
        }
        Ok(session)
    }

    /// This party's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session id shared by the three parties.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The receive deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Traffic of this party so far.
    pub fn traffic(&self) -> Traffic {
        self.transport.traffic()
    }

    /// Per-operation statistics of this party so far.
    pub fn stats(&self) -> &BTreeMap<&'static str, OpStats> {
        &self.stats
    }

    /// Advances the step counter and returns the tag of the new step. Every party calls this
    /// the same number of times in the same order (SPMD), whatever its role.
    pub fn next_tag(&mut self) -> Tag {
        self.step += 1;
        Tag { session: self.id, step: self.step }
    }

    /// The PRG stream for `purpose` within the step of `tag`.
    pub fn stream(tag: Tag, purpose: u64) -> u64 {
        debug_assert!(purpose < 16);
        (tag.step << 4) | purpose
    }

    /// The key this party shares with `other`.
    pub fn key_with(&self, other: Role) -> Result<&PrgKey> {
        self.keys[other.index()].as_ref().ok_or_else(|| ProtocolError::Usage {
            op: "key_with",
            reason: format!("{} has no key shared with {other}", self.role),
        })
    }

    /// A tensor that this party and `other` both generate from their shared key: uniform,
    /// identical on both, unknown to the third party.
    pub fn shared_random<T: RingTensor>(&self, other: Role, tag: Tag, purpose: u64, shape: &[usize]) -> Result<T> {
        Ok(T::random(self.key_with(other)?, Self::stream(tag, purpose), shape))
    }

    /// A tensor only this party can generate (its private randomness).
    pub fn private_random<T: RingTensor>(&self, tag: Tag, purpose: u64, shape: &[usize]) -> T {
        T::random(&self.own_key, Self::stream(tag, purpose), shape)
    }

    /// Sends a tensor's encoding.
    pub fn send_tensor<T: RingTensor>(&mut self, to: Role, tag: Tag, tensor: &T) -> Result<()> {
        self.transport.send(to, tag, tensor.to_bytes())
    }

    /// Receives a tensor of `shape`; a payload that does not decode is an error naming `from`.
    pub fn recv_tensor<T: RingTensor>(&mut self, from: Role, tag: Tag, shape: &[usize]) -> Result<T> {
        let bytes = self.transport.recv(from, tag, self.timeout)?;
        T::from_bytes(shape, &bytes).map_err(|e| ProtocolError::BadMessage { peer: from, reason: e.to_string() })
    }

    /// Receives the encoding of a tensor of `acc`'s shape from `from` and adds it into `acc`;
    /// a payload that does not decode is an error naming `from`.
    pub fn recv_into<T: RingTensor>(&mut self, from: Role, tag: Tag, acc: &mut T) -> Result<()> {
        let bytes = self.transport.recv(from, tag, self.timeout)?;
        acc.add_from_bytes(&bytes).map_err(|e| ProtocolError::BadMessage { peer: from, reason: e.to_string() })
    }

    /// The other server, for a server; an error naming `op` on cp.
    pub fn peer_server(&self, op: &'static str) -> Result<Role> {
        self.role.peer().ok_or_else(|| ProtocolError::Usage { op, reason: "cp has no peer server".into() })
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, to: Role, tag: Tag, bytes: Vec<u8>) -> Result<()> {
        self.transport.send(to, tag, bytes)
    }

    /// Receives raw bytes.
    pub fn recv_bytes(&mut self, from: Role, tag: Tag) -> Result<Vec<u8>> {
        self.transport.recv(from, tag, self.timeout)
    }

    /// Returns once the other two parties have reached their `sync` too: sends an empty message
    /// to each and receives theirs (one round, no payload; a party that never comes fails it
    /// within the receive deadline). Benchmarks use it so that the parties start a timed
    /// operation together.
    pub fn sync(&mut self) -> Result<()> {
        let tag = self.next_tag();
        let me = self.role;
        let peers = Role::ALL.into_iter().filter(move |&r| r != me);
        for peer in peers.clone() {
            self.send_bytes(peer, tag, Vec::new())?;
        }
        for peer in peers {
            let bytes = self.recv_bytes(peer, tag)?;
            if !bytes.is_empty() {
                return Err(ProtocolError::BadMessage { peer, reason: format!("{} bytes in a sync", bytes.len()) });
            }
        }
        Ok(())
    }

    /// For a server: sends `mine` to the other server and returns the other server's tensor.
    pub fn exchange_with_peer<T: RingTensor>(&mut self, tag: Tag, mine: &T) -> Result<T> {
        let peer = self.peer_server("exchange_with_peer")?;
        self.send_tensor(peer, tag, mine)?;
        self.recv_tensor(peer, tag, mine.shape())
    }

    /// Tells both peers that this party stops because of `error` (best effort: a peer that is
    /// already gone is skipped), so they fail at once with an error naming this party.
    pub fn abort(&mut self, error: &ProtocolError) {
        let tag = Tag { session: self.id, step: crate::transport::ABORT_STEP };
        for peer in Role::ALL.into_iter().filter(|&r| r != self.role) {
            let _ = self.transport.send(peer, tag, error.to_string().into_bytes());
        }
    }

    /// Runs `f` as the operation `name`, adding its traffic and time to the statistics, inside a
    /// `tracing` span "op" with fields op, role, bytes_sent and rounds (for `--trace` files).
    pub fn op<T>(&mut self, name: &'static str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let span = tracing::info_span!(
            "op",
            op = %name,
            role = %self.role,
            bytes_sent = tracing::field::Empty,
            rounds = tracing::field::Empty
        );
        let _entered = span.enter();
        let before = self.traffic();
        let start = Instant::now();
        let out = f(self);
        let elapsed = start.elapsed();
        let traffic = self.traffic().since(&before);
        span.record("bytes_sent", traffic.total_sent());
        span.record("rounds", traffic.rounds);
        let entry = self.stats.entry(name).or_default();
        entry.calls += 1;
        entry.time += elapsed;
        entry.traffic = Traffic {
            bytes_sent: std::array::from_fn(|i| entry.traffic.bytes_sent[i] + traffic.bytes_sent[i]),
            bytes_received: std::array::from_fn(|i| entry.traffic.bytes_received[i] + traffic.bytes_received[i]),
            messages_sent: entry.traffic.messages_sent + traffic.messages_sent,
            rounds: entry.traffic.rounds + traffic.rounds,
        };
        out
    }

    /// Installs a triple source (see [`crate::dealer`]); stored type-erased because a session is
    /// not tied to one ring.
    pub(crate) fn set_triple_source(&mut self, source: Option<Box<dyn Any + Send>>) -> Option<Box<dyn Any + Send>> {
        std::mem::replace(&mut self.triple_source, source)
    }
}
