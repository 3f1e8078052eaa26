//! Rebalance progress: how far the shards are from their target placement
//! (measured from the merged node reports), and how that distance changes
//! over time (rate, ETA, stall detection).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_proto::admin::v1 as apb;

use crate::cluster::meta::{NodeRecord, NodeState};
use crate::cluster::placement;

/// Distance of the cluster from its target placement at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gap {
    /// Replica moves still needed: for each shard, the larger of replicas to
    /// add and replicas to drop.
    pub moves: u32,
    /// Learners still behind their leader.
    pub catching_up: u32,
    /// Shards led by a node that should not lead them.
    pub leaders_to_move: u32,
    /// Shards without a leader.
    pub leaderless: u32,
    /// The first shard still waiting, and on what (for a stall reason).
    pub example: Option<String>,
}

/// Measures `shards` (merged reports) against the placement over `nodes`.
pub fn measure(shards: &[apb::ShardInfo], nodes: &[NodeRecord], rf: u32) -> Gap {
    let active: Vec<u64> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Active)
        .map(|n| n.id)
        .collect();
    let no_lead: BTreeSet<u64> = nodes
        .iter()
        .filter(|n| n.evacuate_leaders || n.state != NodeState::Active)
        .map(|n| n.id)
        .collect();
    let mut gap = Gap::default();
    for s in shards {
        if s.leader_id == 0 {
            gap.leaderless += 1;
            gap.example
                .get_or_insert_with(|| format!("shard {} has no leader", s.shard));
            continue;
        }
        let target: BTreeSet<u64> = placement::replicas(s.shard, &active, rf)
            .into_iter()
            .collect();
        let voters: BTreeSet<u64> = s
            .replicas
            .iter()
            .filter(|r| r.voter)
            .map(|r| r.node_id)
            .collect();
        let add = target.difference(&voters).count() as u32;
        let drop = voters.difference(&target).count() as u32;
        gap.moves += add.max(drop);
        let behind: Vec<u64> = s
            .replicas
            .iter()
            .filter(|r| !r.voter && r.lag > 0)
            .map(|r| r.node_id)
            .collect();
        gap.catching_up += behind.len() as u32;
        if no_lead.contains(&s.leader_id) {
            gap.leaders_to_move += 1;
        }
        if add.max(drop) > 0 {
            gap.example.get_or_insert_with(|| {
                let wanted: Vec<u64> = target.difference(&voters).copied().collect();
                if behind.is_empty() {
                    format!(
                        "shard {} (leader {}) still needs replicas on {wanted:?}",
                        s.shard, s.leader_id
                    )
                } else {
                    format!(
                        "shard {} (leader {}) waits for {behind:?} to catch up",
                        s.shard, s.leader_id
                    )
                }
            });
        }
    }
    gap
}

/// Progress between calls, kept by the node that answers them.
#[derive(Debug, Default)]
pub struct Tracker {
    epoch: u64,
    /// Most moves seen outstanding since the epoch changed.
    total: u32,
    /// Moves outstanding at the last call, and when that number last fell.
    last: u32,
    last_progress: Option<Instant>,
    /// Where the rate is measured from: (instant, moves outstanding).
    since: Option<(Instant, u32)>,
}

impl Tracker {
    /// Records `gap` at `epoch` and answers with the progress figures.
    pub fn observe(
        &mut self,
        epoch: u64,
        gap: &Gap,
        now: Instant,
        stall_after: Duration,
    ) -> apb::RebalanceStatusResponse {
        let outstanding = gap.moves + gap.leaders_to_move;
        if epoch != self.epoch || self.since.is_none() {
            *self = Tracker {
                epoch,
                total: outstanding,
                last: outstanding,
                last_progress: Some(now),
                since: Some((now, outstanding)),
            };
        }
        self.total = self.total.max(outstanding);
        if outstanding < self.last || outstanding == 0 {
            self.last_progress = Some(now);
        }
        if outstanding > self.last {
            // New work (a node failed, say): measure the rate afresh.
            self.since = Some((now, outstanding));
        }
        self.last = outstanding;
        let (rate, eta) = match self.since {
            Some((t0, m0)) if m0 > outstanding => {
                let secs = now.duration_since(t0).as_secs_f64().max(0.001);
                let rate = f64::from(m0 - outstanding) / secs;
                (rate, (f64::from(outstanding) / rate).ceil() as u64)
            }
            _ => (0.0, 0),
        };
        let idle_for = self
            .last_progress
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        let stalled = outstanding > 0 && idle_for >= stall_after;
        let stalled_reason = if stalled {
            format!(
                "nothing moved for {}s; {}",
                idle_for.as_secs(),
                gap.example
                    .clone()
                    .unwrap_or_else(|| "leaderships wait to move".into())
            )
        } else {
            String::new()
        };
        apb::RebalanceStatusResponse {
            placement_epoch: epoch,
            moves_total: self.total,
            moves_done: self.total - outstanding,
            moves_remaining: outstanding,
            replicas_catching_up: gap.catching_up,
            leaders_to_move: gap.leaders_to_move,
            moves_per_second: rate,
            eta_seconds: eta,
            stalled,
            stalled_reason,
            shards_without_leader: gap.leaderless,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(moves: u32) -> Gap {
        Gap {
            moves,
            example: Some("shard 3 waits".into()),
            ..Gap::default()
        }
    }

    #[test]
    fn progress_rate_and_eta_follow_the_outstanding_moves() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let stall = Duration::from_secs(10);
        let r = t.observe(7, &gap(10), t0, stall);
        assert_eq!(
            (r.moves_total, r.moves_done, r.moves_remaining),
            (10, 0, 10)
        );
        let r = t.observe(7, &gap(6), t0 + Duration::from_secs(2), stall);
        assert_eq!((r.moves_done, r.moves_remaining), (4, 6));
        assert!((r.moves_per_second - 2.0).abs() < 1e-9);
        assert_eq!(r.eta_seconds, 3);
        assert!(!r.stalled);
    }

    #[test]
    fn no_progress_for_the_stall_period_is_reported_with_a_reason() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let stall = Duration::from_secs(5);
        t.observe(1, &gap(4), t0, stall);
        let r = t.observe(1, &gap(4), t0 + Duration::from_secs(4), stall);
        assert!(!r.stalled);
        let r = t.observe(1, &gap(4), t0 + Duration::from_secs(6), stall);
        assert!(r.stalled);
        assert!(
            r.stalled_reason.contains("shard 3 waits"),
            "{}",
            r.stalled_reason
        );
        // Done is never stalled, and a new epoch starts a new plan.
        let r = t.observe(2, &gap(0), t0 + Duration::from_secs(60), stall);
        assert!(!r.stalled);
        assert_eq!(r.moves_total, 0);
    }
}
