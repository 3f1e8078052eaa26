//! Table of bad requests over HTTP and gRPC: each gets the documented status
//! and a message naming the rule or limit, and none changes stored data.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use cairn_proto::kv::v1 as pb;
use cairn_testkit::conformance::{connect, put, value_of};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_clear_errors_and_change_nothing() {
    let t = common::start_node(&[]);
    let base = t.node.http_url();
    let c = Client::new();
    c.put(format!("{base}/store/sentinel"))
        .body("safe")
        .send()
        .await
        .unwrap();

    let long_key = "k".repeat(4097);
    // (method, path, body, expected status, substring of the error message)
    let table: Vec<(&str, String, Vec<u8>, StatusCode, &str)> = vec![
        (
            "BREW",
            "/store/sentinel".into(),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "BREW",
        ),
        (
            "POST",
            "/store/sentinel".into(),
            b"x".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
            "allowed",
        ),
        (
            "DELETE",
            "/store".into(),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "allowed",
        ),
        (
            "GET",
            "/elsewhere".into(),
            vec![],
            StatusCode::NOT_FOUND,
            "/store",
        ),
        (
            "PUT",
            "/store/".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "PUT",
            format!("/store/{long_key}"),
            b"x".to_vec(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096",
        ),
        (
            "PUT",
            "/store".into(),
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "not a valid put",
        ),
        (
            "PUT",
            "/store".into(),
            br#"{"key":"a"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "value",
        ),
        (
            "PUT",
            "/store".into(),
            br#"{"key":"a","value":"b","colour":"red"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "PUT",
            "/store".into(),
            br#"{"key":"!!","value":"b","encoding":"base64"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            "PUT",
            "/store".into(),
            br#"{"key":"","value":"b"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "PUT",
            "/store/sentinel?ttl_seconds=soon".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
            "ttl_seconds",
        ),
        (
            "PUT",
            "/store/sentinel?if_absent=maybe".into(),
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
            "if_absent",
        ),
        (
            "DELETE",
            "/store/sentinel?return_previous=please".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "return_previous",
        ),
        (
            "PUT",
            "/store/sentinel?if_revision=999".into(),
            b"x".to_vec(),
            StatusCode::PRECONDITION_FAILED,
            "mod_revision",
        ),
        (
            "GET",
            "/store?limit=10001".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "10000",
        ),
        (
            "GET",
            "/store?page_token=%%%".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "page_token",
        ),
        (
            "GET",
            "/store?limit=-1".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "GET",
            "/store?page_token=AAAA".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "page_token",
        ),
        (
            "GET",
            "/store?prefix=a&start=b".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "prefix",
        ),
        (
            "GET",
            "/store/sentinel?consistency=eventual".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "consistency",
        ),
        (
            "GET",
            "/store?encoding=rot13".into(),
            vec![],
            StatusCode::BAD_REQUEST,
            "encoding",
        ),
    ];
    for (m, path, body, status, needle) in table {
        let r = c
            .request(
                Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{base}{path}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let got = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{m} {path}: {text}");
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{m} {path}: error body is not JSON: {text}"));
        let msg = json["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{m} {path}: message {msg:?} lacks {needle:?}"
        );
        assert!(
            json["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{m} {path}: no code"
        );
    }
    let r = c
        .get(format!("{base}/store/sentinel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cairn-version"], "1");
    assert_eq!(r.text().await.unwrap(), "safe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_get_clear_errors_and_change_nothing() {
    let t = common::start_node(&[]);
    let mut kv = connect(&t.node.grpc_url()).await;
    let sentinel = b"sentinel".to_vec();
    let before = kv
        .put(put(sentinel.clone(), "safe"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();

    let compare = |target: i32, op: i32| pb::TxnRequest {
        compares: vec![pb::Compare {
            key: sentinel.clone(),
            target,
            op,
            value: vec![],
            number: 0,
        }],
        success: vec![pb::TxnOp {
            op: Some(pb::txn_op::Op::Put(put(sentinel.clone(), "x"))),
        }],
        failure: vec![],
        request_id: Default::default(),
    };
    let checks: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = vec![
        (
            "unknown compare target",
            kv.txn(compare(99, 0)).await.map(|_| ()),
            Code::InvalidArgument,
            "unknown target",
        ),
        (
            "unknown compare op",
            kv.txn(compare(0, 42)).await.map(|_| ()),
            Code::InvalidArgument,
            "operator",
        ),
        (
            "empty txn",
            kv.txn(pb::TxnRequest::default()).await.map(|_| ()),
            Code::InvalidArgument,
            "no keys",
        ),
        (
            "empty txn op",
            kv.txn(pb::TxnRequest {
                success: vec![pb::TxnOp { op: None }],
                ..compare(0, 0)
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "huge ttl",
            kv.put(pb::PutRequest {
                ttl_ms: u64::MAX,
                ..put(sentinel.clone(), "x")
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "update key too large",
            kv.update(pb::UpdateRequest {
                key: vec![1; 5000],
                value: vec![],
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "4096",
        ),
        (
            "delete empty key",
            kv.delete(pb::DeleteRequest::default()).await.map(|_| ()),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "inverted range",
            kv.scan(pb::ScanRequest {
                start: b"b".to_vec(),
                end: b"a".to_vec(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            "before",
        ),
    ];
    for (name, got, code, needle) in checks {
        let s = got.expect_err(name);
        assert_eq!(s.code(), code, "{name}: {s:?}");
        assert!(
            s.message().contains(needle),
            "{name}: {:?} lacks {needle:?}",
            s.message()
        );
        assert!(
            s.metadata().get("cairn-error-code").is_some(),
            "{name}: no error code metadata"
        );
    }
    // A message beyond even the transport limit is refused without harm.
    let huge = kv.put(put(sentinel.clone(), vec![0u8; 40 << 20])).await;
    assert!(huge.is_err());
    let after = value_of(&mut kv, &sentinel).await.unwrap();
    assert_eq!(
        (after.value, after.mod_revision),
        (b"safe".to_vec(), before.mod_revision)
    );
}
