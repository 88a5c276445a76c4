//! AWS stand-ins for the tests: moto's API emulator (`moto_server`, PyPI `moto[server]`) on a free
//! loopback port, for Secrets Manager, ElastiCache replication groups and snapshots, and Step
//! Functions callbacks; and `cargo lambda watch`, the Lambda runtime API that runs the step
//! binaries locally.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running `moto_server`; killed when dropped.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Starts `moto_server` (or `FERRY_MOTO_SERVER`) and waits until it answers HTTP.
    pub fn start() -> Moto {
        let binary = std::env::var("FERRY_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {binary}: {e}; run scripts/setup.sh (pip install 'moto[server]')"
                )
            });
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.answers() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let request = "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut head = [0u8; 12];
        s.write_all(request.as_bytes()).is_ok()
            && s.read(&mut head)
                .is_ok_and(|n| n > 0 && head.starts_with(b"HTTP/"))
    }

    /// Makes moto run state machine executions (its Step Functions parser: SQS and task-token
    /// integrations, Choice, Pass, Fail), instead of only recording them.
    pub fn run_state_machines(&self) {
        let body = r#"{"stepfunctions": {"execute_state_machine": true}}"#;
        let request = format!(
            "POST /moto-api/config HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("moto answers");
        s.write_all(request.as_bytes()).expect("send config");
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok();
        assert!(
            reply.starts_with("HTTP/1.") && reply.contains(" 20"),
            "moto config: {reply}"
        );
    }

    /// The endpoint URL for AWS SDK clients.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `cargo lambda watch` (PyPI `cargo-lambda`) serving the workspace's Lambda binaries on a free
/// loopback port, with `env` set for them; stopped with its functions when dropped.
pub struct LambdaWatch {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl LambdaWatch {
    /// Builds the step binaries (so no invocation waits for a compile), starts it from the
    /// workspace root and waits until it accepts connections.
    pub fn start(env: &[(&str, String)]) -> LambdaWatch {
        use std::os::unix::process::CommandExt;
        let built = Command::new("cargo")
            .args(["build", "-q", "-p", "ferry-steps", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(built.success(), "building the step binaries failed");
        let port = free_port();
        let mut command = Command::new("cargo");
        command
            .args([
                "lambda",
                "watch",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run cargo lambda watch: {e}; run scripts/setup.sh (pip install cargo-lambda)")
        });
        let mut watch = LambdaWatch { child, port };
        let deadline = Instant::now() + Duration::from_secs(300);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = watch.child.try_wait() {
                panic!("cargo lambda watch exited with {status}; is cargo-lambda installed? (scripts/setup.sh)");
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen within 300s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        watch
    }

    /// The base URL of its Lambda invoke API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // The functions it started run in their own sessions: find them by parent, then stop
        // them and it (it waits for its functions on SIGTERM, so SIGKILL).
        let watch = self.child.id().to_string();
        let children: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().into_owned();
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let ppid = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .to_string();
                (ppid == watch).then_some(pid)
            })
            .collect();
        for pid in children.iter().chain(std::iter::once(&watch)) {
            Command::new("kill").args(["-KILL", pid]).status().ok();
        }
        self.child.wait().ok();
    }
}
