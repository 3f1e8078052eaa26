//! Snapshot round trips of the shard state machine: build, stream, stage,
//! install, and installs cut short by a crash.

use std::collections::BTreeSet;
use std::path::Path;

use cairn_proto::kv::v1 as pb;
use cairn_proto::raft::v1 as rpb;
use openraft::alias::EntryOf;
use openraft::entry::RaftEntry as _;
use openraft::testing::{log_id, membership_ent};
use rocksdb::ReadOptions;

use super::*;
use crate::apply::{Command, CommandOp};
use crate::raft::ShardRequest;
use crate::storage::keys::{dedup_key, prefix_successor, shard_end, shard_start};
use crate::storage::{CF_DATA, CF_TTL, EngineOptions, SyncMode};

const SHARD: ShardId = 3;
const OTHER: ShardId = 4;
const NOW_MS: u64 = 1_700_000_000_000;

fn open(dir: &Path) -> Engine {
    let engine = Engine::open(&EngineOptions {
        data_dir: dir.to_path_buf(),
        block_cache_bytes: 8 << 20,
        row_cache_bytes: 0,
        sync: SyncMode::Fsync,
    })
    .unwrap();
    engine.clocks().init(&[0; 8]);
    engine
}

/// Pseudo-random bytes (incompressible, so SSTs get big).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    (0..len.div_ceil(8))
        .flat_map(|i| {
            let mut block = seed.to_be_bytes().to_vec();
            block.extend_from_slice(&(i as u64).to_be_bytes());
            xxhash_rust::xxh3::xxh3_64(&block).to_be_bytes()
        })
        .take(len)
        .collect()
}

/// A command writing `keys` (every third with a TTL), with a request id.
fn puts(
    shard: ShardId,
    prefix: &str,
    keys: std::ops::Range<u32>,
    value_len: usize,
) -> ShardRequest {
    let ops = keys
        .clone()
        .map(|i| pb::WriteOp {
            op: Some(pb::write_op::Op::Put(pb::PutRequest {
                key: format!("{prefix}/{i:06}").into_bytes(),
                value: noise(u64::from(i), value_len),
                ttl_ms: if i % 3 == 0 { 3_600_000 } else { 0 },
                ..Default::default()
            })),
        })
        .collect();
    ShardRequest::from_command(&Command {
        shard,
        now_ms: NOW_MS + u64::from(keys.start),
        op: CommandOp::Batch(ops),
        request_id: format!("{prefix}-{}", keys.start).into_bytes(),
    })
}

/// Applies a membership entry at index 1, then `cmds` at 2, 3, ….
async fn apply(sm: &mut ShardStateMachine, term: u64, cmds: Vec<ShardRequest>) {
    let mut entries: Vec<EntryOf<ShardRaft>> = vec![membership_ent::<ShardRaft>(
        term,
        1,
        1,
        vec![BTreeSet::from([1, 2, 3])],
    )];
    for (i, c) in cmds.into_iter().enumerate() {
        entries.push(EntryOf::<ShardRaft>::new_normal(
            log_id::<ShardRaft>(term, 1, i as u64 + 2),
            c,
        ));
    }
    sm.apply(futures::stream::iter(
        entries.into_iter().map(|e| Ok((e, None))),
    ))
    .await
    .unwrap();
}

/// Everything a shard's replica holds, raw.
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    data: Vec<(Vec<u8>, Vec<u8>)>,
    ttl: Vec<Vec<u8>>,
    dedup: Vec<(Vec<u8>, Vec<u8>)>,
    state: Option<Vec<u8>>,
    applied: Option<Vec<u8>>,
}

fn scan(
    engine: &Engine,
    cf: &str,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(start);
    if let Some(end) = end {
        ro.set_iterate_upper_bound(end);
    }
    let mut it = engine.db().raw_iterator_cf_opt(engine.cf(cf).unwrap(), ro);
    it.seek_to_first();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        out.push((k.to_vec(), v.to_vec()));
        it.next();
    }
    it.status().unwrap();
    out
}

