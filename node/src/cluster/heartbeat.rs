//! One heartbeat clock for all the shard groups a node leads.
//!
//! Left alone, every group would heartbeat on its own timer, and each
//! heartbeat would be its own RPC: with hundreds of shards per node that is
//! thousands of calls a second doing nothing. Instead the groups' own
//! heartbeat timers are off and this loop triggers every led group's
//! heartbeat at the same instant; the transport then carries all of a round's
//! heartbeats to one peer in a single `AppendBatch` call.
//!
//! While the data directory is full the loop sends nothing: see [`run`].

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
        // A leader whose disk is full cannot append, so its shards would
        // stall behind it for as long as it keeps its followers quiet; it
        // goes silent instead, and they elect a leader among themselves
        // within an election timeout. (A leadership transfer does not
        // work here: the target must hold the leader's whole log, whose
        // tail this node cannot even persist.)
        if cluster.engine().is_disk_full() {
            continue;
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
