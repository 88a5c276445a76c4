//! A connection to one Redis server: TCP or TLS, logged in, with a database selected, able to
//! pipeline any number of commands (queue, send once, read the replies in order).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, Role, TlsSettings};
use crate::error::{Error, Result};
use crate::resp::{self, Reply};

/// How long to wait for a TCP connect plus TLS handshake and login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take; a plain-text server never answers one.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one reply may take before the connection is declared lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

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

/// A logged-in connection. Commands are queued with [`Conn::queue`], sent with
/// [`Conn::send`], and their replies read in order with [`Conn::recv`].
pub struct Conn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes the read buffer must reach before parsing is retried after an incomplete frame,
    /// so a reply of many megabytes is not re-scanned on every small read.
    parse_when: usize,
    addr: String,
    role: Role,
    db: u32,
}

impl Conn {
    /// Connects, logs in and selects the endpoint's database.
    pub async fn connect(ep: &Endpoint) -> Result<Conn> {
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

    async fn connect_inner(ep: &Endpoint) -> Result<Conn> {
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
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
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
        if let Some(password) = &ep.password {
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
                let message = String::from_utf8_lossy(&e).into_owned();
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

    /// `host:port` of the server, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The database currently selected.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// Selects `db` if it is not already selected (queued and awaited).
    pub async fn select(&mut self, db: u32) -> Result<()> {
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

    /// Appends a command to the pipeline; nothing is sent until [`Conn::send`].
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.wbuf, args);
    }

    /// The write buffer, for hot paths that encode commands from parts (see [`resp::encode_bulk`]).
    pub fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Sends everything queued.
    pub async fn send(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        result.map_err(|e| self.lost(e))?;
        self.stream.flush().await.map_err(|e| self.lost(e))
    }

    /// Reads the next reply. Error replies are returned as [`Reply::Error`], not as `Err`,
    /// so a pipeline can look at each command's outcome.
    pub async fn recv(&mut self) -> Result<Reply> {
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
            self.fill().await?;
        }
    }

    /// Like [`Conn::recv`], but a bulk string longer than `limit` bytes is read off the socket
    /// and dropped as it arrives, returning [`Reply::Skipped`]: memory stays bounded whatever
    /// the size of a DUMP payload, and the caller copies that key another way.
    pub async fn recv_limited(&mut self, limit: usize) -> Result<Reply> {
        loop {
            match resp::peek_head(&self.rbuf).map_err(|e| self.protocol(e))? {
                resp::Head::Incomplete => self.fill().await?,
                resp::Head::Bulk { len, header } if len > limit => {
                    let mut remaining = header + len + 2;
                    loop {
                        let take = remaining.min(self.rbuf.len());
                        bytes::Buf::advance(&mut self.rbuf, take);
                        remaining -= take;
                        if remaining == 0 {
                            break;
                        }
                        self.fill().await?;
                    }
                    self.parse_when = 0;
                    return Ok(Reply::Skipped(len as u64));
                }
                _ => return self.recv().await,
            }
        }
    }

    /// Reads once from the socket into the read buffer.
    async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf
                .reserve(self.rbuf.len().clamp(64 * 1024, 8 * 1024 * 1024));
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let read = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| Error::ConnectionLost {
                addr: self.addr.clone(),
                reason: format!("no reply within {}s", REPLY_TIMEOUT.as_secs()),
            })?
            .map_err(|e| self.lost(e))?;
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
    if tls.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCert))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut pem = String::new();
    if let Some(path) = &tls.ca_file {
        pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    }
    if let Some(extra) = &tls.ca_pem {
        pem.push('\n');
        pem.push_str(extra);
    }
    if pem.trim().is_empty() {
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
    }
    if roots.is_empty() {
        return Err("no CA certificates to verify the server with".into());
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
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
