//! Connections: to one Redis server or to a whole cluster (routed by slot), over TCP or TLS,
//! logged in, with a database selected, able to pipeline any number of commands (queue, send
//! once, read the replies in order).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, Role, TlsSettings};
use crate::error::{Error, Result};
use crate::net::resp::{self, Reply};
use crate::net::slot;

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
struct ReplyClock {
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

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One logged-in socket to one server, pipelined.
struct Wire {
    stream: Stream,
    rbuf: BytesMut,
    /// Commands queued; with `retain`, also those sent whose replies are not read yet.
    wbuf: BytesMut,
    /// Keep sent commands until their replies are read, so a redirected one can be sent again.
    retain: bool,
    /// With `retain`: how many bytes of `wbuf` are already sent.
    flushed: usize,
    /// With `retain`: the stream offset of `wbuf[0]` (bytes released before it).
    released: u64,
    /// Bytes the read buffer must reach before parsing is retried after an incomplete frame,
    /// so a reply of many megabytes is not re-scanned on every small read.
    parse_when: usize,
    addr: String,
    role: Role,
    db: u32,
}

impl Wire {
    /// Connects, logs in and selects the endpoint's database.
    async fn connect(ep: &Endpoint) -> Result<Wire> {
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

    async fn connect_inner(ep: &Endpoint) -> Result<Wire> {
        let addr = ep.addr();
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| Error::Unreachable {
                role: ep.role,
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        tcp.set_nodelay(true).ok();
        let stream = match &ep.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let config = tls_config(tls).map_err(|reason| Error::Tls {
                    addr: addr.clone(),
                    reason,
                })?;
                let name =
                    rustls_pki_types::ServerName::try_from(ep.host.clone()).map_err(|e| {
                        Error::Tls {
                            addr: addr.clone(),
                            reason: e.to_string(),
                        }
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
            addr,
            role: ep.role,
            db: 0,
        };
        conn.login(ep).await?;
        conn.select(ep.db).await?;
        Ok(conn)
    }

    async fn login(&mut self, ep: &Endpoint) -> Result<()> {
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
                        addr: self.addr.clone(),
                        reason: format!("{message} (the server's maxclients is reached)"),
                    });
                }
                if crate::error::is_transient_server_error(&message) {
                    // LOADING, BUSY…: the server is up but not ready; retrying is right.
                    return Err(self.server_error(b"AUTH", &message));
                }
                Err(Error::AuthFailed {
                    addr: self.addr.clone(),
                    reason: explain_auth_error(&message),
                })
            }
            _ => Ok(()),
        }
    }

    /// A plain connection to a TLS-only port sees a closed socket or garbage at the first reply.
    fn unreachable_if_tls_mismatch(&self, e: Error) -> Error {
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
    async fn select(&mut self, db: u32) -> Result<()> {
        if db != self.db {
            let mut n = itoa::Buffer::new();
            let reply = self.call(&[b"SELECT", n.format(db).as_bytes()]).await;
            match reply {
                Ok(_) => self.db = db,
                Err(Error::Server { message, .. }) => {
                    return Err(Error::Incompatible(format!(
                        "{} {} has no database {db}: {message}",
                        self.role, self.addr
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.wbuf, args);
    }

    /// Bytes queued and not sent yet.
    fn unsent(&self) -> usize {
        self.wbuf.len() - self.flushed
    }

    /// The stream offset where the next queued command starts.
    fn end_offset(&self) -> u64 {
        self.released + self.wbuf.len() as u64
    }

    /// The bytes of a retained command sent at stream offsets `[start, end)`.
    fn sent_command(&self, start: u64, end: u64) -> &[u8] {
        &self.wbuf[(start - self.released) as usize..(end - self.released) as usize]
    }

    /// Forgets retained commands before stream offset `end` (their replies were read).
    fn release(&mut self, end: u64) {
        let n = (end - self.released) as usize;
        bytes::Buf::advance(&mut self.wbuf, n);
        self.flushed -= n;
        self.released = end;
    }

    async fn send(&mut self) -> Result<()> {
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

    async fn recv(&mut self) -> Result<Reply> {
        self.recv_by(&mut ReplyClock::start()).await
    }

    async fn recv_by(&mut self, clock: &mut ReplyClock) -> Result<Reply> {
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

    async fn recv_limited(&mut self, limit: usize) -> Result<Reply> {
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
    async fn fill(&mut self, clock: &mut ReplyClock) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf
                .reserve(self.rbuf.len().clamp(64 * 1024, 8 * 1024 * 1024));
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let read = tokio::time::timeout_at(clock.deadline(), self.stream.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: format!(
                    "the reply did not arrive within {:.0}s",
                    (clock.deadline() - clock.started()).as_secs_f64()
                ),
            })?
            .map_err(|e| self.lost(e))?;
        clock.received += read as u64;
        if read == 0 {
            return Err(Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: "server closed the connection".into(),
            });
        }
        if read < spare {
            // The socket had no more for now: the reply may be complete.
            self.parse_when = 0;
        }
        Ok(())
    }

    fn protocol(&self, e: resp::ProtocolError) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            message: e.0,
        }
    }

    async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        self.queue(args);
        self.send().await?;
        match self.recv().await? {
            Reply::Error(e) => {
                Err(self.server_error(args[0].as_ref(), &String::from_utf8_lossy(&e)))
            }
            other => Ok(other),
        }
    }

    fn server_error(&self, command: &[u8], message: &str) -> Error {
        let message = &crate::error::server_text(message);
        if message.starts_with("OOM") {
            return Error::TargetOutOfMemory {
                addr: self.addr.clone(),
                message: message.to_string(),
            };
        }
        if message.starts_with("NOPERM") || message.starts_with("NOAUTH") {
            return Error::AuthFailed {
                addr: self.addr.clone(),
                reason: message.to_string(),
            };
        }
        Error::Server {
            addr: self.addr.clone(),
            command: String::from_utf8_lossy(command).to_uppercase(),
            message: message.to_string(),
        }
    }

    fn lost(&self, e: std::io::Error) -> Error {
        Error::ConnectionLost {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }
}

/// A logged-in connection to a keyspace, able to pipeline any number of commands: queue them,
/// send once, read the replies in order. Made by [`Conn::connect`] it talks to one server; by
/// [`Conn::keyspace`] to a whole cluster too, each command sent to the primary that owns its
/// key's slot, and a `MOVED` or `ASK` reply followed transparently.
pub struct Conn {
    /// The one server, or one socket per cluster primary.
    wires: Vec<Wire>,
    /// Slot routing, for a cluster.
    routes: Option<Box<Routes>>,
    /// When a connection logged in with a changing password (IAM) should be replaced.
    renew_at: Option<std::time::Instant>,
}

/// How a cluster connection finds the node of each command, and the commands awaiting replies.
struct Routes {
    /// Credentials and TLS for nodes found later (redirects).
    base: Endpoint,
    /// The wire of each slot.
    slot_wire: Vec<u16>,
    /// Per command sent, in order: its wire and its bytes' stream offsets there.
    pending: VecDeque<Sent>,
    /// The wire a keyless command (MULTI, EXEC) goes to: the last keyed command's.
    sticky: usize,
    /// A command being encoded directly into a wire's buffer: its wire and start offset.
    open: Option<(usize, u64)>,
    /// Connections for re-sending redirected commands, by `host:port`.
    side: Vec<(String, Wire)>,
}

struct Sent {
    wire: usize,
    start: u64,
    end: u64,
}

/// How many redirects one command may follow before the topology is declared unstable. From
/// the second hop on ferry pauses (10 ms, doubling, at most 200 ms: under 1 s in all): while a
/// slot changes owner, nodes may send a command back and forth until their configs converge.
const MAX_REDIRECTS: usize = 8;

impl Conn {
    /// Connects to the one server `ep` names, logs in and selects its database.
    pub async fn connect(ep: &Endpoint) -> Result<Conn> {
        Ok(Conn {
            wires: vec![Wire::connect(ep).await?],
            routes: None,
            renew_at: renew_at(ep),
        })
    }

    /// A connection routed by slot over `nodes` (a cluster's primaries, or replicas of them
    /// in READONLY mode), discovered from `base` ([`Conn::keyspace`] in `cluster`).
    pub(crate) async fn routed(base: &Endpoint, nodes: Vec<RoutedNode>) -> Result<Conn> {
        let mut wires = Vec::with_capacity(nodes.len());
        let mut slot_wire = vec![0u16; slot::SLOTS];
        for (i, node) in nodes.iter().enumerate() {
            let mut wire = Wire::connect(&node.endpoint).await?;
            if node.replica {
                wire.call(&["READONLY"]).await?;
            }
            wire.retain = true;
            wires.push(wire);
            for &(a, b) in &node.slots {
                slot_wire[a as usize..=b as usize].fill(i as u16);
            }
        }
        if wires.is_empty() {
            return Err(Error::Protocol {
                addr: base.addr(),
                message: "the cluster has no primary serving slots".into(),
            });
        }
        Ok(Conn {
            wires,
            renew_at: renew_at(base),
            routes: Some(Box::new(Routes {
                base: base.clone(),
                slot_wire,
                pending: VecDeque::new(),
                sticky: 0,
                open: None,
                side: Vec::new(),
            })),
        })
    }

    /// When this connection must be renewed (see [`Conn::due_for_renewal`]).
    pub fn renew_at(&self) -> Option<std::time::Instant> {
        self.renew_at
    }

    /// Whether this connection has lived as long as its endpoint's changing password allows
    /// (IAM auth): a long-lived user replaces it with a new one at a quiet moment.
    pub fn due_for_renewal(&self) -> bool {
        self.renew_at
            .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// Whether commands are routed over a cluster's primaries.
    pub fn is_cluster(&self) -> bool {
        self.routes.is_some()
    }

    /// `host:port` of the server (a cluster's first primary), for messages.
    pub fn addr(&self) -> &str {
        &self.wires[0].addr
    }

    /// The database currently selected.
    pub fn db(&self) -> u32 {
        self.wires[0].db
    }

    /// Selects `db` if it is not already selected (queued and awaited). On a cluster, on every
    /// node (Valkey 9+ keeps numbered databases in cluster mode; other clusters refuse any but
    /// db 0), and on nodes connected later too.
    pub async fn select(&mut self, db: u32) -> Result<()> {
        let Some(routes) = self.routes.as_deref_mut() else {
            return self.wires[0].select(db).await;
        };
        let wires = self
            .wires
            .iter_mut()
            .chain(routes.side.iter_mut().map(|(_, w)| w));
        for wire in wires {
            wire.select(db).await.map_err(|e| match e {
                Error::Incompatible(m) => Error::Incompatible(format!(
                    "{m} (a cluster has only db 0 unless it is Valkey 9+ with cluster-databases \
                     set; map other dbs with --db-map)"
                )),
                other => other,
            })?;
        }
        routes.base.db = db;
        Ok(())
    }

    /// Appends a command to the pipeline; nothing is sent until [`Conn::send`].
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let Some(routes) = self.routes.as_deref_mut() else {
            return self.wires[0].queue(args);
        };
        let wire = routes.wire_of(slot::command_key(args));
        routes.close_open(&self.wires);
        let start = self.wires[wire].end_offset();
        self.wires[wire].queue(args);
        let end = self.wires[wire].end_offset();
        routes.pending.push_back(Sent { wire, start, end });
    }

    /// The write buffer for one command about `key`, for hot paths that encode a command from
    /// parts (see [`resp::encode_bulk`]); encode exactly one command before the next call.
    pub fn wbuf_for(&mut self, key: &[u8]) -> &mut BytesMut {
        let Some(routes) = self.routes.as_deref_mut() else {
            return &mut self.wires[0].wbuf;
        };
        let wire = routes.wire_of(Some(key));
        routes.close_open(&self.wires);
        routes.open = Some((wire, self.wires[wire].end_offset()));
        &mut self.wires[wire].wbuf
    }

    /// Sends keyless commands that follow (MULTI, EXEC) to `key`'s node.
    pub fn route_to(&mut self, key: &[u8]) {
        if let Some(routes) = self.routes.as_deref_mut() {
            routes.sticky = routes.wire_of(Some(key));
        }
    }

    /// Bytes queued and not sent yet.
    pub fn unsent(&self) -> usize {
        self.wires.iter().map(Wire::unsent).sum()
    }

    /// Sends everything queued.
    pub async fn send(&mut self) -> Result<()> {
        if let Some(routes) = self.routes.as_deref_mut() {
            routes.close_open(&self.wires);
        }
        for wire in &mut self.wires {
            wire.send().await?;
        }
        Ok(())
    }

    /// Reads the next reply. Error replies are returned as [`Reply::Error`], not as `Err`,
    /// so a pipeline can look at each command's outcome.
    pub async fn recv(&mut self) -> Result<Reply> {
        match self.routes {
            None => self.wires[0].recv().await,
            Some(_) => self.recv_routed(None).await,
        }
    }

    /// Like [`Conn::recv`], but a bulk string longer than `limit` bytes is read off the socket
    /// and dropped as it arrives, returning [`Reply::Skipped`]: memory stays bounded whatever
    /// the size of a DUMP payload, and the caller copies that key another way.
    pub async fn recv_limited(&mut self, limit: usize) -> Result<Reply> {
        match self.routes {
            None => self.wires[0].recv_limited(limit).await,
            Some(_) => self.recv_routed(Some(limit)).await,
        }
    }

    /// The next reply on a cluster: from the wire its command went to, following redirects.
    async fn recv_routed(&mut self, limit: Option<usize>) -> Result<Reply> {
        let routes = self.routes.as_deref_mut().expect("a cluster");
        routes.close_open(&self.wires);
        let Some(sent) = routes.pending.pop_front() else {
            return Err(Error::Protocol {
                addr: routes.base.addr(),
                message: "a reply was awaited with no command sent".into(),
            });
        };
        let wire = &mut self.wires[sent.wire];
        let reply = match limit {
            None => wire.recv().await?,
            Some(limit) => wire.recv_limited(limit).await?,
        };
        let redirect = match &reply {
            Reply::Error(e) if e.starts_with(b"MOVED ") || e.starts_with(b"ASK ") => {
                Some((e.clone(), wire.sent_command(sent.start, sent.end).to_vec()))
            }
            _ => None,
        };
        wire.release(sent.end);
        match redirect {
            None => Ok(reply),
            Some((error, command)) => self.follow_redirects(error, command).await,
        }
    }

    /// Sends a command again where a `MOVED` or `ASK` reply points, on a side connection (the
    /// pipelined ones have replies outstanding); a `MOVED` also updates the slot's route.
    async fn follow_redirects(
        &mut self,
        mut error: bytes::Bytes,
        command: Vec<u8>,
    ) -> Result<Reply> {
        let mut chain: Vec<String> = Vec::new();
        for hop in 0..MAX_REDIRECTS {
            chain.push(crate::error::server_text(&String::from_utf8_lossy(&error)));
            if hop > 0 {
                let pause = Duration::from_millis(10 << hop.min(5)).min(Duration::from_millis(200));
                tokio::time::sleep(pause).await;
            }
            let text = String::from_utf8_lossy(&error).into_owned();
            let mut parts = text.split_whitespace();
            let (kind, slot, addr) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(slot), Some(addr)) =
                (kind, slot.and_then(|s| s.parse::<u16>().ok()), addr)
            else {
                return Ok(Reply::Error(error));
            };
            let ask = kind == "ASK";
            if !ask {
                self.reroute(slot, addr).await?;
            }
            let routes = self
                .routes
                .as_deref_mut()
                .expect("redirects only on a cluster");
            let side = routes.side_wire(addr).await?;
            if ask {
                side.queue(&[&b"ASKING"[..]]);
            }
            side.wbuf.extend_from_slice(&command);
            side.send().await?;
            if ask {
                side.recv().await?;
            }
            match side.recv().await? {
                Reply::Error(e) if e.starts_with(b"MOVED ") || e.starts_with(b"ASK ") => error = e,
                reply => return Ok(reply),
            }
        }
        Err(Error::ConnectionLost {
            addr: self.addr().to_string(),
            reason: format!(
                "still redirected after {MAX_REDIRECTS} hops ({}): the cluster's slots are moving",
                chain.join(" -> ")
            ),
        })
    }

    /// Routes `slot` to the primary at `addr` from now on, connecting to it if it is new.
    async fn reroute(&mut self, slot: u16, addr: &str) -> Result<()> {
        let routes = self.routes.as_deref_mut().expect("a cluster");
        let wire = match self.wires.iter().position(|w| w.addr == addr) {
            Some(i) => i,
            None => {
                let mut wire = Wire::connect(&routes.node(addr)?).await?;
                wire.retain = true;
                self.wires.push(wire);
                self.wires.len() - 1
            }
        };
        routes.slot_wire[slot as usize] = wire as u16;
        Ok(())
    }

    /// Sends one command and returns its reply; an error reply becomes [`Error::Server`]
    /// (or a more specific kind such as out-of-memory).
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply> {
        self.queue(args);
        self.send().await?;
        let reply = self.recv().await?;
        self.check(reply, args[0].as_ref())
    }

    /// Turns an error reply into the matching [`Error`], naming the command.
    pub fn check(&self, reply: Reply, command: &[u8]) -> Result<Reply> {
        match reply {
            Reply::Error(e) => Err(self.server_error(command, &String::from_utf8_lossy(&e))),
            other => Ok(other),
        }
    }

    /// The [`Error`] for an error reply `message` to `command` on this connection.
    pub fn server_error(&self, command: &[u8], message: &str) -> Error {
        self.wires[0].server_error(command, message)
    }
}

/// A node of a routed connection: where, whether it is a replica (read in READONLY mode), and
/// the slots it serves.
pub(crate) struct RoutedNode {
    pub endpoint: Endpoint,
    pub replica: bool,
    pub slots: Vec<(u16, u16)>,
}

/// When a connection to `ep` made now must be renewed.
fn renew_at(ep: &Endpoint) -> Option<std::time::Instant> {
    ep.renew_after().map(|d| std::time::Instant::now() + d)
}

impl Routes {
    /// The wire for a command about `key`; keyless commands stay on the previous one.
    fn wire_of(&mut self, key: Option<&[u8]>) -> usize {
        if let Some(key) = key {
            self.sticky = self.slot_wire[slot::key_slot(key) as usize] as usize;
        }
        self.sticky
    }

    /// Records the command encoded through [`Conn::wbuf_for`], now that it is complete.
    fn close_open(&mut self, wires: &[Wire]) {
        if let Some((wire, start)) = self.open.take() {
            let end = wires[wire].end_offset();
            if end > start {
                self.pending.push_back(Sent { wire, start, end });
            }
        }
    }

    /// The endpoint of the node at `addr` (`host:port` from a redirect).
    fn node(&self, addr: &str) -> Result<Endpoint> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
            .ok_or_else(|| Error::Protocol {
                addr: self.base.addr(),
                message: format!("a redirect to an unreadable address {addr:?}"),
            })?;
        Ok(self.base.at(host, port))
    }

    async fn side_wire(&mut self, addr: &str) -> Result<&mut Wire> {
        let at = match self.side.iter().position(|(a, _)| a == addr) {
            Some(i) => i,
            None => {
                let wire = Wire::connect(&self.node(addr)?).await?;
                self.side.push((addr.to_string(), wire));
                self.side.len() - 1
            }
        };
        Ok(&mut self.side[at].1)
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

fn tls_config(tls: &TlsSettings) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCert))
    } else {
        builder.with_root_certificates(trusted_roots(tls)?)
    };
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            use rustls_pki_types::pem::PemObject;
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate is not valid PEM: {e}"))?;
            if chain.is_empty() {
                return Err("the client certificate file holds no certificate".into());
            }
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|_| {
                    "the client key file holds no readable private key (PEM)".to_string()
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not go together: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("a client certificate needs its key, and a key its certificate".into()),
    }
}