fn dump(engine: &Engine, shard: ShardId) -> Dump {
    let dedup = dedup_key(shard, b"");
    let dedup_end = prefix_successor(&dedup);
    Dump {
        data: scan(engine, CF_DATA, shard_start(shard), shard_end(shard)),
        ttl: scan(engine, CF_TTL, shard_start(shard), shard_end(shard))
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        dedup: scan(engine, CF_META, dedup, dedup_end),
        state: engine.get_meta(&shard_state_key(shard)).unwrap(),
        applied: engine.get_meta(&raft_meta_key("applied", shard)).unwrap(),
    }
}

fn snapshot_dirs(engine: &Engine, shard: ShardId) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(SnapshotDirs::new(engine.data_dir(), shard).shard_dir())
    else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A source replica of `SHARD` with `keys` keys (in commands of 1,000)
/// of `value_len` bytes each.
async fn source(
    dir: &Path,
    shard: ShardId,
    keys: u32,
    value_len: usize,
) -> (Engine, ShardStateMachine) {
    let engine = open(dir);
    let mut sm = ShardStateMachine::new(engine.clone(), shard);
    let cmds = (0..keys)
        .step_by(1000)
        .map(|s| puts(shard, "src", s..(s + 1000).min(keys), value_len))
        .collect();
    apply(&mut sm, 2, cmds).await;
    (engine, sm)
}

