//! One logged-in socket to one server, pipelined: TCP or TLS, the login, the database, the
//! read and write buffers, and the deadlines that keep a slow or hostile server from holding
//! ferry. The connection (`net::conn`, which builds on this module) routes over one or many.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, NodeAddr, Role};
use crate::error::{Error, Result};
use crate::net::resp::{self, Reply};
use crate::net::tls::{tls_config, Stream};

/// How long to wait for a TCP connect plus TLS handshake and login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take; a plain-text server never answers one.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a reply may take to start arriving, by default (see [`set_reply_timeout`]).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The slowest a reply may trickle in once started: each MiB received buys one more second past
/// the reply timeout, so a big reply on a slow link completes and a server that sends one byte
/// now and then (broken, or hostile) does not hold ferry forever.
const MIN_REPLY_RATE: u64 = 1 << 20;

static REPLY_TIMEOUT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_REPLY_TIMEOUT.as_millis() as u64);

/// Sets how long any reply may take to arrive (whole, for replies under 1 MiB) before the
/// connection is declared lost, for every connection of the process.
pub fn set_reply_timeout(timeout: Duration) {
    REPLY_TIMEOUT_MS.store(
        timeout.as_millis().max(1) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn reply_timeout() -> Duration {
    Duration::from_millis(REPLY_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// The deadline of one reply: the reply timeout from when ferry first has to wait for its
/// bytes, plus a second per MiB that has arrived. The clock is read only then: most replies of a
/// pipeline are already buffered, and reading it for each would cost the copy's hot path.
#[derive(Default)]
pub(super) struct ReplyClock {
    started: Option<tokio::time::Instant>,
    received: u64,
}

impl ReplyClock {
    fn start() -> ReplyClock {
        ReplyClock::default()
    }

    /// When the wait started (now, on the first call).
    fn started(&mut self) -> tokio::time::Instant {
        *self.started.get_or_insert_with(tokio::time::Instant::now)
    }

    fn deadline(&mut self) -> tokio::time::Instant {
        self.started() + reply_timeout() + Duration::from_secs(self.received / MIN_REPLY_RATE)
    }
}

/// One logged-in socket to one server, pipelined.
pub(super) struct Wire {
    pub(super) stream: Stream,
    pub(super) rbuf: BytesMut,
    /// Commands queued; with `retain`, also those sent whose replies are not read yet.
    pub(super) wbuf: BytesMut,
    /// Keep sent commands until their replies are read, so a redirected one can be sent again.
    pub(super) retain: bool,
    /// With `retain`: how many bytes of `wbuf` are already sent.
    pub(super) flushed: usize,
    /// With `retain`: the stream offset of `wbuf[0]` (bytes released before it).
    pub(super) released: u64,
    /// Bytes the read buffer must reach before parsing is retried after an incomplete frame,
    /// so a reply of many megabytes is not re-scanned on every small read.
    pub(super) parse_when: usize,
    pub(super) node: NodeAddr,
    pub(super) role: Role,
    pub(super) db: u32,
}

impl Wire {
    /// Connects, logs in and selects the endpoint's database.
    pub(super) async fn connect(ep: &Endpoint) -> Result<Wire> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(ep))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unreachable {
                    role: ep.role,
                    addr: ep.addr(),
                    reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                })
            })
    }

    pub(super) async fn connect_inner(ep: &Endpoint) -> Result<Wire> {
        let addr = ep.addr();
        let tcp = TcpStream::connect((ep.node.host.as_str(), ep.node.port))
            .await
            .map_err(|e| Error::Unreachable {
                role: ep.role,
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        tcp.set_nodelay(true).ok();
        let stream =
            match &ep.tls {
                None => Stream::Plain(tcp),
                Some(tls) => {
                    let config = tls_config(tls).map_err(|reason| Error::Tls {
                        addr: addr.clone(),
                        reason,
                    })?;
                    let name = rustls_pki_types::ServerName::try_from(ep.node.host.clone())
                        .map_err(|e| Error::Tls {
                            addr: addr.clone(),
                            reason: e.to_string(),
                        })?;
                    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, tcp));
                    let tls_stream = handshake
                        .await
                        .map_err(|_| Error::Tls {
                            addr: addr.clone(),
                            reason: format!(
                                "no TLS handshake within {}s (a plain-text port? use redis://)",
                                TLS_HANDSHAKE_TIMEOUT.as_secs()
                            ),
                        })?
                        .map_err(|e| Error::Tls {
                            addr: addr.clone(),
                            reason: e.to_string(),
                        })?;
                    Stream::Tls(Box::new(tls_stream))
                }
            };
        let mut conn = Wire {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            retain: false,
            flushed: 0,
            released: 0,
            parse_when: 0,
            node: ep.node.clone(),
            role: ep.role,
            db: 0,
        };
        conn.login(ep).await?;
        conn.select(ep.db).await?;
        Ok(conn)
    }

    pub(super) async fn login(&mut self, ep: &Endpoint) -> Result<()> {
        if let Some(password) = &ep.current_password().await? {
            match &ep.username {
                Some(user) => self.queue(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()]),
                None => self.queue(&[&b"AUTH"[..], password.expose().as_bytes()]),
            }
        } else {
            self.queue(&[&b"PING"[..]]);
        }
        self.send()
            .await
            .map_err(|e| self.unreachable_if_tls_mismatch(e))?;
        let reply = self
            .recv()
            .await
            .map_err(|e| self.unreachable_if_tls_mismatch(e))?;
        match reply {
            Reply::Error(e) => {
                let message = crate::error::server_text(&String::from_utf8_lossy(&e));
                if message.contains("max number of clients") {
                    // Not a credential problem: the server is full.
                    return Err(Error::Unreachable {
                        role: self.role,
                        addr: self.node.to_string(),
                        reason: format!("{message} (the server's maxclients is reached)"),
                    });
                }
                if crate::error::is_transient_server_error(&message) {
                    // LOADING, BUSY…: the server is up but not ready; retrying is right.
                    return Err(self.server_error(b"AUTH", &message));
                }
                Err(Error::AuthFailed {
                    addr: self.node.to_string(),
                    reason: explain_auth_error(&message),
                })
            }
            _ => Ok(()),
        }
    }

    /// A plain connection to a TLS-only port sees a closed socket or garbage at the first reply.
    pub(super) fn unreachable_if_tls_mismatch(&self, e: Error) -> Error {
        match e {
            Error::ConnectionLost { addr, reason }
            | Error::Protocol {
                addr,
                message: reason,
            } => Error::Unreachable {
                role: self.role,
                addr,
                reason: format!("{reason} (is it a TLS port? use rediss://)"),
            },
            other => other,
        }
    }

    /// Selects `db` if it is not already selected (queued and awaited).
    pub(super) async fn select(&mut self, db: u32) -> Result<()> {
        if db != self.db {
            let mut n = itoa::Buffer::new();
            let reply = self.call(&[b"SELECT", n.format(db).as_bytes()]).await;
            match reply {
                Ok(_) => self.db = db,
                Err(Error::Server { message, .. }) => {
                    return Err(Error::Incompatible(format!(
                        "{} {} has no database {db}: {message}",
                        self.role, self.node
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(super) fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.wbuf, args);
    }

    /// Bytes queued and not sent yet.
    pub(super) fn unsent(&self) -> usize {
        self.wbuf.len() - self.flushed
    }

    /// The stream offset where the next queued command starts.
    pub(super) fn end_offset(&self) -> u64 {
        self.released + self.wbuf.len() as u64
    }

    /// The bytes of a retained command sent at stream offsets `[start, end)`.
    pub(super) fn sent_command(&self, start: u64, end: u64) -> &[u8] {
        &self.wbuf[(start - self.released) as usize..(end - self.released) as usize]
    }

    /// Forgets retained commands before stream offset `end` (their replies were read).
    pub(super) fn release(&mut self, end: u64) {
        let n = (end - self.released) as usize;
        bytes::Buf::advance(&mut self.wbuf, n);
        self.flushed -= n;
        self.released = end;
    }

    pub(super) async fn send(&mut self) -> Result<()> {
        if self.unsent() == 0 {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf[self.flushed..]).await;
        if self.retain {
            self.flushed = self.wbuf.len();
        } else {
            self.wbuf.clear();
        }
        result.map_err(|e| self.lost(e))?;
        self.stream.flush().await.map_err(|e| self.lost(e))
    }

    pub(super) async fn recv(&mut self) -> Result<Reply> {
        self.recv_by(&mut ReplyClock::start()).await
    }

    pub(super) async fn recv_by(&mut self, clock: &mut ReplyClock) -> Result<Reply> {
        loop {
            if self.rbuf.len() >= self.parse_when {
                match resp::take_reply(&mut self.rbuf) {
                    Ok(Some(reply)) => {
                        self.parse_when = 0;
                        return Ok(reply);
                    }
                    Ok(None) => self.parse_when = (self.rbuf.len() * 2).max(self.rbuf.len() + 1),
                    Err(e) => return Err(self.protocol(e)),
                }
            }
            let most = resp::limits().max_reply_bytes();
            if self.rbuf.len() > most {
                return Err(self.protocol(resp::ProtocolError(format!(
                    "one reply is over {most} bytes"
                ))));
            }
            self.fill(clock).await?;
        }
    }

    pub(super) async fn recv_limited(&mut self, limit: usize) -> Result<Reply> {
        let clock = &mut ReplyClock::start();
        loop {
            match resp::peek_head(&self.rbuf).map_err(|e| self.protocol(e))? {
                resp::Head::Incomplete => self.fill(clock).await?,
                resp::Head::Bulk { len, header } if len > limit => {
                    let mut remaining = header + len + 2;
                    loop {
                        let take = remaining.min(self.rbuf.len());
                        bytes::Buf::advance(&mut self.rbuf, take);
                        remaining -= take;
                        if remaining == 0 {
                            break;
                        }
                        self.fill(clock).await?;
                    }
                    self.parse_when = 0;
                    return Ok(Reply::Skipped(len as u64));
                }
                _ => return self.recv_by(clock).await,
            }
        }
    }

    /// Reads once from the socket into the read buffer, by the reply's deadline.
    pub(super) async fn fill(&mut self, clock: &mut ReplyClock) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf
                .reserve(self.rbuf.len().clamp(64 * 1024, 8 * 1024 * 1024));
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let read = tokio::time::timeout_at(clock.deadline(), self.stream.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| Error::ConnectionLost {
                addr: self.node.to_string(),
                reason: format!(
                    "the reply did not arrive within {:.0}s",
                    (clock.deadline() - clock.started()).as_secs_f64()
                ),
            })?
            .map_err(|e| self.lost(e))?;
        clock.received += read as u64;
        if read == 0 {
            return Err(Error::ConnectionLost {
                addr: self.node.to_string(),
                reason: "server closed the connection".into(),
            });
        }
        if read < spare {
            // The socket had no more for now: the reply may be complete.
            self.parse_when = 0;
        }
        Ok(())
    }

    pub(super) fn protocol(&self, e: resp::ProtocolError) -> Error {
        Error::Protocol {
            addr: self.node.to_string(),
            message: e.0,
        }
    }

    pub(super) async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        self.queue(args);
        self.send().await?;
        match self.recv().await? {
            Reply::Error(e) => {
                Err(self.server_error(args[0].as_ref(), &String::from_utf8_lossy(&e)))
            }
            other => Ok(other),
        }
    }

    pub(super) fn server_error(&self, command: &[u8], message: &str) -> Error {
        let message = &crate::error::server_text(message);
        if message.starts_with("OOM") {
            return Error::TargetOutOfMemory {
                addr: self.node.to_string(),
                message: message.to_string(),
            };
        }
        if message.starts_with("NOPERM") || message.starts_with("NOAUTH") {
            return Error::AuthFailed {
                addr: self.node.to_string(),
                reason: message.to_string(),
            };
        }
        Error::Server {
            addr: self.node.to_string(),
            command: String::from_utf8_lossy(command).to_uppercase(),
            message: message.to_string(),
        }
    }

    pub(super) fn lost(&self, e: std::io::Error) -> Error {
        Error::ConnectionLost {
            addr: self.node.to_string(),
            reason: e.to_string(),
        }
    }
}

/// Makes an AUTH error say what the user should check, without repeating any credential.
fn explain_auth_error(message: &str) -> String {
    if message.contains("no password is set") || message.contains("without any password") {
        format!("{message} (the server has no password: drop it from the URL)")
    } else if message.starts_with("WRONGPASS") || message.contains("invalid password") {
        format!("{message} (check the user name and password)")
    } else if message.starts_with("NOAUTH") {
        format!("{message} (the server needs a password: add it to the URL or the environment)")
    } else {
        message.to_string()
    }
}
