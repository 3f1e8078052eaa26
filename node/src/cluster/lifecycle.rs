//! A node's lifecycle in the cluster: active → draining → removed (or back
//! to active). The state lives in the node's meta record; placement gives
//! replicas only to active nodes, so draining is simply "stop being a
//! target" and the shard leaders' reconcilers move replicas and leaderships
//! away. Removal fences the id for good.
//!
//! Every change runs on the meta group's leader, checks that it is safe
//! first and changes nothing when it is not.

use cairn_proto::ErrorCode;
use std::collections::BTreeSet;

use openraft::ChangeMembers;
use openraft::async_runtime::watch::WatchReceiver as _;

use super::meta::{self, META_SHARD, NodeRecord, NodeState};
use super::{Cluster, ClusterError, raft_err};
use crate::raft::network::ShardRaftHandle;

/// The refusal a removed node gets when it asks to join again.
pub fn removed(id: u64) -> ClusterError {
    ClusterError::Refused {
        code: ErrorCode::NodeRemoved,
        message: format!(
            "node {id} was removed from the cluster and its id is fenced; start a new node with a new --node-id and an empty --data-dir"
        ),
    }
}

/// The refusal a node declared dead gets when it comes back.
pub fn declared_dead(id: u64) -> ClusterError {
    ClusterError::Refused {
        code: ErrorCode::NodeRemoved,
        message: format!(
            "node {id} was declared dead and is being replaced, so its id is fenced; start a new node with a new --node-id and an empty --data-dir"
        ),
    }
}

/// A node's data and the room it has for more, from its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRoom {
    /// Node id.
    pub id: u64,
    /// Estimated live data on it.
    pub data_bytes: u64,
    /// Room for more (free disk or what is left of its capacity).
    pub free_bytes: u64,
}

/// Share of the others' free room a drain may fill: the rest is headroom
/// for compactions and for the data that keeps arriving.
pub const DRAIN_FILL: f64 = 0.9;

/// Refuses draining `id` when the other active nodes that reported have
/// less room, less headroom, than the data it holds. A node that did not
/// report is not counted on; when `id` itself did not report, nothing is
/// known and the drain goes ahead.
///
/// # Errors
/// [`ClusterError::Refused`] with code `not_enough_capacity`.
pub fn check_room(id: u64, nodes: &[NodeRecord], room: &[NodeRoom]) -> Result<(), ClusterError> {
    let Some(leaving) = room.iter().find(|r| r.id == id) else {
        return Ok(());
    };
    let active = |n: u64| {
        nodes
            .iter()
            .any(|x| x.id == n && x.state == NodeState::Active)
    };
    let free: u64 = room
        .iter()
        .filter(|r| r.id != id && active(r.id))
        .map(|r| r.free_bytes)
        .sum();
    let usable = (free as f64 * DRAIN_FILL) as u64;
    if leaving.data_bytes > usable {
        return Err(ClusterError::Refused {
            code: ErrorCode::NotEnoughCapacity,
            message: format!(
                "node {id} holds about {} MiB, but the other active nodes have room for {} MiB ({}% of their {} MiB free); add a node or raise --capacity-bytes first",
                leaving.data_bytes >> 20,
                usable >> 20,
                (DRAIN_FILL * 100.0) as u32,
                free >> 20
            ),
        });
    }
    Ok(())
}

/// Whether a node in `state` is refused when it tries to take part.
pub fn fenced(state: NodeState) -> bool {
    matches!(state, NodeState::Removed | NodeState::Dead)
}

/// The refusal node `id` gets in `state`, when that state fences it
/// ([`removed`] or [`declared_dead`]; `None` exactly when not [`fenced`]).
pub fn refusal(id: u64, state: NodeState) -> Option<ClusterError> {
    match state {
        NodeState::Removed => Some(removed(id)),
        NodeState::Dead => Some(declared_dead(id)),
        NodeState::Active | NodeState::Draining => None,
    }
}

impl Cluster {
    /// The meta group, if this node leads it.
    fn meta_leader(&self) -> Result<ShardRaftHandle, ClusterError> {
        let raft = self.group(META_SHARD).ok_or(ClusterError::NotJoined)?;
        if !raft.is_leader() {
            return Err(ClusterError::NoLeader {
                shard: META_SHARD,
                detail: "this node does not lead the meta group".into(),
            });
        }
        Ok(raft)
    }

    fn node_record(&self, id: u64) -> Result<(NodeRecord, Vec<NodeRecord>), ClusterError> {
        let nodes = meta::read_nodes(&self.engine)?;
        let node = nodes
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .ok_or(ClusterError::UnknownNode(id))?;
        Ok((node, nodes))
    }

