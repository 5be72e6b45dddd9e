//! The wire format of one message on a party-to-party stream.
//!
//! Each direction of a link is one QUIC unidirectional stream. It starts with [`PREAMBLE`],
//! then carries frames back to back: a [`HEADER_LEN`]-byte header of three little-endian
//! `u64`s (session id, step, payload length) followed by the payload. The stream ends only
//! between frames, when the sender shuts down; a stream that ends inside a frame, or a length
//! above the configured maximum, is a malformed frame.

use pond_protocol::Tag;

/// First bytes on every stream: protocol name and version.
pub const PREAMBLE: [u8; 8] = *b"PONDNET1";

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 24;

/// The header announcing a payload of `payload_len` bytes tagged `tag`.
pub fn encode_header(tag: Tag, payload_len: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&tag.session.to_le_bytes());
    header[8..16].copy_from_slice(&tag.step.to_le_bytes());
    header[16..24].copy_from_slice(&payload_len.to_le_bytes());
    header
}

/// The tag and payload length in `header`.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> (Tag, u64) {
    let word = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[8 * i..8 * i + 8]);
        u64::from_le_bytes(bytes)
    };
    (Tag { session: word(0), step: word(1) }, word(2))
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
