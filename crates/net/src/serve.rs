//! Serving a client's requests inside one session, SPMD across the three parties.
//!
//! Each server reads the client's requests from its [`RequestSource`] (the client link, or a
//! queue in local runs). Per request, one protocol step keeps the three parties in lockstep:
//! server0 sends the request's public description (index, rings and shapes of the inputs, or
//! "end") to server1 and cp; server1 checks it against what the client sent it. Then all three
//! run the program on the request, and each server returns its shares of the outputs to the
//! client. cp never sees the client; it learns only the public shapes.
//!
//! The same [`serve`] runs over QUIC (three processes) and in [`pond_protocol::run_local`] (three
//! threads) with a [`QueuedRequests`] source, so with the same seeds the outputs are identical.

use crate::client::{decode_tensors, encode_tensors, ClientConnection, ClientMessage, TensorHeader, WireTensor};
use crate::error::{ClientLinkError, LinkEnd};
use pond_core::{FixedPoint, Ring, Z64};
use pond_protocol::{run_local, LocalConfig, PrivateTensor, ProtocolError, Role, Session};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where a server's requests come from and where its answers go.
pub trait RequestSource {
    /// The client's next request (index and this server's input shares), or `None` when the
    /// client has ended the session.
    fn next_request(&mut self) -> Result<Option<(u64, Vec<WireTensor>)>, ClientLinkError>;
    /// Sends this server's shares of the outputs of request `index`.
    fn respond(&mut self, index: u64, outputs: Vec<WireTensor>) -> Result<(), ClientLinkError>;
    /// Tells the client the server stops because of `reason` (best effort).
    fn fail(&mut self, reason: &str);
}

/// A server's [`ClientConnection`] as a request source, with a deadline for each request.
#[derive(Debug)]
pub struct LinkRequests {
    connection: ClientConnection,
    timeout: Duration,
}

impl LinkRequests {
    /// Requests from `connection`, each awaited for up to `timeout`.
    pub fn new(connection: ClientConnection, timeout: Duration) -> LinkRequests {
        LinkRequests { connection, timeout }
    }

    /// The underlying connection (for its statistics).
    pub fn connection(&self) -> &ClientConnection {
        &self.connection
    }
}

impl RequestSource for LinkRequests {
    fn next_request(&mut self) -> Result<Option<(u64, Vec<WireTensor>)>, ClientLinkError> {
        match self.connection.recv(self.timeout)? {
            ClientMessage::Request { index, inputs } => Ok(Some((index, inputs))),
            ClientMessage::End => Ok(None),
            other => Err(ClientLinkError::BadMessage {
                me: LinkEnd::Server(Role::Server0),
                peer: LinkEnd::Client,
                reason: format!("expected a request, got {other:?}"),
            }),
        }
    }

    fn respond(&mut self, index: u64, outputs: Vec<WireTensor>) -> Result<(), ClientLinkError> {
        self.connection.send(ClientMessage::Response { index, outputs })
    }

    fn fail(&mut self, reason: &str) {
        let _ = self.connection.send(ClientMessage::Error { reason: reason.to_string() });
    }
}

/// Requests queued in memory, and the responses collected: the client's side of a local run.
#[derive(Debug, Default, Clone)]
pub struct QueuedRequests {
    /// Requests still to serve: index and this server's input shares.
    pub requests: VecDeque<(u64, Vec<WireTensor>)>,
    /// Responses so far: index and this server's output shares.
    pub responses: Vec<(u64, Vec<WireTensor>)>,
    /// The failure reported with [`RequestSource::fail`], if any.
    pub failure: Option<String>,
}

impl QueuedRequests {
    /// A source that yields `requests` (this server's shares of each request's inputs) as
    /// requests 0, 1, 2, ...
    pub fn new(requests: Vec<Vec<WireTensor>>) -> QueuedRequests {
        QueuedRequests {
            requests: requests.into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect(),
            ..QueuedRequests::default()
        }
    }
}

impl RequestSource for QueuedRequests {
    fn next_request(&mut self) -> Result<Option<(u64, Vec<WireTensor>)>, ClientLinkError> {
        Ok(self.requests.pop_front())
    }

    fn respond(&mut self, index: u64, outputs: Vec<WireTensor>) -> Result<(), ClientLinkError> {
        self.responses.push((index, outputs));
        Ok(())
    }

    fn fail(&mut self, reason: &str) {
        self.failure = Some(reason.to_string());
    }
}

/// One request as every party sees it: its index and the public description of its inputs;
/// on the servers, also their shares.
#[derive(Debug, Clone)]
pub struct ServedRequest {
    /// The request's index (0, 1, 2, ... within the session).
    pub index: u64,
    /// Ring and shape of each input.
    pub inputs: Vec<TensorHeader>,
    shares: Option<Vec<WireTensor>>,
}

