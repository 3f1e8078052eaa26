//! The KV API conformance suite against a single real `cairn-node` process
//! over real gRPC: through the raw stub and through the smart client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_passes_the_kv_conformance_suite() {
    let t = common::start_node(&[]);
    cairn_testkit::conformance::run_all(&t.node.grpc_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_client_passes_the_kv_conformance_suite_on_a_single_node() {
    let t = common::start_node(&[]);
    let client = cairn_client::Client::connect(&[t.node.grpc_url()])
        .await
        .expect("connect");
    cairn_testkit::conformance::run_all_with(client).await;
}
