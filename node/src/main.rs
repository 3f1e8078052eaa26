//! The `cairn-node` binary.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_node::clock::SystemClock;
use cairn_node::server::{self, Cli, Config};
use cairn_node::telemetry;
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn-node: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cairn-node: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let traces = config
        .otlp_endpoint
        .as_ref()
        .map(|endpoint| telemetry::TraceSettings {
            endpoint: endpoint.clone(),
            sample_ratio: config.trace_sample_ratio,
            node_id: config.node_id,
        });
    // Inside the runtime: the trace exporter's connection lives there.
    let telemetry = match runtime
        .block_on(async { telemetry::init(&config.log_format, &config.log_level, traces.as_ref()) })
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cairn-node: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(config));
    runtime.block_on(async { telemetry.shutdown() });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-node: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let node = server::start(config, Arc::new(SystemClock)).await?;
    // One machine-readable line on stdout, for scripts and tests.
    println!(
        "cairn-node ready grpc={} http={} metrics={}",
        node.grpc_addr, node.http_addr, node.metrics_addr
    );
    let fenced = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); None }
        reason = node.fatal() => Some(reason),
    };
    node.shutdown().await?;
    match fenced {
        Some(reason) => anyhow::bail!("{reason}"),
        None => Ok(()),
    }
}
