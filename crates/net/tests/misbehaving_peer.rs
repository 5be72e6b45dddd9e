//! A peer that misbehaves after authenticating: malformed and oversized frames end the session
//! with an error naming it, and a peer that goes silent (crashed, no close) is declared
//! disconnected after the idle timeout. A raw quinn client with server0's genuine certificate
//! plays server0.

mod common;

use common::{local_config, temp_dir, with_deadline};
use pond_net::frame::{encode_header, PREAMBLE};
use pond_net::tls::PartyIdentity;
use pond_net::{PartiesConfig, QuicTransport};
use pond_protocol::{ProtocolError, Role, Tag, Transport};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// server0's side of one link, opened by hand.
struct RawLink {
    connection: quinn::Connection,
    send: quinn::SendStream,
    _recv: quinn::RecvStream,
}

/// Dials `peer` as server0 and exchanges preambles, retrying while the peer starts up.
async fn raw_link(endpoint: &quinn::Endpoint, config: &PartiesConfig, peer: Role) -> RawLink {
    let addr = config.party(peer).address.parse().expect("loopback address");
    let deadline = Instant::now() + Duration::from_secs(5);
    let connection = loop {
        let connecting = endpoint.connect(addr, &peer.to_string()).expect("dial");
        match tokio::time::timeout(Duration::from_millis(500), connecting).await {
            Ok(Ok(connection)) => break connection,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("cannot reach {peer}: {other:?}"),
        }
    };
    let mut send = connection.open_uni().await.expect("open stream");
    send.write_all(&PREAMBLE).await.expect("write preamble");
    let mut recv = connection.accept_uni().await.expect("accept stream");
    let mut preamble = [0u8; 8];
    recv.read_exact(&mut preamble).await.expect("read preamble");
    assert_eq!(preamble, PREAMBLE);
    RawLink { connection, send, _recv: recv }
}

/// A raw endpoint with server0's certificate and links to server1 and cp.
async fn fake_server0_links(config: &PartiesConfig) -> (quinn::Endpoint, RawLink, RawLink) {
    let identity = PartyIdentity::from_config(config, Role::Server0).expect("server0 identity");
    let client = identity.client_config(Arc::new(quinn::TransportConfig::default())).expect("client config");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    let to_server1 = raw_link(&endpoint, config, Role::Server1).await;
    let to_cp = raw_link(&endpoint, config, Role::Cp).await;
    (endpoint, to_server1, to_cp)
}

/// Runs server1 and cp as real transports and `fake_server0` as server0; returns what
/// `party_body` returned on server1 and cp.
fn with_fake_server0<R: Send>(
    config: &PartiesConfig,
    party_body: impl Fn(Role, QuicTransport) -> R + Sync,
    fake_server0: impl FnOnce(&mut RawLink, &mut RawLink) + Send,
) -> [R; 2] {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    std::thread::scope(|scope| {
        let parties = [Role::Server1, Role::Cp].map(|role| {
            let body = &party_body;
            scope.spawn(move || body(role, QuicTransport::connect(config, role).expect("connect")))
        });
        runtime.block_on(async {
            let (_endpoint, mut to_server1, mut to_cp) = fake_server0_links(config).await;
            tokio::task::block_in_place(|| fake_server0(&mut to_server1, &mut to_cp));
            // The parties close the connection to the bad sender, saying why.
            for link in [&to_server1, &to_cp] {
                let closed = tokio::time::timeout(Duration::from_secs(5), link.connection.closed()).await;
                match closed.expect("the connection to server0 stayed open") {
                    quinn::ConnectionError::ApplicationClosed(close) => {
                        assert_eq!(close.error_code, quinn::VarInt::from_u32(1), "bad-frame close code");
                        assert!(!close.reason.is_empty());
                    }
                    other => panic!("expected a bad-frame close, got {other}"),
                }
            }
        });
        parties.map(|h| h.join().expect("party thread panicked"))
    })
}

fn write(link: &mut RawLink, bytes: &[u8]) {
    futures_block(link.send.write_all(bytes)).expect("write");
}

fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

/// What server1 and cp saw: the first (valid) message, the error, and a later receive.
type Seen = (Result<Vec<u8>, ProtocolError>, ProtocolError, ProtocolError);

