//! One chaos run: start the cluster in its network, run the clients and the
//! nemesis, heal, wait for recovery, read every key, check the history.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn_chaos::checker::{self, Report};
use cairn_chaos::history::{Consistency, History, Input, Output, Via};
use cairn_chaos::nemesis::{self, ChurnStep, Fault, FaultKind, Split, Target};
use cairn_chaos::network::{self, Network};
use cairn_chaos::workload::{Endpoints, Recorder, Worker};
use cairn_client::{Client, ClientOptions, NodeAction};
use cairn_proto::admin::v1 as apb;
use cairn_proto::kv::v1 as pb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster, NodeHost, admin};
use cairn_testkit::process::{NodeProcess, NodeSpec};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// Seeds the schedule and the clients' choices.
    pub seed: u64,
    /// How long clients run under faults (seconds).
    pub duration_s: f64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Hash shards.
    pub shards: u32,
    /// Fault kinds to draw from.
    pub faults: Vec<FaultKind>,
    /// Concurrent clients.
    pub clients: u32,
    /// Keys they share.
    pub keys: usize,
    /// Size of each node's filesystem (bytes).
    pub disk_bytes: u64,
}

/// Everything a run leaves behind, and what `check FILE` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The configuration (replay with the same seed and flags).
    pub config: RunConfig,
    /// The planned faults.
    pub schedule: Vec<Fault>,
    /// What was injected, one line per fault, with times.
    pub injected: Vec<String>,
    /// Problems outside the history (a fenced node that kept serving, a
    /// cluster that did not recover).
    pub problems: Vec<String>,
    /// Every operation.
    pub history: History,
    /// The checker's verdict.
    pub report: Report,
}

impl RunRecord {
    /// Whether the run found nothing wrong.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
            && self.report.violations.is_empty()
            && self.report.inconclusive.is_empty()
    }

    /// The kind of every fault that took effect (skipped ones, such as a
    /// join with no spare slot, are left out).
    pub fn injected_kinds(&self) -> Vec<FaultKind> {
        self.schedule
            .iter()
            .zip(&self.injected)
            .filter(|(_, line)| !line.contains("not injected") && !line.contains("skipped"))
            .map(|(f, _)| f.kind)
            .collect()
    }

    /// The run's one-line summary.
    pub fn line(&self) -> String {
        let ok = self
            .history
            .iter()
            .filter(|o| !o.is_indeterminate())
            .count();
        let mut kinds: BTreeMap<FaultKind, usize> = BTreeMap::new();
        for kind in self.injected_kinds() {
            *kinds.entry(kind).or_default() += 1;
        }
        let faults: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        let verdict = if !self.report.violations.is_empty() {
            "VIOLATION"
        } else if !self.problems.is_empty() {
            "PROBLEM"
        } else {
            self.report.verdict()
        };
        format!(
            "seed={} nodes={} ops={} ok={} indeterminate={} faults={} verdict={}",
            self.config.seed,
            self.config.nodes,
            self.history.len(),
            ok,
            self.history.len() - ok,
            faults.join(","),
            verdict
        )
    }
}

/// The ports every node listens on (each node has its own address).
const PORTS: [u16; 3] = [7100, 7101, 7102];

/// The cluster, shared by the nemesis and the final phase.
struct Shared {
    cluster: LocalCluster,
    /// Node indices removed by churn (not to be restarted).
    removed: Vec<usize>,
}

/// How long a nemesis step may take beyond its fault's own duration
/// (a churn step drains a node, which takes the longest).
const STEP_SLACK: Duration = Duration::from_secs(150);

/// How long the final write-and-read of every key may take in all.
const FINAL_PHASE_LIMIT: Duration = Duration::from_secs(120);

/// Bound on each ballast write and metrics probe of the disk fault.
const BALLAST_CALL_LIMIT: Duration = Duration::from_secs(5);

