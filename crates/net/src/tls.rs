//! TLS for the party links: mutual authentication against the parties' CA, and the role a
//! peer's certificate names.
//!
//! Both sides present a certificate. The dialing side checks the acceptor's certificate with
//! ordinary server verification against the CA, using the role it dials as the server name;
//! the accepting side checks the dialer's certificate with [`WebPkiClientVerifier`] against the
//! same CA and then reads the dialer's role from the authenticated certificate
//! ([`peer_role`]). No role is ever taken from a message.

use crate::config::PartiesConfig;
use crate::error::NetError;
use pond_protocol::Role;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol name of pond's party links.
pub const ALPN: &[u8] = b"pond/1";

/// ALPN protocol name of the client link ([`crate::client`]): a client cannot reach a party
/// link, nor a party a client link, even with a valid certificate.
pub const CLIENT_ALPN: &[u8] = b"pond-client/1";

/// The name the client's certificate must carry.
pub const CLIENT_NAME: &str = "client";

/// The TLS material of one party: the CA to trust, its own certificate chain and key.
pub struct PartyIdentity {
    role: Role,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for PartyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyIdentity").field("role", &self.role).field("chain_len", &self.chain.len()).finish()
    }
}

impl PartyIdentity {
    /// Loads the CA certificate(s) from `ca` and `role`'s certificate chain and key from `cert`
    /// and `key` (PEM files).
    pub fn load(role: Role, ca: &Path, cert: &Path, key: &Path) -> Result<PartyIdentity, NetError> {
        let mut roots = RootCertStore::empty();
        for ca_cert in read_certificates(ca)? {
            roots.add(ca_cert).map_err(|e| NetError::BadPem { path: ca.to_path_buf(), reason: e.to_string() })?;
        }
        let chain = read_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::BadPem { path: key.to_path_buf(), reason: format!("no usable private key: {e}") })?;
        Ok(PartyIdentity { role, roots: Arc::new(roots), chain, key })
    }

    /// Loads `role`'s identity from the files named in `config`.
    pub fn from_config(config: &PartiesConfig, role: Role) -> Result<PartyIdentity, NetError> {
        let party = config.party(role);
        PartyIdentity::load(role, &config.ca, &party.cert, &party.key)
    }

    /// The role this identity is for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// QUIC server configuration: presents this party's certificate and requires a client
    /// certificate that chains to the CA.
    pub fn server_config(&self, transport: Arc<quinn::TransportConfig>) -> Result<quinn::ServerConfig, NetError> {
        self.server_config_for(transport, ALPN)
    }

    /// QUIC server configuration of a server's client link: like [`Self::server_config`], with
    /// the client link's ALPN ([`CLIENT_ALPN`]). The caller still checks that the certificate
    /// names [`CLIENT_NAME`] ([`peer_names`]).
    pub fn client_link_server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, NetError> {
        self.server_config_for(transport, CLIENT_ALPN)
    }

    fn server_config_for(
        &self,
        transport: Arc<quinn::TransportConfig>,
        alpn: &[u8],
    ) -> Result<quinn::ServerConfig, NetError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .map_err(|e| self.tls_error("client verifier", e))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.tls_error("protocol versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.tls_error("own certificate", e))?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| self.tls_error("QUIC", e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport);
        Ok(config)
    }

    /// QUIC client configuration: verifies the server against the CA (the server name passed
    /// to `connect` is the role dialed) and presents this party's certificate.
    pub fn client_config(&self, transport: Arc<quinn::TransportConfig>) -> Result<quinn::ClientConfig, NetError> {
        dialer_config(&self.roots, &self.chain, &self.key, transport, ALPN)
            .map_err(|(what, reason)| self.tls_error(what, reason))
    }

    fn tls_error(&self, what: &str, e: impl std::fmt::Display) -> NetError {
        NetError::Tls { role: self.role, reason: format!("{what}: {e}") }
    }
}

/// The client's TLS material: the CA to trust, its certificate chain (naming [`CLIENT_NAME`])
/// and key.
pub struct ClientIdentity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("chain_len", &self.chain.len()).finish()
    }
}

