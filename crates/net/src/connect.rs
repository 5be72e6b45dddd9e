//! Bringing up the links: dial the parties with a higher role index, accept the ones with a
//! lower index, authenticate each, and open one stream per direction.

use crate::config::PartiesConfig;
use crate::error::NetError;
use crate::frame::PREAMBLE;
use crate::link::{CLOSE_REFUSED, CLOSE_REPLACED};
use crate::tls::peer_role;
use pond_protocol::Role;
use quinn::{Connection, ConnectionError, Endpoint, ReadExactError, RecvStream, SendStream, TransportErrorCode};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// First handshake attempt's time limit; later attempts double it up to [`MAX_ATTEMPT`]. A peer
/// that is not up yet drops our packets, and a fresh attempt reaches it sooner than waiting for
/// QUIC's backed-off retransmissions.
const FIRST_ATTEMPT: Duration = Duration::from_secs(1);
/// Longest single handshake attempt.
const MAX_ATTEMPT: Duration = Duration::from_secs(8);
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long the other links may still take to fail once a peer has aborted a handshake
/// without a reason: a peer that gives up because its own link with a third party failed
/// aborts ours too, and the third party's failure (say, a certificate we refuse as well) is
/// the error worth reporting. Covers a first attempt lost to a peer not yet up, and a retry.
const ABORT_GRACE: Duration = Duration::from_secs(3);

/// An authenticated connection to `peer` with both streams open (preambles exchanged).
pub(crate) struct Link {
    pub peer: Role,
    pub connection: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
}

/// Why an attempt failed: worth retrying (the peer may not be up yet), or not (it refused us,
/// or we refused it).
pub(crate) enum Failure {
    Retry(String),
    Fatal(String),
    /// The peer closed the connection during the handshake without a reason (its endpoint went
    /// away): final, but likely a consequence of a failure elsewhere.
    Aborted(String),
}

/// A link that did not come up. `consequential` marks a peer that aborted without a reason:
/// another link's failure usually explains more.
struct LinkFailure {
    error: NetError,
    consequential: bool,
}

impl From<NetError> for LinkFailure {
    fn from(error: NetError) -> Self {
        LinkFailure { error, consequential: false }
    }
}

/// Dials every party in `dial` and accepts one connection from every party in `accept`,
/// concurrently, until all links are up or `config.connect_timeout` has passed.
pub(crate) async fn establish(
    endpoint: Endpoint,
    config: PartiesConfig,
    role: Role,
    dial: Vec<(Role, SocketAddr)>,
    accept: Vec<Role>,
) -> Result<Vec<Link>, NetError> {
    let deadline = Instant::now() + config.connect_timeout;
    let mut tasks = JoinSet::new();
    for (peer, addr) in dial {
        let (endpoint, address) = (endpoint.clone(), config.party(peer).address.clone());
        let waited = config.connect_timeout;
        tasks.spawn(
            async move { dial_peer(&endpoint, role, peer, address, addr, deadline, waited).await.map(|l| vec![l]) },
        );
    }
    if !accept.is_empty() {
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            accept_peers(&endpoint, &config, role, &accept, deadline).await.map_err(LinkFailure::from)
        });
    }
    let mut links = Vec::new();
    // The first abort, and until when the other links may still fail with a better reason.
    let mut aborted: Option<(NetError, Instant)> = None;
    loop {
        let joined = match &aborted {
            None => tasks.join_next().await,
            Some((_, until)) => tokio::time::timeout_at(*until, tasks.join_next()).await.unwrap_or(None),
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(more)) => links.extend(more),
            Ok(Err(LinkFailure { error, consequential: true })) => {
                aborted.get_or_insert((error, (Instant::now() + ABORT_GRACE).min(deadline)));
            }
            // Dropping `tasks` aborts the other attempts.
            Ok(Err(failure)) => return Err(failure.error),
            Err(e) => return Err(NetError::Startup { role, reason: format!("connect task failed: {e}") }),
        }
    }
    match aborted {
        Some((error, _)) => Err(error),
        None => Ok(links),
    }
}

