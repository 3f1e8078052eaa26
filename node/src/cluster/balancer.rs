//! The balancer: runs on the meta group's leader and moves the committed
//! placement plan ([`PlacementPlan`]) towards the balanced target that
//! [`placement::target`] computes from the nodes, a few shards at a time.
//!
//! The plan is the only thing it writes. Shard leaders' reconcilers do the
//! moves (add learner → catch up → change voters → hand over leadership),
//! so every step of a move is either in the plan (what should happen) or
//! in the shard's Raft log (what did happen), and a crash or a new meta
//! leader picks the plan up where it stopped.
//!
//! Limits:
//! - **Concurrency.** At most [`RebalanceTuning::max_moves`] shards whose
//!   replicas are changing for balance at once. Repairs (a shard with fewer
//!   live replicas than it should have: a node declared dead, a cluster
//!   still forming) are not held back by it, since waiting there risks
//!   data, not just balance.
//! - **Bandwidth.** Every node throttles the snapshots it sends to new
//!   replicas to [`RebalanceTuning::rate_bytes_per_sec`].
//! - **Pause / cancel.** A paused plan starts no move; moves in flight
//!   finish. Cancelling pauses and sets every shard whose move is in flight
//!   back to the replicas it has now.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::meta::{self, META_SHARD, NodeRecord, NodeState, PlacementPlan};
use super::observe::ObservedShard;
use super::placement::{self, NodeSpec, ShardPlacement};
use super::{Cluster, ClusterError};

/// How often the meta leader looks at the cluster.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How fast replicas move (the `[rebalance]` config table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RebalanceTuning {
    /// Most shards moving replicas for balance at once, cluster-wide
    /// (default 4). The meta leader's setting applies.
    pub max_moves: u32,
    /// Most snapshot bytes per second a node sends to new replicas
    /// (default 64 MiB/s; 0 = unlimited).
    pub rate_bytes_per_sec: u64,
}

impl Default for RebalanceTuning {
    fn default() -> Self {
        Self {
            max_moves: 4,
            rate_bytes_per_sec: 64 << 20,
        }
    }
}

/// Placement's view of the node records.
pub fn specs(nodes: &[NodeRecord]) -> Vec<NodeSpec> {
    nodes
        .iter()
        .map(|n| NodeSpec {
            id: n.id,
            rack: n.rack.clone(),
            weight: n.weight.max(1),
            eligible: n.state == NodeState::Active,
        })
        .collect()
}

/// The balanced target the plan is heading for.
pub fn destination(nodes: &[NodeRecord], rf: u32, plan: &PlacementPlan) -> Vec<ShardPlacement> {
    placement::target(&specs(nodes), &plan.shards, rf)
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

/// Voters of an observed shard, leader first.
fn voters(s: &ObservedShard) -> Vec<u64> {
    let mut v = s.voters.clone();
    v.sort_by_key(|&n| (Some(n) != s.leader, n));
    v
}

/// Whether an observed shard is still moving towards `target`: its voters
/// differ from the target or it has learners catching up. A shard nobody
/// reported on counts as settled (it cannot move without a leader).
fn in_flight(observed: Option<&ObservedShard>, target: &[u64]) -> bool {
    match observed {
        Some(s) if s.leader.is_some() => set(&s.voters) != set(target) || !s.learners.is_empty(),
        _ => false,
    }
}

/// Whether shard `target` misses live replicas: fewer of its nodes are
/// alive (active or draining) than it should have.
fn needs_repair(nodes: &[NodeRecord], rf: u32, target: &[u64]) -> bool {
    let alive = |id: &u64| {
        nodes
            .iter()
            .any(|n| n.id == *id && matches!(n.state, NodeState::Active | NodeState::Draining))
    };
    let eligible = nodes
        .iter()
        .filter(|n| n.state == NodeState::Active)
        .count();
    target.iter().filter(|id| alive(id)).count() < (rf as usize).min(eligible)
}

/// The plan's next version, or `None` when nothing should change now.
///
/// Shards whose target changes are taken in this order: repairs, then
/// shards with replicas on nodes leaving (draining, removed, dead), then
/// the rest; balance moves stop at `max_moves` in flight. A change of
/// preferred leader only is made at once (a leadership transfer is cheap).
pub fn next_plan(
    nodes: &[NodeRecord],
    rf: u32,
    plan: &PlacementPlan,
    observed: &[ObservedShard],
    max_moves: u32,
) -> Option<PlacementPlan> {
    if plan.paused {
        return None;
    }
    let want = destination(nodes, rf, plan);
    let busy = |s: usize| in_flight(observed.get(s), plan.shards[s].replicas.as_slice());
    let mut budget =
        (max_moves as usize).saturating_sub((0..plan.shards.len()).filter(|&s| busy(s)).count());
    let leaving = |t: &[u64]| {
        t.iter().any(|id| {
            !nodes
                .iter()
                .any(|n| n.id == *id && n.state == NodeState::Active)
        })
    };
    let mut order: Vec<usize> = (0..plan.shards.len())
        .filter(|&s| !busy(s) && want[s] != plan.shards[s])
        .collect();
    order.sort_by_key(|&s| {
        let t = plan.shards[s].replicas.as_slice();
        (!needs_repair(nodes, rf, t), !leaving(t), s)
    });
    let mut next = plan.clone();
    let mut changed = false;
    for s in order {
        let now = plan.shards[s].replicas.as_slice();
        let moves_replicas = set(now) != set(&want[s].replicas);
        if moves_replicas && !needs_repair(nodes, rf, now) {
            if budget == 0 {
                continue;
            }
            budget -= 1;
        }
        next.shards[s] = want[s].clone();
        changed = true;
    }
    changed.then(|| {
        next.epoch += 1;
        next
    })
}

/// The plan with every shard whose move is in flight set back to the
/// replicas it has now, and paused.
pub fn cancelled(plan: &PlacementPlan, observed: &[ObservedShard]) -> PlacementPlan {
    let mut next = plan.clone();
    for (s, target) in next.shards.iter_mut().enumerate() {
        if let Some(o) = observed.get(s)
            && in_flight(Some(o), &target.replicas)
        {
            target.replicas = voters(o);
        }
    }
    next.paused = true;
    next.epoch += 1;
    next
}

/// Where a shard map observation comes from ([`ClusterObserver`](super::observe::ClusterObserver)
/// merges every node's report).
pub trait Observer: Send + Sync + 'static {
    /// Every data shard as its leader reports it.
    fn observe(&self) -> impl std::future::Future<Output = Vec<ObservedShard>> + Send;
}