    async fn set_state(
        &self,
        mut node: NodeRecord,
        state: NodeState,
        now_ms: u64,
    ) -> Result<NodeState, ClusterError> {
        if node.state != state {
            node.state = state;
            self.propose(META_SHARD, meta::put_node(&node, now_ms)?, 0)
                .await?;
        }
        Ok(state)
    }

    /// Starts draining node `id`: it stops being a placement target, so its
    /// replicas and leaderships move to the other active nodes. Idempotent.
    /// Must run on the meta leader. `room` is what the nodes that answered
    /// report about their data and free room.
    ///
    /// # Errors
    /// Unknown or removed node; fewer active nodes than the replication
    /// factor would remain; not enough room on the others for its data.
    pub async fn drain(
        &self,
        id: u64,
        room: &[NodeRoom],
        now_ms: u64,
    ) -> Result<NodeState, ClusterError> {
        self.meta_leader()?;
        let (node, nodes) = self.node_record(id)?;
        match node.state {
            NodeState::Removed => return Err(removed(id)),
            NodeState::Dead => return Err(declared_dead(id)),
            NodeState::Draining => return Ok(NodeState::Draining),
            NodeState::Active => {}
        }
        self.check_enough_left(id, &nodes, "draining")?;
        check_room(id, &nodes, room)?;
        tracing::info!(node = id, "draining node");
        self.set_state(node, NodeState::Draining, now_ms).await
    }

    /// Refuses taking node `id` out of placement when fewer active nodes
    /// than the replication factor would remain.
    fn check_enough_left(
        &self,
        id: u64,
        nodes: &[NodeRecord],
        what: &str,
    ) -> Result<(), ClusterError> {
        let rf = meta::read_cluster(&self.engine)?
            .ok_or(ClusterError::NotJoined)?
            .replication_factor;
        let left = nodes
            .iter()
            .filter(|n| n.id != id && n.state == NodeState::Active)
            .count();
        if left < rf as usize {
            return Err(ClusterError::Refused {
                code: ErrorCode::TooFewNodes,
                message: format!(
                    "{what} node {id} would leave {left} active nodes, fewer than the replication factor {rf}; add a node first"
                ),
            });
        }
        Ok(())
    }

    /// Declares node `id` lost: fences its id and stops placing replicas
    /// on it, so shard leaders re-create its replicas on the other nodes
    /// from the surviving ones. Idempotent. Must run on the meta leader.
    ///
    /// With `force`, also when fewer active nodes than the replication factor
    /// would remain: the replicas are then re-created as nodes join.
    ///
    /// # Errors
    /// Unknown or removed node; without `force`, fewer active nodes than the
    /// replication factor would remain.
    pub async fn replace(
        &self,
        id: u64,
        force: bool,
        now_ms: u64,
    ) -> Result<NodeState, ClusterError> {
        self.meta_leader()?;
        let (node, nodes) = self.node_record(id)?;
        match node.state {
            NodeState::Removed => return Err(removed(id)),
            NodeState::Dead => return Ok(NodeState::Dead),
            NodeState::Active | NodeState::Draining => {}
        }
        if node.state == NodeState::Active && !force {
            self.check_enough_left(id, &nodes, "replacing")?;
        }
        tracing::warn!(
            node = id,
            "node declared dead; re-creating its replicas elsewhere"
        );
        self.set_state(node, NodeState::Dead, now_ms).await
    }

    /// Keeps leaderships off node `id` (`evacuate`), or lets them come back.
    /// The node keeps its replicas; shard leaders on it hand leadership to
    /// another caught-up voter. For restarts without a leader loss.
    /// Idempotent. Must run on the meta leader.
    ///
    /// # Errors
    /// Unknown, removed or dead node.
    pub async fn evacuate_leaders(
        &self,
        id: u64,
        evacuate: bool,
        now_ms: u64,
    ) -> Result<NodeState, ClusterError> {
        self.meta_leader()?;
        let (mut node, _) = self.node_record(id)?;
        match node.state {
            NodeState::Removed => return Err(removed(id)),
            NodeState::Dead => return Err(declared_dead(id)),
            NodeState::Active | NodeState::Draining => {}
        }
        if node.evacuate_leaders != evacuate {
            node.evacuate_leaders = evacuate;
            tracing::info!(node = id, evacuate, "leaderships evacuation changed");
            self.propose(META_SHARD, meta::put_node(&node, now_ms)?, 0)
                .await?;
        }
        Ok(node.state)
    }

    /// Makes draining node `id` active again. Idempotent. Must run on the
    /// meta leader.
    ///
    /// # Errors
    /// Unknown or removed node.
    pub async fn cancel_drain(&self, id: u64, now_ms: u64) -> Result<NodeState, ClusterError> {
        self.meta_leader()?;
        let (node, _) = self.node_record(id)?;
        match node.state {
            NodeState::Removed => Err(removed(id)),
            NodeState::Dead => Err(declared_dead(id)),
            NodeState::Active => Ok(NodeState::Active),
            NodeState::Draining => {
                tracing::info!(node = id, "drain cancelled");
                self.set_state(node, NodeState::Active, now_ms).await
            }
        }
    }

