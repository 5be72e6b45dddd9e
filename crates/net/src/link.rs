//! The two tasks that move one peer's frames: a writer draining the outgoing queue into the
//! stream to the peer, and a reader parsing the stream from the peer into the incoming queue.

use crate::frame::{self, read_frame, FrameError};
use bytes::Bytes;
use pond_protocol::{ProtocolError, Role, Tag};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use std::sync::mpsc::Sender;
use tokio::sync::mpsc::UnboundedReceiver;

/// Application close code: the party shut down normally.
pub(crate) const CLOSE_DONE: VarInt = VarInt::from_u32(0);
/// Application close code: the peer sent a malformed or oversized frame.
pub(crate) const CLOSE_BAD_FRAME: VarInt = VarInt::from_u32(1);
/// Application close code: the peer's certificate does not name a role we accept from it.
pub(crate) const CLOSE_REFUSED: VarInt = VarInt::from_u32(2);
/// Application close code: a newer connection from the same peer replaced this one.
pub(crate) const CLOSE_REPLACED: VarInt = VarInt::from_u32(3);

/// What the writer puts on the stream to a peer.
pub(crate) enum Outgoing {
    /// A message: tag and payload, sent as one frame.
    Frame(Tag, Vec<u8>),
    /// Bytes as they are, outside the framing (see [`crate::QuicTransport::send_unframed`]).
    Unframed(Vec<u8>),
}
/// A received message, or the error that ended the stream from the peer.
pub(crate) type Incoming = Result<(Tag, Vec<u8>), ProtocolError>;

/// Writes each queued message as one frame (unframed bytes as they are). When the queue closes (the transport is shutting
/// down) it finishes the stream and waits until the peer has acknowledged all of it; when the
/// stream fails it returns, which closes the queue so that later sends fail.
pub(crate) async fn write_frames(mut stream: SendStream, mut queue: UnboundedReceiver<Outgoing>) {
    while let Some(outgoing) = queue.recv().await {
        let (header, payload) = match outgoing {
            Outgoing::Frame(tag, payload) => (frame::encode_header(tag, payload.len() as u64).to_vec(), payload),
            Outgoing::Unframed(bytes) => (Vec::new(), bytes),
        };
        // `Bytes::from(Vec)` takes the payload without copying it.
        let mut chunks = [Bytes::from(header), Bytes::from(payload)];
        if stream.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
    }
    if stream.finish().is_ok() {
        let _ = stream.stopped().await;
    }
}

/// Reads frames from `peer` and queues them for `recv`. A clean end of stream or a lost
/// connection just returns (dropping `queue`, so receives report the peer disconnected); a
/// malformed or oversized frame queues a [`ProtocolError::BadMessage`] and closes the
/// connection, ending the session with that peer.
pub(crate) async fn read_frames(
    peer: Role,
    mut stream: RecvStream,
    queue: Sender<Incoming>,
    max_frame_bytes: u64,
    connection: Connection,
) {
    loop {
        let frame =
            read_frame(&mut stream, max_frame_bytes, |[session, step, _]| Ok(Tag { session, step }.to_string()));
        let (tag, payload) = match frame.await {
            Ok(([session, step, _], payload)) => (Tag { session, step }, payload),
            Err(FrameError::Closed) => return,
            Err(FrameError::Malformed(reason)) => {
                connection.close(CLOSE_BAD_FRAME, reason.as_bytes());
                let _ = queue.send(Err(ProtocolError::BadMessage { peer, reason }));
                return;
            }
        };
        if queue.send(Ok((tag, payload))).is_err() {
            return; // the transport is gone
        }
    }
}