/// Dials `peer` at `addr` until a link is up, the peer refuses us or we refuse it, or `deadline`.
async fn dial_peer(
    endpoint: &Endpoint,
    role: Role,
    peer: Role,
    address: String,
    addr: SocketAddr,
    deadline: Instant,
    waited: Duration,
) -> Result<Link, LinkFailure> {
    let refused =
        |reason: String| LinkFailure::from(NetError::PeerRefused { role, peer, address: address.clone(), reason });
    let aborted = |reason: String| LinkFailure { consequential: true, ..refused(reason) };
    let timed_out = |last_error: Option<String>| {
        LinkFailure::from(NetError::ConnectTimeout { role, peer, address: address.clone(), waited, last_error })
    };
    let mut attempt = FIRST_ATTEMPT;
    let mut last_error = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(last_error));
        }
        // The server name is the role: the peer's certificate must name it.
        let connecting = endpoint.connect(addr, &peer.to_string()).map_err(|e| refused(format!("cannot dial: {e}")))?;
        // Only the handshake is abandoned on timeout: the acceptor completes its handshake after
        // we complete ours, so it can never hold a connection we gave up on.
        match tokio::time::timeout_at((now + attempt).min(deadline), connecting).await {
            Err(_) => last_error = Some(format!("no handshake within {attempt:?}")),
            Ok(Err(e)) => match classify(&e) {
                Failure::Retry(reason) => last_error = Some(reason),
                Failure::Fatal(reason) => return Err(refused(reason)),
                Failure::Aborted(reason) => return Err(aborted(reason)),
            },
            Ok(Ok(connection)) => {
                if let Err(reason) = peer_role(&connection, &[peer]) {
                    connection.close(CLOSE_REFUSED, reason.as_bytes());
                    return Err(refused(reason));
                }
                match tokio::time::timeout_at(deadline, open_streams(&connection)).await {
                    Ok(Ok((send, recv))) => return Ok(Link { peer, connection, send, recv }),
                    Ok(Err(Failure::Fatal(reason))) => return Err(refused(reason)),
                    Ok(Err(Failure::Aborted(reason))) => return Err(aborted(reason)),
                    Ok(Err(Failure::Retry(reason))) => last_error = Some(reason),
                    Err(_) => {
                        connection.close(CLOSE_REFUSED, b"streams not opened in time");
                        return Err(timed_out(Some("handshake done but the peer opened no stream".into())));
                    }
                }
            }
        }
        attempt = (attempt * 2).min(MAX_ATTEMPT);
        tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
    }
}

/// Accepts connections until one authenticated link from each role in `expected` is up. A
/// connection that fails to authenticate is refused and waiting goes on; a second link from
/// the same role replaces the first.
async fn accept_peers(
    endpoint: &Endpoint,
    config: &PartiesConfig,
    role: Role,
    expected: &[Role],
    deadline: Instant,
) -> Result<Vec<Link>, NetError> {
    let mut links: Vec<Link> = Vec::new();
    let mut handshakes = JoinSet::new();
    let mut last_problem: Option<String> = None;
    while expected.iter().any(|r| !links.iter().any(|l| l.peer == *r)) {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else {
                    return Err(NetError::Startup { role, reason: "QUIC endpoint closed while accepting".into() });
                };
                handshakes.spawn(accept_one(incoming, expected.to_vec()));
            }
            Some(joined) = handshakes.join_next() => match joined {
                Ok(Ok(link)) => {
                    if let Some(i) = links.iter().position(|l| l.peer == link.peer) {
                        links.swap_remove(i).connection.close(CLOSE_REPLACED, b"replaced by a newer connection");
                    }
                    links.push(link);
                }
                Ok(Err(problem)) => last_problem = Some(problem),
                Err(e) => last_problem = Some(format!("handshake task failed: {e}")),
            },
            () = tokio::time::sleep_until(deadline) => {
                let Some(peer) = expected.iter().copied().find(|r| !links.iter().any(|l| l.peer == *r)) else {
                    break;
                };
                return Err(NetError::ConnectTimeout {
                    role,
                    peer,
                    address: config.party(peer).address.clone(),
                    waited: config.connect_timeout,
                    last_error: last_problem,
                });
            }
        }
    }
    Ok(links)
}

