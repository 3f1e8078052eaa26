//! The applied revision of every shard, published by whichever pipeline
//! applies its commands (the standalone group commit or the shard's Raft
//! state machine), and awaited by reads with `min_revision` and by the
//! KV layer after a write.

use tokio::sync::watch;

use super::ShardState;
use crate::partition::ShardId;

/// Published revision of every shard; readers wait on it for `min_revision`.
#[derive(Debug)]
pub struct ShardProgress {
    revisions: Vec<watch::Sender<u64>>,
}

impl ShardProgress {
    /// Progress starting from the shards' current `states`.
    pub fn new(states: &[ShardState]) -> Self {
        Self {
            revisions: states
                .iter()
                .map(|s| watch::Sender::new(s.revision))
                .collect(),
        }
    }

    /// The last durable revision of `shard`.
    pub fn revision(&self, shard: ShardId) -> u64 {
        self.revisions
            .get(shard as usize)
            .map_or(0, |s| *s.borrow())
    }

    /// Publishes that `shard` has durably reached `revision` (never goes back).
    pub fn publish(&self, shard: ShardId, revision: u64) {
        if let Some(tx) = self.revisions.get(shard as usize) {
            tx.send_if_modified(|r| {
                let changed = *r != revision;
                *r = revision;
                changed
            });
        }
    }

    /// Waits until `shard` has reached `revision`; `false` on timeout.
    pub async fn wait_for(
        &self,
        shard: ShardId,
        revision: u64,
        timeout: std::time::Duration,
    ) -> bool {
        let Some(tx) = self.revisions.get(shard as usize) else {
            return false;
        };
        let mut rx = tx.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        )
    }
}
