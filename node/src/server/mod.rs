//! Startup and shutdown of a node: opens the store, binds the gRPC, HTTP and
//! metrics listeners, runs the reaper, and on shutdown drains in-flight
//! requests before committing what is queued and closing the database.

pub mod config;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Cli, Config, ConfigError};

use crate::api::admin::AdminGrpc;
use crate::api::grpc::KvGrpc;
use crate::api::http::HttpPeer;
use crate::clock::Clock;
use crate::cluster::meta::ClusterRecord;
use crate::cluster::{ClusterError, ClusterOptions, join};
use crate::kv::{KvStore, StoreOptions};
use crate::metrics::Metrics;
use crate::partition::ShardCount;
use crate::raft::network::RaftTransportService;
use crate::storage::identity::{self, StoredRole};
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
    /// The TLS material could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] cairn_tls::TlsError),
    /// The cluster could not be formed or joined.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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
    fatal: watch::Receiver<Option<String>>,
    grace: Duration,
    servers: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    /// Named, so a task that outlives the shutdown bound can be reported.
    background: Vec<(&'static str, JoinHandle<()>)>,
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
    let grpc_l = listener::bind("gRPC", config.grpc_addr).await?;
    let http_l = listener::bind("HTTP", config.http_addr).await?;
    let metrics_l = listener::bind("metrics", config.metrics_addr).await?;
    let grpc_addr = local(&grpc_l, "gRPC", config.grpc_addr)?;
    let http_addr = local(&http_l, "HTTP", config.http_addr)?;
    let metrics_addr = local(&metrics_l, "metrics", config.metrics_addr)?;
    let tls = match config.tls.paths() {
        None => None,
        Some(paths) => {
            let m = cairn_tls::TlsMetrics::new()
                .and_then(|m| m.register(&metrics.registry).map(|()| m))
                .map_err(|e| ServerError::Setup(format!("TLS metrics: {e}")))?;
            Some(cairn_tls::TlsContext::load(paths, m)?)
        }
    };

    let root_password = match &config.auth.root_password_file {
        None => None,
        Some(path) => Some(read_root_password(path)?),
    };
    let audit = if config.auth.audit_log.as_os_str() == "-" {
        crate::auth::audit::AuditLog::stderr()
    } else {
        crate::auth::audit::AuditLog::file(&config.auth.audit_log).map_err(|e| {
            ConfigError::Invalid(format!(
                "audit-log {}: {e}",
                config.auth.audit_log.display()
            ))
        })?
    };

    let mut opts = StoreOptions {
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
    let engine = {
        let e = opts.engine.clone();
        tokio::task::spawn_blocking(move || crate::storage::Engine::open(&e))
            .await
            .map_err(|e| ServerError::Setup(format!("store open task: {e}")))??
    };
    let role = identity::stored_role(&engine)?;
    let clustered =
        config.bootstrap || !config.join.is_empty() || matches!(role, StoredRole::Member { .. });
    if root_password.is_some() && !clustered {
        return Err(ConfigError::Invalid(
            "auth root-password-file needs a cluster member (--bootstrap or --join): users and roles live in the meta group, which a standalone node does not have".into(),
        )
        .into());
    }
    let mut new_cluster = None;
    let was_member = matches!(role, StoredRole::Member { .. });
    let (store, cluster) = if clustered {
        let cluster_id = match role {
            StoredRole::Member {
                cluster_id,
                shards: s,
            } => {
                // A removed or replaced id stops here, before any of its
                // groups starts or it reports ready.
                crate::cluster::fence::check(&engine, config.node_id)?;
                opts.shards = ShardCount::new(s).map_err(ConfigError::Invalid)?;
                cluster_id
            }
            StoredRole::Standalone => {
                return Err(StorageError::Mismatch(
                    "data directory belongs to a standalone node; --bootstrap and --join need a new --data-dir".into(),
                )
                .into());
            }
            StoredRole::New if config.bootstrap => {
                let record = ClusterRecord {
                    cluster_id: join::new_cluster_id(config.node_id, clock.now_ms()),
                    shards: shards.get(),
                    replication_factor: config.replication_factor,
                };
                let id = record.cluster_id.clone();
                new_cluster = Some(record);
                id
            }
            StoredRole::New => {
                let info = join::discover(&config.join, grpc_addr, tls.as_ref()).await?;
                opts.shards = ShardCount::new(info.shards).map_err(ConfigError::Invalid)?;
                info.cluster_id
            }
        };
        if let Some(tls) = &tls {
            check_node_identity(tls, &config)?;
        }
        let addr = listener::advertised_grpc(grpc_addr, config.advertise_addr.as_deref())?;
        let copts = ClusterOptions {
            node_id: config.node_id,
            http_addr: listener::advertised_http(http_addr, &addr),
            addr,
            rack: config.rack.clone().unwrap_or_default(),
            weight: config.weight,
            capacity_bytes: config.capacity_bytes,
            rebalance: config.rebalance,
            tuning: config.raft,
            metrics: metrics.cluster.clone(),
            tls: tls.clone(),
        };
        let (store, cluster) =
            KvStore::open_member(engine, opts, clock.clone(), copts, &cluster_id).await?;
        (store, Some(cluster))
    } else {
        let metrics = metrics.clone();
        let clock = clock.clone();
        let store =
            tokio::task::spawn_blocking(move || KvStore::open_on(engine, opts, clock, metrics))
                .await
                .map_err(|e| ServerError::Setup(format!("store open task: {e}")))??;
        (store, None)
    };

    metrics
        .watch_engine(store.engine().clone())
        .map_err(|e| ServerError::Setup(format!("engine metrics: {e}")))?;
    if let Some(c) = &cluster {
        metrics
            .watch_cluster(c.clone())
            .map_err(|e| ServerError::Setup(format!("replica metrics: {e}")))?;
    }

    let (stop, stop_rx) = watch::channel(false);
    let (fatal_tx, fatal) = watch::channel(None);
    let ready = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<cairn_proto::kv::v1::kv_server::KvServer<KvGrpc>>()
        .await;
    // Reflection in both versions: grpcurl speaks v1, but Google's Python
    // grpcio-reflection and other common tools speak only v1alpha.
    let reflection_builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Advertise only what this process serves: a standalone node has no
            // admin or Raft transport service.
            .with_service_name("cairn.kv.v1.KV")
            .with_service_name("grpc.health.v1.Health");
        if cluster.is_some() {
            builder
                .with_service_name("cairn.admin.v1.Admin")
                .with_service_name("cairn.auth.v1.Auth")
                .with_service_name("cairn.raft.v1.RaftTransport")
        } else {
            builder
        }
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection v1: {e}")))?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| ServerError::Setup(format!("gRPC reflection v1alpha: {e}")))?;
    let gate = crate::auth::AccessGate::new(
        cluster.clone(),
        config.node_id,
        tls.as_ref().map(|_| config.tls.cluster_name.clone()),
        clock.clone(),
        audit,
        metrics.auth_denials.clone(),
    );
    let admin_service = cluster
        .as_ref()
        .map(|c| AdminGrpc::new(c.clone(), clock.clone()));
    let admin = admin_service.clone().map(|a| a.into_server(gate.clone()));
    let auth_service = cluster.as_ref().map(|c| {
        crate::auth::service::AuthGrpc::new(
            c.clone(),
            gate.clone(),
            crate::auth::service::TokenTimes {
                default_ttl: Duration::from_millis(config.auth.token_ttl_ms),
                max_ttl: Duration::from_millis(config.auth.max_token_ttl_ms),
            },
        )
        .into_server()
    });
    let transport = cluster.as_ref().map(|c| {
        RaftTransportService::shared(c.clone() as Arc<dyn crate::raft::network::GroupHost>)
            .into_server_for(
                c.node_id(),
                tls.as_ref().map(|_| config.tls.cluster_name.as_str()),
            )
    });
    let kv = KvGrpc::new(store.clone(), metrics.clone(), gate.clone()).into_server();
    // Nagle off: without it every small response waits for the client's
    // delayed ACK (~40 ms per request). Keepalive finds dead peers.
    let grpc_stop = wait_stop(stop_rx.clone());
    let health_on_stop = health.clone();
    let mut builder = tonic::transport::Server::builder();
    if config.tls.max_connection_age_ms > 0 {
        builder =
            builder.max_connection_age(Duration::from_millis(config.tls.max_connection_age_ms));
    }
    let grpc_router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(kv)
        .add_optional_service(admin)
        .add_optional_service(auth_service)
        .add_optional_service(transport);
    let grpc_shutdown = async move {
        grpc_stop.await;
        health_on_stop
            .set_not_serving::<cairn_proto::kv::v1::kv_server::KvServer<KvGrpc>>()
            .await;
    };
    let grpc_server = match &tls {
        None => {
            // Nagle off: without it every small response waits for the
            // client's delayed ACK (~40 ms per request). Keepalive finds
            // dead peers.
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_l)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(30)));
            tokio::spawn(async move {
                grpc_router
                    .serve_with_incoming_shutdown(incoming, grpc_shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Some(tls) => {
            let incoming = tls.incoming(grpc_l, cairn_tls::Alpn::H2);
            tokio::spawn(async move {
                grpc_router
                    .serve_with_incoming_shutdown(incoming, grpc_shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    };
    servers.push(("gRPC", grpc_server));

    let http_router = crate::api::http::router(store.clone(), metrics.clone(), gate.clone());
    let http_server = match &tls {
        None => {
            let stop = stop_rx.clone();
            let app = http_router.into_make_service_with_connect_info::<HttpPeer>();
            tokio::spawn(async move {
                axum::serve(http_l, app)
                    .with_graceful_shutdown(wait_stop(stop))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Some(tls) => {
            let listener = HttpsListener {
                local: http_addr,
                incoming: tls.incoming(http_l, cairn_tls::Alpn::Http1),
            };
            let stop = stop_rx.clone();
            let app = http_router.into_make_service_with_connect_info::<HttpPeer>();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(wait_stop(stop))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    };
    servers.push(("HTTP", http_server));
    let ops_router = ops_router(metrics.clone(), ready.clone());
    let ops_server = match (&tls, config.tls.metrics) {
        (Some(tls), true) => {
            let listener = HttpsListener {
                local: metrics_addr,
                incoming: tls.incoming(metrics_l, cairn_tls::Alpn::Http1),
            };
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, ops_router)
                    .with_graceful_shutdown(wait_stop(stop))
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        _ => serve_http(metrics_l, ops_router, stop_rx.clone()),
    };
    servers.push(("metrics", ops_server));

    let mut background = vec![(
        "ttl reaper",
        tokio::spawn(crate::reaper::run(
            store.clone(),
            metrics.clone(),
            Duration::from_millis(config.ttl_reap_interval_ms.max(10)),
            stop_rx.clone(),
        )),
    )];
    if let Some(tls) = &tls {
        background.push((
            "tls reload",
            tls.spawn_watcher(
                Duration::from_millis(config.tls.reload_interval_ms),
                wait_stop(stop_rx.clone()),
            ),
        ));
    }
    if let Some(c) = &cluster {
        if let Some(record) = &new_cluster {
            c.bootstrap(record, clock.now_ms()).await?;
            tracing::info!(cluster_id = %record.cluster_id, shards = record.shards, replication_factor = record.replication_factor, "bootstrapped a new cluster");
        } else if config.bootstrap && c.record().is_err() {
            // A bootstrap that stopped before its records committed.
            let record = ClusterRecord {
                cluster_id: match identity::stored_role(store.engine())? {
                    StoredRole::Member { cluster_id, .. } => cluster_id,
                    _ => join::new_cluster_id(config.node_id, clock.now_ms()),
                },
                shards: store.shards().get(),
                replication_factor: config.replication_factor,
            };
            c.bootstrap(&record, clock.now_ms()).await?;
        }
        // A member started without --join still asks the cluster (through
        // the peers it knows) to admit it: a removal or replacement it
        // never heard of is refused there and the node stops.
        let seeds = if config.join.is_empty() && was_member {
            crate::cluster::fence::member_seeds(&c.nodes()?, c.node_id())
        } else {
            config.join.clone()
        };
        if !seeds.is_empty() {
            background.push((
                "join",
                tokio::spawn(join::join_until_admitted(
                    c.clone(),
                    seeds,
                    grpc_addr,
                    stop_rx.clone(),
                    fatal_tx.clone(),
                )),
            ));
        }
        background.push((
            "fence watch",
            tokio::spawn(crate::cluster::fence::watch(
                c.clone(),
                crate::cluster::fence::WATCH_INTERVAL,
                stop_rx.clone(),
                fatal_tx.clone(),
            )),
        ));
        background.push((
            "heartbeat",
            tokio::spawn(crate::cluster::heartbeat::run(
                c.clone(),
                Duration::from_millis(config.raft.heartbeat_interval_ms),
                stop_rx.clone(),
            )),
        ));
        background.push((
            "reconciler",
            tokio::spawn(crate::cluster::reconciler::run(c.clone(), stop_rx.clone())),
        ));
        background.push((
            "replica gc",
            tokio::spawn(crate::cluster::replica_gc::run(c.clone(), stop_rx.clone())),
        ));
        if let Some(password) = root_password {
            background.push((
                "auth bootstrap",
                tokio::spawn(bootstrap_auth(
                    c.clone(),
                    gate.clone(),
                    password,
                    stop_rx.clone(),
                )),
            ));
        }
        if let Some(admin) = admin_service {
            background.push((
                "balancer",
                tokio::spawn(crate::cluster::balancer::run(
                    c.clone(),
                    admin.observer(),
                    config.rebalance,
                    clock.clone(),
                    stop_rx.clone(),
                )),
            ));
        }
    }
    drop(stop_rx);
    ready.store(true, Ordering::SeqCst);
    tracing::info!(%grpc_addr, %http_addr, %metrics_addr, node_id = config.node_id, shards = store.shards().get(), sync = ?config.sync, "cairn-node serving");
    Ok(RunningNode {
        grpc_addr,
        http_addr,
        metrics_addr,
        store,
        metrics,
        ready,
        stop,
        fatal,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        servers,
        background,
    })
}

/// A cluster member's certificate must name it: `cairn://<cluster-name>/node/<node-id>`.
/// Peers refuse anything else, so a wrong certificate is an error at start,
/// not a node that cannot talk to anyone.
fn check_node_identity(tls: &cairn_tls::TlsContext, config: &Config) -> Result<(), ServerError> {
    let want = cairn_tls::NodeIdentity {
        cluster: config.tls.cluster_name.clone(),
        node_id: config.node_id,
    };
    let has = tls.bundle().identity.and_then(|i| i.node());
    if has.as_ref() == Some(&want) {
        return Ok(());
    }
    let path = tls
        .paths()
        .cert
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    Err(ConfigError::Invalid(format!(
        "the certificate {path} names {} but this node is {want}: peers would refuse it (issue it with the SAN URI {want}, or fix node-id / tls cluster-name)",
        has.map_or_else(|| "no node".to_string(), |h| h.uri())
    ))
    .into())
}

/// Reads the root password file: one line, trailing newline dropped.
fn read_root_password(path: &std::path::Path) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!("auth root-password-file {}: {e}", path.display()))
    })?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    cairn_auth::password::check_strength(&password).map_err(|e| {
        ConfigError::Invalid(format!("auth root-password-file {}: {e}", path.display()))
    })?;
    Ok(password)
}

/// Turns authentication on with the root password, unless the cluster has
/// it on already; retried until the meta group answers.
async fn bootstrap_auth(
    cluster: Arc<crate::cluster::Cluster>,
    gate: crate::auth::AccessGate,
    password: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match crate::auth::service::bootstrap_root(&cluster, &gate, &password).await {
            Ok(true) => {
                tracing::info!(
                    "authentication turned on: user root created from the root password file"
                );
                return;
            }
            Ok(false) if gate.enabled().unwrap_or(false) => {
                tracing::info!("authentication is on already; the root password file was not used");
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "turning authentication on: retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for HttpPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        Self(stream.io().info().clone())
    }
}

/// The HTTP gateway's connections over TLS, for axum.
struct HttpsListener {
    local: SocketAddr,
    incoming: cairn_tls::TlsIncoming,
}

impl axum::serve::Listener for HttpsListener {
    type Io = cairn_tls::TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.next().await {
            Some(conn) => {
                let addr = conn.info().remote.unwrap_or(self.local);
                (conn, addr)
            }
            // The accept task ended (its listener failed): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

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

    /// Resolves with a reason when the node must stop on its own (the
    /// cluster removed it or declared it dead, see
    /// [`crate::cluster::fence`]); never resolves otherwise.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
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
        // Background loops watch `stop`; one stuck in a call to a peer or
        // the disk must not keep the process alive (a fenced node has to go).
        let deadline = tokio::time::Instant::now() + self.grace;
        for (what, mut task) in self.background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    task = what,
                    "background task did not stop within the grace period; aborted"
                );
                task.abort();
            }
        }
        if let Some(c) = self.store.cluster() {
            c.shutdown(self.grace).await;
        }
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("cairn-node stopped");
        first_error.map_or(Ok(()), Err)
    }
}