/// Runs the balancer until `stop` turns true; it acts only while this node
/// leads the meta group.
pub async fn run<O: Observer>(
    cluster: Arc<Cluster>,
    observer: O,
    tuning: RebalanceTuning,
    clock: Arc<dyn crate::clock::Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if !cluster.is_leader(META_SHARD) {
            cluster.options().metrics.rebalance_shards_moving.set(0);
            continue;
        }
        let observed = observer.observe().await;
        if let Some(moving) = moving_shards(&cluster, &observed) {
            cluster
                .options()
                .metrics
                .rebalance_shards_moving
                .set(i64::from(moving));
        }
        if let Err(e) = step(&cluster, &observed, tuning, clock.now_ms()).await {
            tracing::debug!(error = %e, "balancer pass incomplete");
        }
    }
}

/// Shards still moving towards the balanced target (see [`in_flight`]),
/// or `None` when the membership or plan cannot be read.
fn moving_shards(cluster: &Cluster, observed: &[ObservedShard]) -> Option<u32> {
    let record = cluster.record().ok()?;
    let nodes = cluster.nodes().ok()?;
    let plan = meta::read_plan(cluster.engine()).ok()??;
    let target = destination(&nodes, record.replication_factor, &plan);
    let moving = observed
        .iter()
        .filter(|s| {
            target
                .get(s.shard as usize)
                .is_some_and(|t| in_flight(Some(s), &t.replicas))
        })
        .count();
    u32::try_from(moving).ok()
}

async fn step(
    cluster: &Cluster,
    observed: &[ObservedShard],
    tuning: RebalanceTuning,
    now_ms: u64,
) -> Result<(), ClusterError> {
    let record = cluster.record()?;
    let nodes = cluster.nodes()?;
    cluster
        .update_plan(now_ms, |plan| {
            let next = next_plan(
                &nodes,
                record.replication_factor,
                plan,
                observed,
                tuning.max_moves,
            )?;
            let changed = plan
                .shards
                .iter()
                .zip(&next.shards)
                .filter(|(a, b)| a != b)
                .count();
            tracing::info!(
                epoch = next.epoch,
                shards = changed,
                "placement plan advanced"
            );
            Some(next)
        })
        .await?;
    Ok(())
}

impl Cluster {
    /// Replaces the committed plan with `change(plan)` (nothing when it
    /// returns `None`), from an up-to-date read and only if nobody wrote
    /// the plan in between. Returns the plan now in force.
    ///
    /// # Errors
    /// The meta group has no leader, or the plan was written concurrently
    /// (retry).
    pub async fn update_plan(
        &self,
        now_ms: u64,
        change: impl FnOnce(&PlacementPlan) -> Option<PlacementPlan>,
    ) -> Result<PlacementPlan, ClusterError> {
        // Everything committed before now is applied here before the read.
        self.read_barrier(META_SHARD).await?;
        let Some((plan, written_at)) = meta::read_plan_versioned(self.engine())? else {
            return Err(ClusterError::NotJoined);
        };
        let Some(next) = change(&plan) else {
            return Ok(plan);
        };
        let resp = self
            .propose(
                META_SHARD,
                meta::replace_plan(&next, written_at, now_ms)?,
                0,
            )
            .await?;
        if !meta::txn_succeeded(&resp) {
            return Err(ClusterError::NoLeader {
                shard: META_SHARD,
                detail: "the placement plan changed concurrently; retry".into(),
            });
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
