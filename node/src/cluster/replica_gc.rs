//! Finds replicas this node still hosts although their group removed it,
//! and deletes them.
//!
//! A node that a shard was moved off is not always told: the config change
//! that removed it may commit without it. So every node looks, now and
//! then, at the shards it hosts but the placement plan does not give it,
//! and asks the nodes the plan names for the group's membership. Only a
//! leader's committed, non-joint membership that does not name this node,
//! and is at least as new as the membership this node itself knows, counts:
//! then nothing can make this replica a member again except a newer config
//! change, which starts it afresh.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Cluster;
use super::meta::{self, META_SHARD};
use crate::raft::network::MembershipView;

/// How often the hosted replicas are checked.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true.
pub async fn run(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = collect_once(&cluster).await {
            tracing::debug!(error = %e, "replica check incomplete");
        }
    }
}

/// Whether `leader`'s view proves that `me`, whose own view is `own`, is
/// out of the group for good.
pub fn removed(me: u64, own: &MembershipView, leader: &MembershipView) -> bool {
    leader.leader
        && leader.committed
        && !leader.members.contains(&me)
        && leader.log_index >= own.log_index
}

/// One pass: drops every hosted replica its group's leader says was removed.
///
/// # Errors
/// The meta records could not be read.
pub async fn collect_once(cluster: &Cluster) -> Result<usize, super::ClusterError> {
    let Some(plan) = meta::read_plan(cluster.engine())? else {
        return Ok(0);
    };
    let nodes = meta::read_nodes(cluster.engine())?;
    let me = cluster.node_id();
    let mut dropped = 0;
    for shard in cluster.hosted() {
        let target = plan.of(shard);
        if shard == META_SHARD || target.is_empty() || target.contains(&me) {
            continue;
        }
        let Some(raft) = cluster.group(shard) else {
            continue;
        };
        let own = MembershipView::of(&raft);
        for &id in target {
            let Some(node) = nodes.iter().find(|n| n.id == id) else {
                continue;
            };
            let Ok(view) = cluster.peers().membership(id, &node.addr, shard).await else {
                continue;
            };
            if removed(me, &own, &view) {
                cluster.drop_replica(shard, view.log_index).await?;
                dropped += 1;
                break;
            }
            if view.leader {
                break; // the leader says this node is still a member
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: bool, log_index: u64, committed: bool, members: &[u64]) -> MembershipView {
        MembershipView {
            leader,
            log_index,
            committed,
            members: members.to_vec(),
        }
    }

    #[test]
    fn only_a_leaders_committed_newer_membership_without_the_node_removes_it() {
        let own = view(false, 10, true, &[1, 2, 3]);
        assert!(removed(3, &own, &view(true, 12, true, &[1, 2, 4])));
        assert!(removed(3, &own, &view(true, 10, true, &[1, 2])));
        // Still a member, or a learner again.
        assert!(!removed(3, &own, &view(true, 12, true, &[1, 2, 3])));
        // Not the leader, not committed yet, or older than what the node knows.
        assert!(!removed(3, &own, &view(false, 12, true, &[1, 2, 4])));
        assert!(!removed(3, &own, &view(true, 12, false, &[1, 2, 4])));
        assert!(!removed(3, &own, &view(true, 9, true, &[1, 2, 4])));
    }
}
