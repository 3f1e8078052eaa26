//! Expiry: a key with a TTL disappears from every read path.

use std::time::{Duration, Instant};

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, expect_code, put, value_of};
use crate::unique_prefix;

/// A key with a TTL is readable until it expires and then invisible to
/// every read path; `keep_ttl` keeps the expiry across an overwrite.
pub async fn ttl_hides_expired_keys<K: KvApi>(mut kv: K) {
    let p = unique_prefix("ttl");
    let k = format!("{p}/k");
    let mut req = put(k.clone(), "short-lived");
    // Whole seconds: the HTTP gateway takes ttl_seconds.
    req.ttl_ms = 2000;
    let r = kv.put(req).await.unwrap().into_inner();
    let exp = r.kv.unwrap().expires_at_ms;
    assert!(exp > 0);
    let got = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(got.expires_at_ms, exp);
    let mut keep = put(k.clone(), "still-short-lived");
    keep.keep_ttl = true;
    let r = kv.put(keep).await.unwrap().into_inner();
    assert_eq!(r.kv.unwrap().expires_at_ms, exp);
    let deadline = Instant::now() + Duration::from_secs(30);
    while value_of(&mut kv, k.as_bytes()).await.is_some() {
        assert!(Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scan = kv
        .scan(pb::ScanRequest {
            prefix: p.clone().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(scan.kvs.is_empty(), "expired key visible to scan");
    if kv.surface().batch_get {
        let bg = kv
            .batch_get(pb::BatchGetRequest {
                keys: vec![k.clone().into_bytes()],
                read: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!bg.results[0].found);
    }
    let mut upd = pb::UpdateRequest {
        key: k.clone().into_bytes(),
        value: b"x".to_vec(),
        ..Default::default()
    };
    expect_code(kv.update(upd.clone()).await, Code::NotFound, "not found");
    // An expired key is absent: a new put creates it afresh.
    let created = kv.put(put(k.clone(), "again")).await.unwrap().into_inner();
    assert!(created.created);
    assert_eq!(created.kv.unwrap().version, 1);
    upd.value = b"y".to_vec();
    kv.update(upd).await.unwrap();
}