/// A target replica holding other contents for `shard` and for `other`.
async fn target(dir: &Path, shard: ShardId, other: ShardId) -> (Engine, ShardStateMachine) {
    let engine = open(dir);
    let mut sm = ShardStateMachine::new(engine.clone(), shard);
    apply(
        &mut sm,
        1,
        vec![
            puts(shard, "old", 0..700, 20),
            puts(shard, "src", 5..50, 10),
        ],
    )
    .await;
    let mut neighbour = ShardStateMachine::new(engine.clone(), other);
    apply(&mut neighbour, 1, vec![puts(other, "nb", 0..300, 20)]).await;
    (engine, sm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_20k_keys_replaces_the_shard_and_nothing_else() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, 20_000, 100).await;
    let (dst, dst_sm) = target(b.path(), SHARD, OTHER).await;
    let installs = prometheus::IntCounter::new("installs", "installs").unwrap();
    let mut dst_sm = dst_sm.with_install_counter(installs.clone());
    let neighbour_before = dump(&dst, OTHER);
    let want = dump(&src, SHARD);
    assert_eq!(want.data.len(), 20_000);
    assert_eq!(want.ttl.len(), 6_667);
    assert_eq!(want.dedup.len(), 20);
    assert_ne!(dump(&dst, SHARD), want);

    let started = Instant::now();
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let built = started.elapsed();
    let names: Vec<&str> = snap
        .snapshot
        .manifest()
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [snapshot::DATA_SST, snapshot::TTL_SST, snapshot::DEDUP_SST]
    );
    let started = Instant::now();
    dst_sm
        .install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    let installed = started.elapsed();
    eprintln!(
        "20,000 keys ({} bytes of SST): built in {built:?}, installed in {installed:?}",
        snap.snapshot.total_bytes()
    );

    assert_eq!(dump(&dst, SHARD), want);
    assert_eq!(dump(&dst, OTHER), neighbour_before);
    assert_eq!(
        dst_sm.applied_state().await.unwrap(),
        src_sm.applied_state().await.unwrap()
    );
    assert_eq!(installs.get(), 1);
    let state = ShardState::decode(want.state.as_deref().unwrap()).unwrap();
    assert_eq!(
        dst.clocks().get(SHARD),
        state.clock_ms,
        "the TTL filter's clock follows the install"
    );
    let current = dst_sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(
        snapshot_dirs(&dst, SHARD).len(),
        1,
        "only the installed snapshot is kept"
    );
    // The source keeps its snapshot; a compaction keeps every live record.
    assert_eq!(snapshot_dirs(&src, SHARD).len(), 1);
    dst.compact_data().unwrap();
    assert_eq!(dump(&dst, SHARD), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_records_expire_by_the_installed_clock() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = open(a.path());
    let mut src_sm = ShardStateMachine::new(src.clone(), SHARD);
    // Every third key lives an hour; then the shard's clock moves two hours on.
    let mut late = puts(SHARD, "late", 0..1, 10).to_command(SHARD).unwrap();
    late.now_ms = NOW_MS + 7_200_000;
    let cmds = vec![
        puts(SHARD, "src", 0..300, 10),
        ShardRequest::from_command(&late),
    ];
    apply(&mut src_sm, 2, cmds).await;
    let (dst, mut dst_sm) = target(b.path(), SHARD, OTHER).await;
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    dst_sm
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(dst.clocks().get(SHARD), NOW_MS + 7_200_000);
    assert_eq!(dump(&dst, SHARD).data.len(), 301);
    // The compaction filter judges the ingested records by the installed clock.
    dst.compact_data().unwrap();
    assert_eq!(dump(&dst, SHARD).data.len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_shard_round_trips() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, 0, 0).await;
    let (dst, mut dst_sm) = target(b.path(), SHARD, OTHER).await;
    let neighbour_before = dump(&dst, OTHER);
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert!(
        snap.snapshot.manifest().files.is_empty(),
        "empty ranges have no file"
    );
    dst_sm
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    let got = dump(&dst, SHARD);
    assert!(got.data.is_empty() && got.ttl.is_empty() && got.dedup.is_empty());
    assert_eq!(got, dump(&src, SHARD));
    assert_eq!(dump(&dst, OTHER), neighbour_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meta_shard_round_trips() {
    // The last shard id has no end key; its neighbour must stay intact.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), u32::MAX, 2_000, 30).await;
    let (dst, mut dst_sm) = target(b.path(), u32::MAX, u32::MAX - 1).await;
    let neighbour_before = dump(&dst, u32::MAX - 1);
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    dst_sm
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(dump(&dst, u32::MAX), dump(&src, u32::MAX));
    assert_eq!(dump(&dst, u32::MAX - 1), neighbour_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_cut_short_by_a_crash_is_redone_at_startup() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, 5_000, 50).await;
    let want = dump(&src, SHARD);
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let (neighbour_before, staged) = {
        let (dst, dst_sm) = target(b.path(), SHARD, OTHER).await;
        let neighbour_before = dump(&dst, OTHER);
        // The crash: marker written, the shard's ranges cleared, nothing ingested.
        let files = snapshot::adopt(&dst_sm.dirs, &snap.meta, snap.snapshot.clone()).unwrap();
        snapshot::write_marker(&dst, SHARD, &files).unwrap();
        let mut batch = WriteBatch::default();
        for cf in [CF_DATA, CF_TTL] {
            batch.delete_range_cf(
                dst.cf(cf).unwrap(),
                shard_start(SHARD),
                shard_end(SHARD).unwrap(),
            );
        }
        dst.write(batch).unwrap();
        assert!(dump(&dst, SHARD).data.is_empty());
        // Leftovers of a build and a transfer of this shard, and a transfer of another.
        std::fs::create_dir_all(dst_sm.dirs.shard_dir().join("building-1")).unwrap();
        std::fs::create_dir_all(dst_sm.dirs.new_staging()).unwrap();
        let other_staging = SnapshotDirs::new(dst.data_dir(), OTHER).new_staging();
        std::fs::create_dir_all(&other_staging).unwrap();
        (neighbour_before, (files, other_staging))
    };
    // Restart: the state machine finishes the install before reporting its applied state.
    let dst = open(b.path());
    let mut dst_sm = ShardStateMachine::new(dst.clone(), SHARD);
    let (applied, _) = dst_sm.applied_state().await.unwrap();
    assert_eq!(applied, snap.meta.last_log_id);
    assert_eq!(dump(&dst, SHARD), want);
    assert_eq!(dump(&dst, OTHER), neighbour_before);
    assert!(snapshot::marker(&dst, SHARD).unwrap().is_none());
    assert_eq!(
        snapshot_dirs(&dst, SHARD),
        [staged
            .0
            .dir()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()],
        "the redone snapshot is current; the half-built one is gone"
    );
    assert!(!staged.0.dir().join("ingest").exists());
    let current = dst_sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    let incoming: Vec<_> = std::fs::read_dir(dst_sm.dirs.incoming_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        incoming,
        [staged.1],
        "only this shard's partial transfers are removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_ingestions_is_redone_too() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, 3_000, 50).await;
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    {
        let (dst, dst_sm) = target(b.path(), SHARD, OTHER).await;
        let files = snapshot::adopt(&dst_sm.dirs, &snap.meta, snap.snapshot.clone()).unwrap();
        // Everything but the final batch: ranges replaced, state and applied still old.
        snapshot::write_marker(&dst, SHARD, &files).unwrap();
        snapshot::replace_ranges(&dst, SHARD, &files).unwrap();
        assert_ne!(dump(&dst, SHARD), dump(&src, SHARD));
    }
    let dst = open(b.path());
    let mut dst_sm = ShardStateMachine::new(dst.clone(), SHARD);
    dst_sm.applied_state().await.unwrap();
    assert_eq!(dump(&dst, SHARD), dump(&src, SHARD));
}

/// The chunks a sender produces for `snap`.
fn chunks(snap: &SnapshotOf<ShardRaft, SnapshotFiles>) -> Vec<rpb::SnapshotChunk> {
    let vote = openraft::alias::VoteOf::<ShardRaft>::new_committed(2, 1);
    let header = snapshot::header_chunk(SHARD, &vote, &snap.meta, &snap.snapshot).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
    let progress = std::sync::atomic::AtomicU64::new(0);
    let opened = snap.snapshot.open().unwrap();
    // The sender blocks on the channel: off the runtime, as in `full_snapshot`.
    std::thread::scope(|s| {
        s.spawn(|| {
            let unlimited = crate::raft::throttle::Throttle::default();
            snapshot::send_pieces(SHARD, opened, &tx, Instant::now(), &progress, &unlimited)
        })
        .join()
        .unwrap()
        .unwrap();
    });
    drop(tx);
    let mut out = vec![header];
    while let Ok(c) = rx.try_recv() {
        out.push(c);
    }
    out
}

async fn receive(
    staging: &Path,
    chunks: Vec<rpb::SnapshotChunk>,
) -> Result<
    (
        openraft::alias::VoteOf<ShardRaft>,
        SnapshotOf<ShardRaft, SnapshotFiles>,
    ),
    snapshot::ReceiveError,
> {
    let mut chunks = chunks.into_iter();
    let first = chunks.next().unwrap();
    snapshot::receive(
        staging.to_path_buf(),
        first,
        futures::stream::iter(chunks.map(Ok)),
    )
    .await
}

fn piece(c: &mut rpb::SnapshotChunk) -> Option<&mut rpb::FilePiece> {
    match &mut c.body {
        Some(rpb::snapshot_chunk::Body::Piece(p)) => Some(p),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_snapshot_is_staged_checked_and_installed() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, 6_000, 400).await;
    let (dst, mut dst_sm) = target(b.path(), SHARD, OTHER).await;
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let sent = chunks(&snap);
    let pieces = sent
        .iter()
        .filter(|c| matches!(c.body, Some(rpb::snapshot_chunk::Body::Piece(_))))
        .count();
    assert!(pieces > 2, "data.sst spans several 1 MiB pieces: {pieces}");
    let staging = dst_sm.staging_dir();
    let (_, received) = receive(&staging, sent).await.unwrap();
    assert_eq!(received.meta, snap.meta);
    dst_sm
        .install_snapshot(&received.meta, received.snapshot)
        .await
        .unwrap();
    assert!(
        !staging.exists(),
        "the install moved the staged files into place"
    );
    assert_eq!(dump(&dst, SHARD), dump(&src, SHARD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stream_is_refused_without_a_trace() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_src, mut src_sm) = source(a.path(), SHARD, 6_000, 400).await;
    let (dst, dst_sm) = target(b.path(), SHARD, OTHER).await;
    let before = (dump(&dst, SHARD), dump(&dst, OTHER));
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let good = chunks(&snap);
    let n = good.len();
    let mut cases: Vec<(&str, Vec<rpb::SnapshotChunk>)> = Vec::new();
    cases.push(("ended before", good[..n - 1].to_vec()));
    cases.push(("ended before", good[..n - 2].to_vec()));
    let mut bad = good.clone();
    piece(&mut bad[1]).unwrap().name = "../../db/CURRENT".into();
    cases.push(("not part of the snapshot", bad));
    let mut bad = good.clone();
    piece(&mut bad[2]).unwrap().offset += 1;
    cases.push(("offset", bad));
    let mut bad = good.clone();
    bad.swap(1, 2);
    cases.push(("offset", bad));
    let mut bad = good.clone();
    let p = piece(&mut bad[1]).unwrap();
    p.data[100] ^= 0xff;
    cases.push(("checksum", bad));
    let mut bad = good.clone();
    piece(&mut bad[2]).unwrap().data.push(0);
    cases.push(("", bad));
    let mut bad = good.clone();
    bad[1].shard = OTHER;
    cases.push(("a chunk for shard", bad));
    let mut bad = good.clone();
    bad.remove(0);
    cases.push(("first chunk must carry the header", bad));
    let mut bad = good.clone();
    let mut manifest = snap.snapshot.manifest().clone();
    manifest.files[0].name = "../evil.sst".into();
    let vote = openraft::alias::VoteOf::<ShardRaft>::new_committed(2, 1);
    bad[0].body = Some(rpb::snapshot_chunk::Body::Header(
        encode(&(&vote, &snap.meta, &manifest)).unwrap(),
    ));
    cases.push(("not a snapshot file", bad));
    for (i, (why, chunks)) in cases.into_iter().enumerate() {
        let staging = dst_sm.staging_dir();
        let err = receive(&staging, chunks).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(err, snapshot::ReceiveError::Invalid(_)),
            "case {i}: {err}"
        );
        assert!(
            err.to_string().contains(why),
            "case {i}: {err} does not say {why:?}"
        );
        assert!(
            !staging.exists(),
            "case {i}: the staging directory was left behind"
        );
    }
    assert_eq!((dump(&dst, SHARD), dump(&dst, OTHER)), before);
    assert!(
        !dst_sm.dirs.shard_dir().exists(),
        "nothing reached the shard's snapshots"
    );
}

/// Not a check: how long building, streaming (staging) and installing a
/// big snapshot take. `CAIRN_SNAPSHOT_KEYS` sets the key count (default
/// 500,000 of 100-byte values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_a_large_snapshot() {
    let keys: u32 = std::env::var("CAIRN_SNAPSHOT_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, mut src_sm) = source(a.path(), SHARD, keys, 100).await;
    let (dst, mut dst_sm) = target(b.path(), SHARD, OTHER).await;
    let started = Instant::now();
    let snap = src_sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let built = started.elapsed();
    let started = Instant::now();
    let sent = chunks(&snap);
    let (_, received) = receive(&dst_sm.staging_dir(), sent).await.unwrap();
    let staged = started.elapsed();
    let started = Instant::now();
    dst_sm
        .install_snapshot(&received.meta, received.snapshot)
        .await
        .unwrap();
    let installed = started.elapsed();
    eprintln!(
        "{keys} keys, {} MiB of SST: built in {built:?}, chunked and staged in {staged:?}, installed in {installed:?}",
        snap.snapshot.total_bytes() >> 20
    );
    assert_eq!(dump(&dst, SHARD).data.len(), dump(&src, SHARD).data.len());
}
