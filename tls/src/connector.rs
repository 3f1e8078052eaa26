//! The client side: a tonic connector that dials TCP and handshakes with
//! the context's current client config.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::TlsContext;

/// Dials `host:port` of a URI over TLS, verifying the server's certificate
/// against the CA bundle for `host` (a DNS name or an IP address SAN).
/// Use with `tonic::transport::Endpoint::connect_with_connector`.
#[derive(Clone)]
pub struct TlsConnector {
    ctx: Arc<TlsContext>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    pub(crate) fn new(ctx: Arc<TlsContext>) -> Self {
        Self { ctx }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.ctx.client_config();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| format!("no host in {uri}"))?
                .to_owned();
            let port = uri.port_u16().ok_or_else(|| format!("no port in {uri}"))?;
            // A bracketed IPv6 literal is an IP SAN, not a DNS name.
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(bare.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let tcp = TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
