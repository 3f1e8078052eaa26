//! Raft replica metrics, read from every group this node hosts at each
//! scrape: role, term, log and apply positions, membership size, the lag of
//! each follower (on leaders), shard sizes, and this node's standing in the
//! cluster. Shards are labelled by id (`shard="17"`, the meta group
//! `shard="meta"`): bounded by the shard count, never by keys.

use std::sync::{Arc, Mutex};

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver as _;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::cluster::Cluster;
use crate::cluster::meta::{META_SHARD, NodeState};
use crate::partition::ShardId;

/// Renders the state of this node's Raft replicas as Prometheus families.
pub struct ReplicaCollector {
    cluster: Arc<Cluster>,
    /// Serialises scrapes: each one resets and refills the families below.
    scrape: Mutex<()>,
    leader: IntGaugeVec,
    has_leader: IntGaugeVec,
    term: IntGaugeVec,
    last_log_index: IntGaugeVec,
    committed_index: IntGaugeVec,
    applied_index: IntGaugeVec,
    log_entries: IntGaugeVec,
    snapshot_index: IntGaugeVec,
    voters: IntGaugeVec,
    learners: IntGaugeVec,
    follower_lag: IntGaugeVec,
    shard_bytes: IntGaugeVec,
    node_state: IntGaugeVec,
    replication_factor: IntGauge,
    shards: IntGauge,
    data_bytes: IntGauge,
    room_bytes: IntGauge,
    snapshot_sent: IntCounter,
}

fn per_shard(name: &str, help: &str) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), &["shard"])
}

