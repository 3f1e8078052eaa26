//! `cairnctl playground`: a local cluster of `cairn-node` child processes on
//! 127.0.0.1 for trying Cairn out, started by the same launcher the tests
//! use (`cairn_local`). Node 1 bootstraps the cluster, the others join it;
//! the command waits until every shard has a leader and all its replicas in
//! place, prints the endpoints, and on Ctrl-C (or SIGTERM) stops every node
//! cleanly. The data directory is kept, so running it again resumes the
//! same cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cairn_local::cluster::{ClusterSpec, LocalCluster, NodeHost};
use cairn_local::process::workspace_bin;
use tokio::signal::unix::{SignalKind, signal};

use super::args::PlaygroundArgs;

/// How long one node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The playground's layout: node `i` (from 1) on `BASE + 10(i-1)` (gRPC),
/// `+1` (HTTP) and `+2` (metrics), its data in `DATA_DIR/node<i>`.
fn hosts(p: &PlaygroundArgs, binary: &std::path::Path) -> anyhow::Result<Vec<NodeHost>> {
    (0..p.nodes)
        .map(|i| {
            let port = |k: u16| -> anyhow::Result<SocketAddr> {
                let port = u16::try_from(i * 10)
                    .ok()
                    .and_then(|off| p.base_port.checked_add(off + k))
                    .context("--base-port too high for this many nodes")?;
                Ok(SocketAddr::from(([127, 0, 0, 1], port)))
            };
            Ok(NodeHost {
                binary: binary.to_path_buf(),
                addrs: [port(0)?, port(1)?, port(2)?],
                data_dir: p.data_dir.join(format!("node{}", i + 1)),
            })
        })
        .collect()
}

/// Stops every node with SIGTERM (SIGKILL after [`STOP_TIMEOUT`]).
fn stop_all(cluster: &mut LocalCluster) {
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        if !node.is_running() {
            continue;
        }
        if let Err(e) = node.terminate(STOP_TIMEOUT) {
            eprintln!("node {}: {e:#}; killed", i + 1);
        }
    }
}

/// Runs the playground until Ctrl-C or SIGTERM.
pub async fn run(p: PlaygroundArgs) -> anyhow::Result<()> {
    let binary: PathBuf = p
        .node_binary
        .clone()
        .unwrap_or_else(|| workspace_bin("cairn-node"));
    std::fs::create_dir_all(&p.data_dir)
        .with_context(|| format!("creating {}", p.data_dir.display()))?;
    let hosts = hosts(&p, &binary)?;
    let nodes = hosts.len();
    let rf = p.nodes.min(3);
    let spec = ClusterSpec {
        nodes,
        shards: p.shards,
        replication_factor: rf,
        // Production defaults: the playground shows Cairn as it runs.
        args: Vec::new(),
        hosts,
        secure: p.secure,
        // A secured playground has authentication on too: a root password
        // is generated, and the admin certificate signs in as root.
        auth: p.secure,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    eprintln!(
        "starting {nodes} nodes (logs beside their data in {}); waiting for every shard to elect a leader and get its replicas...",
        p.data_dir.display()
    );
    // Dropping the half-started cluster on Ctrl-C kills its nodes.
    let mut cluster = tokio::select! {
        r = LocalCluster::start(spec) => r.with_context(|| format!("the playground did not start (node logs: {}/node*.stderr.log)", p.data_dir.display()))?,
        _ = sigint.recv() => anyhow::bail!("interrupted"),
        _ = sigterm.recv() => anyhow::bail!("terminated"),
    };
    let grpc: Vec<String> = cluster.nodes.iter().map(|n| n.grpc.to_string()).collect();
    // With --secure, the flags every client needs (the admin certificate
    // and the CA bundle), for cairnctl and for curl.
    let (ctl_tls, curl_tls, scheme) = match cluster.tls_dir() {
        Some(dir) => {
            let f = |name: &str| dir.join(name).display().to_string();
            (
                format!(
                    " --tls-ca {} --tls-cert {} --tls-key {}",
                    f("ca.pem"),
                    f("admin.pem"),
                    f("admin.key")
                ),
                format!(
                    " --cacert {} --cert {} --key {}",
                    f("ca.pem"),
                    f("admin.pem"),
                    f("admin.key")
                ),
                "https",
            )
        }
        None => (String::new(), String::new(), "http"),
    };
    println!(
        "cairn playground ready: {nodes} nodes, {} shards, replication factor {rf}",
        p.shards
    );
    for (i, n) in cluster.nodes.iter().enumerate() {
        println!(
            "  node {}  grpc {}  http {scheme}://{}  metrics http://{}/metrics",
            i + 1,
            n.grpc,
            n.http,
            n.metrics
        );
    }
    println!(
        "try:  cairnctl{ctl_tls} --endpoints {} put hello world",
        grpc.join(",")
    );
    println!(
        "      curl{curl_tls} {scheme}://{}/store/hello",
        cluster.nodes[0].http
    );
    println!(
        "      cairnctl{ctl_tls} --endpoints {} cluster status",
        grpc.join(",")
    );
    if let Some(dir) = cluster.tls_dir() {
        println!(
            "TLS: CA, node and admin certificates in {} (the admin certificate signs in as user root)",
            dir.display()
        );
    }
    if let Some(password) = cluster.root_password_file() {
        println!(
            "auth: on; the root password is in {} — a session token for other tools:",
            password.display()
        );
        println!(
            "      export CAIRN_TOKEN=$(cairnctl{ctl_tls} --endpoints {} login --user root --password-file {})",
            grpc.join(","),
            password.display()
        );
    }
    println!(
        "data and logs: {}   (Ctrl-C stops every node)",
        p.data_dir.display()
    );
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    eprintln!("stopping {nodes} nodes...");
    stop_all(&mut cluster);
    eprintln!("stopped");
    Ok(())
}
