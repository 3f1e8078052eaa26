//! The operator binary: runs the `KVCluster` controller and serves its
//! metrics until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_operator::controller::admin::GrpcAdmin;
use cairn_operator::controller::{self, Context};
use cairn_operator::metrics::Metrics;
use clap::Parser;

/// Command line of `cairn-operator`.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-operator",
    version,
    about = "Kubernetes operator for Cairn"
)]
struct Cli {
    /// Namespace to watch (default: all namespaces).
    #[arg(long, env = "CAIRN_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(
        long,
        env = "CAIRN_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: SocketAddr,
    /// Name of this operator instance in Events (e.g. its pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Instead of running the operator, GET this URL (an operator's
    /// `http://host:port/healthz`) and exit 0 only if it answers 200. The
    /// Helm chart's `helm test` hook runs it.
    #[arg(long, value_name = "URL")]
    check_health: Option<String>,
}

async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    tracing::info!(%addr, "metrics listening");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .init();
    let cli = Cli::parse();
    if let Some(url) = &cli.check_health {
        let status =
            cairn_operator::health_check::check(url, std::time::Duration::from_secs(10)).await?;
        println!("{url}: {status}");
        return Ok(());
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new()?);
    let metrics_task = tokio::spawn(serve_metrics(cli.metrics_addr, metrics.clone()));
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(GrpcAdmin),
        metrics,
        cli.instance,
    ));
    tracing::info!(
        namespace = cli.namespace.as_deref().unwrap_or("all"),
        "cairn-operator running"
    );
    tokio::select! {
        () = controller::run(ctx, cli.namespace, shutdown_signal()) => {}
        result = metrics_task => {
            result.context("metrics server task")??;
        }
    }
    tracing::info!("cairn-operator stopped");
    Ok(())
}
