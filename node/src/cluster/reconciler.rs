//! Brings every shard this node leads to its target replicas and leader,
//! as the committed placement plan (see [`super::balancer`]) names them.
//!
//! Each node runs this loop; it acts only on shards it leads, so exactly one
//! node acts on a shard at a time. For a shard whose voters differ from the
//! plan's target it adds the missing nodes as learners (they catch up
//! from the log or a snapshot), and once all of them have caught up replaces
//! the voter set in one joint-consensus change. A shard already at its target
//! hands leadership to its preferred leader (the placement's first node) once
//! that replica is caught up and answering, which spreads leaders evenly and
//! brings them back after a restart.

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::Instant as _;
use openraft::async_runtime::watch::WatchReceiver as _;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::sync::watch;

use super::Cluster;
use super::meta::{self, META_SHARD};
use crate::partition::ShardId;
use crate::raft::network::ShardRaftHandle;

/// How often the loop looks at the shards.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Runs until `stop` turns true.
pub async fn run(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = reconcile_once(&cluster).await {
            tracing::debug!(error = %e, "placement pass incomplete");
        }
    }
}

/// One pass over the shards this node leads.
///
/// # Errors
/// The meta records could not be read.
pub async fn reconcile_once(cluster: &Cluster) -> Result<(), super::ClusterError> {
    let Some(plan) = meta::read_plan(cluster.engine())? else {
        return Ok(());
    };
    let nodes = meta::read_nodes(cluster.engine())?;
    // Nodes whose leaderships are being evacuated (before a restart).
    // A leader with a full disk can change nothing (every step appends to
    // its log); its heartbeats stop (see `super::heartbeat`) and the other
    // replicas take over.
    if cluster.engine().is_disk_full() {
        return Ok(());
    }
    let no_leaders: BTreeSet<u64> = nodes
        .iter()
        .filter(|n| n.evacuate_leaders)
        .map(|n| n.id)
        .collect();
    for shard in cluster.hosted() {
        if shard == META_SHARD {
            continue;
        }
        let Some(raft) = cluster.group(shard) else {
            continue;
        };
        if !raft.is_leader() {
            continue;
        }
        let target = plan.of(shard);
        if target.is_empty() {
            continue;
        }
        let addr_of = |id: u64| nodes.iter().find(|n| n.id == id).map(|n| n.addr.clone());
        bounded(
            shard,
            converge(cluster, shard, &raft, target, &no_leaders, addr_of),
        )
        .await;
    }
    Ok(())
}

/// How long one placement step on one shard may take before the loop moves
/// on (a step waits on its group, which a stalled disk can hold up).
const STEP_LIMIT: Duration = Duration::from_secs(5);

/// Runs one placement step, logging a failure or a step that overran
/// [`STEP_LIMIT`]; the next pass tries again.
async fn bounded(shard: ShardId, step: impl Future<Output = Result<(), String>>) {
    match tokio::time::timeout(STEP_LIMIT, step).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::info!(shard, error = %e, "placement step deferred"),
        Err(_) => tracing::info!(
            shard,
            limit_s = STEP_LIMIT.as_secs(),
            "placement step did not finish in time; retried on the next pass"
        ),
    }
}

fn caught_up(m: &openraft::RaftMetrics<crate::raft::ShardRaft>, node: u64) -> bool {
    let Some(repl) = &m.replication else {
        return false;
    };
    let matched = repl.get(&node).and_then(|l| l.as_ref()).map(|l| l.index);
    let recent = m
        .heartbeat
        .as_ref()
        .and_then(|h| h.get(&node).cloned().flatten())
        .is_some_and(|t| t.elapsed() < Duration::from_secs(2));
    recent && matched.is_some() && matched >= m.last_log_index
}

async fn converge(
    cluster: &Cluster,
    shard: ShardId,
    raft: &ShardRaftHandle,
    target: &[u64],
    no_leaders: &BTreeSet<u64>,
    addr_of: impl Fn(u64) -> Option<String>,
) -> Result<(), String> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return Ok(());
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Ok(()); // a change is in flight
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let wanted: BTreeSet<u64> = target.iter().copied().collect();
    // Leaving the shard (say, draining), or keeping leaderships off this
    // node (before a restart): hand the leadership to a voter that stays
    // and may lead, which then finishes any move; a leader never has to
    // remove itself while another replica can lead.
    let me = cluster.node_id();
    if (!wanted.contains(&me) || no_leaders.contains(&me))
        && let Some(&to) = target.iter().chain(voters.iter()).find(|&&n| {
            n != me && voters.contains(&n) && !no_leaders.contains(&n) && caught_up(&m, n)
        })
    {
        tracing::info!(shard, to, "handing over leadership");
        raft.trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if voters != wanted {
        let mut ready = true;
        for &n in wanted.difference(&voters) {
            if !learners.contains(&n) {
                let Some(addr) = addr_of(n) else {
                    return Err(format!("node {n} has no address"));
                };
                tracing::info!(shard, node = n, "adding replica");
                raft.add_learner(n, BasicNode::new(addr), false)
                    .await
                    .map_err(|e| e.to_string())?;
                ready = false;
            } else if !caught_up(&m, n) {
                ready = false;
            }
        }
        if ready {
            tracing::info!(shard, ?wanted, "changing voters");
            raft.change_membership(ChangeMembers::ReplaceAllVoters(wanted), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    // Learners the plan no longer wants (a cancelled move).
    let stray: BTreeSet<u64> = learners.difference(&wanted).copied().collect();
    if !stray.is_empty() {
        tracing::info!(shard, ?stray, "dropping learners the plan no longer wants");
        raft.change_membership(ChangeMembers::RemoveNodes(stray), false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if let Some(&preferred) = target.iter().find(|n| !no_leaders.contains(n))
        && preferred != me
        && caught_up(&m, preferred)
    {
        tracing::debug!(
            shard,
            to = preferred,
            "handing leadership to the preferred replica"
        );
        raft.trigger()
            .transfer_leader(preferred)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