impl ServedRequest {
    /// Input `i` as a private tensor of ring `R` (cp gets a tensor without a share). Fails if
    /// there is no input `i` or it is not in ring `R`, naming the client.
    pub fn input<R: Ring>(&self, i: usize) -> Result<PrivateTensor<R>, ProtocolError> {
        let usage = |reason: String| ProtocolError::Usage { op: "client request", reason };
        let header = self
            .inputs
            .get(i)
            .ok_or_else(|| usage(format!("request {} has {} inputs, no input {i}", self.index, self.inputs.len())))?;
        if header.ring != <R::Tensor as pond_core::RingTensor>::RING {
            return Err(usage(format!(
                "input {i} of request {} is in ring `{}`, the program needs `{}`",
                self.index,
                header.ring,
                <R::Tensor as pond_core::RingTensor>::RING
            )));
        }
        let share = match &self.shares {
            None => None,
            Some(shares) => Some(
                shares[i]
                    .to_tensor::<R::Tensor>()
                    .map_err(|e| usage(format!("the client's share of input {i}: {e}")))?,
            ),
        };
        Ok(PrivateTensor::from_share(&header.shape, share))
    }
}

/// What a [`serve`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServeReport {
    /// Requests served.
    pub requests: u64,
    /// Time spent in the program (coordination and client waits excluded).
    pub program_time: Duration,
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The protocol failed (a lost peer, a bad message, a program error).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The client link failed.
    #[error(transparent)]
    Client(#[from] ClientLinkError),
}

impl ServeError {
    /// Tells the session's peers that this party stops because of this error.
    pub fn abort(&self, session: &mut Session) {
        match self {
            ServeError::Protocol(e) => session.abort(e),
            ServeError::Client(e) => session.abort(&ProtocolError::Usage { op: "client link", reason: e.to_string() }),
        }
    }
}

impl From<ServeError> for ProtocolError {
    fn from(e: ServeError) -> ProtocolError {
        match e {
            ServeError::Protocol(e) => e,
            ServeError::Client(e) => ProtocolError::Usage { op: "client link", reason: e.to_string() },
        }
    }
}

/// Control message kinds (the payload's first byte).
const CONTROL_END: u8 = 0;
const CONTROL_REQUEST: u8 = 1;

fn encode_control(request: Option<(u64, &[TensorHeader])>) -> Vec<u8> {
    match request {
        None => vec![CONTROL_END],
        Some((index, headers)) => {
            let mut out = vec![CONTROL_REQUEST];
            out.extend_from_slice(&index.to_le_bytes());
            let tensors: Vec<WireTensor> = headers
                .iter()
                .map(|h| WireTensor { ring: h.ring.clone(), shape: h.shape.clone(), data: Vec::new() })
                .collect();
            out.extend_from_slice(&encode_tensors(&tensors));
            out
        }
    }
}

fn decode_control(bytes: &[u8]) -> Result<Option<(u64, Vec<TensorHeader>)>, String> {
    match bytes.split_first() {
        Some((&CONTROL_END, [])) => Ok(None),
        Some((&CONTROL_REQUEST, rest)) if rest.len() >= 8 => {
            let mut index = [0u8; 8];
            index.copy_from_slice(&rest[..8]);
            let index = u64::from_le_bytes(index);
            let tensors = decode_tensors(&rest[8..])?;
            Ok(Some((index, tensors.iter().map(WireTensor::header).collect())))
        }
        _ => Err(format!("malformed request announcement of {} bytes", bytes.len())),
    }
}

/// Serves requests until the client ends the session: per request, one lockstep step (server0
/// announces the request to server1 and cp), then `program`, then each server sends its shares
/// of the outputs to its source. Servers pass their request source; cp passes `None`.
///
/// `program` returns each output as [`WireTensor::from_private`] (a share on the servers,
/// `None` on cp).
pub fn serve<F>(
    session: &mut Session,
    source: Option<&mut dyn RequestSource>,
    program: F,
) -> Result<ServeReport, ServeError>
where
    F: FnMut(&mut Session, &ServedRequest) -> Result<Vec<Option<WireTensor>>, ProtocolError>,
{
    serve_in(session, |s| s, source, program)
}