/// The `shard` label of a group.
fn label(shard: ShardId) -> String {
    if shard == META_SHARD {
        "meta".into()
    } else {
        shard.to_string()
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ReplicaCollector {
    /// A collector reading `cluster` (this node's part of it).
    ///
    /// # Errors
    /// Invalid metric names (a programming error caught by tests).
    pub fn new(cluster: Arc<Cluster>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            cluster,
            scrape: Mutex::new(()),
            leader: per_shard(
                "cairn_raft_leader",
                "1 where this node leads the shard's Raft group, else 0.",
            )?,
            has_leader: per_shard(
                "cairn_raft_has_leader",
                "1 where this node's replica knows a leader for the shard, else 0.",
            )?,
            term: per_shard("cairn_raft_term", "The replica's current Raft term.")?,
            last_log_index: per_shard(
                "cairn_raft_last_log_index",
                "Index of the last entry in the replica's log.",
            )?,
            committed_index: per_shard(
                "cairn_raft_committed_index",
                "Index of the last entry the replica knows is committed.",
            )?,
            applied_index: per_shard(
                "cairn_raft_applied_index",
                "Index of the last entry the replica applied to its state machine.",
            )?,
            log_entries: per_shard(
                "cairn_raft_log_entries",
                "Entries kept in the replica's log (not yet purged behind a snapshot).",
            )?,
            snapshot_index: per_shard(
                "cairn_raft_snapshot_index",
                "Last log index covered by the replica's latest snapshot.",
            )?,
            voters: per_shard(
                "cairn_raft_voters",
                "Voting members of the shard's group, as this replica sees the membership.",
            )?,
            learners: per_shard(
                "cairn_raft_learners",
                "Non-voting members (replicas catching up), as this replica sees the membership.",
            )?,
            follower_lag: IntGaugeVec::new(
                Opts::new(
                    "cairn_raft_follower_lag_entries",
                    "Log entries a follower is behind this leader (exported by leaders only).",
                ),
                &["shard", "follower"],
            )?,
            shard_bytes: per_shard(
                "cairn_shard_size_bytes",
                "Approximate bytes of the shard's data held by this replica.",
            )?,
            node_state: IntGaugeVec::new(
                Opts::new(
                    "cairn_node_state",
                    "1 for this node's state in the cluster's membership (active, draining, removed, dead), 0 for the others.",
                ),
                &["state"],
            )?,
            replication_factor: IntGauge::new(
                "cairn_cluster_replication_factor",
                "Replicas every shard should have.",
            )?,
            shards: IntGauge::new("cairn_cluster_shards", "Hash shards of the cluster.")?,
            data_bytes: IntGauge::new(
                "cairn_storage_data_bytes",
                "Estimated live data this node holds.",
            )?,
            room_bytes: IntGauge::new(
                "cairn_storage_room_bytes",
                "Bytes this node can still take: free disk, or what is left of its configured capacity if less.",
            )?,
            snapshot_sent: IntCounter::new(
                "cairn_raft_snapshot_sent_bytes_total",
                "Snapshot bytes this node sent to replicas catching up.",
            )?,
        })
    }

    /// The per-shard families: reset before each refill, so shards moved
    /// off this node and removed followers vanish.
    fn per_shard(&self) -> [&IntGaugeVec; 13] {
        [
            &self.leader,
            &self.has_leader,
            &self.term,
            &self.last_log_index,
            &self.committed_index,
            &self.applied_index,
            &self.log_entries,
            &self.snapshot_index,
            &self.voters,
            &self.learners,
            &self.follower_lag,
            &self.shard_bytes,
            &self.node_state,
        ]
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        let mut all: Vec<&dyn Collector> = self
            .per_shard()
            .into_iter()
            .map(|v| v as &dyn Collector)
            .collect();
        all.extend([
            &self.replication_factor as &dyn Collector,
            &self.shards,
            &self.data_bytes,
            &self.room_bytes,
            &self.snapshot_sent,
        ]);
        all
    }

    fn fill(&self) {
        for v in self.per_shard() {
            v.reset();
        }
        let engine = self.cluster.engine();
        for shard in self.cluster.hosted() {
            let Some(raft) = self.cluster.group(shard) else {
                continue;
            };
            let m = raft.metrics().borrow_watched().clone();
            let l = label(shard);
            let l = [l.as_str()];
            let leads = m.state == ServerState::Leader;
            let last = m.last_log_index.unwrap_or(0);
            let membership = m.membership_config.membership();
            self.leader.with_label_values(&l).set(i64::from(leads));
            self.has_leader
                .with_label_values(&l)
                .set(i64::from(m.current_leader.is_some()));
            self.term.with_label_values(&l).set(int(m.current_term));
            self.last_log_index.with_label_values(&l).set(int(last));
            self.committed_index
                .with_label_values(&l)
                .set(int(m.local_committed.as_ref().map_or(0, |c| c.index)));
            self.applied_index
                .with_label_values(&l)
                .set(int(m.last_applied.as_ref().map_or(0, |a| a.index)));
            let purged = m.purged.as_ref().map_or(0, |p| p.index);
            self.log_entries
                .with_label_values(&l)
                .set(int(last.saturating_sub(purged)));
            self.snapshot_index
                .with_label_values(&l)
                .set(int(m.snapshot.as_ref().map_or(0, |s| s.index)));
            self.voters
                .with_label_values(&l)
                .set(int(membership.voter_ids().count() as u64));
            self.learners
                .with_label_values(&l)
                .set(int(membership.learner_ids().count() as u64));
            if leads && let Some(replication) = &m.replication {
                for (id, matched) in replication {
                    if *id == self.cluster.node_id() {
                        continue;
                    }
                    let matched = matched.as_ref().map_or(0, |m| m.index);
                    self.follower_lag
                        .with_label_values(&[l[0], &id.to_string()])
                        .set(int(last.saturating_sub(matched)));
                }
            }
            if shard != META_SHARD {
                self.shard_bytes
                    .with_label_values(&l)
                    .set(int(engine.approximate_shard_bytes(shard)));
            }
        }
        if let Ok(record) = self.cluster.record() {
            self.replication_factor
                .set(i64::from(record.replication_factor));
            self.shards.set(i64::from(record.shards));
        }
        if let Ok(nodes) = self.cluster.nodes()
            && let Some(me) = nodes.iter().find(|n| n.id == self.cluster.node_id())
        {
            for (state, name) in [
                (NodeState::Active, "active"),
                (NodeState::Draining, "draining"),
                (NodeState::Removed, "removed"),
                (NodeState::Dead, "dead"),
            ] {
                self.node_state
                    .with_label_values(&[name])
                    .set(i64::from(me.state == state));
            }
        }
        let (data, room) = self.cluster.data_and_room();
        self.data_bytes.set(int(data));
        self.room_bytes.set(int(room));
        self.snapshot_sent.reset();
        self.snapshot_sent
            .inc_by(self.cluster.peers().snapshot_bytes_sent());
    }
}

impl Collector for ReplicaCollector {
    fn desc(&self) -> Vec<&Desc> {
        super::descs(&self.collectors())
    }

    fn collect(&self) -> Vec<MetricFamily> {
        super::refilled(&self.scrape, || self.fill(), &self.collectors())
    }
}