    /// Removes drained (or dead and replaced) node `id` for good: records it as removed (which
    /// fences its id) and takes it out of the meta group, promoting a meta
    /// learner if voters fall short. `held` is how many shard replicas the
    /// node still has, from the cluster's reports. Idempotent. Must run on
    /// the meta leader, and that leader must not be the node itself.
    ///
    /// # Errors
    /// Unknown node, node not draining, node still holding replicas.
    pub async fn remove(
        &self,
        id: u64,
        held: usize,
        now_ms: u64,
    ) -> Result<NodeState, ClusterError> {
        let raft = self.meta_leader()?;
        let (node, nodes) = self.node_record(id)?;
        match node.state {
            NodeState::Removed => return Ok(NodeState::Removed),
            NodeState::Active => {
                return Err(ClusterError::Refused {
                    code: ErrorCode::NotDrained,
                    message: format!(
                        "node {id} is active; drain it first (cairnctl node drain {id} --wait), then remove it"
                    ),
                });
            }
            NodeState::Draining | NodeState::Dead => {}
        }
        if held > 0 {
            return Err(ClusterError::Refused {
                code: ErrorCode::NotDrained,
                message: format!(
                    "node {id} still holds {held} shard replicas; wait until the drain has moved them all"
                ),
            });
        }
        if id == self.opts.node_id {
            // A node cannot take itself out of the group it leads: hand the
            // meta leadership to another voter, and let the caller retry
            // there.
            let other = raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .voter_ids()
                .find(|v| *v != id);
            if let Some(to) = other {
                raft.trigger().transfer_leader(to).await.map_err(raft_err)?;
            }
            return Err(ClusterError::NoLeader {
                shard: META_SHARD,
                detail: format!(
                    "node {id} is handing over the meta leadership before its removal; retry"
                ),
            });
        }
        tracing::info!(node = id, "removing node");
        self.set_state(node, NodeState::Removed, now_ms).await?;

        let membership = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if voters.contains(&id) {
            let mut next = voters.clone();
            next.remove(&id);
            // Keep as many meta voters as before when a learner can step in.
            let promote = membership.learner_ids().filter(|l| *l != id).find(|l| {
                nodes
                    .iter()
                    .any(|n| n.id == *l && n.state != NodeState::Removed)
            });
            if let Some(l) = promote {
                next.insert(l);
            }
            raft.change_membership(ChangeMembers::ReplaceAllVoters(next), false)
                .await
                .map_err(raft_err)?;
        }
        let still_there = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if still_there {
            raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                .await
                .map_err(raft_err)?;
        }
        Ok(NodeState::Removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            addr: String::new(),
            http_addr: String::new(),
            rack: String::new(),
            state,
            weight: 1,
            evacuate_leaders: false,
        }
    }

    fn room(id: u64, data_bytes: u64, free_bytes: u64) -> NodeRoom {
        NodeRoom {
            id,
            data_bytes,
            free_bytes,
        }
    }

    #[test]
    fn exactly_the_fenced_states_are_refused() {
        for state in [
            NodeState::Active,
            NodeState::Draining,
            NodeState::Removed,
            NodeState::Dead,
        ] {
            assert_eq!(refusal(7, state).is_some(), fenced(state), "{state:?}");
        }
        match refusal(7, NodeState::Dead) {
            Some(ClusterError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::NodeRemoved);
                assert!(message.contains("node 7 was declared dead"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_drain_needs_room_on_the_other_active_nodes() {
        let nodes = [
            node(1, NodeState::Active),
            node(2, NodeState::Active),
            node(3, NodeState::Active),
            node(4, NodeState::Draining),
        ];
        // 2 × 500 free, 90% usable = 900.
        let reports = [
            room(1, 900, 0),
            room(2, 0, 500),
            room(3, 0, 500),
            room(4, 0, 10_000),
        ];
        assert!(check_room(1, &nodes, &reports).is_ok());
        let more = [
            room(1, 901, 0),
            room(2, 0, 500),
            room(3, 0, 500),
            room(4, 0, 10_000),
        ];
        match check_room(1, &nodes, &more) {
            Err(ClusterError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::NotEnoughCapacity);
                assert!(message.contains("node 1"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A node that did not report is not counted on; the leaving node
        // not reporting means nothing is known.
        assert!(check_room(1, &nodes, &[room(1, 1, 0), room(2, 0, 500)]).is_ok());
        assert!(check_room(1, &nodes, &[room(1, 1000, 0), room(2, 0, 500)]).is_err());
        assert!(check_room(1, &nodes, &[room(2, 0, 0)]).is_ok());
    }
}