/// [`serve`] for a program that works on a context holding the session (e.g. a layers backend
/// and a model tied to it): `session_of` reaches the session inside `context`.
pub fn serve_in<C: ?Sized, F>(
    context: &mut C,
    session_of: impl Fn(&mut C) -> &mut Session,
    mut source: Option<&mut dyn RequestSource>,
    mut program: F,
) -> Result<ServeReport, ServeError>
where
    F: FnMut(&mut C, &ServedRequest) -> Result<Vec<Option<WireTensor>>, ProtocolError>,
{
    let role = session_of(context).role();
    let mut report = ServeReport::default();
    if role.is_server() != source.is_some() {
        return Err(ProtocolError::Usage {
            op: "serve",
            reason: format!("{role} {} a request source", if role.is_server() { "needs" } else { "cannot have" }),
        }
        .into());
    }
    loop {
        // Servers first hear from the client, then agree on what they heard.
        let own = match source.as_deref_mut() {
            Some(source) => Some(source.next_request()?),
            None => None,
        };
        let session = session_of(context);
        let tag = session.next_tag();
        let announced = match (role, &own) {
            (Role::Server0, Some(own)) => {
                let headers = own.as_ref().map(|(i, shares)| (*i, shares.iter().map(WireTensor::header).collect()));
                let control = encode_control(headers.as_ref().map(|(i, h): &(u64, Vec<TensorHeader>)| (*i, &h[..])));
                session.send_bytes(Role::Server1, tag, control.clone())?;
                session.send_bytes(Role::Cp, tag, control)?;
                headers
            }
            _ => {
                let bytes = session.recv_bytes(Role::Server0, tag)?;
                decode_control(&bytes).map_err(|reason| ProtocolError::BadMessage { peer: Role::Server0, reason })?
            }
        };
        if role == Role::Server1 {
            let mine = own
                .as_ref()
                .and_then(|o| o.as_ref())
                .map(|(i, s)| (*i, s.iter().map(WireTensor::header).collect::<Vec<_>>()));
            if mine != announced {
                let describe = |r: &Option<(u64, Vec<TensorHeader>)>| match r {
                    None => "the end of the session".to_string(),
                    Some((i, h)) => format!("request {i} with inputs {h:?}"),
                };
                return Err(ProtocolError::Usage {
                    op: "client request",
                    reason: format!("the client sent server0 {} but server1 {}", describe(&announced), describe(&mine)),
                }
                .into());
            }
        }
        let Some((index, inputs)) = announced else {
            return Ok(report);
        };
        let shares = own.and_then(|o| o.map(|(_, shares)| shares));
        let request = ServedRequest { index, inputs, shares };
        let start = Instant::now();
        let outputs = program(context, &request)?;
        report.program_time += start.elapsed();
        report.requests += 1;
        if let Some(source) = source.as_deref_mut() {
            let outputs: Option<Vec<WireTensor>> = outputs.into_iter().collect();
            let outputs = outputs.ok_or_else(|| ProtocolError::Usage {
                op: "serve",
                reason: format!("the program gave {role} no share of an output"),
            })?;
            source.respond(index, outputs)?;
        }
    }
}

/// One party's outcome of [`serve_local`]: its report and the responses it sent to the client
/// (index and output shares; none on cp).
pub type LocalServed = (ServeReport, Vec<(u64, Vec<WireTensor>)>);

/// The local twin of three `pond party` processes serving a `pond client`: runs `party` (each
/// party's serving program, e.g. [`serve`] with a program) on three threads with keys from
/// `config`, the servers reading `requests` (per request, server0's and server1's shares of the
/// inputs) from a [`QueuedRequests`]. Returns each party's outcome, indexed by [`Role::index`].
pub fn serve_local<F>(
    config: LocalConfig,
    requests: &[[Vec<WireTensor>; 2]],
    party: F,
) -> Result<[LocalServed; 3], ProtocolError>
where
    F: Fn(&mut Session, Option<&mut dyn RequestSource>) -> Result<ServeReport, ServeError> + Sync,
{
    run_local(config, |session| {
        let role = session.role();
        let mut queue =
            role.is_server().then(|| QueuedRequests::new(requests.iter().map(|r| r[role.index()].clone()).collect()));
        let report = party(session, queue.as_mut().map(|q| q as &mut dyn RequestSource))?;
        Ok((report, queue.map(|q| q.responses).unwrap_or_default()))
    })
}

/// The built-in demo program: the polynomial sigmoid, elementwise, of input 0 (fixed point in
/// `Z64` with [`FixedPoint::default_for_ring`]), revealed to the client only.
pub fn sigmoid_program(
    session: &mut Session,
    request: &ServedRequest,
) -> Result<Vec<Option<WireTensor>>, ProtocolError> {
    let x = request.input::<Z64>(0)?;
    let y = session.sigmoid(&x, FixedPoint::<Z64>::default_for_ring())?;
    Ok(vec![WireTensor::from_private(&y)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let headers = vec![TensorHeader { ring: "z64".into(), shape: vec![1, 784] }];
        assert_eq!(decode_control(&encode_control(None)), Ok(None));
        assert_eq!(decode_control(&encode_control(Some((7, &headers)))), Ok(Some((7, headers))));
        assert!(decode_control(&[]).is_err());
        assert!(decode_control(&[CONTROL_END, 0]).is_err());
        assert!(decode_control(&[CONTROL_REQUEST, 1, 2]).is_err());
    }
}
