//! Multi-key calls: `BatchGet`, `Batch`, `Txn` (the HTTP gateway offers none of them).

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, batch, expect_code, get, op_put, put, value_of};
use crate::unique_prefix;

/// `BatchGet` answers in request order, with misses marked.
pub async fn batch_get_in_request_order<K: KvApi>(mut kv: K) {
    let p = unique_prefix("bget");
    for i in 0..5 {
        kv.put(put(format!("{p}/{i}"), format!("v{i}")))
            .await
            .unwrap();
    }
    let keys: Vec<Vec<u8>> = [3, 9, 0, 4, 3]
        .iter()
        .map(|i| format!("{p}/{i}").into_bytes())
        .collect();
    let r = kv
        .batch_get(pb::BatchGetRequest { keys, read: None })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<Option<Vec<u8>>> = r
        .results
        .iter()
        .map(|x| x.found.then(|| x.kv.clone().unwrap().value))
        .collect();
    assert_eq!(
        got,
        vec![
            Some(b"v3".to_vec()),
            None,
            Some(b"v0".to_vec()),
            Some(b"v4".to_vec()),
            Some(b"v3".to_vec())
        ]
    );
}

/// `Batch` applies all ops with one revision, or none when any op's
/// condition fails; a batch spanning shards is refused.
pub async fn batch_is_atomic<K: KvApi>(mut kv: K) {
    let tag = unique_prefix("batch");
    let a = format!("{{{tag}}}/a");
    let b = format!("{{{tag}}}/b");
    let c = format!("{{{tag}}}/c");
    let r = kv
        .batch(batch(vec![op_put(&a, "1"), op_put(&b, "2")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 2);
    let rev = r.header.unwrap().revision;
    for k in [&a, &b] {
        assert_eq!(
            value_of(&mut kv, k.as_bytes()).await.unwrap().mod_revision,
            rev
        );
    }
    // Op 2 fails (update of a missing key): op 0 and 1 must not apply.
    let failing = pb::BatchRequest {
        ops: vec![
            op_put(&a, "changed"),
            pb::WriteOp {
                op: Some(pb::write_op::Op::Delete(pb::DeleteRequest {
                    key: b.clone().into_bytes(),
                    ..Default::default()
                })),
            },
            pb::WriteOp {
                op: Some(pb::write_op::Op::Update(pb::UpdateRequest {
                    key: c.clone().into_bytes(),
                    value: b"x".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        request_id: Default::default(),
    };
    let s = expect_code(kv.batch(failing).await, Code::NotFound, "op 2");
    assert!(s.message().contains("not found"));
    assert_eq!(value_of(&mut kv, a.as_bytes()).await.unwrap().value, b"1");
    assert!(value_of(&mut kv, b.as_bytes()).await.is_some());
    // Keys in different shards (no shared hash tag) are refused.
    let spread: Vec<pb::WriteOp> = (0..64)
        .map(|i| op_put(&format!("{tag}-x{i}"), "v"))
        .collect();
    expect_code(
        kv.batch(batch(spread)).await,
        Code::InvalidArgument,
        "hash tag",
    );
    expect_code(
        kv.batch(batch(vec![])).await,
        Code::InvalidArgument,
        "no ops",
    );
}

/// `Txn` runs the success branch when all compares hold and the failure
/// branch otherwise; gets inside see the branch's own writes.
pub async fn txn_branches<K: KvApi>(mut kv: K) {
    use pb::compare::{Op, Target};
    let tag = unique_prefix("txn");
    let k = format!("{{{tag}}}/counter");
    let lock = format!("{{{tag}}}/lock");
    let cmp = |target: Target, op: Op, number: u64, value: &[u8]| pb::Compare {
        key: k.clone().into_bytes(),
        target: target as i32,
        op: op as i32,
        value: value.to_vec(),
        number,
    };
    let txn_op_put = |key: &str, v: &str| pb::TxnOp {
        op: Some(pb::txn_op::Op::Put(put(key, v))),
    };
    let txn_get = |key: &str| pb::TxnOp {
        op: Some(pb::txn_op::Op::Get(get(key))),
    };
    // Create only if absent.
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![cmp(Target::Exists, Op::Equal, 0, b"")],
            success: vec![txn_op_put(&k, "1"), txn_op_put(&lock, "held"), txn_get(&k)],
            failure: vec![txn_get(&k)],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    match &r.results[2].result {
        Some(pb::txn_op_result::Result::Get(g)) => assert_eq!(g.kv.as_ref().unwrap().value, b"1"),
        other => panic!("expected get result, got {other:?}"),
    }
    // Same txn again: the key exists now, so the failure branch runs.
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![cmp(Target::Exists, Op::Equal, 0, b"")],
            success: vec![txn_op_put(&k, "WRONG")],
            failure: vec![txn_get(&k)],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeeded);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"1");
    // Value, version and revision compares.
    let cur = value_of(&mut kv, k.as_bytes()).await.unwrap();
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![
                cmp(Target::Value, Op::Equal, 0, b"1"),
                cmp(Target::Version, Op::Less, 2, b""),
                cmp(Target::ModRevision, Op::Equal, cur.mod_revision, b""),
                cmp(Target::CreateRevision, Op::Greater, 0, b""),
            ],
            success: vec![txn_op_put(&k, "2")],
            failure: vec![],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"2");
    // Cross-shard txns are refused.
    let other = format!("{tag}-elsewhere-{}", rand::random::<u64>());
    let mut spread = vec![];
    for i in 0..64 {
        spread.push(txn_op_put(&format!("{other}{i}"), "v"));
    }
    expect_code(
        kv.txn(pb::TxnRequest {
            compares: vec![],
            success: spread,
            failure: vec![],
            request_id: Default::default(),
        })
        .await,
        Code::InvalidArgument,
        "shard",
    );
}
