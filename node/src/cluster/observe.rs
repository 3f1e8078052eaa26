//! What the cluster looks like now, from every node's own report: each
//! node knows its replicas' roles and, where it leads, every replica's
//! progress; merged, a shard's leader is the reporting leader with the
//! highest term. The admin API answers status calls from it and the
//! balancer plans from it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::Admin;
use cairn_proto::admin::v1 as apb;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver as _;

use super::meta::{self, META_SHARD, NodeRecord, NodeState};
use super::{Cluster, ClusterError, balancer};
use crate::partition::ShardId;

/// How long a fan-out waits for one node's report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The API's view of a node state.
pub fn state_of(state: NodeState) -> apb::NodeState {
    match state {
        NodeState::Active => apb::NodeState::Active,
        NodeState::Draining => apb::NodeState::Draining,
        NodeState::Removed => apb::NodeState::Removed,
        NodeState::Dead => apb::NodeState::Dead,
    }
}

/// One data shard as its leader reports it: what the balancer plans from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedShard {
    /// The shard.
    pub shard: ShardId,
    /// Its leader, when one answered.
    pub leader: Option<u64>,
    /// Its voting replicas.
    pub voters: Vec<u64>,
    /// Replicas still catching up (not voting yet).
    pub learners: Vec<u64>,
}

impl ObservedShard {
    /// The shard as the admin API's merged report shows it.
    pub fn of(info: &apb::ShardInfo) -> Self {
        let (voters, learners): (Vec<&apb::ReplicaInfo>, Vec<_>) =
            info.replicas.iter().partition(|r| r.voter);
        Self {
            shard: info.shard,
            leader: (info.leader_id != 0).then_some(info.leader_id),
            voters: voters.iter().map(|r| r.node_id).collect(),
            learners: learners.iter().map(|r| r.node_id).collect(),
        }
    }
}

/// Observes the cluster a node belongs to. Cheap to clone.
#[derive(Clone)]
pub struct ClusterObserver {
    cluster: Arc<Cluster>,
}

impl ClusterObserver {
    /// Observes through `cluster` (this node's part of it).
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    /// The cluster's identity and shape.
    ///
    /// # Errors
    /// The cluster record cannot be read.
    pub fn info(&self) -> Result<apb::ClusterInfo, ClusterError> {
        let rec = self.cluster.record()?;
        Ok(apb::ClusterInfo {
            cluster_id: rec.cluster_id,
            shards: rec.shards,
            replication_factor: rec.replication_factor,
            placement_epoch: meta::epoch(self.cluster.engine())?,
        })
    }

    /// This node's report on its own replicas.
    pub fn local_report(&self) -> apb::NodeReportResponse {
        let mut replicas = Vec::new();
        for shard in self.cluster.hosted() {
            let Some(raft) = self.cluster.group(shard) else {
                continue;
            };
            let m = raft.metrics().borrow_watched().clone();
            let membership = m.membership_config.membership();
            let leader = m.state == ServerState::Leader;
            let matched = if leader {
                m.replication
                    .as_ref()
                    .map(|r| {
                        r.iter()
                            .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index)))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Default::default()
            };
            replicas.push(apb::LocalReplica {
                shard,
                leader,
                term: m.current_term,
                leader_id: m.current_leader.unwrap_or(0),
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
                last_log_index: m.last_log_index.unwrap_or(0),
                applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
                revision: self.cluster.revision(shard),
                matched,
                approx_bytes: if shard == META_SHARD {
                    0
                } else {
                    self.cluster.engine().approximate_shard_bytes(shard)
                },
            });
        }
        let (data_bytes, free_bytes) = self.cluster.data_and_room();
        apb::NodeReportResponse {
            node_id: self.cluster.node_id(),
            replicas,
            snapshot_bytes_sent: self.cluster.peers().snapshot_bytes_sent(),
            data_bytes,
            free_bytes,
        }
    }

    /// Every node's report (`None` for nodes that did not answer in time).
    pub async fn reports(&self, nodes: &[NodeRecord]) -> Vec<Option<apb::NodeReportResponse>> {
        let calls = nodes.iter().map(|n| async move {
            if n.id == self.cluster.node_id() {
                return Some(self.local_report());
            }
            let channel = self.cluster.peers().channel(n.id, &n.addr).ok()?;
            let mut admin = Admin::on_channel(channel, n.addr.clone());
            tokio::time::timeout(REPORT_TIMEOUT, admin.node_report())
                .await
                .ok()?
                .ok()
        });
        futures::future::join_all(calls).await
    }

    /// Every node, shard and the meta group as the nodes' reports show them.
    ///
    /// # Errors
    /// The cluster record cannot be read.
    pub async fn gather(&self) -> Result<Gathered, ClusterError> {
        let info = self.info()?;
        let nodes = self.cluster.nodes()?;
        let reports = self.reports(&nodes).await;
        let snapshot_bytes_sent = reports
            .iter()
            .flatten()
            .map(|r| r.snapshot_bytes_sent)
            .sum();
        let (shards, meta) = merge(info.shards, &reports);
        let mut infos = Vec::with_capacity(nodes.len());
        for (n, r) in nodes.iter().zip(&reports) {
            // Counted from each shard's leader view: a node that a shard was
            // moved off may still believe it is a member (nobody tells it),
            // so its own report would overcount.
            let replicas = shards
                .iter()
                .filter(|s| s.replicas.iter().any(|x| x.node_id == n.id))
                .count() as u32;
            let leaders = shards.iter().filter(|s| s.leader_id == n.id).count() as u32;
            infos.push(apb::NodeInfo {
                id: n.id,
                addr: n.addr.clone(),
                http_addr: n.http_addr.clone(),
                rack: n.rack.clone(),
                state: state_of(n.state) as i32,
                evacuating_leaders: n.evacuate_leaders,
                reachable: r.is_some(),
                leaders,
                replicas,
            });
        }
        Ok(Gathered {
            info,
            nodes: infos,
            shards,
            meta,
            snapshot_bytes_sent,
        })
    }
}

