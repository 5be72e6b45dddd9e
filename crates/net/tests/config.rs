//! `pond keygen` and `parties.toml`: generate, write, load back; errors name field and file.

mod common;

use common::temp_dir;
use pond_net::tls::{certificate_names_role, PartyIdentity};
use pond_net::{generate_certificates, write_local_config, NetError, PartiesConfig};
use pond_protocol::Role;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;

#[test]
fn keygen_writes_a_ca_and_one_certificate_per_party() {
    let dir = temp_dir();
    let out = dir.path().join("keys");
    let files = generate_certificates(&out, &["server0", "server1", "cp", "client"]).expect("keygen");
    assert_eq!(files.ca_cert, out.join("ca.pem"));
    assert_eq!(files.ca_key, out.join("ca.key"));
    assert_eq!(
        files.parties.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["server0", "server1", "cp", "client"]
    );
    for role in Role::ALL {
        let party = &files.parties[role.index()];
        let cert = CertificateDer::from_pem_file(&party.cert).expect("certificate");
        assert!(certificate_names_role(&cert, role), "{} must name {role}", party.cert.display());
        for other in Role::ALL.into_iter().filter(|&r| r != role) {
            assert!(!certificate_names_role(&cert, other), "{role}'s certificate must not name {other}");
        }
        PartyIdentity::load(role, &files.ca_cert, &party.cert, &party.key).expect("loadable identity");
    }
    assert!(files.parties[3].cert.exists() && files.parties[3].key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [&files.ca_key, &files.parties[0].key] {
            let mode = std::fs::metadata(key).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
}

#[test]
fn keygen_rejects_bad_or_repeated_names() {
    let dir = temp_dir();
    for names in [vec!["server0", "server0"], vec!["Server0"], vec![""], vec!["a b"]] {
        let error = generate_certificates(dir.path(), &names).expect_err("bad names");
        assert!(matches!(error, NetError::Keygen { .. }), "{error}");
    }
}

#[test]
fn local_config_round_trips_through_the_file() {
    let dir = temp_dir();
    let ports = [7100, 7101, 7102];
    let loaded = write_local_config(dir.path(), ports).expect("write local config");
    let path = dir.path().join("parties.toml");
    let mut expected = PartiesConfig::local(dir.path(), ports);
    expected.source = Some(path.clone());
    assert_eq!(loaded, expected);
    assert_eq!(PartiesConfig::load(&path).expect("load"), expected);
    assert_eq!(loaded.party(Role::Server1).address, "127.0.0.1:7101");
    // Paths inside the directory are written relative to it, so the directory can move.
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("cert = \"server0.pem\""), "{text}");
    assert!(!text.contains(&dir.path().display().to_string()), "{text}");
}

/// Writes a valid config, applies `edit` to its text, and returns the error loading it.
fn load_error(edit: impl Fn(String) -> String) -> (NetError, std::path::PathBuf) {
    let dir = temp_dir();
    write_local_config(dir.path(), [7200, 7201, 7202]).expect("write local config");
    let path = dir.path().join("parties.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).expect("write");
    let error = PartiesConfig::load(&path).expect_err("the edited config is invalid");
    (error, path)
}

fn assert_names(error: &NetError, file: &Path, field: &str) {
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains(&file.display().to_string()), "no file in: {message}");
    assert!(message.contains(field), "no `{field}` in: {message}");
    match error {
        NetError::ConfigField { file: f, field: name, .. } => {
            assert_eq!(f, file);
            assert_eq!(name, field);
        }
        other => panic!("expected a config field error, got {other:?}"),
    }
}

/// Removes the first line starting with `key` after the line `[table]`.
fn remove_in_table(text: &str, table: &str, key: &str) -> String {
    let mut in_table = false;
    let mut removed = false;
    text.lines()
        .filter(|line| {
            if line.starts_with('[') {
                in_table = *line == format!("[{table}]");
            }
            let drop = in_table && !removed && line.starts_with(key);
            removed |= drop;
            !drop
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn a_missing_field_is_named_with_the_file() {
    let (error, path) = load_error(|text| remove_in_table(&text, "server1", "key"));
    assert_names(&error, &path, "server1.key");
    let (error, path) = load_error(|text| remove_in_table(&text, "cp", "address"));
    assert_names(&error, &path, "cp.address");
    let (error, path) =
        load_error(|text| text.lines().filter(|l| !l.starts_with("ca =")).map(|l| format!("{l}\n")).collect());
    assert_names(&error, &path, "ca");
}

#[test]
fn a_missing_party_is_named_with_the_file() {
    let (error, path) = load_error(|text| {
        let start = text.find("[cp]").expect("cp table");
        text[..start].to_string()
    });
    assert_names(&error, &path, "cp");
}

#[test]
fn a_wrong_field_is_named_with_the_file() {
    let (error, path) = load_error(|text| text.replacen("address = \"127.0.0.1:7200\"", "address = 7200", 1));
    assert_names(&error, &path, "server0.address");
    let (error, path) = load_error(|text| text.replacen("address = \"127.0.0.1:7201\"", "address = \"127.0.0.1\"", 1));
    assert_names(&error, &path, "server1.address");
    let (error, path) =
        load_error(|text| text.replacen("address = \"127.0.0.1:7202\"", "address = \"127.0.0.1:7200\"", 1));
    assert_names(&error, &path, "cp.address");
    let (error, path) = load_error(|text| text.replacen("[cp]\n", "[cp]\nadress = \"x\"\n", 1));
    assert_names(&error, &path, "cp.adress");
    let (error, path) = load_error(|text| text.replacen("connect_timeout_ms = 10000", "connect_timeout_ms = 0", 1));
    assert_names(&error, &path, "connect_timeout_ms");
    let (error, path) = load_error(|text| text.replacen("max_frame_bytes = ", "max_frame_bytes = -", 1));
    assert_names(&error, &path, "max_frame_bytes");
}

#[test]
fn a_missing_file_is_named() {
    let dir = temp_dir();
    let path = dir.path().join("nowhere.toml");
    let error = PartiesConfig::load(&path).expect_err("no file");
    assert!(matches!(error, NetError::Io { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[test]
fn a_missing_certificate_file_is_named() {
    let dir = temp_dir();
    let config = write_local_config(dir.path(), [7300, 7301, 7302]).expect("write local config");
    std::fs::remove_file(&config.parties[0].key).expect("remove key");
    let error = PartyIdentity::from_config(&config, Role::Server0).expect_err("no key");
    assert!(matches!(error, NetError::BadPem { .. }), "{error}");
    assert!(error.to_string().contains("server0.key"), "{error}");
}
