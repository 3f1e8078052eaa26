//! `cairnctl playground`: a local cluster of `cairn-node` child processes on
//! 127.0.0.1 for trying Cairn out. Node 1 bootstraps the cluster, the others
//! join it; the command waits until every shard has a leader and all its
//! replicas, prints the endpoints, and on Ctrl-C (or SIGTERM) stops every
//! node cleanly. The data directory is kept, so running it again resumes the
//! same cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_proto::admin::v1 as apb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use super::args::PlaygroundArgs;

/// How long the cluster may take to elect every leader and place every replica.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

fn node_binary(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("cairn-node")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cairn-node"))
}

struct Node {
    id: u32,
    grpc: String,
    http: String,
    metrics: String,
    child: Child,
}

async fn start_node(
    binary: &Path,
    dir: &Path,
    id: u32,
    ports: (u16, u16, u16),
    role: &[String],
) -> anyhow::Result<Node> {
    let data = dir.join(format!("node{id}"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node{id}.log")))
        .with_context(|| format!("opening the log of node {id}"))?;
    let grpc = format!("127.0.0.1:{}", ports.0);
    let http = format!("127.0.0.1:{}", ports.1);
    let metrics = format!("127.0.0.1:{}", ports.2);
    let mut child = Command::new(binary)
        .arg("--node-id")
        .arg(id.to_string())
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &http,
            "--metrics-addr",
            &metrics,
        ])
        .args(role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("node stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), lines.next_line()).await;
    match ready {
        Ok(Ok(Some(line))) if line.starts_with("cairn-node ready") => {}
        _ => bail!(
            "node {id} did not start; see {}",
            dir.join(format!("node{id}.log")).display()
        ),
    }
    // Keep draining stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Node {
        id,
        grpc,
        http,
        metrics,
        child,
    })
}

async fn wait_settled(first: &str, shards: u32, rf: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = String::from("not reachable yet");
    while Instant::now() < deadline {
        if let Ok(mut admin) =
            apb::admin_client::AdminClient::connect(format!("http://{first}")).await
        {
            match admin.cluster_status(apb::ClusterStatusRequest {}).await {
                Ok(s) => {
                    let s = s.into_inner();
                    let settled = s
                        .shards
                        .iter()
                        .filter(|x| {
                            x.leader_id != 0 && x.replicas.iter().filter(|r| r.voter).count() == rf
                        })
                        .count();
                    if settled == shards as usize {
                        return Ok(());
                    }
                    last = format!("{settled} of {shards} shards have a leader and {rf} replicas");
                }
                Err(e) => last = e.message().to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("the cluster did not settle within {SETTLE_TIMEOUT:?}: {last}")
}

async fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter() {
        if let Some(pid) = n.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for n in nodes.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(30), n.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "node {} did not stop within 30s of SIGTERM; killing it",
                n.id
            );
            let _ = n.child.kill().await;
        }
    }
}

/// Runs the playground until Ctrl-C or SIGTERM.
pub async fn run(p: PlaygroundArgs) -> anyhow::Result<()> {
    let binary = node_binary(p.node_binary);
    std::fs::create_dir_all(&p.data_dir)
        .with_context(|| format!("creating {}", p.data_dir.display()))?;
    let rf = p.nodes.min(3);
    let port = |i: u32, k: u16| -> anyhow::Result<u16> {
        u16::try_from(i * 10)
            .ok()
            .and_then(|off| p.base_port.checked_add(off + k))
            .context("--base-port too high for this many nodes")
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut nodes = Vec::new();
    let first = format!("127.0.0.1:{}", p.base_port);
    let started = async {
        for i in 0..p.nodes {
            let id = i + 1;
            let role: Vec<String> = if id == 1 {
                vec![
                    "--bootstrap".into(),
                    "--shards".into(),
                    p.shards.to_string(),
                    "--replication-factor".into(),
                    rf.to_string(),
                ]
            } else {
                vec!["--join".into(), first.clone()]
            };
            let ports = (port(i, 0)?, port(i, 1)?, port(i, 2)?);
            nodes.push(start_node(&binary, &p.data_dir, id, ports, &role).await?);
            eprintln!("node {id} started");
        }
        eprintln!("waiting for every shard to elect a leader and get its replicas...");
        wait_settled(&first, p.shards, rf as usize).await
    };
    let outcome = tokio::select! {
        r = started => r,
        _ = sigint.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if let Err(e) = outcome {
        stop_all(&mut nodes).await;
        return Err(e);
    }
    let grpc: Vec<&str> = nodes.iter().map(|n| n.grpc.as_str()).collect();
    println!(
        "cairn playground ready: {} nodes, {} shards, replication factor {rf}",
        nodes.len(),
        p.shards
    );
    for n in &nodes {
        println!(
            "  node {}  grpc {}  http http://{}  metrics http://{}/metrics",
            n.id, n.grpc, n.http, n.metrics
        );
    }
    println!(
        "try:  cairnctl --endpoints {} put hello world",
        grpc.join(",")
    );
    println!("      curl http://{}/store/hello", nodes[0].http);
    println!(
        "      cairnctl --endpoints {} cluster status",
        grpc.join(",")
    );
    println!(
        "data and logs: {}   (Ctrl-C stops every node)",
        p.data_dir.display()
    );
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    eprintln!("stopping {} nodes...", nodes.len());
    stop_all(&mut nodes).await;
    eprintln!("stopped");
    Ok(())
}