/// The cluster as every node's report shows it.
pub struct Gathered {
    /// The cluster's identity and shape.
    pub info: apb::ClusterInfo,
    /// Every member, with what the shards' leaders say it holds.
    pub nodes: Vec<apb::NodeInfo>,
    /// Every data shard, from its leader's report.
    pub shards: Vec<apb::ShardInfo>,
    /// The meta group.
    pub meta: apb::ShardInfo,
    /// Snapshot bytes sent, summed over the nodes that answered.
    pub snapshot_bytes_sent: u64,
}

impl balancer::Observer for ClusterObserver {
    async fn observe(&self) -> Vec<ObservedShard> {
        let Ok(nodes) = self.cluster.nodes() else {
            return Vec::new();
        };
        let nodes: Vec<NodeRecord> = nodes
            .into_iter()
            .filter(|n| n.state != NodeState::Removed)
            .collect();
        let reports = self.reports(&nodes).await;
        merge(self.cluster.shards().get(), &reports)
            .0
            .iter()
            .map(ObservedShard::of)
            .collect()
    }
}

/// Merges node reports into one entry per shard (and one for the meta group).
fn merge(
    shards: u32,
    reports: &[Option<apb::NodeReportResponse>],
) -> (Vec<apb::ShardInfo>, apb::ShardInfo) {
    let mut best: BTreeMap<ShardId, &apb::LocalReplica> = BTreeMap::new();
    for r in reports.iter().flatten() {
        for x in &r.replicas {
            let better = match best.get(&x.shard) {
                None => true,
                Some(b) => (x.leader, x.term) > (b.leader, b.term),
            };
            if better {
                best.insert(x.shard, x);
            }
        }
    }
    let info = |shard: ShardId| -> apb::ShardInfo {
        let Some(x) = best.get(&shard) else {
            return apb::ShardInfo {
                shard,
                ..Default::default()
            };
        };
        let lag = |id: u64| {
            if x.leader {
                x.matched
                    .get(&id)
                    .map_or(x.last_log_index, |m| x.last_log_index.saturating_sub(*m))
            } else {
                0
            }
        };
        let replicas = x
            .voters
            .iter()
            .map(|&id| (id, true))
            .chain(x.learners.iter().map(|&id| (id, false)))
            .map(|(node_id, voter)| apb::ReplicaInfo {
                node_id,
                voter,
                lag: if x.leader && node_id == x.leader_id {
                    0
                } else {
                    lag(node_id)
                },
            })
            .collect();
        apb::ShardInfo {
            shard,
            leader_id: if x.leader { x.leader_id } else { 0 },
            term: x.term,
            replicas,
            revision: if x.leader { x.revision } else { 0 },
            approx_bytes: x.approx_bytes,
        }
    };
    ((0..shards).map(info).collect(), info(META_SHARD))
}
