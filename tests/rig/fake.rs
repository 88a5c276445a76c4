//! A fake Redis server for protocol cases no real server produces: a script decides, per
//! command received, what bytes go back (replies past every limit, garbage, a reply trickled a
//! byte at a time, a closed socket). It serves any number of connections on a loopback port,
//! each on its own thread, until dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the fake server does with one command.
pub enum Answer {
    /// Send these bytes.
    Bytes(Vec<u8>),
    /// Send these bytes one at a time, `every` apart (a slow or stalling server).
    Trickle(Vec<u8>, Duration),
    /// Send these bytes forever, as fast as the client takes them.
    Endless(Vec<u8>),
    /// Close the connection.
    Close,
}

/// The script: the command's arguments (name first) to the answer.
pub type Script = Arc<dyn Fn(&[Vec<u8>]) -> Answer + Send + Sync>;

/// A running fake server; stops accepting when dropped.
pub struct FakeServer {
    /// Its loopback port.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Serves `script` on a free loopback port.
    pub fn start(script: impl Fn(&[Vec<u8>]) -> Answer + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Script = Arc::new(script);
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let (script, stopped) = (script.clone(), stopped.clone());
                        std::thread::spawn(move || serve(socket, script, stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer { port, stop }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers every command on one connection by the script.
fn serve(mut socket: TcpStream, script: Script, stop: Arc<AtomicBool>) {
    socket.set_nodelay(true).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        while let Some((command, used)) = parse_command(&buf) {
            buf.drain(..used);
            let sent = match script(&command) {
                Answer::Bytes(b) => socket.write_all(&b),
                Answer::Trickle(b, every) => b.iter().try_for_each(|byte| {
                    std::thread::sleep(every);
                    socket.write_all(&[*byte])
                }),
                Answer::Endless(b) => loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = socket.write_all(&b) {
                        break Err(e);
                    }
                },
                Answer::Close => return,
            };
            if sent.is_err() {
                return;
            }
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One RESP command (an array of bulk strings) off the front of `buf`, and the bytes it took.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    let line = |at: usize| -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    };
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (count, mut at) = line(0)?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = line(at)?;
        if buf.len() < start + len + 2 {
            return None;
        }
        args.push(buf[start..start + len].to_vec());
        at = start + len + 2;
    }
    Some((args, at))
}

/// The name of a command, upper case.
pub fn name(command: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&command[0]).to_uppercase()
}

/// A RESP bulk string.
pub fn bulk(s: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
    out
}

impl FakeServer {
    /// A proxy in front of the real server on `real_port`: every command is forwarded over one
    /// shared connection (so only db 0 makes sense) and `tweak` may change the reply first,
    /// e.g. make SCAN return a key twice as a real server does while its table is resized.
    pub fn proxy(
        real_port: u16,
        tweak: impl Fn(&[Vec<u8>], redis::Value) -> redis::Value + Send + Sync + 'static,
    ) -> FakeServer {
        let client = redis::Client::open(format!("redis://127.0.0.1:{real_port}")).expect("url");
        let conn =
            std::sync::Mutex::new(client.get_connection().expect("connect to the real server"));
        FakeServer::start(move |command| {
            let mut cmd = redis::cmd(&name(command));
            for arg in &command[1..] {
                cmd.arg(arg);
            }
            let reply = match cmd.query::<redis::Value>(&mut *conn.lock().expect("conn")) {
                Ok(v) => tweak(command, v),
                Err(e) => {
                    return Answer::Bytes(
                        format!("-{}\r\n", e.to_string().replace(['\r', '\n'], " ")).into_bytes(),
                    )
                }
            };
            Answer::Bytes(encode(&reply))
        })
    }
}

/// A reply in RESP2.
pub fn encode(value: &redis::Value) -> Vec<u8> {
    use redis::Value as V;
    match value {
        V::Nil => b"$-1\r\n".to_vec(),
        V::Int(n) => format!(":{n}\r\n").into_bytes(),
        V::BulkString(b) => bulk(b),
        V::SimpleString(s) => format!("+{s}\r\n").into_bytes(),
        V::Okay => b"+OK\r\n".to_vec(),
        V::Array(items) | V::Set(items) => {
            let mut out = format!("*{}\r\n", items.len()).into_bytes();
            items.iter().for_each(|i| out.extend(encode(i)));
            out
        }
        other => panic!("the proxy does not encode {other:?}"),
    }
}
