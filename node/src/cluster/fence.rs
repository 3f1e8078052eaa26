//! A node whose id the cluster removed or declared dead stops, however it
//! is started: its data is stale by definition, and serving (even only by
//! forwarding) would hide that it must be replaced by a new node.
//!
//! Three checks, one rule ([`lifecycle::refusal`]):
//! - at start-up, before any group starts or the node reports ready, its own
//!   meta replica must not record its id as fenced ([`check`]);
//! - a member restarted without `--join` still asks the cluster to admit it,
//!   through the peers its meta replica knows ([`member_seeds`]), so a
//!   removal it never heard of is refused there (`node_removed`);
//! - a running node stops once its meta replica records its id as fenced
//!   ([`watch()`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::meta::{self, NodeRecord};
use super::{Cluster, ClusterError, lifecycle};
use crate::storage::Engine;

/// How often a running node looks at its own record.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The refusal for node `id` if `nodes` (a meta replica's records) fence it.
pub fn own_refusal(nodes: &[NodeRecord], id: u64) -> Option<ClusterError> {
    nodes
        .iter()
        .find(|n| n.id == id)
        .and_then(|n| lifecycle::refusal(id, n.state))
}

/// Refuses starting node `id` when the meta replica in `engine` records its
/// id as fenced.
///
/// # Errors
/// [`ClusterError::Refused`] (`node_removed`), naming the id and what to do;
/// storage failure.
pub fn check(engine: &Engine, id: u64) -> Result<(), ClusterError> {
    own_refusal(&meta::read_nodes(engine)?, id).map_or(Ok(()), Err)
}

/// The members node `id` asks to admit it when it was started without
/// `--join`: every other node in its meta replica that is not fenced.
pub fn member_seeds(nodes: &[NodeRecord], id: u64) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.id != id && !lifecycle::fenced(n.state) && !n.addr.is_empty())
        .map(|n| n.addr.clone())
        .collect()
}

/// Runs until `stop` turns true, or until this node's meta replica records
/// its id as fenced: then the reason goes to `fatal` (the node must stop).
pub async fn watch(
    cluster: Arc<Cluster>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    fatal: watch::Sender<Option<String>>,
) {
    let id = cluster.node_id();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match cluster.nodes() {
            Ok(nodes) => {
                if let Some(refused) = own_refusal(&nodes, id) {
                    tracing::error!(error = %refused, "this node's id is fenced; stopping");
                    let _ = fatal.send(Some(refused.to_string()));
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading this node's own record"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::meta::NodeState;

    fn node(id: u64, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
            http_addr: String::new(),
            rack: String::new(),
            state,
            weight: 1,
            evacuate_leaders: false,
        }
    }

    #[test]
    fn only_a_fenced_own_record_refuses() {
        let nodes = [
            node(1, NodeState::Active),
            node(2, NodeState::Draining),
            node(3, NodeState::Removed),
            node(4, NodeState::Dead),
        ];
        assert!(own_refusal(&nodes, 1).is_none());
        assert!(own_refusal(&nodes, 2).is_none());
        assert!(own_refusal(&nodes, 9).is_none(), "not recorded yet");
        for (id, says) in [(3, "was removed"), (4, "was declared dead")] {
            match own_refusal(&nodes, id) {
                Some(ClusterError::Refused { code, message }) => {
                    assert_eq!(code, cairn_proto::ErrorCode::NodeRemoved);
                    assert!(message.contains(&format!("node {id} {says}")), "{message}");
                    assert!(message.contains("new --node-id"), "{message}");
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn seeds_are_the_other_members_not_fenced() {
        let nodes = [
            node(1, NodeState::Active),
            node(2, NodeState::Draining),
            node(3, NodeState::Removed),
            node(4, NodeState::Dead),
        ];
        assert_eq!(member_seeds(&nodes, 1), vec!["127.0.0.1:7002"]);
        assert_eq!(
            member_seeds(&nodes, 3),
            vec!["127.0.0.1:7001", "127.0.0.1:7002"]
        );
    }
}
