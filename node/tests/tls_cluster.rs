//! A cluster with TLS on: it forms and serves over TLS (gRPC and the HTTP
//! gateway), refuses plaintext, keeps its peer API to its own nodes (no
//! client certificate, no impostor claiming another node's id), and fails
//! over under load without losing an acknowledged write.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_client::{Client, ClientOptions};
use cairn_proto::raft::v1 as rpb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster};
use cairn_testkit::conformance;
use cairn_tls::{TlsContext, TlsMetrics, TlsPaths};
use common::history::{History, check_history, spawn_writers};

async fn secured(nodes: usize) -> LocalCluster {
    LocalCluster::start(ClusterSpec::new(nodes, 8).secure())
        .await
        .unwrap()
}

fn context(paths: TlsPaths) -> Arc<TlsContext> {
    TlsContext::load(paths, TlsMetrics::new().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_serves_over_tls_only() {
    let cluster = secured(3).await;
    let tls = cluster.client_tls().unwrap();
    for endpoint in cluster.endpoints() {
        let left_out =
            conformance::run_all_with(conformance::connect_tls(&endpoint, &tls).await).await;
        assert!(left_out.is_empty(), "{left_out:?}");
    }
    let client = Client::connect_with(
        &cluster.endpoints(),
        ClientOptions::default().tls(tls.clone()),
    )
    .await
    .unwrap();
    client
        .put(cairn_proto::kv::v1::PutRequest {
            key: b"over-tls".to_vec(),
            value: b"yes".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Plaintext is refused, and so is https:// without TLS settings.
    let plain = Client::connect_with(
        &cluster.endpoints(),
        ClientOptions::default().connect_timeout(Duration::from_secs(2)),
    )
    .await;
    let refused = match plain {
        Err(_) => true,
        Ok(c) => c
            .get("over-tls", cairn_proto::kv::v1::ReadOptions::default())
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext client was served");
    let e = Client::connect(&[format!("https://{}", cluster.nodes[0].grpc)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--tls-ca"), "{e}");

    // The HTTP gateway speaks HTTPS with the same certificate.
    let node = &cluster.nodes[1];
    let answer = common::https_exchange(
        node.http,
        &tls,
        b"GET /store/over-tls HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("yes"), "{answer}");
}

/// A Vote request of shard 0 in the name of `candidate`.
fn vote_from(candidate: u64) -> rpb::RaftMessage {
    let req = openraft::raft::VoteRequest::<cairn_node::raft::types::ShardRaft>::new(
        openraft::Vote::new(1_000, candidate),
        None,
    );
    rpb::RaftMessage {
        shard: 0,
        payload: cairn_node::raft::log_store::encode(&req).unwrap(),
    }
}

async fn vote_as(
    tls: &Arc<TlsContext>,
    node: &cairn_testkit::process::NodeProcess,
    candidate: u64,
) -> tonic::Status {
    let ch = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect_with_connector(tls.connector())
        .await
        .unwrap();
    rpb::raft_transport_client::RaftTransportClient::new(ch)
        .vote(vote_from(candidate))
        .await
        .expect_err("the vote must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_api_serves_only_the_clusters_own_nodes() {
    let cluster = secured(3).await;
    let dir = cluster.tls_dir().unwrap().to_path_buf();
    let target = &cluster.nodes[0];

    // A valid client certificate without a node identity.
    let client = cluster.client_tls().unwrap();
    let s = vote_as(&client, target, 2).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("node certificates"), "{s:?}");

    // No certificate at all.
    let anonymous = context(TlsPaths {
        ca: dir.join("ca.pem"),
        cert: None,
        key: None,
        crl: None,
    });
    let s = vote_as(&anonymous, target, 2).await;
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");

    // Node 2's certificate, claiming to be node 3.
    let node2 = context(TlsPaths {
        ca: dir.join("ca.pem"),
        cert: Some(dir.join("node2.pem")),
        key: Some(dir.join("node2.key")),
        crl: None,
    });
    let s = vote_as(&node2, target, 3).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(
        s.message().contains("claiming to come from node 3"),
        "{s:?}"
    );

    // The cluster is unharmed: every shard still has its leader.
    cluster
        .wait_all_leaders(Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_fails_over_without_losing_a_write() {
    let mut cluster = secured(3).await;
    let tls = cluster.client_tls().unwrap();
    let client = Client::connect_with(&cluster.endpoints(), ClientOptions::default().tls(tls))
        .await
        .unwrap();
    let acked: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(
        client.clone(),
        "tls-failover",
        8,
        stop.clone(),
        acked.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.busiest_leader().await.unwrap();
    cluster.nodes[victim].kill();
    cluster
        .wait_all_leaders(Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.await.unwrap().unwrap() > 0, "a writer made no progress");
    }
    check_history(&client, &acked).await;
    // The killed node comes back over TLS and catches up.
    cluster.nodes[victim].start_again().unwrap();
    cluster.wait_settled(Duration::from_secs(60)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_metrics_the_metrics_port_speaks_only_tls() {
    let mut spec = ClusterSpec::new(1, 4).secure();
    spec.args.push("--tls-metrics".into());
    let cluster = LocalCluster::start(spec).await.unwrap();
    let tls = cluster.client_tls().unwrap();
    let node = &cluster.nodes[0];
    let answer = common::https_exchange(
        node.metrics,
        &tls,
        b"GET /metrics HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("cairn_tls_cert_expiry_timestamp_seconds"),
        "{answer}"
    );
    let plain = reqwest::get(format!("http://{}/metrics", node.metrics)).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plaintext metrics were served"
    );
}
