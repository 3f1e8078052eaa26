//! Rebalance progress: how far the shards are from their target placement
//! (measured from the merged node reports), and how that distance changes
//! over time (rate, ETA, stall detection).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_proto::admin::v1 as apb;

use crate::cluster::meta::{NodeRecord, NodeState, PlacementPlan};
use crate::cluster::placement::ShardPlacement;

/// Distance of the cluster from its target placement at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gap {
    /// Replica moves still needed: for each shard, the larger of replicas to
    /// add and replicas to drop.
    pub moves: u32,
    /// Shards whose replicas are changing right now.
    pub in_flight: u32,
    /// Approximate shard data still to copy: each replica to add costs its
    /// shard's size.
    pub bytes: u64,
    /// Learners still behind their leader.
    pub catching_up: u32,
    /// Shards not led by their planned leader.
    pub leaders_to_move: u32,
    /// Shards without a leader.
    pub leaderless: u32,
    /// The first shard still waiting, and on what (for a stall reason).
    pub example: Option<String>,
}

/// Measures `shards` (merged reports) against `destination`, the balanced
/// placement the plan is heading for, and the plan's current step.
pub fn measure(
    shards: &[apb::ShardInfo],
    nodes: &[NodeRecord],
    destination: &[ShardPlacement],
    plan: &PlacementPlan,
) -> Gap {
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
        let wanted = destination
            .get(s.shard as usize)
            .map_or(&[][..], |p| p.replicas.as_slice());
        let target: BTreeSet<u64> = wanted.iter().copied().collect();
        let voters: BTreeSet<u64> = s
            .replicas
            .iter()
            .filter(|r| r.voter)
            .map(|r| r.node_id)
            .collect();
        let add = target.difference(&voters).count() as u32;
        let drop = voters.difference(&target).count() as u32;
        gap.moves += add.max(drop);
        gap.bytes += u64::from(add) * s.approx_bytes;
        let planned: BTreeSet<u64> = plan.of(s.shard).iter().copied().collect();
        if planned != voters || s.replicas.iter().any(|r| !r.voter) {
            gap.in_flight += 1;
        }
        let behind: Vec<u64> = s
            .replicas
            .iter()
            .filter(|r| !r.voter && r.lag > 0)
            .map(|r| r.node_id)
            .collect();
        gap.catching_up += behind.len() as u32;
        let preferred = wanted.iter().find(|n| !no_lead.contains(n));
        if no_lead.contains(&s.leader_id) || preferred.is_some_and(|&p| p != s.leader_id) {
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
    /// Identifies the destination being tracked; a new one starts afresh.
    key: u64,
    /// Most moves seen outstanding since the destination changed.
    total: u32,
    /// Snapshot bytes the cluster had sent when the destination changed.
    sent_at_start: u64,
    /// Moves outstanding at the last call, and when that number last fell.
    last: u32,
    last_progress: Option<Instant>,
    /// Where the rates are measured from: (instant, moves outstanding,
    /// snapshot bytes sent).
    since: Option<(Instant, u32, u64)>,
}

impl Tracker {
    /// Records `gap` towards the destination identified by `key`, with
    /// `sent` snapshot bytes sent so far over the cluster, and answers with
    /// the progress figures (the caller fills in the plan's epoch and pause
    /// flag).
    pub fn observe(
        &mut self,
        key: u64,
        gap: &Gap,
        sent: u64,
        now: Instant,
        stall_after: Duration,
    ) -> apb::RebalanceStatusResponse {
        let outstanding = gap.moves + gap.leaders_to_move;
        if key != self.key || self.since.is_none() {
            *self = Tracker {
                key,
                total: outstanding,
                sent_at_start: sent,
                last: outstanding,
                last_progress: Some(now),
                since: Some((now, outstanding, sent)),
            };
        }
        self.total = self.total.max(outstanding);
        if outstanding < self.last || outstanding == 0 {
            self.last_progress = Some(now);
        }
        if outstanding > self.last {
            // New work (a node failed, say): measure the rate afresh.
            self.since = Some((now, outstanding, sent));
        }
        self.last = outstanding;
        let (rate, bytes_rate, eta) = match self.since {
            Some((t0, m0, s0)) if m0 > outstanding => {
                let secs = now.duration_since(t0).as_secs_f64().max(0.001);
                let rate = f64::from(m0 - outstanding) / secs;
                let bytes_rate = sent.saturating_sub(s0) as f64 / secs;
                (
                    rate,
                    bytes_rate,
                    (f64::from(outstanding) / rate).ceil() as u64,
                )
            }
            _ => (0.0, 0.0, 0),
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
            placement_epoch: 0,
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
            paused: false,
            moves_in_flight: gap.in_flight,
            bytes_remaining: gap.bytes,
            bytes_moved: sent.saturating_sub(self.sent_at_start),
            bytes_per_second: bytes_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(moves: u32) -> Gap {
        Gap {
            moves,
            bytes: u64::from(moves) * 1000,
            example: Some("shard 3 waits".into()),
            ..Gap::default()
        }
    }

    #[test]
    fn progress_rate_and_eta_follow_the_outstanding_moves() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let stall = Duration::from_secs(10);
        let r = t.observe(7, &gap(10), 500, t0, stall);
        assert_eq!(
            (r.moves_total, r.moves_done, r.moves_remaining),
            (10, 0, 10)
        );
        let r = t.observe(7, &gap(6), 4500, t0 + Duration::from_secs(2), stall);
        assert_eq!((r.moves_done, r.moves_remaining), (4, 6));
        assert!((r.moves_per_second - 2.0).abs() < 1e-9);
        assert_eq!(r.eta_seconds, 3);
        assert_eq!((r.bytes_moved, r.bytes_remaining), (4000, 6000));
        assert!((r.bytes_per_second - 2000.0).abs() < 1e-6);
        assert!(!r.stalled);
    }

    #[test]
    fn no_progress_for_the_stall_period_is_reported_with_a_reason() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let stall = Duration::from_secs(5);
        t.observe(1, &gap(4), 0, t0, stall);
        let r = t.observe(1, &gap(4), 0, t0 + Duration::from_secs(4), stall);
        assert!(!r.stalled);
        let r = t.observe(1, &gap(4), 0, t0 + Duration::from_secs(6), stall);
        assert!(r.stalled);
        assert!(
            r.stalled_reason.contains("shard 3 waits"),
            "{}",
            r.stalled_reason
        );
        // Done is never stalled, and a new epoch starts a new plan.
        let r = t.observe(2, &gap(0), 0, t0 + Duration::from_secs(60), stall);
        assert!(!r.stalled);
        assert_eq!(r.moves_total, 0);
    }
}
