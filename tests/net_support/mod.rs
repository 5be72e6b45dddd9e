//! Helpers of the `net_*` tests: real `pond` processes on 127.0.0.1, each killed and reaped when
//! its handle drops (so no test leaves a process or a zombie behind), with output captured.
#![allow(dead_code)]

use pond_core::{Ring, RingTensor, Z64};
use pond_net::{free_loopback_port_set, reconstruct, write_local_config_with_client, LocalServed, PartiesConfig};
use pond_protocol::Role;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `pond` binary under test.
pub fn pond() -> &'static str {
    env!("CARGO_BIN_EXE_pond")
}

/// Certificates for the three parties and the client, and a `parties.toml` on free loopback
/// ports with short timeouts, in `dir`. Returns the file and the config.
pub fn local_setup(dir: &Path) -> (PathBuf, PartiesConfig) {
    let ports = free_loopback_port_set::<5>().expect("free loopback ports");
    let mut config = write_local_config_with_client(dir, ports).expect("write local config");
    config.connect_timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(2);
    config.receive_timeout = Duration::from_secs(8);
    let path = dir.join("parties.toml");
    config.save(&path).expect("save config");
    let loaded = PartiesConfig::load(&path).expect("load config");
    (path, loaded)
}

/// A child process that is killed and waited for when dropped; stdout and stderr are collected
/// by background threads.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().expect("output lock").push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
}

impl Proc {
    /// Starts `pond` with `args`.
    pub fn start(name: &str, args: &[String]) -> Proc {
        Proc::start_with_env(name, args, &[])
    }

    /// Starts `pond` with `args` and the environment variables `env` added to the test's own.
    pub fn start_with_env(name: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(pond())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (stdout, stderr) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
        collect(child.stdout.take().expect("piped stdout"), stdout.clone());
        collect(child.stderr.take().expect("piped stderr"), stderr.clone());
        Proc { name: name.to_string(), child, stdout, stderr, status: None }
    }

    /// Starts `pond party` as `role` with `config`, then `extra` (seed, job, ...).
    pub fn party(config: &Path, role: Role, extra: &[&str]) -> Proc {
        Proc::party_with_env(config, role, extra, &[])
    }

    /// [`Proc::party`] with the environment variables `env` added.
    pub fn party_with_env(config: &Path, role: Role, extra: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut args: Vec<String> = ["party", "--config", &config.to_string_lossy(), "--role", &role.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::start_with_env(&role.to_string(), &args, env)
    }

    /// Starts `pond client` with `config`, then `extra`.
    pub fn client(config: &Path, extra: &[&str]) -> Proc {
        let mut args: Vec<String> =
            ["client", "--config", &config.to_string_lossy()].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::start("client", &args)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("output lock").clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("output lock").clone()
    }

    /// Waits up to `limit` for the process to exit; kills it and panics if it does not.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                // Let the output threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a successful exit within `limit`, with the output in the panic message if not.
    pub fn expect_success(&mut self, limit: Duration) {
        let status = self.wait(limit);
        assert!(
            status.success(),
            "{} failed ({status})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits for a failing exit within `limit`; returns stderr.
    pub fn expect_failure(&mut self, limit: Duration) -> String {
        let status = self.wait(limit);
        assert!(
            !status.success(),
            "{} should have failed\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout(),
            self.stderr()
        );
        self.stderr()
    }

    /// Complete lines written to stdout so far.
    pub fn stdout_lines(&self) -> usize {
        self.stdout.lock().expect("output lock").bytes().filter(|&b| b == b'\n').count()
    }

    /// Waits until stdout has at least `lines` complete lines (or panics after `limit`).
    pub fn wait_for_lines(&self, lines: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.stdout_lines() < lines {
            assert!(
                Instant::now() < deadline,
                "{} printed fewer than {lines} lines within {limit:?}\nstderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the three parties with `config` and the same `extra` arguments.
pub fn start_parties(config: &Path, extra: &[&str]) -> [Proc; 3] {
    Role::ALL.map(|role| Proc::party(config, role, extra))
}

/// The `field` of every JSON line of `stdout`.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// The hex of `bytes` (as `pond client --json` prints outputs).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the client of a local run ([`pond_net::serve_local`]) reconstructs: per request, the
/// first output (in `Z64`) in wire encoding.
pub fn client_outputs(served: &[LocalServed; 3]) -> Vec<Vec<u8>> {
    let (responses0, responses1) = (&served[0].1, &served[1].1);
    assert!(served[Role::Cp.index()].1.is_empty(), "cp answers no client");
    assert_eq!(responses0.len(), responses1.len());
    responses0
        .iter()
        .zip(responses1)
        .map(|((i0, o0), (i1, o1))| {
            assert_eq!(i0, i1);
            let y: <Z64 as Ring>::Tensor = reconstruct(&o0[0], &o1[0]).expect("reconstruct");
            y.to_bytes()
        })
        .collect()
}

/// A fresh directory under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/pond-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("pond-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temporary directory");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
