//! Startup and shutdown of a node: opens the store, binds the gRPC, HTTP and
//! metrics listeners, runs the reaper, and on shutdown drains in-flight
//! requests before committing what is queued and closing the database.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Cli, Config, ConfigError};

use crate::api::grpc::KvGrpc;
use crate::clock::Clock;
use crate::kv::{KvStore, StoreOptions};
use crate::metrics::Metrics;
use crate::partition::ShardCount;
use crate::storage::{EngineOptions, StorageError};

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A listener could not be bound.
    #[error("binding the {what} address {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Metrics registration or reflection setup failed.
    #[error("setting up {0}")]
    Setup(String),
    /// A server task failed.
    #[error("{what} server: {message}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// What happened.
        message: String,
    },
}

/// A started node. Call [`RunningNode::shutdown`] to stop it cleanly.
pub struct RunningNode {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP gateway address.
    pub http_addr: SocketAddr,
    /// Bound metrics/health address.
    pub metrics_addr: SocketAddr,
    store: KvStore,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    grace: Duration,
    servers: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    reaper: JoinHandle<()>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

fn local(l: &TcpListener, what: &'static str, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    l.local_addr()
        .map_err(|source| ServerError::Bind { what, addr, source })
}

/// Opens the store and starts serving.
///
/// # Errors
/// Configuration, storage (including a data directory held by another
/// process) and bind errors.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<RunningNode, ServerError> {
    config.validate()?;
    let metrics = Metrics::new().map_err(|e| ServerError::Setup(format!("metrics: {e}")))?;
    let shards = ShardCount::new(config.shards).map_err(ConfigError::Invalid)?;
    // Bind first so a taken port fails fast, before the database is opened.
    let grpc_l = bind("gRPC", config.grpc_addr).await?;
    let http_l = bind("HTTP", config.http_addr).await?;
    let metrics_l = bind("metrics", config.metrics_addr).await?;
    let grpc_addr = local(&grpc_l, "gRPC", config.grpc_addr)?;
    let http_addr = local(&http_l, "HTTP", config.http_addr)?;
    let metrics_addr = local(&metrics_l, "metrics", config.metrics_addr)?;

    let opts = StoreOptions {
        engine: EngineOptions {
            data_dir: config.data_dir.clone(),
            block_cache_bytes: config.block_cache_bytes,
            row_cache_bytes: config.row_cache_bytes,
            sync: config.sync,
        },
        node_id: config.node_id,
        shards,
        limits: config.limits,
    };
    let store = {
        let metrics = metrics.clone();
        let clock = clock.clone();
        tokio::task::spawn_blocking(move || KvStore::open(opts, clock, metrics))
            .await
            .map_err(|e| ServerError::Setup(format!("store open task: {e}")))??
    };

    let (stop, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<cairn_proto::kv::v1::kv_server::KvServer<KvGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Advertise only what this process serves (the descriptor set also
        // holds the Raft transport, which a single node does not serve yet).
        .with_service_name("cairn.kv.v1.KV")
        .with_service_name("grpc.health.v1.Health")
        .build_v1()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection: {e}")))?;
    let kv = KvGrpc::new(store.clone(), metrics.clone()).into_server();
    // Nagle off: without it every small response waits for the client's
    // delayed ACK (~40 ms per request). Keepalive finds dead peers.
    let grpc_incoming = tonic::transport::server::TcpIncoming::from(grpc_l)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)));
    let grpc_stop = wait_stop(stop_rx.clone());
    let health_on_stop = health.clone();
    servers.push((
        "gRPC",
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(reflection)
                .add_service(kv)
                .serve_with_incoming_shutdown(grpc_incoming, async move {
                    grpc_stop.await;
                    health_on_stop
                        .set_not_serving::<cairn_proto::kv::v1::kv_server::KvServer<KvGrpc>>()
                        .await;
                })
                .await
                .map_err(|e| e.to_string())
        }),
    ));

    let http_router = crate::api::http::router(store.clone(), metrics.clone());
    servers.push(("HTTP", serve_http(http_l, http_router, stop_rx.clone())));
    let ops_router = ops_router(metrics.clone(), ready.clone());
    servers.push((
        "metrics",
        serve_http(metrics_l, ops_router, stop_rx.clone()),
    ));

    let reaper = tokio::spawn(crate::reaper::run(
        store.clone(),
        metrics.clone(),
        Duration::from_millis(config.ttl_reap_interval_ms.max(10)),
        stop_rx,
    ));
    ready.store(true, Ordering::SeqCst);
    tracing::info!(%grpc_addr, %http_addr, %metrics_addr, node_id = config.node_id, shards = shards.get(), sync = ?config.sync, "cairn-node serving");
    Ok(RunningNode {
        grpc_addr,
        http_addr,
        metrics_addr,
        store,
        metrics,
        ready,
        stop,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        servers,
        reaper,
    })
}

/// Serves `router` on `listener` until `stop` fires, then drains.
fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    stop: watch::Receiver<bool>,
) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(wait_stop(stop))
            .await
            .map_err(|e| e.to_string())
    })
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn ops_router(metrics: Metrics, ready: Arc<AtomicBool>) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (http::StatusCode::OK, "ready\n")
                    } else {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

impl RunningNode {
    /// The node's key-value store (for embedding and tests).
    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting connections, lets in-flight requests finish (up to the
    /// grace period), commits queued writes and closes the database.
    ///
    /// # Errors
    /// A server task that failed while running.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (what, handle) in self.servers {
            match tokio::time::timeout(self.grace, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(message))) => {
                    first_error.get_or_insert(ServerError::Serve { what, message });
                }
                Ok(Err(join)) => {
                    first_error.get_or_insert(ServerError::Serve {
                        what,
                        message: join.to_string(),
                    });
                }
                Err(_) => tracing::warn!(
                    server = what,
                    "in-flight requests did not finish within the grace period"
                ),
            }
        }
        let _ = self.reaper.await;
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("cairn-node stopped");
        first_error.map_or(Ok(()), Err)
    }
}
