//! RocksDB and disk metrics, read from the engine at every scrape:
//! block cache hits and misses (hit ratio), write stalls, bytes written by
//! stage (write amplification = (flush + compaction) / user bytes), WAL
//! syncs, memtable / SST / pending-compaction sizes per column family, and
//! the data directory's filesystem space.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::storage::Engine;
use crate::storage::stats::EngineStats;

/// Renders [`Engine::stats`] as Prometheus families.
pub struct EngineCollector {
    engine: Engine,
    /// Serialises scrapes: each one resets and refills the families below.
    scrape: Mutex<()>,
    block_cache_hits: IntCounter,
    block_cache_misses: IntCounter,
    block_cache_usage: IntGauge,
    stall_seconds: Counter,
    wal_syncs: IntCounter,
    written_bytes: IntCounterVec,
    write_groups: IntCounterVec,
    memtable_bytes: IntGaugeVec,
    sst_bytes: IntGaugeVec,
    pending_compaction_bytes: IntGaugeVec,
    estimated_keys: IntGaugeVec,
    running_compactions: IntGauge,
    write_stopped: IntGauge,
    delayed_write_rate: IntGauge,
    disk_full: IntGauge,
    disk_free: IntGauge,
    disk_total: IntGauge,
}

fn gauge(name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    IntGauge::new(name, help)
}

fn per_family(name: &str, help: &str) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), &["cf"])
}

/// An integer gauge's value from a byte count or counter.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl EngineCollector {
    /// A collector reading `engine`.
    ///
    /// # Errors
    /// Invalid metric names (a programming error caught by tests).
    pub fn new(engine: Engine) -> Result<Self, prometheus::Error> {
        Ok(Self {
            engine,
            scrape: Mutex::new(()),
            block_cache_hits: IntCounter::new(
                "cairn_rocksdb_block_cache_hits_total",
                "Block reads served from RocksDB's block cache.",
            )?,
            block_cache_misses: IntCounter::new(
                "cairn_rocksdb_block_cache_misses_total",
                "Block reads that missed the block cache and read an SST file.",
            )?,
            block_cache_usage: gauge(
                "cairn_rocksdb_block_cache_usage_bytes",
                "Bytes held by the block cache (filled to its size is normal).",
            )?,
            stall_seconds: Counter::new(
                "cairn_rocksdb_stall_seconds_total",
                "Time writes were stalled or slowed by RocksDB's write controller.",
            )?,
            wal_syncs: IntCounter::new(
                "cairn_rocksdb_wal_syncs_total",
                "Syncs (fsyncs) of RocksDB's write-ahead log.",
            )?,
            written_bytes: IntCounterVec::new(
                Opts::new(
                    "cairn_rocksdb_written_bytes_total",
                    "Bytes written by stage: user (write batches), wal, flush, compaction.",
                ),
                &["stage"],
            )?,
            write_groups: IntCounterVec::new(
                Opts::new(
                    "cairn_rocksdb_writes_total",
                    "Write batches, by whether they led a write group (did the WAL write) or joined one.",
                ),
                &["role"],
            )?,
            memtable_bytes: per_family(
                "cairn_rocksdb_memtable_bytes",
                "Bytes in memtables, by column family.",
            )?,
            sst_bytes: per_family(
                "cairn_rocksdb_sst_bytes",
                "Bytes of live SST files, by column family.",
            )?,
            pending_compaction_bytes: per_family(
                "cairn_rocksdb_pending_compaction_bytes",
                "Bytes compaction estimates it still has to rewrite, by column family.",
            )?,
            estimated_keys: per_family(
                "cairn_rocksdb_estimated_keys",
                "RocksDB's estimate of the keys held, by column family (meta: mostly the exactly-once table).",
            )?,
            running_compactions: gauge(
                "cairn_rocksdb_running_compactions",
                "Compactions running now.",
            )?,
            write_stopped: gauge(
                "cairn_rocksdb_write_stopped",
                "1 while RocksDB stops all writes (a write stall), else 0.",
            )?,
            delayed_write_rate: gauge(
                "cairn_rocksdb_delayed_write_rate_bytes",
                "Bytes per second writes are slowed to by the write controller (0: not slowed).",
            )?,
            disk_full: gauge(
                "cairn_storage_disk_full",
                "1 while the data directory is full: writes there fail until space returns.",
            )?,
            disk_free: gauge(
                "cairn_storage_disk_free_bytes",
                "Bytes available on the data directory's filesystem.",
            )?,
            disk_total: gauge(
                "cairn_storage_disk_total_bytes",
                "Size of the data directory's filesystem.",
            )?,
        })
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        vec![
            &self.block_cache_hits,
            &self.block_cache_misses,
            &self.block_cache_usage,
            &self.stall_seconds,
            &self.wal_syncs,
            &self.written_bytes,
            &self.write_groups,
            &self.memtable_bytes,
            &self.sst_bytes,
            &self.pending_compaction_bytes,
            &self.estimated_keys,
            &self.running_compactions,
            &self.write_stopped,
            &self.delayed_write_rate,
            &self.disk_full,
            &self.disk_free,
            &self.disk_total,
        ]
    }

    fn fill(&self, s: &EngineStats) {
        let c = &s.counters;
        let set = |counter: &IntCounter, v: u64| {
            counter.reset();
            counter.inc_by(v);
        };
        set(&self.block_cache_hits, c.block_cache_hits);
        set(&self.block_cache_misses, c.block_cache_misses);
        set(&self.wal_syncs, c.wal_syncs);
        self.stall_seconds.reset();
        self.stall_seconds.inc_by(c.stall_micros as f64 / 1e6);
        for (stage, v) in [
            ("user", c.user_bytes),
            ("wal", c.wal_bytes),
            ("flush", c.flush_bytes),
            ("compaction", c.compaction_bytes),
        ] {
            set(&self.written_bytes.with_label_values(&[stage]), v);
        }
        set(&self.write_groups.with_label_values(&["led"]), c.writes_led);
        set(
            &self.write_groups.with_label_values(&["joined"]),
            c.writes_joined,
        );
        for (cf, f) in &s.families {
            self.memtable_bytes
                .with_label_values(&[*cf])
                .set(int(f.memtable_bytes));
            self.sst_bytes
                .with_label_values(&[*cf])
                .set(int(f.sst_bytes));
            self.pending_compaction_bytes
                .with_label_values(&[*cf])
                .set(int(f.pending_compaction_bytes));
            self.estimated_keys
                .with_label_values(&[*cf])
                .set(int(f.estimated_keys));
        }
        self.block_cache_usage.set(int(s.block_cache_bytes));
        self.running_compactions.set(int(s.running_compactions));
        self.write_stopped.set(i64::from(s.write_stopped));
        self.delayed_write_rate.set(int(s.delayed_write_rate));
        self.disk_full.set(i64::from(self.engine.is_disk_full()));
        self.disk_free.set(int(s.disk_free_bytes));
        self.disk_total.set(int(s.disk_total_bytes));
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        super::descs(&self.collectors())
    }

    fn collect(&self) -> Vec<MetricFamily> {
        super::refilled(
            &self.scrape,
            || self.fill(&self.engine.stats()),
            &self.collectors(),
        )
    }
}
