//! `pond keygen`: a certificate authority and one certificate per party, signed by it.
//!
//! Each party certificate names its party both as a DNS subject alternative name and as the
//! common name, and is valid for TLS server and client authentication, since every party both
//! dials and accepts. Peers check the DNS name against the role they expect
//! ([`crate::tls`]).

use crate::error::NetError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// How long generated certificates are valid: ten years from a day before generation (the day
/// absorbs clock skew between hosts).
const VALIDITY_DAYS: i64 = 3650;

/// The certificate and key files of one party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyFiles {
    /// The party name written into the certificate.
    pub name: String,
    /// `<dir>/<name>.pem`.
    pub cert: PathBuf,
    /// `<dir>/<name>.key` (mode 0600 on Unix).
    pub key: PathBuf,
}

/// What [`generate_certificates`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedCertificates {
    /// `<dir>/ca.pem`.
    pub ca_cert: PathBuf,
    /// `<dir>/ca.key` (mode 0600 on Unix); keep it offline, it can mint any party.
    pub ca_key: PathBuf,
    /// One entry per requested party, in order.
    pub parties: Vec<PartyFiles>,
}

/// Writes a fresh CA (`ca.pem`, `ca.key`) and, for each name in `parties`, `<name>.pem` and
/// `<name>.key` signed by that CA, into `out_dir` (created if needed; existing files are
/// replaced).
///
/// Names must be distinct, non-empty, and made of lowercase ASCII letters, digits and `-`
/// (they become DNS names), e.g. `server0`, `server1`, `cp`, `client`.
pub fn generate_certificates<S: AsRef<str>>(out_dir: &Path, parties: &[S]) -> Result<GeneratedCertificates, NetError> {
    let names: Vec<&str> = parties.iter().map(AsRef::as_ref).collect();
    for (i, name) in names.iter().enumerate() {
        check_party_name(name).map_err(|reason| NetError::Keygen { name: name.to_string(), reason })?;
        if names[..i].contains(name) {
            return Err(NetError::Keygen { name: name.to_string(), reason: "listed twice".into() });
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| NetError::Io {
        action: "create directory",
        path: out_dir.to_path_buf(),
        source,
    })?;

    let keygen_error = |name: &str| {
        let name = name.to_string();
        move |e: rcgen::Error| NetError::Keygen { name: name.clone(), reason: e.to_string() }
    };
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::days(1);
    let not_after = now + Duration::days(VALIDITY_DAYS);

    let ca_key = KeyPair::generate().map_err(keygen_error("CA"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(keygen_error("CA"))?;
    // A name of its own per CA, so that a certificate from another pond CA is reported as
    // coming from an unknown issuer rather than as a bad signature.
    let fingerprint: String = ca_key.public_key_raw().iter().rev().take(6).map(|b| format!("{b:02x}")).collect();
    ca_params.distinguished_name.push(DnType::CommonName, format!("pond parties CA {fingerprint}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(keygen_error("CA"))?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let written = GeneratedCertificates {
        ca_cert: out_dir.join("ca.pem"),
        ca_key: out_dir.join("ca.key"),
        parties: names
            .iter()
            .map(|name| PartyFiles {
                name: name.to_string(),
                cert: out_dir.join(format!("{name}.pem")),
                key: out_dir.join(format!("{name}.key")),
            })
            .collect(),
    };
    write_file(&written.ca_cert, ca_cert.pem().as_bytes(), false)?;
    write_file(&written.ca_key, ca_key_pem.as_bytes(), true)?;

    for files in &written.parties {
        let name = files.name.as_str();
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(keygen_error(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(keygen_error(name))?;
        let cert = params.signed_by(&key, &issuer).map_err(keygen_error(name))?;
        write_file(&files.cert, cert.pem().as_bytes(), false)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), true)?;
    }
    Ok(written)
}

/// Why `name` cannot be a party name, if it cannot.
fn check_party_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty party name".into());
    }
    if name.len() > 63 {
        return Err("party names are at most 63 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || name.starts_with('-') {
        return Err("party names use only lowercase letters, digits and `-` (not first)".into());
    }
    Ok(())
}

/// Writes `contents` to `path`, readable only by the owner when `secret`.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), NetError> {
    use std::io::Write;
    let io_error = |source| NetError::Io { action: "write", path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io_error)?;
    #[cfg(unix)]
    if secret {
        // An existing file keeps its mode on open; tighten it explicitly.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    }
    file.write_all(contents).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_names_must_be_dns_labels() {
        assert!(check_party_name("server0").is_ok());
        assert!(check_party_name("cp").is_ok());
        assert!(check_party_name("model-owner").is_ok());
        assert!(check_party_name("").is_err());
        assert!(check_party_name("Server0").is_err());
        assert!(check_party_name("a.b").is_err());
        assert!(check_party_name("-x").is_err());
    }
}
