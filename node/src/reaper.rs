//! Background removal of expired keys.
//!
//! Expired keys are invisible to reads the moment they expire; the reaper
//! removes them (and their expiry index entries) through the state machine,
//! so every replica removes the same keys. The TTL compaction filter then
//! reclaims any expired record the reaper has not reached yet.

use std::time::Duration;

use rocksdb::ReadOptions;

use crate::apply::{CommandOp, CommandOutput, DueKey};
use crate::kv::KvStore;
use crate::metrics::Metrics;
use crate::storage::CF_TTL;
use crate::storage::keys::{split_ttl_key, ttl_key};

/// Most keys one expire command removes.
const MAX_KEYS_PER_COMMAND: usize = 1000;

/// Finds up to [`MAX_KEYS_PER_COMMAND`] index entries of `shard` due at `now_ms`.
fn due_keys(store: &KvStore, shard: u32, now_ms: u64) -> Vec<DueKey> {
    let engine = store.engine();
    let Ok(cf) = engine.cf(CF_TTL) else {
        return Vec::new();
    };
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(ttl_key(shard, now_ms.saturating_add(1), b""));
    let mut it = engine.db().raw_iterator_cf_opt(cf, ro);
    it.seek(shard.to_be_bytes());
    let mut due = Vec::new();
    while it.valid() && due.len() < MAX_KEYS_PER_COMMAND {
        if let Some((_, expires_at_ms, key)) = it.key().and_then(split_ttl_key) {
            due.push(DueKey {
                key: key.to_vec(),
                expires_at_ms,
            });
        }
        it.next();
    }
    due
}

/// One pass over every shard; returns the number of keys removed.
pub async fn reap_once(store: &KvStore) -> usize {
    let mut removed = 0;
    for shard in 0..store.shards().get() {
        // In a cluster only the shard's leader proposes expiries.
        if !store.leads(shard) {
            continue;
        }
        loop {
            let now = store.clock().now_ms();
            let due = due_keys(store, shard, now);
            let full = due.len() == MAX_KEYS_PER_COMMAND;
            if due.is_empty() {
                break;
            }
            match store
                .propose(shard, CommandOp::Expire(due), Vec::new())
                .await
            {
                Ok(applied) => {
                    if let CommandOutput::Expired(n) = applied.output {
                        removed += n;
                    }
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "expiring keys failed; will retry");
                    return removed;
                }
            }
            if !full {
                break;
            }
        }
    }
    removed
}

/// Runs [`reap_once`] every `interval` until `stop` fires.
pub async fn run(
    store: KvStore,
    metrics: Metrics,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let n = reap_once(&store).await;
        metrics.ttl_expired_keys.inc_by(n as u64);
    }
}
