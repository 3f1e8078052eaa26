//! How channels to nodes are opened: plaintext, or TLS with the
//! configured CA bundle and (optionally) a client certificate.

use std::sync::Arc;
use std::time::Duration;

use cairn_tls::TlsContext;
use tonic::transport::{Channel, Endpoint};

use crate::endpoint;
use crate::error::{ClientError, ConnectFailure};

/// Opens channels the same way for every connection of one client.
#[derive(Clone, Default)]
pub(crate) struct Dialer {
    tls: Option<Arc<TlsContext>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    pub(crate) fn new(tls: Option<Arc<TlsContext>>) -> Self {
        Self { tls }
    }

    /// The endpoint for a user-given `HOST:PORT`, `http://` or `https://`
    /// address. `https://` needs TLS settings: without a CA bundle there is
    /// nothing to verify the server with.
    pub(crate) fn endpoint(
        &self,
        name: &str,
        connect_timeout: Duration,
    ) -> Result<Endpoint, ClientError> {
        if name.trim().starts_with("https://") && self.tls.is_none() {
            return Err(ClientError::InvalidEndpoint(format!(
                "{name:?}: https:// needs TLS settings (a CA bundle, e.g. --tls-ca)"
            )));
        }
        let uri = endpoint::normalize(name)?;
        Ok(Endpoint::from_shared(uri)
            .map_err(|e| ClientError::InvalidEndpoint(format!("{name:?}: {e}")))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true))
    }

    /// Connects now, giving up after `timeout`.
    pub(crate) async fn connect(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<Channel, ConnectFailure> {
        let connecting = async {
            match &self.tls {
                None => endpoint.connect().await,
                Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(error)) => Err(ConnectFailure::Transport(error)),
            Err(_elapsed) => Err(ConnectFailure::TimedOut(timeout)),
        }
    }

    /// A channel that connects on first use.
    pub(crate) fn lazy(&self, endpoint: &Endpoint) -> Channel {
        match &self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => endpoint.connect_with_connector_lazy(tls.connector()),
        }
    }
}
