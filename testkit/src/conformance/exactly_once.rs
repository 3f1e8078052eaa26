//! Exactly-once retries: a request id makes a retried write apply once.

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, expect_code, op_put, put, value_of};
use crate::unique_prefix;

/// A write retried with the same `request_id` returns its original result
/// and applies nothing (revision and version prove it), refusals included;
/// the same id on a different request is refused.
pub async fn retried_writes_apply_once<K: KvApi>(mut kv: K) {
    let tag = unique_prefix("once");
    let k = format!("{{{tag}}}/k");
    let id = |s: &str| format!("{tag}-{s}").into_bytes();

    let mut first = put(k.clone(), "v1");
    first.request_id = id("a");
    let r1 = kv.put(first.clone()).await.unwrap().into_inner();
    let r2 = kv.put(first.clone()).await.unwrap().into_inner();
    assert_eq!(r1.kv, r2.kv, "a retry must return the original result");
    assert!(r2.created);
    let now = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(
        (now.version, now.mod_revision),
        (1, r1.kv.as_ref().unwrap().mod_revision)
    );

    let mut reused = put(k.clone(), "different");
    reused.request_id = id("a");
    expect_code(kv.put(reused).await, Code::AlreadyExists, "already used");

    // A refusal is remembered too: the retry gets the same answer even after
    // the state changed.
    let mut refused = put(k.clone(), "x");
    refused.if_absent = true;
    refused.request_id = id("b");
    expect_code(
        kv.put(refused.clone()).await,
        Code::FailedPrecondition,
        "already exists",
    );
    kv.delete(pb::DeleteRequest {
        key: k.clone().into_bytes(),
        ..Default::default()
    })
    .await
    .unwrap();
    expect_code(
        kv.put(refused).await,
        Code::FailedPrecondition,
        "already exists",
    );
    assert!(value_of(&mut kv, k.as_bytes()).await.is_none());

    // Batches and transactions.
    if kv.surface().batch {
        let batch = pb::BatchRequest {
            ops: vec![op_put(&k, "b1"), op_put(&format!("{{{tag}}}/other"), "b2")],
            request_id: id("c"),
        };
        let b1 = kv.batch(batch.clone()).await.unwrap().into_inner();
        let b2 = kv.batch(batch).await.unwrap().into_inner();
        assert_eq!(
            b1.header.as_ref().unwrap().revision,
            b2.header.as_ref().unwrap().revision
        );
        assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().version, 1);
    } else {
        // The state the batch leaves, for the transaction below.
        kv.put(put(k.clone(), "b1")).await.unwrap();
    }
    if kv.surface().txn {
        let txn = pb::TxnRequest {
            compares: vec![pb::Compare {
                key: k.clone().into_bytes(),
                target: pb::compare::Target::Value as i32,
                op: pb::compare::Op::Equal as i32,
                value: b"b1".to_vec(),
                number: 0,
            }],
            success: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Put(put(k.clone(), "t1"))),
            }],
            failure: vec![],
            request_id: id("d"),
        };
        assert!(kv.txn(txn.clone()).await.unwrap().into_inner().succeeded);
        // Without the id this retry would now take the failure branch.
        assert!(kv.txn(txn).await.unwrap().into_inner().succeeded);
        let after = value_of(&mut kv, k.as_bytes()).await.unwrap();
        assert_eq!((after.value.as_slice(), after.version), (&b"t1"[..], 2));
    }

    let mut long = put(k.clone(), "v");
    long.request_id = vec![b'i'; 65];
    expect_code(kv.put(long).await, Code::InvalidArgument, "64");
}