impl ClientIdentity {
    /// Loads the CA certificate(s) from `ca` and the client's chain and key from `cert` and
    /// `key` (PEM files).
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<ClientIdentity, NetError> {
        let mut roots = RootCertStore::empty();
        for ca_cert in read_certificates(ca)? {
            roots.add(ca_cert).map_err(|e| NetError::BadPem { path: ca.to_path_buf(), reason: e.to_string() })?;
        }
        let chain = read_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::BadPem { path: key.to_path_buf(), reason: format!("no usable private key: {e}") })?;
        Ok(ClientIdentity { roots: Arc::new(roots), chain, key })
    }

    /// Loads the client's identity from the `[client]` entry of `config`.
    pub fn from_config(config: &PartiesConfig) -> Result<ClientIdentity, NetError> {
        let files = config.client_files()?;
        ClientIdentity::load(&config.ca, &files.cert, &files.key)
    }

    /// QUIC client configuration for dialing the servers' client links: verifies each server
    /// against the CA (the server name passed to `connect` is the server's role) and presents
    /// the client's certificate.
    pub fn client_config(&self, transport: Arc<quinn::TransportConfig>) -> Result<quinn::ClientConfig, NetError> {
        dialer_config(&self.roots, &self.chain, &self.key, transport, CLIENT_ALPN)
            .map_err(|(what, reason)| NetError::ClientTls { reason: format!("{what}: {reason}") })
    }
}

/// A QUIC client configuration trusting `roots` and presenting `chain`/`key`, speaking `alpn`.
fn dialer_config(
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    transport: Arc<quinn::TransportConfig>,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, (&'static str, String)> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ("protocol versions", e.to_string()))?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| ("own certificate", e.to_string()))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| ("QUIC", e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport);
    Ok(config)
}

/// The crypto provider of every pond TLS config, chosen explicitly so that it does not
/// depend on which rustls provider features other crates enable.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in the PEM file `path`; at least one is required.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let bad = |reason: String| NetError::BadPem { path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificate in file".into()));
    }
    Ok(certs)
}

/// True if the (already authenticated) certificate `cert` names `role` as a DNS name.
pub fn certificate_names_role(cert: &CertificateDer<'_>, role: Role) -> bool {
    certificate_names(cert, &role.to_string())
}

/// True if the (already authenticated) certificate `cert` names `name` (a party name such as
/// `client`) as a DNS name.
pub fn certificate_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Checks that the peer of `connection` authenticated with a certificate naming `name`.
///
/// As for [`peer_role`], the chain was verified against the CA by the handshake; this reads the
/// name. The error says what the certificate names instead.
pub fn peer_names(connection: &quinn::Connection, name: &str) -> Result<(), String> {
    let identity = connection.peer_identity().ok_or("peer presented no certificate")?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain".to_string())?;
    let leaf = chain.first().ok_or("peer presented an empty certificate chain")?;
    if certificate_names(leaf, name) {
        return Ok(());
    }
    let names: Vec<String> =
        Role::ALL.into_iter().filter(|&r| certificate_names_role(leaf, r)).map(|r| r.to_string()).collect();
    Err(format!(
        "certificate names {} but {name} expected",
        if names.is_empty() { "no party role".to_string() } else { names.join(", ") }
    ))
}

/// The role the peer of `connection` authenticated as, among `candidates`.
///
/// The peer's certificate has already been checked against the CA by the TLS handshake; this
/// reads which role it names. It fails (with a reason) if the peer presented no certificate or
/// the certificate names none, or more than one, of `candidates`.
pub fn peer_role(connection: &quinn::Connection, candidates: &[Role]) -> Result<Role, String> {
    let identity = connection.peer_identity().ok_or("peer presented no certificate")?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain".to_string())?;
    let leaf = chain.first().ok_or("peer presented an empty certificate chain")?;
    let named: Vec<Role> = candidates.iter().copied().filter(|&role| certificate_names_role(leaf, role)).collect();
    match named.as_slice() {
        [role] => Ok(*role),
        [] => {
            let names = Role::ALL.into_iter().filter(|&r| certificate_names_role(leaf, r)).map(|r| r.to_string());
            let names: Vec<String> = names.collect();
            let expected: Vec<String> = candidates.iter().map(Role::to_string).collect();
            Err(format!(
                "certificate names {} but {} expected",
                if names.is_empty() { "no party role".to_string() } else { names.join(", ") },
                expected.join(" or ")
            ))
        }
        _ => Err("certificate names more than one role".into()),
    }
}