fn receive_three(me: Role, mut transport: QuicTransport) -> Seen {
    let wait = Duration::from_secs(10);
    let first = transport.recv(Role::Server0, Tag { session: 1, step: 0 }, wait);
    let bad = transport.recv(Role::Server0, Tag { session: 1, step: 1 }, wait).expect_err(&format!("{me}: bad frame"));
    let later = transport.recv(Role::Server0, Tag { session: 1, step: 2 }, wait).expect_err(&format!("{me}: later"));
    (first, bad, later)
}

fn assert_bad_message(seen: &Seen, needle: &str) {
    let (first, bad, later) = seen;
    assert_eq!(first.as_ref().expect("the valid frame before the bad one arrives"), b"hello");
    match bad {
        ProtocolError::BadMessage { peer: Role::Server0, reason } => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected a bad message from server0, got {other:?}"),
    }
    assert!(bad.to_string().contains("server0"), "{bad}");
    assert!(matches!(later, ProtocolError::Disconnected { peer: Role::Server0 }), "{later:?}");
}

fn valid_frame() -> Vec<u8> {
    let mut frame = encode_header(Tag { session: 1, step: 0 }, 5).to_vec();
    frame.extend_from_slice(b"hello");
    frame
}

#[test]
fn a_malformed_frame_ends_the_session_naming_the_peer() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        let [server1, cp] = with_fake_server0(&config, receive_three, |to_server1, to_cp| {
            // server1: a header announcing 100 bytes, then 40 and the end of the stream.
            write(to_server1, &valid_frame());
            write(to_server1, &encode_header(Tag { session: 1, step: 1 }, 100));
            write(to_server1, &[7u8; 40]);
            to_server1.send.finish().expect("finish");
            // cp: half a header, then the end of the stream.
            write(to_cp, &valid_frame());
            write(to_cp, &encode_header(Tag { session: 1, step: 1 }, 100)[..10]);
            to_cp.send.finish().expect("finish");
        });
        assert_bad_message(&server1, "stream ended 40 bytes into a 100-byte payload");
        assert_bad_message(&cp, "stream ended 10 bytes into a 24-byte frame header");
    });
}

#[test]
fn an_oversized_frame_ends_the_session_naming_the_peer() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let mut config = local_config(dir.path());
        config.max_frame_bytes = 1024;
        let [server1, cp] = with_fake_server0(&config, receive_three, |to_server1, to_cp| {
            for link in [to_server1, to_cp] {
                write(link, &valid_frame());
                write(link, &encode_header(Tag { session: 1, step: 1 }, 1025));
                write(link, &[0u8; 64]);
            }
        });
        for seen in [&server1, &cp] {
            assert_bad_message(seen, "frame of 1025 bytes (session 1 step 1) exceeds the limit of 1024 bytes");
        }
    });
}

#[test]
fn a_silent_peer_is_disconnected_after_the_idle_timeout() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let mut config = local_config(dir.path());
        config.idle_timeout = Duration::from_millis(1500);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let linked = Barrier::new(3);
        let results = std::thread::scope(|scope| {
            let parties = [Role::Server1, Role::Cp].map(|role| {
                let (config, linked) = (&config, &linked);
                scope.spawn(move || {
                    let mut transport = QuicTransport::connect(config, role).expect("connect");
                    linked.wait();
                    let start = Instant::now();
                    let result = transport.recv(Role::Server0, Tag { session: 1, step: 0 }, Duration::from_secs(15));
                    (result, start.elapsed())
                })
            });
            let fake = runtime.block_on(fake_server0_links(&config));
            // Crash only once both parties have all their links (our preambles have arrived).
            linked.wait();
            // server0 "crashes": its runtime stops, so it neither answers nor says goodbye.
            runtime.shutdown_background();
            let results = parties.map(|h| h.join().expect("party thread panicked"));
            // Its connection objects would try to close politely on drop; a crashed process
            // does not.
            std::mem::forget(fake);
            results
        });
        for (role, (result, waited)) in [Role::Server1, Role::Cp].into_iter().zip(results) {
            eprintln!("{role} noticed server0's silence after {waited:?}");
            assert!(matches!(result, Err(ProtocolError::Disconnected { peer: Role::Server0 })), "{role}: {result:?}");
            assert!(waited < Duration::from_secs(5), "{role} waited {waited:?}");
        }
    });
}
