//! Three parties as three threads over real QUIC on 127.0.0.1.

mod common;

use common::{local_config, run_parties, temp_dir, with_deadline};
use pond_protocol::transport::ABORT_STEP;
use pond_protocol::{ProtocolError, Role, Tag, Transport};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [0, 1, 10 << 20, 3];

/// The payload `from` sends `to` as its `index`-th message: distinct per pair and message.
fn payload(from: Role, to: Role, index: usize) -> Vec<u8> {
    let seed = (from.index() * 3 + to.index()) as u8 ^ (index as u8).wrapping_mul(17);
    (0..SIZES[index]).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

fn tag(index: usize) -> Tag {
    Tag { session: 7, step: 100 + index as u64 }
}

#[test]
fn messages_of_every_size_flow_both_ways_between_every_pair_in_order() {
    with_deadline(Duration::from_secs(30), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        // cp starts late: server0 and server1 must keep dialing until it is up.
        let delays = [Duration::ZERO, Duration::from_millis(50), Duration::from_millis(400)];
        let results = run_parties(&config, delays, |me, mut transport| {
            assert_eq!(transport.role(), me);
            let peers: Vec<Role> = Role::ALL.into_iter().filter(|&r| r != me).collect();
            let start = Instant::now();
            for &to in &peers {
                for (index, _) in SIZES.iter().enumerate() {
                    transport.send(to, tag(index), payload(me, to, index)).expect("send");
                }
            }
            for &from in &peers {
                for (index, &size) in SIZES.iter().enumerate() {
                    let got = transport.recv(from, tag(index), Duration::from_secs(20)).expect("recv");
                    assert_eq!(got.len(), size, "{me} from {from}, message {index}");
                    assert!(got == payload(from, me, index), "{me} from {from}, message {index}: wrong bytes");
                }
            }
            eprintln!(
                "{me}: exchanged {} MB with its peers in {:?}",
                (4 * SIZES.iter().sum::<usize>()) >> 20,
                start.elapsed()
            );
            // Once a peer confirms it has everything, our bytes to it are on the wire.
            let done = Tag { session: 7, step: 999 };
            for &to in &peers {
                transport.send(to, done, vec![]).expect("send done");
            }
            for &from in &peers {
                transport.recv(from, done, Duration::from_secs(20)).expect("recv done");
            }
            let wire = transport.wire_bytes_sent();
            assert_eq!(wire[me.index()], 0);
            for &to in &peers {
                assert!(wire[to.index()] > 10 << 20, "{me} -> {to}: only {} wire bytes", wire[to.index()]);
                assert!(transport.wire_bytes_received()[to.index()] > 10 << 20);
                assert!(transport.connection_stats(to).is_some());
            }
            // Sending to oneself is a usage error, not a network one.
            assert!(matches!(transport.send(me, tag(0), vec![]), Err(ProtocolError::SelfMessage { .. })));
            let start = Instant::now();
            drop(transport);
            eprintln!("{me}: transport dropped in {:?}", start.elapsed());
        });
        for (role, result) in Role::ALL.into_iter().zip(results) {
            result.unwrap_or_else(|e| panic!("{role} failed to connect: {e}"));
        }
    });
}

#[test]
fn a_wrong_tag_is_a_tag_mismatch() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        let sent = Tag { session: 9, step: 1 };
        let expected = Tag { session: 9, step: 2 };
        let results = run_parties(&config, [Duration::ZERO; 3], |me, mut transport| match me {
            Role::Server0 => transport.send(Role::Server1, sent, b"early".to_vec()).map(|()| None),
            Role::Server1 => Ok(Some(transport.recv(Role::Server0, expected, Duration::from_secs(10)))),
            Role::Cp => Ok(None),
        });
        let [_, server1, _] = results.map(|r| r.expect("connect"));
        match server1.expect("server1 ran").expect("server1 has a result") {
            Err(ProtocolError::TagMismatch { peer: Role::Server0, expected: e, got }) => {
                assert_eq!((e, got), (expected, sent));
            }
            other => panic!("expected a tag mismatch, got {other:?}"),
        }
    });
}

