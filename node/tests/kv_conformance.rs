//! The KV API conformance suite against a single real `cairn-node` process
//! over real gRPC.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_passes_the_kv_conformance_suite() {
    let t = common::start_node(&[]);
    cairn_testkit::conformance::run_all(&t.node.grpc_url()).await;
}