/// Runs one seed.
pub async fn run(config: RunConfig, node_binary: &Path) -> anyhow::Result<RunRecord> {
    let dir = tempfile::Builder::new().prefix("cairn-chaos-").tempdir()?;
    let slots = config.nodes + 1;
    let mut net = Network::create(slots).context("creating the run's network (needs root)")?;
    let mut hosts = Vec::new();
    for slot in 0..slots {
        let data_dir = dir.path().join(format!("node{}", slot + 1));
        net.mount_disk(&data_dir, config.disk_bytes)?;
        let ip = net.node_ip(slot);
        hosts.push(NodeHost {
            binary: net.launcher(slot, node_binary, dir.path())?,
            addrs: PORTS.map(|p| SocketAddr::new(ip, p)),
            data_dir: data_dir.join("data"),
        });
    }
    let mut spec = ClusterSpec::new(config.nodes, config.shards);
    spec.hosts = hosts;
    let cluster = LocalCluster::start(spec)
        .await
        .context("starting the cluster")?;
    let http: Vec<String> = (0..slots)
        .map(|s| format!("http://{}:{}", net.node_ip(s), PORTS[1]))
        .collect();
    let grpc_seeds = cluster.endpoints();
    let shared = Arc::new(Mutex::new(Shared {
        cluster,
        removed: Vec::new(),
    }));
    let net = Arc::new(net);
    let schedule = nemesis::schedule(
        config.seed,
        Duration::from_secs_f64(config.duration_s),
        &config.faults,
    );

    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<String> = (0..config.keys).map(|k| format!("k{k}")).collect();
    let options = ClientOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .retry_deadline(Duration::from_secs(3));
    let mut workers = Vec::new();
    for id in 0..config.clients {
        let endpoints = Arc::new(Endpoints {
            grpc: Client::connect_with(&grpc_seeds, options.clone()).await?,
            // Only the first nodes at the start; a joined node is reached
            // through the smart client's map.
            http: http[..config.nodes].to_vec(),
        });
        let w = Worker::new(id, keys.clone(), config.seed);
        workers.push(tokio::spawn(w.run(
            endpoints,
            recorder.clone(),
            stop.clone(),
        )));
    }

    let started = Instant::now();
    let mut injected = Vec::new();
    let mut problems = Vec::new();
    for fault in &schedule {
        let at = Duration::from_secs_f64(fault.at_s);
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        tracing::info!(seed = config.seed, kind = %fault.kind, "injecting");
        let limit = Duration::from_secs_f64(fault.for_s) + STEP_SLACK;
        let step = tokio::time::timeout(limit, inject(fault, &shared, &net, &mut problems)).await;
        let Ok(step) = step else {
            // Every nemesis step bounds its own waits, so this is a node
            // that stopped answering; heal_all below undoes the fault.
            let note = format!(
                "{} at {:.2}s did not finish within {} s",
                fault.kind,
                fault.at_s,
                limit.as_secs()
            );
            problems.push(format!("nemesis step stuck: {note}"));
            injected.push(format!(
                "{:>7.2}s {} stuck: {note}",
                started.elapsed().as_secs_f64(),
                fault.kind
            ));
            continue;
        };
        match step {
            Ok(note) => injected.push(format!(
                "{:>7.2}s {} {note}",
                started.elapsed().as_secs_f64(),
                fault.kind
            )),
            Err(e) => injected.push(format!(
                "{:>7.2}s {} not injected: {e:#}",
                started.elapsed().as_secs_f64(),
                fault.kind
            )),
        }
    }
    let end = Duration::from_secs_f64(config.duration_s);
    tokio::time::sleep(end.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    phase(config.seed, started, "stopping the clients");
    for w in workers {
        let _ = w.await;
    }
    phase(config.seed, started, "healing");

    // Heal everything, then wait for every shard to have a live leader.
    heal_all(&shared, &net, &mut problems).await;
    {
        let s = shared.lock().await;
        if let Err(e) = s.cluster.wait_all_leaders(Duration::from_secs(120)).await {
            problems.push(format!("the cluster did not recover after healing: {e:#}"));
        }
    }
    phase(config.seed, started, "final reads");
    final_phase(&config, &grpc_seeds, &keys, &recorder, &mut problems).await;
    phase(config.seed, started, "checking the history");

    let history = recorder.history();
    let report = tokio::task::spawn_blocking({
        let h = history.clone();
        move || checker::check(&h)
    })
    .await?;
    // Tear down the nodes before the network they live in.
    drop(shared);
    drop(net);
    Ok(RunRecord {
        config,
        schedule,
        injected,
        problems,
        history,
        report,
    })
}

/// Says on stderr, as it happens, which phase a run has reached, so a run
/// reported `STUCK` (dropped when it outlived its schedule) shows where it
/// stopped.
fn phase(seed: u64, started: Instant, what: &str) {
    eprintln!(
        "{:>7.2}s seed {seed}: {what}",
        started.elapsed().as_secs_f64()
    );
}

/// After healing: one write and one linearizable read per key, retried
/// until they get an answer, so the history ends with what survived.
async fn final_phase(
    config: &RunConfig,
    seeds: &[String],
    keys: &[String],
    recorder: &Recorder,
    problems: &mut Vec<String>,
) {
    let options = ClientOptions::default().retry_deadline(Duration::from_secs(10));
    let client = match Client::connect_with(seeds, options).await {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("no client after healing: {e}"));
            return;
        }
    };
    let endpoints = Endpoints {
        grpc: client,
        http: Vec::new(),
    };
    let mut w = Worker::new(config.clients, keys.to_vec(), config.seed);
    // One budget for the whole phase: a cluster that answers nothing
    // after healing is reported once, not waited out key by key.
    let deadline = Instant::now() + FINAL_PHASE_LIMIT;
    for key in keys {
        for input in [
            Input::Put {
                value: format!("final-{key}"),
            },
            Input::Get {
                consistency: Consistency::Linearizable,
                min_revision: 0,
            },
        ] {
            loop {
                let out = w
                    .execute(
                        &endpoints,
                        0,
                        recorder,
                        key.clone(),
                        input.clone(),
                        Via::Grpc,
                    )
                    .await;
                if !matches!(out, Output::Unknown { .. }) {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "after healing, {input:?} on {key} got no answer within the final phase's {} s: {out:?}",
                        FINAL_PHASE_LIMIT.as_secs()
                    ));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Resolves a target to a running node's index.
async fn resolve(target: Target, s: &Shared) -> Option<usize> {
    let running: Vec<usize> = (0..s.cluster.nodes.len())
        .filter(|i| s.cluster.nodes[*i].is_running() && !s.removed.contains(i))
        .collect();
    match target {
        Target::BusiestLeader => match s.cluster.busiest_leader().await {
            Ok(i) if running.contains(&i) => Some(i),
            _ => running.first().copied(),
        },
        Target::Random(r) => running.get(r % running.len().max(1)).copied(),
    }
}

/// Injects one fault, holds it, and heals it. Returns what was done.
async fn inject(
    fault: &Fault,
    shared: &Arc<Mutex<Shared>>,
    net: &Arc<Network>,
    problems: &mut Vec<String>,
) -> anyhow::Result<String> {
    let hold = Duration::from_secs_f64(fault.for_s);
    let mut s = shared.lock().await;
    let Some(i) = resolve(fault.target, &s).await else {
        anyhow::bail!("no running node");
    };
    let id = i + 1;
    let note = match fault.kind {
        FaultKind::Kill => {
            tokio::task::block_in_place(|| s.cluster.nodes[i].kill());
            drop(s);
            tokio::time::sleep(hold).await;
            let mut s = shared.lock().await;
            tokio::task::block_in_place(|| s.cluster.nodes[i].start_again())?;
            format!("node {id} killed, restarted after {:.1}s", fault.for_s)
        }
        FaultKind::Pause => {
            let pid = s.cluster.nodes[i].pid().context("no pid")?;
            nemesis::signal(pid, Signal::SIGSTOP)?;
            drop(s);
            tokio::time::sleep(hold).await;
            nemesis::signal(pid, Signal::SIGCONT)?;
            format!("node {id} paused for {:.1}s", fault.for_s)
        }
        FaultKind::Partition => {
            let running: Vec<usize> = (0..s.cluster.nodes.len())
                .filter(|j| s.cluster.nodes[*j].is_running() && !s.removed.contains(j))
                .collect();
            drop(s);
            let others: Vec<usize> = running.iter().copied().filter(|j| *j != i).collect();
            let split = fault.split.unwrap_or(Split::Isolate);
            let (a, b): (Vec<usize>, Vec<usize>) = match split {
                Split::Isolate => (vec![i], others),
                Split::Minority => {
                    let minority = (running.len() - 1) / 2;
                    let mut a = vec![i];
                    a.extend(others.iter().take(minority.saturating_sub(1)));
                    let b = others.iter().copied().filter(|j| !a.contains(j)).collect();
                    (a, b)
                }
                Split::Bridge => {
                    let half = others.len() / 2;
                    (others[..half].to_vec(), others[half..].to_vec())
                }
            };
            net.cut(&a, &b)?;
            tokio::time::sleep(hold).await;
            net.heal()?;
            let ids = |v: &[usize]| v.iter().map(|x| (x + 1).to_string()).collect::<Vec<_>>();
            format!(
                "{split:?} {:?} | {:?}{} for {:.1}s",
                ids(&a),
                ids(&b),
                if split == Split::Bridge {
                    format!(" (node {id} bridges)")
                } else {
                    String::new()
                },
                fault.for_s
            )
        }
        FaultKind::Delay => {
            drop(s);
            let what = match fault.loss {
                Some(p) => {
                    net.lose(i, p)?;
                    format!("{:.0}% packet loss", p * 100.0)
                }
                None => {
                    net.slow(i, 512, 300)?;
                    "a 512 kbit/s link queueing up to 300 ms".to_string()
                }
            };
            tokio::time::sleep(hold).await;
            net.heal()?;
            format!("node {id}: {what} for {:.1}s", fault.for_s)
        }
        FaultKind::Disk => {
            let dir = s.cluster.nodes[i]
                .data_dir()
                .parent()
                .map(Path::to_path_buf)
                .context("data dir has no parent")?;
            let metrics = format!("http://{}/metrics", s.cluster.nodes[i].metrics);
            let endpoints = s.cluster.endpoints();
            drop(s);
            let filler = dir.join("filler");
            let filled = network::fill_disk(&filler);
            // RocksDB writes into its preallocated WAL for a while; ballast
            // writes (keys outside the checked ones) use it up, so the node
            // really meets the full disk.
            let ballast = ballast_until_full(&endpoints, &metrics).await;
            tokio::time::sleep(hold).await;
            let _ = std::fs::remove_file(&filler);
            format!(
                "node {id}: disk full ({} MiB filler, {ballast}) for {:.1}s more",
                filled >> 20,
                fault.for_s
            )
        }
        FaultKind::Churn => match fault.churn {
            Some(ChurnStep::Join) => {
                if s.cluster.nodes.len() >= net.slots() {
                    "no spare slot; join skipped".into()
                } else {
                    tokio::task::block_in_place(|| s.cluster.add_node())?;
                    format!("node {} joined", s.cluster.nodes.len())
                }
            }
            Some(ChurnStep::Remove) | None => {
                drop(s);
                remove_one(shared, problems).await?
            }
        },
    };
    Ok(note)
}

/// Writes 512 KiB values to ballast keys until the node behind `metrics`
/// reports `cairn_storage_disk_full 1` (or 160 MiB, or 30 s); says how it went.
async fn ballast_until_full(endpoints: &[String], metrics: &str) -> String {
    let Ok(client) = Client::connect_with(
        endpoints,
        ClientOptions::default().retry_deadline(Duration::from_secs(2)),
    )
    .await
    else {
        return "no client for ballast".into();
    };
    let Ok(http) = reqwest::Client::builder()
        .timeout(BALLAST_CALL_LIMIT)
        .build()
    else {
        return "no HTTP client for the metrics probe".into();
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = 0u64;
    for n in 0..320u32 {
        if let Ok(r) = http.get(metrics).send().await
            && let Ok(text) = r.text().await
            && text.lines().any(|l| l == "cairn_storage_disk_full 1")
        {
            return format!("full after {} MiB of ballast", written >> 20);
        }
        if Instant::now() > deadline {
            break;
        }
        let put = pb::PutRequest {
            key: format!("ballast-{}", n % 64).into_bytes(),
            value: vec![b'b'; 512 << 10],
            ..Default::default()
        };
        if let Ok(Ok(_)) = tokio::time::timeout(BALLAST_CALL_LIMIT, client.put(put)).await {
            written += 512 << 10;
        }
    }
    format!("not full after {} MiB of ballast", written >> 20)
}

/// Drains the newest active node, removes it, and checks that its fenced
/// identity stops when restarted on its data without `--join`.
async fn remove_one(
    shared: &Arc<Mutex<Shared>>,
    problems: &mut Vec<String>,
) -> anyhow::Result<String> {
    let (victim, peer) = {
        let s = shared.lock().await;
        let status = s.cluster.status().await?;
        let active: Vec<u64> = status
            .nodes
            .iter()
            .filter(|n| n.state == apb::NodeState::Active as i32 && n.reachable)
            .map(|n| n.id)
            .collect();
        if active.len() <= 3 {
            return Ok(format!(
                "only {} active nodes; removal skipped",
                active.len()
            ));
        }
        let victim = *active.iter().max().context("no active node")?;
        let peer = *active.iter().find(|n| **n != victim).context("no peer")?;
        (victim, peer)
    };
    let idx = |id: u64| id as usize - 1;
    let deadline = Instant::now() + Duration::from_secs(90);
    // Drain, wait until it holds nothing, remove (retrying while the meta
    // leadership moves).
    loop {
        let s = shared.lock().await;
        let mut a = admin(&s.cluster.nodes[idx(peer)]).await?;
        drop(s);
        let drained = a.node(victim, NodeAction::Drain).await;
        let status = a.cluster_status().await?;
        let held = status
            .shards
            .iter()
            .filter(|sh| sh.replicas.iter().any(|r| r.node_id == victim))
            .count();
        if drained.is_ok() && held == 0 && a.node(victim, NodeAction::Remove).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = a.node(victim, NodeAction::CancelDrain).await;
            return Ok(format!(
                "node {victim} did not drain within 90 s ({held} replicas left); drain cancelled"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut s = shared.lock().await;
    s.removed.push(idx(victim));
    let node = &mut s.cluster.nodes[idx(victim)];
    tokio::task::block_in_place(|| node.kill());
    // The known gap: the removed identity restarted on its data, without
    // --join, must stop by itself.
    let spec = NodeSpec {
        binary: node.binary().to_path_buf(),
        data_dir: node.data_dir().to_path_buf(),
        args: vec!["--node-id".into(), victim.to_string()],
    };
    let addrs = [node.grpc, node.http, node.metrics];
    drop(s);
    let verdict = tokio::task::spawn_blocking(move || fenced_restart(spec, addrs)).await?;
    if let Err(e) = &verdict {
        problems.push(format!("node {victim} after removal: {e}"));
    }
    Ok(format!(
        "node {victim} drained and removed; restarted without --join: {}",
        match verdict {
            Ok(how) => how,
            Err(e) => format!("PROBLEM: {e}"),
        }
    ))
}

/// Starts a removed node on its data without `--join`; it must stop by
/// itself (refuse to start, or exit soon after).
fn fenced_restart(spec: NodeSpec, addrs: [SocketAddr; 3]) -> Result<String, String> {
    match NodeProcess::start_at(spec, Some(addrs)) {
        Err(e) => Ok(format!(
            "refused to start ({})",
            first_line(&format!("{e:#}"))
        )),
        Ok(mut p) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(status) = p.exited() {
                    let log = p.stderr();
                    return if status.success() {
                        Err(format!("exited with success: {log}"))
                    } else {
                        Ok(format!("stopped by itself ({status})"))
                    };
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let log = p.stderr();
            p.kill();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            Err(format!(
                "a removed node restarted without --join kept running for 60 s; its log ends: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| l.contains("removed") || l.contains("fenced"))
        .or_else(|| s.lines().next())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Ends every fault still in effect: continues paused nodes, heals the
/// network, frees the disks, restarts nodes that are down.
async fn heal_all(shared: &Arc<Mutex<Shared>>, net: &Arc<Network>, problems: &mut Vec<String>) {
    if let Err(e) = net.heal() {
        problems.push(format!("healing the network: {e}"));
    }
    let mut s = shared.lock().await;
    let removed = s.removed.clone();
    for (i, node) in s.cluster.nodes.iter_mut().enumerate() {
        if removed.contains(&i) {
            continue;
        }
        if let Some(pid) = node.pid() {
            let _ = nemesis::signal(pid, Signal::SIGCONT);
        }
        if let Some(dir) = node.data_dir().parent() {
            let _ = std::fs::remove_file(dir.join("filler"));
        }
        if !node.is_running() {
            // The nemesis restarts what it kills, so a node that is down
            // now stopped by itself (a crash, or giving up on a full disk).
            let log = node.stderr();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            problems.push(format!(
                "node {} had stopped by itself: {}",
                i + 1,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        if !node.is_running()
            && let Err(e) = tokio::task::block_in_place(|| node.start_again())
        {
            problems.push(format!("node {} did not restart: {e:#}", i + 1));
        }
    }
}
