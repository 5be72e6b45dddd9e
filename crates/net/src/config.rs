//! The `parties.toml` file: where each party listens, its certificate and key, the CA, timeouts
//! and the frame size limit.
//!
//! ```toml
//! ca = "ca.pem"                 # CA certificate every peer must chain to
//! connect_timeout_ms = 10000    # optional, default 10 s: how long connect waits for peers
//! receive_timeout_ms = 60000    # optional, default 60 s: deadline for one receive
//! idle_timeout_ms = 5000        # optional, default 5 s: a silent connection is dead after this
//! max_frame_bytes = 268435456   # optional, default 256 MiB: largest message payload
//!
//! [server0]
//! address = "10.0.0.1:7000"     # host:port, bound by server0 and dialed by the others
//! cert = "server0.pem"
//! key = "server0.key"
//! client_address = "10.0.0.1:7100"  # optional: where server0 accepts the client (servers only)
//!
//! [server1]
//! # ...
//! [cp]
//! # ...
//!
//! [client]                      # optional: the prediction client / input owner
//! cert = "client.pem"
//! key = "client.key"
//! ```
//!
//! Relative paths are relative to the directory of the file. Only the own role's `cert` and
//! `key` are read, so each host needs only its own key file. The client link (see
//! [`crate::client`]) needs `client_address` on both servers and a `[client]` entry on the
//! client's host; it is a separate QUIC endpoint, so the party links never accept a client.

use crate::certs::generate_certificates;
use crate::error::NetError;
use pond_protocol::Role;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default for [`PartiesConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`PartiesConfig::receive_timeout`].
pub const DEFAULT_RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`PartiesConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`PartiesConfig::max_frame_bytes`]: 256 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 256 << 20;

/// Where one party listens and which certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyConfig {
    /// `host:port`: bound by this party, dialed by the parties with a lower role index.
    pub address: String,
    /// PEM certificate (chain) naming the party, signed by the CA.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// Servers only, optional: `host:port` where this server accepts the client link.
    pub client_address: Option<String>,
}

/// The certificate and key of the client (the input owner that talks to both servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// PEM certificate (chain) naming `client`, signed by the CA.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// The contents of a `parties.toml`, with paths resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartiesConfig {
    /// PEM certificate of the CA that every party's certificate must chain to.
    pub ca: PathBuf,
    /// The three parties, indexed by [`Role::index`].
    pub parties: [PartyConfig; 3],
    /// The client's certificate and key, if the file has a `[client]` entry.
    pub client: Option<ClientFiles>,
    /// How long [`crate::QuicTransport::connect`] keeps trying to reach its peers.
    pub connect_timeout: Duration,
    /// The deadline callers should pass to each receive.
    pub receive_timeout: Duration,
    /// A connection with no traffic (keep-alives included) for this long is dead; this bounds
    /// how long a crashed peer goes unnoticed. Keep-alives are sent at a third of it.
    pub idle_timeout: Duration,
    /// Largest payload of one message; a larger incoming frame ends the session.
    pub max_frame_bytes: u64,
    /// The file this was loaded from, named in later errors.
    pub source: Option<PathBuf>,
}

/// The file layout, every field optional so that a missing one is reported by its name.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server0: Option<RawParty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server1: Option<RawParty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cp: Option<RawParty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<RawClient>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_address: Option<String>,
}

