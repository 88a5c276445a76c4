//! moto's AWS API emulator (`moto_server`, PyPI `moto[server]`) on a free loopback port, for
//! Secrets Manager, ElastiCache replication groups and snapshots, and Step Functions callbacks.

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
