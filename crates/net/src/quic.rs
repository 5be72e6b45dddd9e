//! QUIC settings shared by the party links and the client links: windows, timeouts, packet
//! size, and the socket buffers under them.

use crate::config::PartiesConfig;
use crate::error::NetError;
use quinn::{EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use std::net::SocketAddr;

/// Per-stream receive window: a few 10 MB messages in flight without stalling the sender.
const STREAM_RECEIVE_WINDOW: u32 = 16 << 20;
/// Per-connection receive window.
const CONNECTION_RECEIVE_WINDOW: u32 = 32 << 20;
/// Per-connection send buffer.
const SEND_WINDOW: u64 = 64 << 20;
/// The largest UDP payload QUIC allows (IPv6's limit; IPv4 paths settle a little lower).
const MAX_UDP_PAYLOAD: u16 = 65527;
/// The largest UDP payload on a default loopback interface (MTU 65536) for both IPv4 and IPv6
/// (65536 - 40 - 8): MTU discovery's upper bound on loopback, so that no probe is too large.
const LOOPBACK_UDP_PAYLOAD: u16 = 65488;
/// Socket buffer size asked for: multi-megabyte bursts of one protocol round fit, so that the
/// kernel does not drop datagrams the receiver has not read yet (each drop is a QUIC loss, a
/// retransmission and a congestion-window cut). Linux caps it at `net.core.{r,w}mem_max`.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Which streams a connection allows its peer to open.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Streams {
    /// One unidirectional stream per direction (the links between parties).
    OneEachWay,
    /// One bidirectional stream, opened by the dialling side (client links).
    OneBidirectional,
}

/// Endpoint settings: peers may send us UDP payloads up to [`MAX_UDP_PAYLOAD`] bytes, so that
/// MTU discovery can grow packets beyond Ethernet's 1500 bytes where the path allows.
pub(crate) fn endpoint_config() -> EndpointConfig {
    let mut config = EndpointConfig::default();
    // 65527 is the largest value quinn accepts, so this cannot fail; keep the default if it did.
    let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
    config
}

/// Transport settings for one kind of link (`who` names it in errors): idle timeout and
/// keep-alives from `config`, the allowed `streams`, windows sized for multi-megabyte messages,
/// and packet size by path.
///
/// MTU discovery searches up to [`MAX_UDP_PAYLOAD`]: per-packet work (framing, encryption
/// set-up, system calls, acknowledgements) is most of QUIC's cost for pond's multi-megabyte
/// messages, and loopback carries 64 KiB datagrams (measured: net A batch 100 over loopback
/// ~30 ms with 1452-byte packets, ~23 ms with 65495-byte ones). On a `loopback` path UDP
/// segmentation offload is turned off: with it, bursts of large segments overflowed the
/// receiver's socket buffer (hundreds of losses per request, stalls of seconds), without it
/// none were lost. On other paths GSO stays on, saving one system call per packet. On loopback
/// the search stops at [`LOOPBACK_UDP_PAYLOAD`]: probes are padded datagrams that carry no
/// data, and a probe that is too large is sent three times before discovery gives up on it.
pub(crate) fn transport_config(
    config: &PartiesConfig,
    who: &str,
    streams: Streams,
    loopback: bool,
) -> Result<TransportConfig, NetError> {
    let idle = IdleTimeout::try_from(config.idle_timeout).map_err(|_| NetError::ConfigField {
        file: config.file(),
        field: "idle_timeout_ms".into(),
        reason: format!("{:?} is too long for QUIC (used by {who})", config.idle_timeout),
    })?;
    let (bidi, uni) = match streams {
        Streams::OneEachWay => (0u32, 1u32),
        Streams::OneBidirectional => (1, 0),
    };
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(if loopback { LOOPBACK_UDP_PAYLOAD } else { MAX_UDP_PAYLOAD });
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.idle_timeout / 3))
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(uni))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .mtu_discovery_config(Some(mtu))
        .enable_segmentation_offload(!loopback);
    Ok(transport)
}

/// True if every address is a loopback address (for a dialler bound to a wildcard address:
/// whether all the peers it dials are on this host's loopback).
pub(crate) fn all_loopback<'a>(addresses: impl IntoIterator<Item = &'a SocketAddr>) -> bool {
    addresses.into_iter().all(|a| a.ip().is_loopback())
}

/// Best effort: asks for [`SOCKET_BUFFER_BYTES`] of send and receive buffer on `socket`.
pub(crate) fn enlarge_socket_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
}