impl PartiesConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<PartiesConfig, NetError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| NetError::Io {
            action: "read config file",
            path: path.to_path_buf(),
            source,
        })?;
        PartiesConfig::from_toml(&text, path)
    }

    /// Parses `text` as the contents of the config file `file` (named in errors; relative paths
    /// are resolved against its directory).
    pub fn from_toml(text: &str, file: &Path) -> Result<PartiesConfig, NetError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, file, &e))?;
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        let field_error = |field: &str, reason: &str| NetError::ConfigField {
            file: file.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let missing = |field: &str| field_error(field, "missing");
        let millis = |value: Option<u64>, field: &str, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(field_error(field, "must be greater than 0")),
            Some(ms) => Ok(Duration::from_millis(ms)),
        };

        let ca = base.join(raw.ca.ok_or_else(|| missing("ca"))?);
        let party = |role: Role, raw: Option<RawParty>| -> Result<PartyConfig, NetError> {
            let raw = raw.ok_or_else(|| missing(&role.to_string()))?;
            let address = raw.address.ok_or_else(|| missing(&format!("{role}.address")))?;
            check_address(&address).map_err(|reason| field_error(&format!("{role}.address"), &reason))?;
            let cert = base.join(raw.cert.ok_or_else(|| missing(&format!("{role}.cert")))?);
            let key = base.join(raw.key.ok_or_else(|| missing(&format!("{role}.key")))?);
            let client_address = match raw.client_address {
                Some(_) if role == Role::Cp => {
                    return Err(field_error("cp.client_address", "only server0 and server1 accept the client"))
                }
                Some(a) => {
                    check_address(&a).map_err(|reason| field_error(&format!("{role}.client_address"), &reason))?;
                    Some(a)
                }
                None => None,
            };
            Ok(PartyConfig { address, cert, key, client_address })
        };
        let parties =
            [party(Role::Server0, raw.server0)?, party(Role::Server1, raw.server1)?, party(Role::Cp, raw.cp)?];
        // Every bound address (party links and client links) must be distinct.
        let mut bound: Vec<(String, String)> = Vec::new();
        for role in Role::ALL {
            let p = &parties[role.index()];
            let own = [
                Some((format!("{role}.address"), &p.address)),
                p.client_address.as_ref().map(|a| (format!("{role}.client_address"), a)),
            ];
            for (field, address) in own.into_iter().flatten() {
                if let Some((other, _)) = bound.iter().find(|(_, a)| a == address) {
                    let reason = format!("`{address}` is also `{other}`");
                    return Err(field_error(&field, &reason));
                }
                bound.push((field, address.clone()));
            }
        }
        let client = match raw.client {
            None => None,
            Some(c) => Some(ClientFiles {
                cert: base.join(c.cert.ok_or_else(|| missing("client.cert"))?),
                key: base.join(c.key.ok_or_else(|| missing("client.key"))?),
            }),
        };
        let max_frame_bytes = match raw.max_frame_bytes {
            None => DEFAULT_MAX_FRAME_BYTES,
            Some(0) => return Err(field_error("max_frame_bytes", "must be greater than 0")),
            Some(n) => n,
        };
        Ok(PartiesConfig {
            ca,
            parties,
            client,
            connect_timeout: millis(raw.connect_timeout_ms, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT)?,
            receive_timeout: millis(raw.receive_timeout_ms, "receive_timeout_ms", DEFAULT_RECEIVE_TIMEOUT)?,
            idle_timeout: millis(raw.idle_timeout_ms, "idle_timeout_ms", DEFAULT_IDLE_TIMEOUT)?,
            max_frame_bytes,
            source: Some(file.to_path_buf()),
        })
    }

    /// A config for three parties on `127.0.0.1` at `ports` (indexed by [`Role::index`]),
    /// with the files [`generate_certificates`] writes into `dir` and default limits.
    pub fn local(dir: &Path, ports: [u16; 3]) -> PartiesConfig {
        PartiesConfig {
            ca: dir.join("ca.pem"),
            parties: Role::ALL.map(|role| PartyConfig {
                address: format!("127.0.0.1:{}", ports[role.index()]),
                cert: dir.join(format!("{role}.pem")),
                key: dir.join(format!("{role}.key")),
                client_address: None,
            }),
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            receive_timeout: DEFAULT_RECEIVE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            source: None,
        }
    }

    /// The entry of `role`.
    pub fn party(&self, role: Role) -> &PartyConfig {
        &self.parties[role.index()]
    }

    /// Adds a client link on `127.0.0.1` at `client_ports` (server0's, then server1's) and the
    /// client's files `dir/client.pem` and `dir/client.key`.
    pub fn with_local_client(mut self, dir: &Path, client_ports: [u16; 2]) -> PartiesConfig {
        for (server, port) in [Role::Server0, Role::Server1].into_iter().zip(client_ports) {
            self.parties[server.index()].client_address = Some(format!("127.0.0.1:{port}"));
        }
        self.client = Some(ClientFiles { cert: dir.join("client.pem"), key: dir.join("client.key") });
        self
    }

    /// The client-link address of `server`, or an error naming the missing field.
    pub fn client_address(&self, server: Role) -> Result<&str, NetError> {
        self.party(server).client_address.as_deref().ok_or_else(|| NetError::ConfigField {
            file: self.file(),
            field: format!("{server}.client_address"),
            reason: "missing (needed for the client link)".into(),
        })
    }

    /// The client's certificate and key, or an error naming the missing `[client]` entry.
    pub fn client_files(&self) -> Result<&ClientFiles, NetError> {
        self.client.as_ref().ok_or_else(|| NetError::ConfigField {
            file: self.file(),
            field: "client".into(),
            reason: "missing (the client needs its cert and key)".into(),
        })
    }

    /// The file this config came from, or a placeholder for errors about a config built in code.
    pub fn file(&self) -> PathBuf {
        self.source.clone().unwrap_or_else(|| PathBuf::from("<parties config>"))
    }

    /// The config as TOML, with paths inside `relative_to` written relative to it.
    pub fn to_toml(&self, relative_to: &Path) -> String {
        let rel = |p: &Path| p.strip_prefix(relative_to).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf());
        let party = |role: Role| {
            let p = self.party(role);
            Some(RawParty {
                address: Some(p.address.clone()),
                cert: Some(rel(&p.cert)),
                key: Some(rel(&p.key)),
                client_address: p.client_address.clone(),
            })
        };
        let millis = |d: Duration| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let raw = RawConfig {
            ca: Some(rel(&self.ca)),
            connect_timeout_ms: millis(self.connect_timeout),
            receive_timeout_ms: millis(self.receive_timeout),
            idle_timeout_ms: millis(self.idle_timeout),
            max_frame_bytes: Some(self.max_frame_bytes),
            server0: party(Role::Server0),
            server1: party(Role::Server1),
            cp: party(Role::Cp),
            client: self.client.as_ref().map(|c| RawClient { cert: Some(rel(&c.cert)), key: Some(rel(&c.key)) }),
        };
        let body = toml::to_string(&raw).unwrap_or_else(|e| format!("# cannot serialise config: {e}\n"));
        format!("# pond parties: addresses, certificates and limits (see pond_net::config)\n{body}")
    }

    /// Writes the config to `path`, with paths inside the file's directory written relative to it.
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        std::fs::write(path, self.to_toml(dir)).map_err(|source| NetError::Io {
            action: "write config file",
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Generates a CA and certificates for `server0`, `server1` and `cp` in `dir`, and writes
/// `dir/parties.toml` placing the three parties on `127.0.0.1` at `ports` (indexed by
/// [`Role::index`]). Returns the config as loaded back from that file.
pub fn write_local_config(dir: &Path, ports: [u16; 3]) -> Result<PartiesConfig, NetError> {
    generate_certificates(dir, &Role::ALL.map(|r| r.to_string()))?;
    let path = dir.join("parties.toml");
    PartiesConfig::local(dir, ports).save(&path)?;
    PartiesConfig::load(&path)
}

/// Like [`write_local_config`], plus the client: certificates for `server0`, `server1`, `cp`
/// and `client`, the party links at `ports[0..3]` and the servers' client links at
/// `ports[3]` (server0) and `ports[4]` (server1).
pub fn write_local_config_with_client(dir: &Path, ports: [u16; 5]) -> Result<PartiesConfig, NetError> {
    generate_certificates(dir, &["server0", "server1", "cp", "client"])?;
    let path = dir.join("parties.toml");
    PartiesConfig::local(dir, [ports[0], ports[1], ports[2]])
        .with_local_client(dir, [ports[3], ports[4]])
        .save(&path)?;
    PartiesConfig::load(&path)
}

/// Three distinct UDP ports on `127.0.0.1` that were free a moment ago, for local configs in
/// tests and demos. Another process may take one before it is bound again; a collision shows
/// up as [`NetError::Bind`].
pub fn free_loopback_ports() -> std::io::Result<[u16; 3]> {
    free_loopback_port_set()
}

/// `N` distinct UDP ports on `127.0.0.1` that were free a moment ago (see
/// [`free_loopback_ports`]).
pub fn free_loopback_port_set<const N: usize>() -> std::io::Result<[u16; N]> {
    // Held together while choosing, so they are distinct.
    let mut sockets = Vec::with_capacity(N);
    for _ in 0..N {
        sockets.push(std::net::UdpSocket::bind("127.0.0.1:0")?);
    }
    let mut ports = [0u16; N];
    for (port, socket) in ports.iter_mut().zip(&sockets) {
        *port = socket.local_addr()?.port();
    }
    Ok(ports)
}

/// Checks that `address` has the form `host:port`.
fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not of the form host:port"));
    };
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    port.parse::<u16>().map_err(|_| format!("`{address}` has no valid port"))?;
    Ok(())
}

/// A TOML error as a [`NetError`], naming the field when the error points at one.
fn syntax_error(text: &str, file: &Path, error: &toml::de::Error) -> NetError {
    let field = error.span().and_then(|span| field_at(text, span.start));
    let reason = error.to_string().trim_end().to_string();
    match field {
        Some(field) => NetError::ConfigField { file: file.to_path_buf(), field, reason },
        None => NetError::ConfigSyntax { file: file.to_path_buf(), reason },
    }
}

/// The dotted name of the `key = value` line holding byte `offset` of `text`, if any.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_at_names_the_key_and_table() {
        let text = "ca = \"x\"\n[server0]\naddress = 5\n";
        let offset = text.find('5').unwrap();
        assert_eq!(field_at(text, offset).as_deref(), Some("server0.address"));
        assert_eq!(field_at(text, 2).as_deref(), Some("ca"));
    }

    #[test]
    fn addresses_need_host_and_port() {
        assert!(check_address("127.0.0.1:7000").is_ok());
        assert!(check_address("[::1]:7000").is_ok());
        assert!(check_address("server0.example.org:7000").is_ok());
        assert!(check_address("127.0.0.1").is_err());
        assert!(check_address(":7000").is_err());
        assert!(check_address("host:99999").is_err());
    }
}
