//! Connection handling of the library against real `cairn-node` processes:
//! endpoint selection, fail-over when a node dies, retry bounds, and paging.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::time::{Duration, Instant};

use cairn_client::{Client, ClientError, ClientOptions, pb};
use cairn_testkit::lossy_proxy::LossyProxy;
use cairn_testkit::single;

fn put(key: &str, value: &[u8]) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn connect_skips_endpoints_that_refuse_connections() {
    let node = single::spawn().await;
    let dead = single::dead_addr().await;
    let client = Client::connect(&[dead, node.addr.clone()])
        .await
        .expect("connect");
    assert_eq!(client.current_endpoint(), node.addr);
    client.put(put("k", b"v")).await.expect("put");
    assert_eq!(node.value(b"k").await, Some(b"v".to_vec()));
}

#[tokio::test]
async fn connect_fails_with_all_endpoints_named_when_none_answers() {
    let dead = [single::dead_addr().await, single::dead_addr().await];
    let err = Client::connect(&dead).await.expect_err("nothing listens");
    match &err {
        ClientError::Connect { endpoints, .. } => assert_eq!(endpoints, &dead),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
}

#[tokio::test]
async fn malformed_endpoint_is_rejected_before_connecting() {
    let err = Client::connect(&["localhost".to_string()])
        .await
        .expect_err("no port");
    assert!(matches!(err, ClientError::InvalidEndpoint(_)), "{err:?}");
    let err = Client::connect(&[]).await.expect_err("no endpoints");
    assert!(matches!(err, ClientError::NoEndpoints), "{err:?}");
}

#[tokio::test]
async fn killed_node_is_failed_over_to_the_next_endpoint_for_all_clones() {
    let mut first = single::spawn().await;
    let second = single::spawn().await;
    second.insert(b"k", b"from-second").await;
    let client = Client::connect(&[first.addr.clone(), second.addr.clone()])
        .await
        .expect("connect");
    let clone = client.clone();
    assert_eq!(client.current_endpoint(), first.addr);
    first.process.kill();

    let got = client
        .get("k", pb::ReadOptions::default())
        .await
        .expect("get after fail-over");
    assert_eq!(got.kv.map(|kv| kv.value), Some(b"from-second".to_vec()));
    assert_eq!(client.current_endpoint(), second.addr);
    assert_eq!(clone.current_endpoint(), second.addr);
    clone
        .put(put("k2", b"v"))
        .await
        .expect("clone writes to second");
    assert_eq!(second.value(b"k2").await, Some(b"v".to_vec()));
}

#[tokio::test]
async fn retries_stop_at_the_deadline_with_an_unavailable_error() {
    let mut node = single::spawn().await;
    let options = ClientOptions::default().retry_deadline(Duration::from_millis(400));
    let client = Client::connect_with(std::slice::from_ref(&node.addr), options)
        .await
        .expect("connect");
    node.process.kill();

    let started = Instant::now();
    let err = client
        .get("k", pb::ReadOptions::default())
        .await
        .expect_err("node is gone");
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
    // Generous bounds: it retried for a while but respected the deadline.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn other_errors_are_returned_without_retrying() {
    let node = single::spawn().await;
    node.insert(b"k", b"v").await;
    let client = Client::connect(std::slice::from_ref(&node.addr))
        .await
        .expect("connect");
    let err = client
        .put(pb::PutRequest {
            if_absent: true,
            ..put("k", b"w")
        })
        .await
        .expect_err("key exists");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition));
    assert_eq!(err.error_code(), Some("key_exists"));
    // Same gRPC status, another stable code.
    let err = client
        .put(pb::PutRequest {
            if_mod_revision: Some(999_999),
            ..put("k", b"w")
        })
        .await
        .expect_err("revision mismatch");
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition));
    assert_eq!(err.error_code(), Some("revision_mismatch"));
    // The server saw exactly one refused put of each: no retry.
    let metrics = node.metrics().await;
    assert!(
        metrics.contains(r#"cairn_requests_total{api="grpc",code="key_exists",method="Put"} 1"#),
        "{metrics}"
    );
    assert_eq!(node.value(b"k").await, Some(b"v".to_vec()));
}

#[tokio::test]
async fn scan_all_follows_page_tokens_to_the_end() {
    let node = single::spawn().await;
    for i in 0..1500 {
        node.insert(format!("p/{i:05}").as_bytes(), b"x").await;
    }
    node.insert(b"q/1", b"x").await;
    let client = Client::connect(std::slice::from_ref(&node.addr))
        .await
        .expect("connect");
    let kvs = client
        .scan_all(pb::ScanRequest {
            prefix: b"p/".to_vec(),
            limit: 400,
            ..Default::default()
        })
        .await
        .expect("scan");
    let keys: Vec<String> = kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).expect("utf8"))
        .collect();
    let want: Vec<String> = (0..1500).map(|i| format!("p/{i:05}")).collect();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn eight_mib_values_fit_through_the_message_limits() {
    let node = single::spawn().await;
    let client = Client::connect(std::slice::from_ref(&node.addr))
        .await
        .expect("connect");
    let value = vec![7u8; 8 << 20];
    client.put(put("big", &value)).await.expect("put 8 MiB");
    let got = client
        .get("big", pb::ReadOptions::default())
        .await
        .expect("get 8 MiB");
    assert_eq!(got.kv.map(|kv| kv.value.len()), Some(value.len()));
}

#[tokio::test]
async fn a_write_whose_response_is_lost_is_retried_exactly_once() {
    let node = single::spawn().await;
    let proxy = LossyProxy::start(&node.addr).await.expect("proxy");
    let client = Client::connect(std::slice::from_ref(&proxy.addr))
        .await
        .expect("connect");
    client.put(put("warm-up", b"x")).await.expect("warm-up put");

    proxy.arm();
    let r = client
        .put(put("once", b"v"))
        .await
        .expect("the retry after the lost response succeeds");
    assert!(!proxy.armed(), "the proxy never dropped a response");
    let kv = r.kv.expect("kv");
    assert!(r.created, "the retry gets the original answer");
    assert_eq!(kv.version, 1);

    // The node served the put twice (the lost answer and the retry) but applied it once.
    let metrics = node.metrics().await;
    assert!(
        metrics.contains(r#"cairn_requests_total{api="grpc",code="ok",method="Put"} 3"#),
        "expected warm-up + original + retry: {metrics}"
    );
    let mut raw = pb::kv_client::KvClient::connect(node.addr.clone())
        .await
        .expect("connect");
    let now = raw
        .get(pb::GetRequest {
            key: b"once".to_vec(),
            read: None,
        })
        .await
        .expect("get")
        .into_inner()
        .kv
        .expect("present");
    assert_eq!((now.version, now.mod_revision), (1, kv.mod_revision));
}
