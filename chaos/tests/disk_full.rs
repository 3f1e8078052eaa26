//! A full disk on one node of a 3-node cluster: the node refuses what it
//! cannot write with a clear error (`disk_full`), stays up, loses nothing,
//! hands the leaderships it held to the other replicas (so every shard
//! keeps taking writes while it is full), and serves again — caught up —
//! once space returns.
//!
//! Needs root (network namespaces and a tmpfs per node), like the rest of
//! the chaos suite.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_chaos::network::{Network, fill_disk};
use cairn_client::{Client, ClientOptions};
use cairn_proto::kv::v1 as pb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster, NodeHost};
use cairn_testkit::process::workspace_bin;

const PORTS: [u16; 3] = [7100, 7101, 7102];
/// Each node's disk. RocksDB preallocates its WAL (about 70 MiB), so the
/// writes below must exceed that to reach a full disk at all.
const DISK_BYTES: u64 = 400 << 20;
const VALUE_BYTES: usize = 512 << 10;
const WRITES: usize = 200;
const SHARDS: u32 = 8;

/// The shards whose leader is node `id`, as the cluster reports them.
async fn leaders_on(cluster: &LocalCluster, id: u64) -> anyhow::Result<Vec<u32>> {
    Ok(cluster
        .status()
        .await?
        .shards
        .iter()
        .filter(|s| s.leader_id == id)
        .map(|s| s.shard)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_full_disk_refuses_clearly_keeps_everything_and_catches_up()
-> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("cairn-diskfull-")
        .tempdir()?;
    let mut net = Network::create(3).context("creating the network (needs root)")?;
    let node_binary = workspace_bin("cairn-node");
    let mut hosts = Vec::new();
    for slot in 0..3 {
        let data_dir = dir.path().join(format!("node{}", slot + 1));
        net.mount_disk(&data_dir, DISK_BYTES)?;
        let ip = net.node_ip(slot);
        hosts.push(NodeHost {
            binary: net.launcher(slot, &node_binary, dir.path())?,
            addrs: PORTS.map(|p| SocketAddr::new(ip, p)),
            data_dir: data_dir.join("data"),
        });
    }
    let full_mount = dir.path().join("node3");
    let mut spec = ClusterSpec::new(3, SHARDS);
    spec.hosts = hosts;
    let mut cluster = LocalCluster::start(spec).await?;
    cluster.wait_all_leaders(Duration::from_secs(60)).await?;
    // The case that matters: node 3 leads shards when its disk fills.
    let deadline = Instant::now() + Duration::from_secs(90);
    let led_by_3 = loop {
        let led = leaders_on(&cluster, 3).await?;
        if !led.is_empty() {
            break led;
        }
        if Instant::now() > deadline {
            bail!("node 3 never became the leader of a shard; the test needs one");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let options = ClientOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .retry_deadline(Duration::from_secs(5));
    let client = Client::connect_with(&cluster.endpoints(), options).await?;

    // Fill node 3's disk, then write more than its preallocated WAL holds.
    let filler = full_mount.join("filler");
    let filled = fill_disk(&filler);
    assert!(filled > 0, "could not fill {}", full_mount.display());
    let value = |i: usize| {
        let mut v = format!("value-{i}-").into_bytes();
        v.resize(VALUE_BYTES, b'x');
        v
    };
    let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..WRITES {
        let key = format!("big-{i}");
        let put = pb::PutRequest {
            key: key.clone().into_bytes(),
            value: value(i),
            ..Default::default()
        };
        match client.put(put).await {
            Ok(_) => {
                acked.insert(key, value(i));
            }
            Err(e) => {
                let code = e.error_code().unwrap_or("(none)").to_string();
                // A full disk is `disk_full`; a leader stalled behind its
                // disk before others took over is a retryable timeout.
                // Never an internal storage error.
                assert!(
                    code != "storage_error" && e.code() != Some(tonic::Code::Internal),
                    "write {i} failed with an internal error: {e}"
                );
                *refusals.entry(code).or_default() += 1;
            }
        }
    }
    let node3 = &mut cluster.nodes[2];
    assert!(
        node3.is_running(),
        "node 3 stopped on a full disk: {}",
        node3.stderr()
    );
    assert!(
        node3.stderr().contains("the data directory is full"),
        "node 3's disk never filled (the test wrote too little to reach it); log:\n{}",
        node3.stderr()
    );
    assert!(
        !acked.is_empty(),
        "no write succeeded with one disk of three full: {refusals:?}"
    );

    // Still full, node 3 leads nothing, and every shard — those it led
    // included — takes writes within a minute.
    let count = cairn_keyspace::ShardCount::new(SHARDS).map_err(anyhow::Error::msg)?;
    let mut while_full: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for shard in 0..SHARDS {
        let key = (0..)
            .map(|n| format!("while-full-{n}"))
            .find(|k| count.shard_for_key(k.as_bytes()) == shard)
            .context("a key for every shard")?;
        let value = format!("written to shard {shard} while node 3 was full").into_bytes();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let put = pb::PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone(),
                ..Default::default()
            };
            match client.put(put).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => bail!(
                    "shard {shard} (node 3 led {led_by_3:?} when its disk filled) took no write within 60 s while node 3 was full: {e}; node 3's log:\n{}\nnode 1's log:\n{}",
                    cluster.nodes[2].stderr(),
                    cluster.nodes[0].stderr()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        while_full.insert(key, value);
    }
    let still_led = leaders_on(&cluster, 3).await?;
    assert!(
        still_led.is_empty(),
        "node 3 still leads shards {still_led:?} with a full disk"
    );
    acked.extend(while_full);

    // Space returns: node 3 resumes and catches up by itself.
    std::fs::remove_file(&filler)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let node3_http = format!("http://{}:{}", net.node_ip(2), PORTS[1]);
    let deadline = Instant::now() + Duration::from_secs(180);
    for (key, want) in &acked {
        loop {
            let got = http
                .get(format!("{node3_http}/store/{key}?consistency=serializable"))
                .send()
                .await;
            if let Ok(r) = got
                && r.status().is_success()
                && r.bytes()
                    .await
                    .map(|b| b.as_ref() == want.as_slice())
                    .unwrap_or(false)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node 3 did not catch up on {key} within 180 s of space returning; log:\n{}",
                    cluster.nodes[2].stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // Nothing acknowledged was lost, and the cluster takes writes again,
    // through the node that was full too.
    for (key, want) in &acked {
        let r = client
            .get(key.clone().into_bytes(), pb::ReadOptions::default())
            .await?;
        assert_eq!(r.kv.map(|kv| kv.value).as_ref(), Some(want), "{key}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .put(format!("{node3_http}/store/after-space-returned"))
            .body("ok")
            .send()
            .await;
        if let Ok(r) = &r
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("writes through node 3 still fail a minute after space returned: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "acknowledged {} of {WRITES} writes while node 3 was full; refused: {refusals:?}",
        acked.len()
    );
    Ok(())
}
