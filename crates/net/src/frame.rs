//! The wire format of one message on a party-to-party stream.
//!
//! Each direction of a link is one QUIC unidirectional stream. It starts with [`PREAMBLE`],
//! then carries frames back to back: a [`HEADER_LEN`]-byte header of three little-endian
//! `u64`s (session id, step, payload length) followed by the payload. The stream ends only
//! between frames, when the sender shuts down; a stream that ends inside a frame, or a length
//! above the configured maximum, is a malformed frame.
//!
//! The client link ([`crate::client`]) uses the same frame layout with other header words;
//! [`read_frame`] reads both.

use pond_protocol::Tag;
use quinn::{ReadExactError, RecvStream};

/// First bytes on every stream: protocol name and version.
pub const PREAMBLE: [u8; 8] = *b"PONDNET1";

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;

/// The header announcing a payload of `payload_len` bytes tagged `tag`.
pub fn encode_header(tag: Tag, payload_len: u64) -> [u8; HEADER_LEN] {
    encode_words([tag.session, tag.step, payload_len])
}

/// The tag and payload length in `header`.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> (Tag, u64) {
    let [session, step, len] = decode_words(header);
    (Tag { session, step }, len)
}

/// A header of three little-endian words (the last one is the payload length).
pub(crate) fn encode_words(words: [u64; 3]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    for (chunk, word) in header.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    header
}

/// The three words of `header`.
pub(crate) fn decode_words(header: &[u8; HEADER_LEN]) -> [u64; 3] {
    std::array::from_fn(|i| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[8 * i..8 * i + 8]);
        u64::from_le_bytes(bytes)
    })
}

/// Why [`read_frame`] returned no frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The stream ended cleanly between two frames, or the connection is gone.
    Closed,
    /// The peer sent something that is not a frame; the reason.
    Malformed(String),
}

/// Reads one frame from `stream`: its header words and payload. `check` sees the header words
/// first; it refuses them with a reason, or returns how to name the frame in errors (e.g. its
/// tag). A payload longer than `max_payload` bytes, or a stream that ends inside a frame, is
/// [`FrameError::Malformed`].
pub(crate) async fn read_frame(
    stream: &mut RecvStream,
    max_payload: u64,
    check: impl FnOnce([u64; 3]) -> Result<String, String>,
) -> Result<([u64; 3], Vec<u8>), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) | Err(ReadExactError::ReadError(_)) => return Err(FrameError::Closed),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Malformed(format!("stream ended {n} bytes into a {HEADER_LEN}-byte frame header")));
        }
    }
    let words = decode_words(&header);
    let name = check(words).map_err(FrameError::Malformed)?;
    let name = if name.is_empty() { name } else { format!(" ({name})") };
    let len = words[2];
    if len > max_payload {
        return Err(FrameError::Malformed(format!(
            "frame of {len} bytes{name} exceeds the limit of {max_payload} bytes"
        )));
    }
    let Ok(len) = usize::try_from(len) else {
        return Err(FrameError::Malformed(format!("frame of {len} bytes{name} does not fit in memory")));
    };
    let mut payload = vec![0u8; len];
    match stream.read_exact(&mut payload).await {
        Ok(()) => Ok((words, payload)),
        Err(ReadExactError::ReadError(_)) => Err(FrameError::Closed),
        Err(ReadExactError::FinishedEarly(n)) => {
            Err(FrameError::Malformed(format!("stream ended {n} bytes into a {len}-byte payload{name}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for (session, step, len) in [(0, 0, 0), (1, 2, 3), (u64::MAX, 7, u64::MAX), (42, u64::MAX, 10 << 20)] {
            let tag = Tag { session, step };
            let header = encode_header(tag, len);
            assert_eq!(decode_header(&header), (tag, len));
        }
    }

    #[test]
    fn header_is_little_endian() {
        let header = encode_header(Tag { session: 1, step: 2 }, 3);
        assert_eq!(header[0], 1);
        assert_eq!(header[8], 2);
        assert_eq!(header[16], 3);
    }
}
