//! Faults across real processes on 127.0.0.1: a party killed mid-session, certificates from
//! another CA or for the wrong role, malformed and oversized frames, a port already in use.
//! Every process is waited for (killed first if it overstays), so nothing hangs and no zombie
//! remains.

mod net_support;

use net_support::{local_setup, start_parties, Proc, TempDir};
use pond_net::{frame, generate_certificates, PartiesConfig, QuicTransport};
use pond_protocol::{Role, Tag, Transport};
use std::path::Path;
use std::time::{Duration, Instant};

/// A long-running session (the client repeats a request without end); once a few requests are
/// through, `victim` is killed. The two other parties must exit non-zero within 10 s, each with
/// an error naming the victim; so must the client.
fn kill_mid_session(victim: Role) {
    let dir = TempDir::new(&format!("kill-{victim}"));
    let (config, _) = local_setup(dir.path());
    let mut parties = start_parties(&config, &["--seed", "3", "sigmoid"]);
    let mut client = Proc::client(&config, &["--json", "sigmoid", "--values", "0.5,1.5", "--repeat", "100000000"]);
    client.wait_for_lines(5, Duration::from_secs(20));
    let killed_at = Instant::now();
    parties[victim.index()].kill();
    for role in Role::ALL.into_iter().filter(|&r| r != victim) {
        let party = &mut parties[role.index()];
        let stderr = party.expect_failure(Duration::from_secs(10));
        assert!(
            stderr.contains(&format!("lost connection to {victim}")),
            "{role} must name the lost {victim}:\n{stderr}"
        );
        eprintln!("{role} exited {:?} after the kill: {}", killed_at.elapsed(), stderr.trim());
    }
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    let stderr = client.expect_failure(Duration::from_secs(10));
    assert!(stderr.contains(&victim.to_string()), "the client must name {victim}:\n{stderr}");
}

#[test]
fn killing_cp_mid_session_stops_the_others_naming_cp() {
    kill_mid_session(Role::Cp);
}

#[test]
fn killing_server0_mid_session_stops_the_others_naming_server0() {
    kill_mid_session(Role::Server0);
}

/// Rewrites the config at `path` with `edit` applied.
fn edit_config(path: &Path, edit: impl FnOnce(&mut PartiesConfig)) {
    let mut config = PartiesConfig::load(path).expect("load config");
    edit(&mut config);
    config.save(path).expect("save config");
}

