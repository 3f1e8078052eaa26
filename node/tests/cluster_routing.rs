//! Requests in a cluster where no node holds every shard (4 nodes, RF 3):
//! dumb clients read and write any key through any node (the node forwards
//! what it does not hold), the smart client sends each request to its
//! shard's leader and splits reads across leaders, and a write whose
//! response was lost is retried at another node and applied once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_client::Client;
use cairn_proto::kv::v1 as pb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster};
use cairn_testkit::conformance;
use cairn_testkit::lossy_proxy::LossyProxy;

const SHARDS: u32 = 16;

async fn four_nodes() -> LocalCluster {
    LocalCluster::start(ClusterSpec::new(4, SHARDS))
        .await
        .expect("cluster settles")
}

/// Shards each node holds no replica of, from the cluster's status.
async fn missing_shards(cluster: &LocalCluster) -> BTreeMap<u64, Vec<u32>> {
    let status = cluster.status().await.expect("status");
    let mut missing = BTreeMap::new();
    for node in &status.nodes {
        let lacks: Vec<u32> = status
            .shards
            .iter()
            .filter(|s| !s.replicas.iter().any(|r| r.node_id == node.id))
            .map(|s| s.shard)
            .collect();
        missing.insert(node.id, lacks);
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_every_key_even_without_a_replica() {
    let cluster = four_nodes().await;
    let missing = missing_shards(&cluster).await;
    assert!(
        missing.values().all(|m| !m.is_empty()),
        "with 4 nodes and RF 3 every node should lack some shards: {missing:?}"
    );
    // The whole KV API through each node, with plain gRPC stubs.
    for endpoint in cluster.endpoints() {
        conformance::run_all(&endpoint).await;
    }

    // Keys of every shard written through node 1, then read back through
    // every node: single gets, one BatchGet, and a scan in small pages.
    let mut kv = conformance::connect(&cluster.endpoints()[0]).await;
    let keys: Vec<String> = (0..200).map(|i| format!("spread/{i:03}")).collect();
    for k in &keys {
        kv.put(conformance::put(k.clone(), format!("v-{k}")))
            .await
            .expect("put");
    }
    for endpoint in cluster.endpoints() {
        let mut kv = conformance::connect(&endpoint).await;
        for k in keys.iter().step_by(17) {
            let got = conformance::value_of(&mut kv, k.as_bytes()).await;
            assert_eq!(
                got.map(|g| g.value),
                Some(format!("v-{k}").into_bytes()),
                "{k} via {endpoint}"
            );
        }
        let batch = kv
            .batch_get(pb::BatchGetRequest {
                keys: keys.iter().rev().map(|k| k.clone().into_bytes()).collect(),
                read: None,
            })
            .await
            .expect("batch_get")
            .into_inner();
        let values: Vec<Vec<u8>> = batch
            .results
            .into_iter()
            .map(|r| r.kv.map(|kv| kv.value).unwrap_or_default())
            .collect();
        let expected: Vec<Vec<u8>> = keys
            .iter()
            .rev()
            .map(|k| format!("v-{k}").into_bytes())
            .collect();
        assert_eq!(values, expected, "batch_get via {endpoint}");

        let mut scanned = Vec::new();
        let mut token = Vec::new();
        loop {
            let page = kv
                .scan(pb::ScanRequest {
                    prefix: b"spread/".to_vec(),
                    limit: 7,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("scan")
                .into_inner();
            assert!(page.kvs.len() <= 7, "page over the limit via {endpoint}");
            scanned.extend(
                page.kvs
                    .into_iter()
                    .map(|kv| String::from_utf8_lossy(&kv.key).into_owned()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(scanned, keys, "scan via {endpoint}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_client_goes_straight_to_shard_leaders() {
    let cluster = four_nodes().await;
    // Only one node is given: the client learns the others from the map.
    let client = Client::connect(&cluster.endpoints()[..1])
        .await
        .expect("connect");
    let keys: Vec<String> = (0..300).map(|i| format!("routed/{i:03}")).collect();
    // Leaders still move to their preferred nodes right after start-up; a
    // first pass lets them (and the client) settle.
    for k in &keys {
        client
            .put(conformance::put(k.clone(), "warm-up"))
            .await
            .expect("warm-up put");
    }
    let mut at_leader = 0;
    let mut served_by = std::collections::BTreeSet::new();
    for k in &keys {
        let r = client
            .put(conformance::put(k.clone(), k.clone()))
            .await
            .expect("put");
        let h = r.header.expect("header");
        served_by.insert(h.node_id);
        if h.node_id == h.leader_id {
            at_leader += 1;
        }
    }
    // A plain client through one node would reach the leader for about a
    // quarter of the keys; leadership may move during the run, so allow a
    // few misses while the client learns.
    assert!(
        at_leader >= keys.len() * 9 / 10,
        "only {at_leader} of {} writes reached the leader directly",
        keys.len()
    );
    assert!(
        served_by.len() >= 3,
        "requests should spread over the leaders, went to {served_by:?}"
    );
    for k in keys.iter().step_by(13) {
        let r = client
            .get(k.clone(), pb::ReadOptions::default())
            .await
            .expect("get");
        let h = r.header.expect("header");
        assert_eq!(r.kv.map(|kv| kv.value), Some(k.clone().into_bytes()));
        assert_eq!(
            h.node_id, h.leader_id,
            "get of {k} not served by its leader"
        );
    }

    // BatchGet over all shards, split by leader, back in request order.
    let wanted: Vec<Vec<u8>> = keys.iter().rev().map(|k| k.clone().into_bytes()).collect();
    let batch = client
        .batch_get(pb::BatchGetRequest {
            keys: wanted.clone(),
            read: None,
        })
        .await
        .expect("batch_get");
    let values: Vec<Vec<u8>> = batch
        .results
        .into_iter()
        .map(|r| r.kv.map(|kv| kv.value).unwrap_or_default())
        .collect();
    assert_eq!(values, wanted);

    // A scan split by leader, merged in key order, in pages of 11.
    let all = client
        .scan_all(pb::ScanRequest {
            prefix: b"routed/".to_vec(),
            limit: 11,
            ..Default::default()
        })
        .await
        .expect("scan_all");
    let scanned: Vec<String> = all
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    assert_eq!(scanned, keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_response_was_lost_applies_once_when_retried_elsewhere() {
    let cluster = four_nodes().await;
    let endpoints = cluster.endpoints();
    let proxy = LossyProxy::start(&endpoints[0]).await.expect("proxy");
    let mut via_proxy = conformance::connect(&proxy.addr).await;
    // A first call settles the connection (HTTP/2 set-up frames flow after
    // connect), so the armed loss hits the put's response and nothing else.
    conformance::value_of(&mut via_proxy, b"warm-up").await;
    let put = pb::PutRequest {
        request_id: b"lost-response-1".to_vec(),
        ..conformance::put("once-in-a-cluster", "v1")
    };
    proxy.arm();
    let lost = via_proxy.put(put.clone()).await;
    assert!(lost.is_err(), "the proxy should have lost the response");
    assert!(!proxy.armed(), "the proxy never dropped a response");

    // The retry goes to another node, as a client failing over would.
    let mut other = conformance::connect(&endpoints[2]).await;
    let retried = tokio::time::timeout(Duration::from_secs(30), other.put(put.clone()))
        .await
        .expect("retry answers in time")
        .expect("retry succeeds")
        .into_inner();
    let kv = retried.kv.expect("kv");
    assert!(retried.created, "the retry gets the original answer");
    assert_eq!(kv.version, 1);

    for endpoint in &endpoints {
        let mut kv_client = conformance::connect(endpoint).await;
        let now = conformance::value_of(&mut kv_client, b"once-in-a-cluster")
            .await
            .expect("present");
        assert_eq!(
            (now.version, now.mod_revision),
            (1, kv.mod_revision),
            "applied more than once (seen via {endpoint})"
        );
    }
}
