//! Compaction filter that drops expired records from disk.
//!
//! A record is dropped only when its expiry is at or before its shard's
//! *applied clock* — the leader-assigned time of the last command the shard's
//! state machine applied — never the local wall clock. Every later command
//! carries a time at least that large, so it would see the record as absent
//! anyway: dropping it cannot change what any replica computes.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::compaction_filter::Decision;

use super::keys::{DEDUP_RETENTION_MS, parse_dedup_entry, split_data_key};
use super::record::decode_meta;

/// The applied clock (Unix ms) of every shard, shared by the state machine and
/// the compaction filter. Until initialised, the filter keeps everything.
#[derive(Debug, Default)]
pub struct ShardClocks {
    clocks: OnceLock<Box<[AtomicU64]>>,
}

impl ShardClocks {
    /// Sets up `shards` clocks with their persisted values; later calls are ignored.
    pub fn init(&self, initial: &[u64]) {
        let _ = self
            .clocks
            .set(initial.iter().map(|&v| AtomicU64::new(v)).collect());
    }

    /// The applied clock of `shard`, 0 if unknown.
    pub fn get(&self, shard: u32) -> u64 {
        self.clocks
            .get()
            .and_then(|c| c.get(shard as usize))
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Advances `shard`'s applied clock to `ms` (never backwards).
    pub fn advance(&self, shard: u32, ms: u64) {
        if let Some(c) = self.clocks.get().and_then(|c| c.get(shard as usize)) {
            c.fetch_max(ms, Ordering::AcqRel);
        }
    }
}

/// Builds the filter closure for the `data` column family.
pub fn filter(
    clocks: Arc<ShardClocks>,
) -> impl FnMut(u32, &[u8], &[u8]) -> Decision + Send + 'static {
    move |_level, key, value| {
        let Some((shard, _)) = split_data_key(key) else {
            return Decision::Keep;
        };
        match decode_meta(value) {
            Ok(meta) if meta.expires_at_ms != 0 && meta.expires_at_ms <= clocks.get(shard) => {
                Decision::Remove
            }
            _ => Decision::Keep,
        }
    }
}

/// Builds the filter closure for the `meta` column family: drops exactly-once
/// request records older than the retention in their shard's applied clock.
/// Every other `meta` entry is kept.
pub fn dedup_filter(
    clocks: Arc<ShardClocks>,
) -> impl FnMut(u32, &[u8], &[u8]) -> Decision + Send + 'static {
    move |_level, key, value| match parse_dedup_entry(key, value) {
        Some((shard, at)) if at.saturating_add(DEDUP_RETENTION_MS) <= clocks.get(shard) => {
            Decision::Remove
        }
        _ => Decision::Keep,
    }
}