#[test]
fn recv_without_a_message_times_out() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        let barrier = Barrier::new(3);
        let results = run_parties(&config, [Duration::ZERO; 3], |me, mut transport| {
            let outcome = (me == Role::Server1).then(|| {
                let start = Instant::now();
                let result = transport.recv(Role::Cp, Tag { session: 1, step: 1 }, Duration::from_millis(300));
                (result, start.elapsed())
            });
            barrier.wait(); // keep every party connected until server1 has timed out
            outcome
        });
        let (result, elapsed) = results[1].as_ref().expect("connect").as_ref().expect("server1 result");
        assert!(
            matches!(result, Err(ProtocolError::Timeout { peer: Role::Cp, waited, .. }) if *waited == Duration::from_millis(300)),
            "{result:?}"
        );
        assert!(*elapsed >= Duration::from_millis(300) && *elapsed < Duration::from_secs(2), "{elapsed:?}");
    });
}

#[test]
fn a_dropped_peer_makes_pending_and_later_receives_fail_promptly() {
    with_deadline(Duration::from_secs(30), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        let barrier = Barrier::new(3);
        let wait = Duration::from_secs(20);
        let results = run_parties(&config, [Duration::ZERO; 3], |me, mut transport| {
            barrier.wait();
            if me == Role::Cp {
                std::thread::sleep(Duration::from_millis(300));
                drop(transport); // cp stops: its thread ends here
                return None;
            }
            // Pending when cp drops.
            let start = Instant::now();
            let pending = transport.recv(Role::Cp, Tag { session: 1, step: 1 }, wait);
            let noticed = start.elapsed();
            // Later receives fail at once.
            let start = Instant::now();
            let later = transport.recv(Role::Cp, Tag { session: 1, step: 2 }, wait);
            let later_took = start.elapsed();
            // Sends to cp fail once its close has arrived.
            let send_deadline = Instant::now() + Duration::from_secs(5);
            let send_failed = loop {
                match transport.send(Role::Cp, Tag { session: 1, step: 3 }, vec![1]) {
                    Err(ProtocolError::Disconnected { peer: Role::Cp }) => break true,
                    Err(e) => panic!("unexpected send error {e}"),
                    Ok(()) if Instant::now() > send_deadline => break false,
                    Ok(()) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            // The two servers still talk to each other.
            let other = me.peer().expect("a server has a peer server");
            let tag = Tag { session: 2, step: 0 };
            transport.send(other, tag, me.to_string().into_bytes()).expect("send to the other server");
            let hello = transport.recv(other, tag, wait).expect("recv from the other server");
            assert_eq!(hello, other.to_string().into_bytes());
            Some((pending, noticed, later, later_took, send_failed))
        });
        for role in [Role::Server0, Role::Server1] {
            let (pending, noticed, later, later_took, send_failed) =
                results[role.index()].as_ref().expect("connect").as_ref().expect("server result");
            assert!(matches!(pending, Err(ProtocolError::Disconnected { peer: Role::Cp })), "{role}: {pending:?}");
            eprintln!("{role} noticed that cp dropped after {noticed:?}");
            assert!(*noticed < Duration::from_secs(10), "{role} noticed after {noticed:?}");
            assert!(matches!(later, Err(ProtocolError::Disconnected { peer: Role::Cp })), "{role}: {later:?}");
            assert!(*later_took < Duration::from_millis(100), "{role}: later recv took {later_took:?}");
            assert!(send_failed, "{role}: sends to the dropped cp kept succeeding");
            let message = pending.as_ref().expect_err("checked above").to_string();
            assert!(message.contains("cp"), "error does not name cp: {message}");
        }
    });
}

#[test]
fn an_abort_notice_names_the_party_that_stopped() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = local_config(dir.path());
        let abort = Tag { session: 3, step: ABORT_STEP };
        let results = run_parties(&config, [Duration::ZERO; 3], |me, mut transport| {
            if me == Role::Cp {
                // cp fails, tells both servers why, and stops.
                for peer in [Role::Server0, Role::Server1] {
                    transport.send(peer, abort, b"dealer ran out of triples".to_vec()).expect("send abort notice");
                }
                return None;
            }
            Some(transport.recv(Role::Cp, Tag { session: 3, step: 5 }, Duration::from_secs(10)))
        });
        for role in [Role::Server0, Role::Server1] {
            let result = results[role.index()].as_ref().expect("connect").as_ref().expect("server result");
            match result {
                Err(ProtocolError::PeerAborted { peer: Role::Cp, reason }) => {
                    assert_eq!(reason, "dealer ran out of triples");
                }
                other => panic!("{role}: expected cp's abort notice, got {other:?}"),
            }
        }
    });
}
