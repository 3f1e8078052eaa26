//! The server side: accepted TCP connections become TLS connections, each
//! handshake with the material current when it starts.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::identity::CertIdentity;
use crate::{Alpn, TlsContext};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about a TLS connection: handlers read it from the
/// request's extensions (tonic's `Connected`).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The client certificate's identity, when one was presented (it has
    /// been verified against the CA bundle and the CRLs).
    pub identity: Option<CertIdentity>,
}

/// An accepted, handshaken TLS connection.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
}

impl TlsConn {
    /// What is known about the client.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// Why a handshake failed, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client's certificate has expired.
    Expired,
    /// The client's certificate is not valid yet.
    NotYetValid,
    /// The client's certificate is not from a trusted CA.
    UnknownCa,
    /// The client's certificate is revoked.
    Revoked,
    /// Any other certificate problem.
    BadCertificate,
    /// The client needed a certificate and sent none.
    NoCertificate,
    /// Not TLS, or TLS we do not speak.
    Protocol,
    /// The client did not finish in time.
    Timeout,
    /// The connection broke.
    Io,
}

impl HandshakeFailure {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownCa => "unknown_ca",
            Self::Revoked => "revoked",
            Self::BadCertificate => "bad_certificate",
            Self::NoCertificate => "no_certificate",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Io => "io",
        }
    }

    /// Classifies the error a handshake ended with.
    pub fn of(e: &std::io::Error) -> Self {
        use rustls::CertificateError as C;
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Self::Io;
        };
        match tls {
            rustls::Error::InvalidCertificate(c) => match c {
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
                C::UnknownIssuer => Self::UnknownCa,
                C::Revoked => Self::Revoked,
                _ => Self::BadCertificate,
            },
            rustls::Error::NoCertificatesPresented => Self::NoCertificate,
            _ => Self::Protocol,
        }
    }
}

/// Handshaken connections of one listener, for tonic's
/// `serve_with_incoming` (a `Stream`) or an axum listener
/// ([`TlsIncoming::next`]). Handshakes run concurrently, so a slow client
/// holds up nobody; the accept task stops when this is dropped.
pub struct TlsIncoming {
    rx: mpsc::Receiver<Result<TlsConn, std::io::Error>>,
}

impl TlsContext {
    /// Serves TLS speaking `alpn` on `listener`.
    pub fn incoming(self: &Arc<Self>, listener: TcpListener, alpn: Alpn) -> TlsIncoming {
        let (tx, rx) = mpsc::channel(64);
        let ctx = self.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = tx.closed() => return,
                };
                let (tcp, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let config = match ctx.server_config(alpn) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "no server certificate");
                        continue;
                    }
                };
                let tx = tx.clone();
                let metrics = ctx.metrics().clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let failure = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            let identity = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|leaf| CertIdentity::from_der(leaf).ok());
                            let conn = TlsConn {
                                inner: stream,
                                info: ConnInfo {
                                    remote: Some(remote),
                                    identity,
                                },
                            };
                            let _ = tx.send(Ok(conn)).await;
                            return;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, listener = alpn.listener(), "TLS handshake failed");
                            HandshakeFailure::of(&e)
                        }
                        Err(_) => HandshakeFailure::Timeout,
                    };
                    metrics.handshake_failed(alpn.listener(), failure.label());
                });
            }
        });
        TlsIncoming { rx }
    }
}

impl TlsIncoming {
    /// The next handshaken connection; `None` once the listener is gone.
    pub async fn next(&mut self) -> Option<TlsConn> {
        loop {
            match self.rx.recv().await? {
                Ok(c) => return Some(c),
                Err(_) => continue,
            }
        }
    }
}

impl futures::Stream for TlsIncoming {
    type Item = Result<TlsConn, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