/// The CAs that verify the server: the CA file and PEM given, or the system's roots when none
/// is given. A CA file or bundle that holds no certificate is an error, never a silent fall
/// back to the system roots (that would defeat pinning a private CA).
fn trusted_roots(tls: &TlsSettings) -> std::result::Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut pem = String::new();
    if let Some(path) = &tls.ca_file {
        pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    }
    if let Some(extra) = tls.ca_pem.as_ref().filter(|p| !p.trim().is_empty()) {
        pem.push('\n');
        pem.push_str(extra);
    }
    let given = tls.ca_file.is_some() || tls.ca_pem.as_ref().is_some_and(|p| !p.trim().is_empty());
    if !given {
        for cert in rustls_native_certs::load_native_certs().certs {
            roots.add(cert).ok();
        }
    } else {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("CA bundle is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA certificate rejected: {e}"))?;
        }
        if roots.is_empty() {
            let from = tls
                .ca_file
                .as_ref()
                .map(|p| format!("CA file {}", p.display()))
                .unwrap_or_else(|| "the CA bundle".into());
            return Err(format!("{from} holds no certificate"));
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates to verify the server with".into());
    }
    Ok(roots)
}

mod insecure {
    //! Verification that accepts any certificate, for `--insecure` only.
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub struct AcceptAnyCert;

    impl ServerCertVerifier for AcceptAnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}
