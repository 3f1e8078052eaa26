//! Scale out under load: a 3-node cluster holding 100k keys grows to 5
//! nodes while a client keeps writing; the shards spread over the new nodes,
//! no writer sees an error, and every key (loaded or acknowledged) is there.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_proto::admin::v1 as apb;
use cairn_proto::kv::v1 as pb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster, admin};
use common::history::{History, check_history, spawn_writers};

const GROUPS: usize = 1000;
const PER_GROUP: usize = 100;

/// Loads GROUPS × PER_GROUP keys, one atomic batch per hash-tagged group.
async fn load(client: &Client) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for g in (t..GROUPS).step_by(8) {
                    let ops = (0..PER_GROUP)
                        .map(|i| pb::WriteOp {
                            op: Some(pb::write_op::Op::Put(pb::PutRequest {
                                key: format!("{{g{g:04}}}/k{i:03}").into_bytes(),
                                value: format!("v{g}-{i}").into_bytes(),
                                ..Default::default()
                            })),
                        })
                        .collect();
                    client
                        .batch(pb::BatchRequest {
                            ops,
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|e| panic!("loading group {g}: {e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_from_three_to_five_nodes_under_load_loses_nothing() {
    let mut cluster = LocalCluster::start(ClusterSpec::new(3, 16)).await.unwrap();
    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    load(&client).await;

    let acked: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(client.clone(), "scale", 4, stop.clone(), acked.clone());
    cluster.add_node().unwrap();
    cluster.add_node().unwrap();

    // Every shard ends with 3 caught-up voters, and every node holds its
    // share of replicas and leaderships within one (48 / 5 = 9.6 replicas,
    // 16 / 5 = 3.2 leaderships).
    let balanced =
        |count: u32, total: u32| (f64::from(count) - f64::from(total) / 5.0).abs() <= 1.0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = Vec::new();
    let settled = loop {
        if let Ok(s) = cluster.wait_settled(Duration::from_secs(5)).await {
            last = s
                .nodes
                .iter()
                .map(|n| (n.id, n.replicas, n.leaders))
                .collect();
            if s.nodes.len() == 5
                && s.nodes
                    .iter()
                    .all(|n| balanced(n.replicas, 48) && balanced(n.leaders, 16))
            {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not balance over 5 nodes; (node, replicas, leaders): {last:?}"
        );
    };
    let per_node: Vec<(u64, u32, u32)> = settled
        .nodes
        .iter()
        .map(|n| (n.id, n.replicas, n.leaders))
        .collect();
    eprintln!("replicas and leaders per node after scale-out: {per_node:?}");
    assert_eq!(per_node.iter().map(|(_, r, _)| r).sum::<u32>(), 16 * 3);

    // The nodes shards moved off delete those replicas: every node ends up
    // hosting exactly the shards whose groups name it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.status().await.unwrap();
        let mut stray = Vec::new();
        for node in &cluster.nodes {
            let report = admin(node)
                .await
                .unwrap()
                .node_report(apb::NodeReportRequest {})
                .await
                .unwrap()
                .into_inner();
            for r in report.replicas.iter().filter(|r| r.shard != u32::MAX) {
                let member = status.shards[r.shard as usize]
                    .replicas
                    .iter()
                    .any(|x| x.node_id == report.node_id);
                if !member {
                    stray.push((report.node_id, r.shard));
                }
            }
        }
        if stray.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas left behind on (node, shard): {stray:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let n = w.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "a writer made no progress");
    }
    check_history(&client, &acked).await;

    // Every loaded key, read back in key order.
    let all = client
        .scan_all(pb::ScanRequest {
            prefix: b"{g".to_vec(),
            limit: 5000,
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("scan");
    assert_eq!(all.len(), GROUPS * PER_GROUP);
    let sample = client
        .get("{g0777}/k042", pb::ReadOptions::default())
        .await
        .expect("get");
    assert_eq!(sample.kv.map(|kv| kv.value), Some(b"v777-42".to_vec()));
}
