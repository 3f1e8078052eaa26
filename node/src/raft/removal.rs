//! Deleting a replica this node no longer holds, and the tombstone that
//! keeps the node out of the group's elections afterwards.
//!
//! Once a shard's committed membership no longer names this node, its
//! replica is dead weight: its data, log and snapshots use disk, and an old
//! group that never heard of its removal could serve stale `SERIALIZABLE`
//! reads. [`destroy`] removes all of it in one synced batch. A replica with
//! no log would vote for any candidate, which could let a stale member of
//! the old configuration win an election; so the same batch writes a
//! tombstone with the index of the membership that removed the node, and
//! the node refuses vote requests of that shard until it holds a newer
//! membership (it was added back and caught up).

use std::io;

use rocksdb::WriteBatch;

use super::io_err;
use super::log_store::raft_meta_key;
use super::snapshot::SnapshotDirs;
use crate::partition::ShardId;
use crate::storage::keys::{dedup_key, prefix_successor, shard_end, shard_start, shard_state_key};
use crate::storage::{CF_DATA, CF_META, CF_RAFT, CF_TTL, Engine};

/// Raft records of a shard in `meta` (see the log store and state machine).
const RAFT_RECORDS: [&str; 5] = ["vote", "committed", "purged", "applied", "installing"];

fn tombstone_key(shard: ShardId) -> Vec<u8> {
    raft_meta_key("tombstone", shard)
}

/// The end of `shard`'s key range (the last shard id has none).
fn range_end(shard: ShardId) -> Vec<u8> {
    shard_end(shard).unwrap_or_else(|| vec![0xff; 16])
}

/// Deletes every trace of this node's replica of `shard` — data, TTL index,
/// exactly-once records, shard state, Raft log and records, snapshots — and
/// records that the node was removed by the membership at `removed_at`.
/// The group must be shut down first.
///
/// # Errors
/// Storage failure; a crash part-way leaves either all records or none
/// (one batch), and leftover snapshot files are removed on the next call.
pub fn destroy(engine: &Engine, shard: ShardId, removed_at: u64) -> io::Result<()> {
    let mut batch = WriteBatch::default();
    for cf in [CF_DATA, CF_TTL, CF_RAFT] {
        batch.delete_range_cf(
            engine.cf(cf).map_err(io_err)?,
            shard_start(shard),
            range_end(shard),
        );
    }
    let meta = engine.cf(CF_META).map_err(io_err)?;
    let dedup = dedup_key(shard, b"");
    if let Some(end) = prefix_successor(&dedup) {
        batch.delete_range_cf(meta, dedup, end);
    }
    batch.delete_cf(meta, shard_state_key(shard));
    for what in RAFT_RECORDS {
        batch.delete_cf(meta, raft_meta_key(what, shard));
    }
    batch.put_cf(meta, tombstone_key(shard), removed_at.to_be_bytes());
    engine.write_synced(batch).map_err(io_err)?;
    let dir = SnapshotDirs::new(engine.data_dir(), shard).shard_dir();
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The membership index that removed this node's replica of `shard`, if it
/// was removed.
///
/// # Errors
/// Storage failure.
pub fn tombstone(engine: &Engine, shard: ShardId) -> io::Result<Option<u64>> {
    let Some(b) = engine.get_meta(&tombstone_key(shard)).map_err(io_err)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = b
        .as_slice()
        .try_into()
        .map_err(|_| io_err(format!("tombstone of shard {shard} is {} bytes", b.len())))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{EngineOptions, SyncMode};

    fn count(engine: &Engine, cf: &str, from: &[u8], to: &[u8]) -> usize {
        let mut it = engine.db().raw_iterator_cf(engine.cf(cf).unwrap());
        it.seek(from);
        let mut n = 0;
        while it.valid() && it.key().is_some_and(|k| k < to) {
            n += 1;
            it.next();
        }
        n
    }

    #[test]
    fn destroying_a_replica_removes_its_records_only_and_leaves_a_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&EngineOptions {
            data_dir: dir.path().to_path_buf(),
            block_cache_bytes: 8 << 20,
            row_cache_bytes: 0,
            sync: SyncMode::Fsync,
        })
        .unwrap();
        let (gone, kept) = (5, 6);
        let mut batch = WriteBatch::default();
        for shard in [gone, kept] {
            for cf in [CF_DATA, CF_TTL, CF_RAFT] {
                let mut k = shard_start(shard);
                k.extend_from_slice(b"key");
                batch.put_cf(engine.cf(cf).unwrap(), k, b"v");
            }
            let meta = engine.cf(CF_META).unwrap();
            batch.put_cf(meta, dedup_key(shard, b"req-1"), b"r");
            batch.put_cf(meta, shard_state_key(shard), b"s");
            for what in RAFT_RECORDS {
                batch.put_cf(meta, raft_meta_key(what, shard), b"x");
            }
        }
        engine.write_synced(batch).unwrap();
        let snapshots = SnapshotDirs::new(engine.data_dir(), gone).shard_dir();
        std::fs::create_dir_all(snapshots.join("12-3")).unwrap();
        assert_eq!(tombstone(&engine, gone).unwrap(), None);

        destroy(&engine, gone, 42).unwrap();

        for cf in [CF_DATA, CF_TTL, CF_RAFT] {
            let range = |s| (shard_start(s), range_end(s));
            let (a, b) = range(gone);
            assert_eq!(count(&engine, cf, &a, &b), 0, "{cf} of the removed shard");
            let (a, b) = range(kept);
            assert_eq!(count(&engine, cf, &a, &b), 1, "{cf} of the other shard");
        }
        let get = |k: Vec<u8>| engine.get_meta(&k).unwrap();
        assert_eq!(get(dedup_key(gone, b"req-1")), None);
        assert_eq!(get(shard_state_key(gone)), None);
        assert_eq!(get(dedup_key(kept, b"req-1")), Some(b"r".to_vec()));
        assert_eq!(get(shard_state_key(kept)), Some(b"s".to_vec()));
        for what in RAFT_RECORDS {
            assert_eq!(get(raft_meta_key(what, gone)), None, "{what}");
            assert_eq!(
                get(raft_meta_key(what, kept)),
                Some(b"x".to_vec()),
                "{what}"
            );
        }
        assert!(!snapshots.exists());
        assert_eq!(tombstone(&engine, gone).unwrap(), Some(42));
        assert_eq!(tombstone(&engine, kept).unwrap(), None);
        // Idempotent (a crash after the batch, before the directory went).
        destroy(&engine, gone, 42).unwrap();
    }
}
