//! An HTTP proxy in front of an AWS emulator that fails requests on demand, the way AWS does
//! under load: `500 InternalFailure` (the JSON protocols' error shape, which SQS and Step
//! Functions both speak) for every request while a failure window is open. The SDK retries a
//! few times by itself; a window longer than its retries shows whether the caller survives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running proxy; stops accepting when dropped.
pub struct FaultProxy {
    /// Its loopback port.
    pub port: u16,
    failing_until: Arc<Mutex<Option<Instant>>>,
    /// Requests answered with an injected failure so far.
    pub failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxies to the HTTP server on `upstream` (a loopback port).
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let failing_until = Arc::new(Mutex::new(None));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (until, count, stopped) = (failing_until.clone(), failed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (until, count) = (until.clone(), count.clone());
                        std::thread::spawn(move || serve(client, upstream, until, count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            failing_until,
            failed,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails every request for `how_long` from now.
    pub fn fail_for(&self, how_long: Duration) {
        *self.failing_until.lock().expect("window") = Some(Instant::now() + how_long);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One HTTP/1.1 message: head and body (by Content-Length).
fn read_message(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    head.extend(body);
    Some(head)
}

fn serve(
    client: TcpStream,
    upstream: u16,
    until: Arc<Mutex<Option<Instant>>>,
    failed: Arc<AtomicU64>,
) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut writer = client;
    while let Some(request) = read_message(&mut reader) {
        let failing = until
            .lock()
            .expect("window")
            .is_some_and(|t| Instant::now() < t);
        let response = if failing {
            failed.fetch_add(1, Ordering::Relaxed);
            let body = r#"{"__type":"InternalFailure","message":"injected by the test"}"#;
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-ErrorType: InternalFailure\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        } else {
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            if up.write_all(&request).is_err() {
                return;
            }
            let mut up_reader = BufReader::new(up);
            match read_message(&mut up_reader) {
                Some(r) => r,
                None => return,
            }
        };
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}
