//! TLS for every Cairn listener and client, reloadable without a restart.
//!
//! One [`TlsContext`] holds what a process needs: the trusted CA bundle
//! (any number of certificates, so a CA is rotated by overlapping bundles),
//! an optional certificate chain and key, and optional CRLs. It is loaded
//! from files and **validated as a whole before use** (the key matches the
//! certificate, the chain leads to the bundle, the certificate is valid
//! now); a reload that fails validation keeps the previous material and
//! counts a failure. Servers take a fresh [`rustls::ServerConfig`] on every
//! accepted connection ([`TlsContext::incoming`]) and clients a fresh
//! [`rustls::ClientConfig`] on every connect ([`TlsConnector`]), so new
//! handshakes use new material while open connections keep theirs.
//!
//! Node identities travel in the certificate as a SAN URI
//! (`cairn://<cluster>/node/<id>`, see [`NodeIdentity`]); the peer API
//! accepts only those.

#[cfg(feature = "authority")]
pub mod authority;
mod bundle;
mod connector;
mod error;
mod identity;
mod incoming;
mod metrics;
mod watch;

use std::sync::{Arc, RwLock};

pub use bundle::{Bundle, TlsPaths};
pub use connector::TlsConnector;
pub use error::TlsError;
pub use identity::{CertIdentity, NodeIdentity};
pub use incoming::{ConnInfo, HandshakeFailure, TlsConn, TlsIncoming};
pub use metrics::TlsMetrics;
pub use watch::ReloadOutcome;

/// The crypto provider of the workspace (aws-lc-rs), for every TLS config.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process-wide default provider, for libraries that
/// build their own rustls configs (kube, the OTLP exporter). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What a listener speaks inside TLS, advertised by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// gRPC: HTTP/2 only.
    H2,
    /// The HTTP gateway and metrics: HTTP/1.1.
    Http1,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        }
    }

    /// The metrics label of a listener speaking this.
    pub fn listener(self) -> &'static str {
        match self {
            Alpn::H2 => "grpc",
            Alpn::Http1 => "http",
        }
    }
}

/// The configs built from one validated [`Bundle`].
struct Configs {
    bundle: Bundle,
    h2_server: Option<Arc<rustls::ServerConfig>>,
    http1_server: Option<Arc<rustls::ServerConfig>>,
    client: Arc<rustls::ClientConfig>,
}

/// The TLS material of a process, swapped atomically on reload.
pub struct TlsContext {
    paths: TlsPaths,
    metrics: TlsMetrics,
    current: RwLock<Arc<Configs>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Loads and validates the files named by `paths`.
    ///
    /// # Errors
    /// A missing or unreadable file, a PEM without what it should hold, a key
    /// that does not match the certificate, a certificate that does not
    /// chain to the CA bundle or is not valid now.
    pub fn load(paths: TlsPaths, metrics: TlsMetrics) -> Result<Arc<Self>, TlsError> {
        let configs = build(Bundle::load(&paths, std::time::SystemTime::now())?)?;
        metrics.observe_bundle(&configs.bundle);
        Ok(Arc::new(Self {
            paths,
            metrics,
            current: RwLock::new(Arc::new(configs)),
        }))
    }

    /// The files this context is loaded from.
    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// The metrics this context updates.
    pub fn metrics(&self) -> &TlsMetrics {
        &self.metrics
    }

    fn configs(&self) -> Arc<Configs> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The bundle in use.
    pub fn bundle(&self) -> Bundle {
        self.configs().bundle.clone()
    }

    /// The server config for a listener speaking `alpn`.
    ///
    /// # Errors
    /// [`TlsError::NoCertificate`] when the context has no certificate
    /// (a client-only context).
    pub fn server_config(&self, alpn: Alpn) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let c = self.configs();
        match alpn {
            Alpn::H2 => c.h2_server.clone(),
            Alpn::Http1 => c.http1_server.clone(),
        }
        .ok_or(TlsError::NoCertificate)
    }

    /// The client config (HTTP/2), presenting the certificate if there is one.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.configs().client.clone()
    }

    /// A connector for tonic channels using this context.
    pub fn connector(self: &Arc<Self>) -> TlsConnector {
        TlsConnector::new(self.clone())
    }

    fn swap(&self, bundle: Bundle) -> Result<(), TlsError> {
        let configs = build(bundle)?;
        self.metrics.observe_bundle(&configs.bundle);
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(configs),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(configs),
        }
        Ok(())
    }
}

fn build(bundle: Bundle) -> Result<Configs, TlsError> {
    let provider = provider();
    let versions = rustls::DEFAULT_VERSIONS;
    let verifier = {
        let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
            bundle.roots.clone(),
            provider.clone(),
        )
        .with_crls(bundle.crls.iter().cloned())
        // A client without a certificate may still authenticate by token;
        // the peer API refuses connections without a node identity.
        .allow_unauthenticated();
        b.build()
            .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?
    };
    let server = |alpn: Alpn| -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let Some(key) = bundle.certified_key() else {
            return Ok(None);
        };
        let mut c = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        c.alpn_protocols = alpn.protocols();
        Ok(Some(Arc::new(c)))
    };
    let h2_server = server(Alpn::H2)?;
    let http1_server = server(Alpn::Http1)?;
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        bundle.roots.clone(),
        provider.clone(),
    )
    .with_crls(bundle.crls.iter().cloned())
    .build()
    .map_err(|e| TlsError::Invalid(format!("server verifier: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_webpki_verifier(server_verifier);
    let mut client = match bundle.certified_key() {
        Some(key) => {
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
        None => builder.with_no_client_auth(),
    };
    client.alpn_protocols = Alpn::H2.protocols();
    Ok(Configs {
        bundle,
        h2_server,
        http1_server,
        client: Arc::new(client),
    })
}
