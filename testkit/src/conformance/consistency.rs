//! Read options: the read-your-writes token (`min_revision`) and where it is refused.

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, expect_code, put};
use crate::unique_prefix;

/// A `min_revision` read succeeds at once for a revision already reached
/// and times out for one far in the future.
pub async fn read_your_writes_token<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("ryw"));
    let rev = kv
        .put(put(k.clone(), "v"))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let r = kv
        .get(pb::GetRequest {
            key: k.clone().into_bytes(),
            read: Some(pb::ReadOptions {
                consistency: pb::Consistency::Serializable as i32,
                min_revision: rev,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.header.unwrap().revision >= rev);
    assert_eq!(r.kv.unwrap().value, b"v");
    let far = kv
        .get(pb::GetRequest {
            key: k.clone().into_bytes(),
            read: Some(pb::ReadOptions {
                consistency: 0,
                min_revision: rev + 1_000_000_000,
            }),
        })
        .await;
    expect_code(far, Code::DeadlineExceeded, "min_revision");
    // A per-shard token cannot bound a read across shards: refused, not a hang.
    let token = Some(pb::ReadOptions {
        consistency: 0,
        min_revision: rev,
    });
    let scan = kv
        .scan(pb::ScanRequest {
            read: token,
            ..Default::default()
        })
        .await;
    expect_code(scan, Code::InvalidArgument, "per-shard");
    if kv.surface().batch_get {
        let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("{k}-{i}").into_bytes()).collect();
        let bg = kv
            .batch_get(pb::BatchGetRequest { keys, read: token })
            .await;
        expect_code(bg, Code::InvalidArgument, "per-shard");
    }
}
