//! One heartbeat clock for all the shard groups a node leads.
//!
//! Left alone, every group would heartbeat on its own timer, and each
//! heartbeat would be its own RPC: with hundreds of shards per node that is
//! thousands of calls a second doing nothing. Instead the groups' own
//! heartbeat timers are off and this loop triggers every led group's
//! heartbeat at the same instant; the transport then carries all of a round's
//! heartbeats to one peer in a single `AppendBatch` call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Cluster;

/// Runs until `stop` turns true.
pub async fn run(cluster: Arc<Cluster>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        for shard in cluster.hosted() {
            if let Some(raft) = cluster.group(shard)
                && raft.is_leader()
                && let Err(e) = raft.trigger().heartbeat().await
            {
                tracing::debug!(shard, error = %e, "heartbeat not sent");
            }
        }
    }
}
