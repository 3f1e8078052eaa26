//! Expired keys leave the disk, not just the read path: the reaper removes
//! them (and their expiry-index entries) through the state machine, and the
//! compaction filter drops any the reaper has not reached — without ever
//! changing a revision.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::Arc;

use cairn_node::clock::ManualClock;
use cairn_node::server::{self, Config, RunningNode};
use cairn_node::storage::{CF_DATA, CF_TTL};
use cairn_proto::kv::v1 as pb;
use cairn_testkit::conformance::{connect, put};

async fn start(
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
    reap_interval_ms: u64,
) -> RunningNode {
    let config = Config {
        data_dir: dir.join("data"),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        ttl_reap_interval_ms: reap_interval_ms,
        block_cache_bytes: 8 << 20,
        ..Config::default()
    };
    server::start(config, clock).await.unwrap()
}

/// Number of physical entries in a column family.
fn entries(node: &RunningNode, cf: &str) -> usize {
    let engine = node.store().engine();
    let handle = engine.cf(cf).unwrap();
    engine
        .db()
        .iterator_cf(handle, rocksdb::IteratorMode::Start)
        .count()
}

async fn write_expiring(node: &RunningNode, n: usize) -> u64 {
    let mut kv = connect(&format!("http://{}", node.grpc_addr)).await;
    let mut last = 0;
    for i in 0..n {
        let mut p = put(format!("temp/{i}"), "short-lived");
        p.ttl_ms = 1000;
        kv.put(p).await.unwrap();
    }
    for i in 0..5 {
        last = kv
            .put(put(format!("keep/{i}"), "forever"))
            .await
            .unwrap()
            .into_inner()
            .kv
            .unwrap()
            .mod_revision;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_removes_expired_keys_and_their_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let node = start(dir.path(), clock.clone(), 20).await;
    write_expiring(&node, 300).await;
    assert_eq!(entries(&node, CF_DATA), 305);
    assert_eq!(entries(&node, CF_TTL), 300);

    clock.advance(1001);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while entries(&node, CF_DATA) > 5 || entries(&node, CF_TTL) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "reaper did not remove expired keys"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = node.metrics().render();
    assert!(
        metrics.contains("cairn_ttl_expired_keys_total 300"),
        "{metrics}"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_filter_drops_expired_records_without_touching_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    // Reaper effectively off: only compaction can reclaim.
    let node = start(dir.path(), clock.clone(), 3_600_000).await;
    let keep_rev = write_expiring(&node, 200).await;
    let mut kv = connect(&format!("http://{}", node.grpc_addr)).await;

    clock.advance(1001);
    // The filter compares with each shard's applied clock, which moves only
    // when the shard applies a command: touch every shard once.
    let shards = node.store().shards();
    let mut touched = std::collections::HashSet::new();
    let mut i = 0;
    while touched.len() < shards.get() as usize {
        let k = format!("tick/{i}");
        if touched.insert(shards.shard_for_key(k.as_bytes())) {
            kv.put(put(k, "t")).await.unwrap();
        }
        i += 1;
    }
    let before = entries(&node, CF_DATA);
    assert!(
        before >= 205,
        "expired records still on disk before compaction: {before}"
    );
    node.store()
        .engine()
        .db()
        .flush_cf(node.store().engine().cf(CF_DATA).unwrap())
        .unwrap();
    node.store().engine().compact_data().unwrap();
    assert_eq!(
        entries(&node, CF_DATA),
        5 + shards.get() as usize,
        "expired records survived compaction"
    );
    // Unexpired keys and their revisions are untouched.
    let r = kv
        .get(pb::GetRequest {
            key: b"keep/4".to_vec(),
            read: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kv.unwrap().mod_revision, keep_rev);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_forgotten_after_retention_and_compacted_away() {
    use cairn_node::apply::dedup::RETENTION_MS;
    use cairn_node::storage::CF_META;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let node = start(dir.path(), clock.clone(), 3_600_000).await;
    let mut kv = connect(&format!("http://{}", node.grpc_addr)).await;
    let mut p = put("{d}/k", "v");
    p.request_id = b"req-1".to_vec();
    kv.put(p.clone()).await.unwrap();
    assert_eq!(
        kv.put(p.clone())
            .await
            .unwrap()
            .into_inner()
            .kv
            .unwrap()
            .version,
        1
    );

    let dedup_entries = |node: &RunningNode| {
        let engine = node.store().engine();
        engine
            .db()
            .prefix_iterator_cf(engine.cf(CF_META).unwrap(), b"dedup/")
            .filter_map(Result::ok)
            .take_while(|(k, _)| k.starts_with(b"dedup/"))
            .count()
    };
    assert_eq!(dedup_entries(&node), 1);

    // Past the retention the id is forgotten: the same request applies anew.
    clock.advance(RETENTION_MS + 1);
    assert_eq!(
        kv.put(p.clone())
            .await
            .unwrap()
            .into_inner()
            .kv
            .unwrap()
            .version,
        2
    );
    // Move the shard's applied clock past that second record too, then compact.
    clock.advance(RETENTION_MS + 1);
    kv.put(put("{d}/tick", "t")).await.unwrap();
    let engine = node.store().engine();
    let meta = engine.cf(CF_META).unwrap();
    engine.db().flush_cf(meta).unwrap();
    engine
        .db()
        .compact_range_cf(meta, None::<&[u8]>, None::<&[u8]>);
    assert_eq!(
        dedup_entries(&node),
        0,
        "expired request records survived compaction"
    );
    node.shutdown().await.unwrap();
}
