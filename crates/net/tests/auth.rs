//! Peers are authenticated: certificates from another CA, or naming the wrong role, are
//! refused by the dialing side and by the accepting side; binding an address in use, or
//! finding no peer, fails clearly.
//!
//! Each refusal is tested between two parties with the third one absent, so that the
//! misconfigured party stays up (waiting for the absent one) while its peer refuses it.

mod common;

use common::{free_ports, local_config, run_some_parties, temp_dir, with_deadline};
use pond_net::{generate_certificates, NetError, PartiesConfig, QuicTransport};
use pond_protocol::Role;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The acceptor starts first so that the dialer's first packet finds it.
const ACCEPTOR_FIRST: [Duration; 3] = [Duration::from_millis(200), Duration::from_millis(100), Duration::ZERO];

/// Runs `roles` and returns each one's connect error.
fn connect_errors(config: &PartiesConfig, roles: &[Role]) -> Vec<NetError> {
    let start = Instant::now();
    let results = run_some_parties(config, roles, ACCEPTOR_FIRST, |_, _| ());
    let elapsed = start.elapsed();
    assert!(elapsed < CONNECT_TIMEOUT + Duration::from_secs(2), "took {elapsed:?}");
    roles
        .iter()
        .zip(results)
        .map(|(role, result)| {
            let error = result.err().unwrap_or_else(|| panic!("{role} must not get a transport"));
            eprintln!("{role}: {error}");
            error
        })
        .collect()
}

/// A config in a fresh directory where `role` presents the certificate of `with`, issued by
/// a CA of its own.
fn config_with_foreign_certificate(dir: &std::path::Path, role: Role) -> PartiesConfig {
    let mut config = local_config(dir);
    config.connect_timeout = CONNECT_TIMEOUT;
    let rogue = dir.join("rogue");
    let files = generate_certificates(&rogue, &[role.to_string()]).expect("keygen");
    config.parties[role.index()].cert = files.parties[0].cert.clone();
    config.parties[role.index()].key = files.parties[0].key.clone();
    config
}

/// A config where `role` presents the genuine certificate of `other`.
fn config_with_certificate_of(dir: &std::path::Path, role: Role, other: Role) -> PartiesConfig {
    let mut config = local_config(dir);
    config.connect_timeout = CONNECT_TIMEOUT;
    config.parties[role.index()].cert = config.parties[other.index()].cert.clone();
    config.parties[role.index()].key = config.parties[other.index()].key.clone();
    config
}

#[test]
fn a_dialer_refuses_a_server_certificate_from_another_ca() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = config_with_foreign_certificate(dir.path(), Role::Server1);
        let errors = connect_errors(&config, &[Role::Server0, Role::Server1]);
        match &errors[0] {
            NetError::PeerRefused { role: Role::Server0, peer: Role::Server1, reason, .. } => {
                assert!(reason.contains("UnknownIssuer"), "{reason}");
            }
            other => panic!("server0 should refuse server1: {other}"),
        }
        // server1 waited for a server0 with an acceptable certificate (and for the absent cp).
        assert!(matches!(errors[1], NetError::ConnectTimeout { role: Role::Server1, .. }), "{}", errors[1]);
    });
}

#[test]
fn an_acceptor_refuses_a_client_certificate_from_another_ca() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        let config = config_with_foreign_certificate(dir.path(), Role::Server1);
        let errors = connect_errors(&config, &[Role::Server1, Role::Cp]);
        // server1 learns that cp refused its certificate.
        match &errors[0] {
            NetError::PeerRefused { role: Role::Server1, peer: Role::Cp, reason, .. } => {
                assert!(reason.contains("certificate"), "{reason}");
            }
            other => panic!("cp should refuse server1: {other}"),
        }
        // cp kept waiting for a genuine server1 and says why it refused the impostor.
        match &errors[1] {
            NetError::ConnectTimeout { role: Role::Cp, last_error: Some(problem), .. } => {
                assert!(problem.contains("UnknownIssuer"), "{problem}");
            }
            other => panic!("cp should time out after refusing server1: {other}"),
        }
    });
}

#[test]
fn a_dialer_refuses_a_valid_certificate_for_the_wrong_role() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        // At server1's address sits a party with cp's genuine certificate.
        let config = config_with_certificate_of(dir.path(), Role::Server1, Role::Cp);
        let errors = connect_errors(&config, &[Role::Server0, Role::Server1]);
        match &errors[0] {
            NetError::PeerRefused { role: Role::Server0, peer: Role::Server1, reason, .. } => {
                assert!(reason.contains("not valid for name \"server1\""), "{reason}");
            }
            other => panic!("server0 should refuse the certificate at server1's address: {other}"),
        }
    });
}

#[test]
fn an_acceptor_refuses_a_valid_certificate_for_the_wrong_role() {
    with_deadline(Duration::from_secs(20), || {
        let dir = temp_dir();
        // server1 dials cp presenting cp's own genuine certificate: cp accepts only server0
        // and server1.
        let config = config_with_certificate_of(dir.path(), Role::Server1, Role::Cp);
        let errors = connect_errors(&config, &[Role::Server1, Role::Cp]);
        match &errors[0] {
            NetError::PeerRefused { role: Role::Server1, peer: Role::Cp, reason, .. } => {
                assert!(reason.contains("certificate names cp but server0 or server1 expected"), "{reason}");
            }
            other => panic!("cp should refuse server1: {other}"),
        }
        match &errors[1] {
            NetError::ConnectTimeout { role: Role::Cp, last_error: Some(problem), .. } => {
                assert!(problem.contains("certificate names cp"), "{problem}");
            }
            other => panic!("cp should time out after refusing: {other}"),
        }
    });
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    with_deadline(Duration::from_secs(10), || {
        let dir = temp_dir();
        let mut config = local_config(dir.path());
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = taken.local_addr().expect("address");
        config.parties[1].address = address.to_string();
        let error = QuicTransport::connect(&config, Role::Server1).expect_err("the port is taken");
        let message = error.to_string();
        assert!(matches!(error, NetError::Bind { role: Role::Server1, address: a, .. } if a == address), "{message}");
        assert!(message.contains("server1") && message.contains(&address.to_string()), "{message}");
        eprintln!("{message}");
    });
}

#[test]
fn connecting_alone_times_out_naming_the_missing_peer() {
    with_deadline(Duration::from_secs(10), || {
        let dir = temp_dir();
        let mut config = local_config(dir.path());
        config.connect_timeout = Duration::from_millis(1500);
        config.parties[1].address = format!("127.0.0.1:{}", free_ports()[0]);
        let start = Instant::now();
        let error = QuicTransport::connect(&config, Role::Server1).expect_err("nobody else is up");
        let elapsed = start.elapsed();
        assert!(matches!(error, NetError::ConnectTimeout { role: Role::Server1, .. }), "{error}");
        assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
        eprintln!("{error}");
    });
}
