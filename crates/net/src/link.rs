//! The two tasks that move one peer's frames: a writer draining the outgoing queue into the
//! stream to the peer, and a reader parsing the stream from the peer into the incoming queue.

use crate::frame::{self, HEADER_LEN};
use bytes::Bytes;
use pond_protocol::{ProtocolError, Role, Tag};
use quinn::{Connection, ReadExactError, RecvStream, SendStream, VarInt};
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

/// A message to send: tag and payload.
pub(crate) type Outgoing = (Tag, Vec<u8>);
/// A received message, or the error that ended the stream from the peer.
pub(crate) type Incoming = Result<(Tag, Vec<u8>), ProtocolError>;

/// Writes each queued message as one frame. When the queue closes (the transport is shutting
/// down) it finishes the stream and waits until the peer has acknowledged all of it; when the
/// stream fails it returns, which closes the queue so that later sends fail.
pub(crate) async fn write_frames(mut stream: SendStream, mut queue: UnboundedReceiver<Outgoing>) {
    while let Some((tag, payload)) = queue.recv().await {
        let header = frame::encode_header(tag, payload.len() as u64);
        // `Bytes::from(Vec)` takes the payload without copying it.
        let mut chunks = [Bytes::copy_from_slice(&header), Bytes::from(payload)];
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
    let bad_frame = |reason: String| {
        connection.close(CLOSE_BAD_FRAME, reason.as_bytes());
        let _ = queue.send(Err(ProtocolError::BadMessage { peer, reason }));
    };
    loop {
        let mut header = [0u8; HEADER_LEN];
        match stream.read_exact(&mut header).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(0)) | Err(ReadExactError::ReadError(_)) => return,
            Err(ReadExactError::FinishedEarly(n)) => {
                return bad_frame(format!("stream ended {n} bytes into a {HEADER_LEN}-byte frame header"));
            }
        }
        let (tag, len) = frame::decode_header(&header);
        if len > max_frame_bytes {
            return bad_frame(format!("frame of {len} bytes ({tag}) exceeds the limit of {max_frame_bytes} bytes"));
        }
        let Ok(len) = usize::try_from(len) else {
            return bad_frame(format!("frame of {len} bytes ({tag}) does not fit in memory"));
        };
        let mut payload = vec![0u8; len];
        match stream.read_exact(&mut payload).await {
            Ok(()) => {}
            Err(ReadExactError::ReadError(_)) => return,
            Err(ReadExactError::FinishedEarly(n)) => {
                return bad_frame(format!("stream ended {n} bytes into a {len}-byte payload ({tag})"));
            }
        }
        if queue.send(Ok((tag, payload))).is_err() {
            return; // the transport is gone
        }
    }
}
