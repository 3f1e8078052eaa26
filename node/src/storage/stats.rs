//! What RocksDB and the data directory's filesystem say about themselves:
//! counters since the process started, current sizes, and disk space. Read
//! on demand (at every `/metrics` scrape), never cached.

use rocksdb::statistics::Ticker;

use super::{CF_DATA, CF_META, CF_RAFT, CF_TTL, Engine};

/// Column families, in the order [`EngineStats::families`] lists them.
pub const FAMILIES: [&str; 4] = [CF_DATA, CF_TTL, CF_META, CF_RAFT];

/// RocksDB's counters since the database was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Block reads served from the block cache.
    pub block_cache_hits: u64,
    /// Block reads that went to an SST file.
    pub block_cache_misses: u64,
    /// Microseconds writers were stalled or slowed by RocksDB's write
    /// controller (too many memtables, L0 files or pending compaction).
    pub stall_micros: u64,
    /// WAL syncs (fsyncs of the write-ahead log).
    pub wal_syncs: u64,
    /// Bytes written to the WAL.
    pub wal_bytes: u64,
    /// Bytes of user writes (batches handed to RocksDB).
    pub user_bytes: u64,
    /// Bytes written by memtable flushes.
    pub flush_bytes: u64,
    /// Bytes written by compactions.
    pub compaction_bytes: u64,
    /// Write batches that led their write group (did the WAL write).
    pub writes_led: u64,
    /// Write batches that joined another's write group.
    pub writes_joined: u64,
}

/// The sizes of one column family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilySizes {
    /// Bytes in memtables (active and immutable).
    pub memtable_bytes: u64,
    /// Bytes of live SST files.
    pub sst_bytes: u64,
    /// Bytes compaction estimates it still has to rewrite.
    pub pending_compaction_bytes: u64,
    /// RocksDB's estimate of the keys it holds (in `meta`, mostly the
    /// exactly-once table's records).
    pub estimated_keys: u64,
}

/// The state of the engine at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Counters since open.
    pub counters: EngineCounters,
    /// Sizes per column family, in [`FAMILIES`] order.
    pub families: Vec<(&'static str, FamilySizes)>,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Whether RocksDB stops writes right now (a write stall).
    pub write_stopped: bool,
    /// Bytes per second writes are slowed to (0: not slowed).
    pub delayed_write_rate: u64,
    /// Bytes held by the block cache.
    pub block_cache_bytes: u64,
    /// Bytes available to this process on the data directory's filesystem.
    pub disk_free_bytes: u64,
    /// Size of the data directory's filesystem.
    pub disk_total_bytes: u64,
}

impl Engine {
    /// Reads RocksDB's counters and sizes and the filesystem's space now.
    pub fn stats(&self) -> EngineStats {
        let t = |ticker| self.db_opts.get_ticker_count(ticker);
        let counters = EngineCounters {
            block_cache_hits: t(Ticker::BlockCacheHit),
            block_cache_misses: t(Ticker::BlockCacheMiss),
            stall_micros: t(Ticker::StallMicros),
            wal_syncs: t(Ticker::WalFileSynced),
            wal_bytes: t(Ticker::WalFileBytes),
            user_bytes: t(Ticker::BytesWritten),
            flush_bytes: t(Ticker::FlushWriteBytes),
            compaction_bytes: t(Ticker::CompactWriteBytes),
            writes_led: t(Ticker::WriteDoneBySelf),
            writes_joined: t(Ticker::WriteDoneByOther),
        };
        let families = FAMILIES
            .iter()
            .map(|&name| {
                let prop = |p: &str| {
                    self.cf(name)
                        .ok()
                        .and_then(|cf| self.db.property_int_value_cf(cf, p).ok().flatten())
                        .unwrap_or(0)
                };
                (
                    name,
                    FamilySizes {
                        memtable_bytes: prop("rocksdb.cur-size-all-mem-tables"),
                        sst_bytes: prop("rocksdb.total-sst-files-size"),
                        pending_compaction_bytes: prop("rocksdb.estimate-pending-compaction-bytes"),
                        estimated_keys: prop("rocksdb.estimate-num-keys"),
                    },
                )
            })
            .collect();
        let db_prop = |p: &str| self.db.property_int_value(p).ok().flatten().unwrap_or(0);
        let (disk_free_bytes, disk_total_bytes) =
            nix::sys::statvfs::statvfs(self.data_dir.as_path())
                .map(|s| {
                    (
                        s.blocks_available().saturating_mul(s.fragment_size()),
                        s.blocks().saturating_mul(s.fragment_size()),
                    )
                })
                .unwrap_or((0, 0));
        EngineStats {
            counters,
            families,
            running_compactions: db_prop("rocksdb.num-running-compactions"),
            write_stopped: db_prop("rocksdb.is-write-stopped") != 0,
            delayed_write_rate: db_prop("rocksdb.actual-delayed-write-rate"),
            block_cache_bytes: self.block_cache.get_usage() as u64,
            disk_free_bytes,
            disk_total_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{EngineOptions, SyncMode};

    #[test]
    fn counters_and_sizes_follow_writes_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&EngineOptions {
            data_dir: dir.path().to_path_buf(),
            block_cache_bytes: 8 << 20,
            row_cache_bytes: 0,
            sync: SyncMode::Buffered,
        })
        .unwrap();
        let before = engine.stats();
        let cf = engine.cf(CF_DATA).unwrap();
        let mut batch = rocksdb::WriteBatch::default();
        for i in 0..1000u32 {
            batch.put_cf(cf, i.to_be_bytes(), vec![7u8; 100]);
        }
        engine.write_synced(batch).unwrap();
        let written = engine.stats();
        assert!(written.counters.user_bytes >= before.counters.user_bytes + 100_000);
        assert!(written.counters.wal_bytes > before.counters.wal_bytes);
        let data = written
            .families
            .iter()
            .find(|(n, _)| *n == CF_DATA)
            .unwrap()
            .1;
        assert!(data.memtable_bytes > 0, "{written:?}");
        engine.db().flush_cf(cf).unwrap();
        let flushed = engine.stats();
        let data = flushed
            .families
            .iter()
            .find(|(n, _)| *n == CF_DATA)
            .unwrap()
            .1;
        assert!(data.sst_bytes > 0, "{flushed:?}");
        assert!(data.estimated_keys >= 900, "{flushed:?}");
        assert!(flushed.counters.flush_bytes > written.counters.flush_bytes);
        assert!(flushed.disk_total_bytes >= flushed.disk_free_bytes);
        assert!(flushed.disk_total_bytes > 0);
        assert_eq!(flushed.families.len(), FAMILIES.len());
    }
}