/// Starts the three parties with cp presenting `cert`/`key`; server0 and server1 both dial cp
/// and must refuse it with an error naming cp and containing `reason`; cp fails too.
fn cp_is_refused(dir: &TempDir, cert: std::path::PathBuf, key: std::path::PathBuf, reason: &str) {
    let (config, _) = local_setup(dir.path());
    edit_config(&config, |c| {
        c.parties[Role::Cp.index()].cert = cert;
        c.parties[Role::Cp.index()].key = key;
    });
    let start = Instant::now();
    let mut parties = start_parties(&config, &["--seed", "1", "sigmoid"]);
    for role in [Role::Server0, Role::Server1] {
        let stderr = parties[role.index()].expect_failure(Duration::from_secs(15));
        assert!(stderr.contains(&format!("{role}: link with cp")) && stderr.contains("refused"), "{role}: {stderr}");
        assert!(stderr.contains(reason), "{role}: {stderr}");
    }
    let stderr = parties[Role::Cp.index()].expect_failure(Duration::from_secs(15));
    assert!(stderr.contains("cp:"), "cp: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_party_certificate_from_another_ca_is_refused() {
    let dir = TempDir::new("foreign-ca");
    let foreign = dir.path().join("foreign");
    generate_certificates(&foreign, &["cp"]).expect("second CA");
    cp_is_refused(&dir, foreign.join("cp.pem"), foreign.join("cp.key"), "UnknownIssuer");
}

#[test]
fn a_valid_certificate_for_the_wrong_role_is_refused() {
    let dir = TempDir::new("wrong-role");
    // cp presents server0's genuine certificate (local_setup writes it into the directory).
    let (cert, key) = (dir.path().join("server0.pem"), dir.path().join("server0.key"));
    cp_is_refused(&dir, cert, key, "certificate not valid for name \"cp\"");
}

#[test]
fn the_servers_refuse_a_client_without_a_client_certificate() {
    let dir = TempDir::new("client-certs");
    let (config, loaded) = local_setup(dir.path());
    let foreign = dir.path().join("foreign");
    generate_certificates(&foreign, &["client"]).expect("second CA");
    let server0 = loaded.party(Role::Server0).clone();
    let mut parties = start_parties(&config, &["--seed", "1", "sigmoid"]);
    // server0's genuine certificate is not a client certificate; another CA's client is no client.
    for (cert, key, reason) in [
        (server0.cert.clone(), server0.key.clone(), "certificate names server0 but client expected"),
        (foreign.join("client.pem"), foreign.join("client.key"), ""),
    ] {
        let client_config = dir.path().join("client.toml");
        std::fs::copy(&config, &client_config).expect("copy config");
        edit_config(&client_config, |c| {
            let files = c.client.as_mut().expect("client entry");
            files.cert = cert;
            files.key = key;
        });
        let mut client = Proc::client(&client_config, &["sigmoid", "--values", "1"]);
        let stderr = client.expect_failure(Duration::from_secs(15));
        assert!(stderr.contains("link with server") && stderr.contains("refused"), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
    // The servers are still waiting for a genuine client: one comes and is served.
    let mut client = Proc::client(&config, &["sigmoid", "--values", "1"]);
    client.expect_success(Duration::from_secs(20));
    for party in &mut parties {
        party.expect_success(Duration::from_secs(10));
    }
}

#[test]
fn an_oversized_frame_from_the_client_ends_the_session_naming_the_client() {
    let dir = TempDir::new("oversized");
    let (config, _) = local_setup(dir.path());
    // The servers' copy of the file allows 1000-byte frames; the client's does not limit it.
    let servers_config = dir.path().join("servers.toml");
    std::fs::copy(&config, &servers_config).expect("copy config");
    edit_config(&servers_config, |c| c.max_frame_bytes = 1000);
    let mut parties = start_parties(&servers_config, &["--seed", "1", "sigmoid"]);
    let values = vec!["0.5"; 500].join(",");
    let mut client = Proc::client(&config, &["sigmoid", "--values", &values]);
    for role in [Role::Server0, Role::Server1] {
        let stderr = parties[role.index()].expect_failure(Duration::from_secs(10));
        assert!(stderr.contains("bad message from client") && stderr.contains("exceeds the limit"), "{role}: {stderr}");
    }
    let stderr = parties[Role::Cp.index()].expect_failure(Duration::from_secs(10));
    assert!(stderr.contains("server0") && stderr.contains("client"), "cp: {stderr}");
    client.expect_failure(Duration::from_secs(10));
}

/// What the impostor sends server1 in place of its session key.
enum Malformed {
    /// Bytes as they are, outside the framing.
    Bytes(Vec<u8>),
    /// A well-formed frame with this tag.
    Frame(Tag),
}

/// The test plays server0 with server0's genuine certificate (a [`QuicTransport`] in this
/// process) against `pond party` processes as server1 and cp. Without `--seed` their first step
/// is receiving server0's session keys; server0 sends server1 `malformed` instead, and ends its
/// stream if `end_stream`. server1 must exit non-zero within 10 s with an error naming server0
/// and containing `reason`; then the impostor leaves, and cp, which lost server0, must stop too.
fn malformed_from_server0(label: &str, malformed: Malformed, end_stream: bool, reason: &str) {
    let dir = TempDir::new(label);
    let (config_path, config) = local_setup(dir.path());
    let mut server1 = Proc::party(&config_path, Role::Server1, &["sigmoid"]);
    let mut cp = Proc::party(&config_path, Role::Cp, &["sigmoid"]);
    let mut impostor = QuicTransport::connect(&config, Role::Server0).expect("server0's links");
    let start = Instant::now();
    match malformed {
        Malformed::Bytes(bytes) => impostor.send_unframed(Role::Server1, bytes),
        Malformed::Frame(tag) => impostor.send(Role::Server1, tag, vec![0; 32]),
    }
    .expect("send to server1");
    let impostor = if end_stream {
        drop(impostor);
        None
    } else {
        Some(impostor)
    };
    let stderr = server1.expect_failure(Duration::from_secs(10));
    assert!(stderr.contains("server1: session setup failed") && stderr.contains("from server0"), "{stderr}");
    assert!(stderr.contains(reason), "server1 must say `{reason}`:\n{stderr}");
    eprintln!("server1 exited {:?} after the malformed frame: {}", start.elapsed(), stderr.trim());
    drop(impostor);
    let stderr = cp.expect_failure(Duration::from_secs(10));
    assert!(stderr.contains("server0"), "cp must name server0:\n{stderr}");
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_garbled_frame_header_ends_the_session_naming_the_peer() {
    // 24 bytes of 0xA5: the length word says about 1.2e19 bytes.
    let reason = "exceeds the limit";
    malformed_from_server0("garbled-header", Malformed::Bytes(vec![0xA5; frame::HEADER_LEN]), false, reason);
}

#[test]
fn a_frame_cut_short_ends_the_session_naming_the_peer() {
    // A header announcing 32 bytes of payload, 5 bytes, then the end of the stream.
    let mut bytes = frame::encode_header(Tag { session: 0, step: 1 }, 32).to_vec();
    bytes.extend([1, 2, 3, 4, 5]);
    let reason = "stream ended 5 bytes into a 32-byte payload";
    malformed_from_server0("truncated-frame", Malformed::Bytes(bytes), true, reason);
}

#[test]
fn a_header_cut_short_ends_the_session_naming_the_peer() {
    let reason = "stream ended 11 bytes into a 24-byte frame header";
    malformed_from_server0("truncated-header", Malformed::Bytes(vec![0; 11]), true, reason);
}

#[test]
fn a_frame_of_another_session_ends_the_session_naming_the_peer() {
    // The parties run session 0; a well-formed frame of session 99 is out of place.
    let reason = "out of step";
    malformed_from_server0("wrong-session", Malformed::Frame(Tag { session: 99, step: 1 }), false, reason);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = TempDir::new("port-in-use");
    let (config, loaded) = local_setup(dir.path());
    // server0's party port and server1's client-link port are taken.
    let taken0 = std::net::UdpSocket::bind(&loaded.party(Role::Server0).address).expect("bind server0's port");
    let client1 = loaded.party(Role::Server1).client_address.clone().expect("client address");
    let taken1 = std::net::UdpSocket::bind(&client1).expect("bind server1's client port");
    let start = Instant::now();
    let mut server0 = Proc::party(&config, Role::Server0, &["sigmoid"]);
    let mut server1 = Proc::party(&config, Role::Server1, &["sigmoid"]);
    let stderr = server0.expect_failure(Duration::from_secs(5));
    assert!(
        stderr.contains(&format!("server0 cannot bind its address {}", loaded.party(Role::Server0).address))
            && stderr.contains("in use"),
        "{stderr}"
    );
    let stderr = server1.expect_failure(Duration::from_secs(5));
    assert!(
        stderr.contains(&format!("server1 cannot bind its client-link address {client1}")) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(5), "a busy port must fail at once");
    drop((taken0, taken1));
}

#[test]
fn a_missing_field_names_the_field_and_the_file() {
    let dir = TempDir::new("bad-config");
    let (config, _) = local_setup(dir.path());
    let text = std::fs::read_to_string(&config).expect("read config");
    let broken: String = text.lines().filter(|l| !l.starts_with("client_address")).collect::<Vec<_>>().join("\n");
    std::fs::write(&config, broken).expect("write config");
    let mut server0 = Proc::party(&config, Role::Server0, &["sigmoid"]);
    let stderr = server0.expect_failure(Duration::from_secs(5));
    assert!(stderr.contains("server0.client_address") && stderr.contains(&config.display().to_string()), "{stderr}");
}