/// Completes one incoming connection: handshake (which checks the peer's certificate chain),
/// role from the certificate, streams.
async fn accept_one(incoming: quinn::Incoming, expected: Vec<Role>) -> Result<Link, String> {
    let remote = incoming.remote_address();
    let connecting = incoming.accept().map_err(|e| format!("connection from {remote} failed: {e}"))?;
    let connection = connecting.await.map_err(|e| format!("connection from {remote} failed: {e}"))?;
    let peer = match peer_role(&connection, &expected) {
        Ok(peer) => peer,
        Err(reason) => {
            connection.close(CLOSE_REFUSED, reason.as_bytes());
            return Err(format!("refused connection from {remote}: {reason}"));
        }
    };
    match open_streams(&connection).await {
        Ok((send, recv)) => Ok(Link { peer, connection, send, recv }),
        Err(Failure::Retry(reason) | Failure::Fatal(reason) | Failure::Aborted(reason)) => {
            Err(format!("{peer} at {remote}: {reason}"))
        }
    }
}

/// Opens our stream to the peer and accepts the peer's stream to us, each starting with
/// [`PREAMBLE`].
async fn open_streams(connection: &Connection) -> Result<(SendStream, RecvStream), Failure> {
    let send = async {
        let mut stream = connection.open_uni().await.map_err(|e| classify(&e))?;
        stream.write_all(&PREAMBLE).await.map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => classify(&e),
            e => Failure::Retry(format!("cannot write to the peer: {e}")),
        })?;
        Ok::<_, Failure>(stream)
    };
    let recv = async {
        let mut stream = connection.accept_uni().await.map_err(|e| classify(&e))?;
        let mut preamble = [0u8; PREAMBLE.len()];
        stream.read_exact(&mut preamble).await.map_err(|e| match e {
            ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => classify(&e),
            e => Failure::Fatal(format!("peer stream ended before the protocol preamble: {e}")),
        })?;
        if preamble != PREAMBLE {
            return Err(Failure::Fatal(format!("peer speaks another protocol (its stream starts {preamble:?})")));
        }
        Ok(stream)
    };
    tokio::try_join!(send, recv)
}

/// Whether a failed connection is worth another attempt. Authentication failures (TLS alerts,
/// our refusal codes) are final; timeouts and resets mean the peer is not (yet) there; a peer
/// whose application closed during the handshake has gone away.
pub(crate) fn classify(error: &ConnectionError) -> Failure {
    match error {
        ConnectionError::TimedOut | ConnectionError::Reset | ConnectionError::CidsExhausted => {
            Failure::Retry(error.to_string())
        }
        ConnectionError::ConnectionClosed(close) if close.error_code == TransportErrorCode::CONNECTION_REFUSED => {
            Failure::Retry(error.to_string())
        }
        ConnectionError::ConnectionClosed(close) if close.error_code == TransportErrorCode::APPLICATION_ERROR => {
            Failure::Aborted(error.to_string())
        }
        ConnectionError::ApplicationClosed(close) if close.error_code == CLOSE_REFUSED => {
            Failure::Fatal(format!("the peer refused us: {}", String::from_utf8_lossy(&close.reason)))
        }
        ConnectionError::ApplicationClosed(_) => Failure::Retry(error.to_string()),
        _ => Failure::Fatal(error.to_string()),
    }
}
