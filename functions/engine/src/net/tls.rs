//! TLS settings turned into a rustls client configuration: the CAs that verify the server
//! (a pinned file or PEM, or the system's roots), a client certificate, or `--insecure`; and
//! the socket a connection reads and writes, plain or TLS.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::endpoint::TlsSettings;

/// A server connection's socket, plain or TLS.
pub(super) enum Stream {
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

pub(super) fn tls_config(tls: &TlsSettings) -> std::result::Result<rustls::ClientConfig, String> {
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
