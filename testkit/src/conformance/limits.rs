//! Limits and bad input: refused with the limit named, changing nothing.

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, batch, expect_code, get, op_put, put, value_of};
use crate::unique_prefix;

/// Every limit is enforced with INVALID_ARGUMENT naming the limit, and a
/// refused request changes nothing.
pub async fn limits_and_bad_input<K: KvApi>(mut kv: K) {
    let p = unique_prefix("limits");
    let sentinel = format!("{p}/sentinel");
    let before = kv
        .put(put(sentinel.clone(), "keep"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();

    expect_code(
        kv.put(put(Vec::new(), "v")).await,
        Code::InvalidArgument,
        "empty",
    );
    expect_code(
        kv.get(get(Vec::new())).await,
        Code::InvalidArgument,
        "empty",
    );
    expect_code(
        kv.put(put(vec![b'k'; 4097], "v")).await,
        Code::InvalidArgument,
        "4096",
    );
    kv.put(put(vec![b'k'; 4096], "v"))
        .await
        .expect("a 4096-byte key is allowed");
    expect_code(
        kv.put(put(sentinel.clone(), vec![0u8; 8 * 1024 * 1024 + 1]))
            .await,
        Code::InvalidArgument,
        "8388608",
    );
    if kv.surface().batch {
        let ops: Vec<pb::WriteOp> = (0..1001)
            .map(|i| op_put(&format!("{{{p}}}/{i}"), "v"))
            .collect();
        expect_code(kv.batch(batch(ops)).await, Code::InvalidArgument, "1000");
        let big = vec![0u8; 4 * 1024 * 1024];
        let ops: Vec<pb::WriteOp> = (0..5)
            .map(|i| pb::WriteOp {
                op: Some(pb::write_op::Op::Put(put(
                    format!("{{{p}}}/big{i}"),
                    big.clone(),
                ))),
            })
            .collect();
        expect_code(
            kv.batch(batch(ops)).await,
            Code::InvalidArgument,
            "16777216",
        );
        expect_code(
            kv.batch(batch(vec![
                op_put(&sentinel, "x"),
                pb::WriteOp { op: None },
            ]))
            .await,
            Code::InvalidArgument,
            "op 1",
        );
    }
    expect_code(
        kv.scan(pb::ScanRequest {
            limit: 10_001,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "10000",
    );
    if kv.surface().batch_get {
        let keys: Vec<Vec<u8>> = (0..1001).map(|i| format!("{p}/{i}").into_bytes()).collect();
        let too_many = kv
            .batch_get(pb::BatchGetRequest {
                keys: keys.clone(),
                read: None,
            })
            .await;
        match too_many {
            // A front end that splits BatchGet by shard leader sends parts that
            // are each within the limit: then every key must be answered, in
            // request order (none of them exists).
            Ok(r) if kv.splits_batch_get() => {
                let r = r.into_inner();
                assert_eq!(r.results.len(), keys.len());
                assert!(r.results.iter().all(|x| !x.found && x.kv.is_none()));
            }
            other => {
                expect_code(other, Code::InvalidArgument, "1000");
            }
        }
    }
    let mut both = put(sentinel.clone(), "x");
    both.if_absent = true;
    both.if_mod_revision = Some(5);
    expect_code(kv.put(both).await, Code::InvalidArgument, "if_absent");

    let after = value_of(&mut kv, sentinel.as_bytes()).await.unwrap();
    assert_eq!(after.value, b"keep");
    assert_eq!(after.mod_revision, before.mod_revision);
    assert!(
        value_of(&mut kv, format!("{{{p}}}/0").as_bytes())
            .await
            .is_none()
    );
}
