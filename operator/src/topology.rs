//! Where nodes go and what they are called: the split of `spec.nodes` over
//! racks, and the Cairn node id each pod runs as.
//!
//! # Node ids
//! A pod `<cluster>-<rack>-<ordinal>` of the rack at position `r` in
//! `spec.racks` first runs as node id `r * 1000 + ordinal + 1` (rack 0:
//! 1, 2, 3…; rack 1: 1001, 1002…). Ids are never 0 (the node refuses 0) and
//! never collide because a rack holds at most 999 pods (`spec.nodes` ≤ 999)
//! and racks may only be appended (a CEL rule keeps their positions).
//!
//! A replaced node (volume lost, down too long) must not come back under an
//! id the cluster removed, so the controller records a new id for that pod
//! in `status.members`; [`assigned_node_id`] prefers the recorded id over the
//! initial one. New ids count up within the rack's range of 1000; a rack
//! that used all of them continues at `(r + 1) << 32`
//! (`controller::decide::overflow_node_ids`).
//!
//! The id reaches the pod without a shell: the operator writes one TOML file
//! per pod into the identity ConfigMap and the container starts with
//! `--config /etc/cairn/identity/$(POD_NAME).toml` (Kubernetes expands
//! `$(POD_NAME)` from the downward API).

use crate::crd::{KVCluster, Lifecycle, Rack};

/// Node ids reserved for each rack position.
pub const NODE_IDS_PER_RACK: u64 = 1000;

/// Pods of one rack: the rack, its position and how many pods it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RackShare<'a> {
    /// Position in `spec.racks` (part of the node ids).
    pub index: usize,
    /// The rack.
    pub rack: &'a Rack,
    /// Pods (StatefulSet replicas) in this rack.
    pub nodes: u32,
}

/// Splits `nodes` evenly over `racks` in list order; the first
/// `nodes % racks.len()` racks take one extra node.
pub fn rack_shares(nodes: u32, racks: &[Rack]) -> Vec<RackShare<'_>> {
    let count = u32::try_from(racks.len()).unwrap_or(u32::MAX).max(1);
    let (each, extra) = (nodes / count, nodes % count);
    racks
        .iter()
        .enumerate()
        .map(|(index, rack)| RackShare {
            index,
            rack,
            nodes: each + u32::from((index as u32) < extra),
        })
        .collect()
}

/// The id a pod runs as when nothing was recorded for it:
/// `rack_index * 1000 + ordinal + 1`.
pub fn initial_node_id(rack_index: usize, ordinal: u32) -> u64 {
    rack_index as u64 * NODE_IDS_PER_RACK + u64::from(ordinal) + 1
}

/// Name of the pod with `ordinal` in the rack's StatefulSet.
pub fn pod_name(cluster_name: &str, rack: &Rack, ordinal: u32) -> String {
    format!("{}-{ordinal}", statefulset_name(cluster_name, rack))
}

/// Name of a rack's StatefulSet: `<cluster>-<rack>`.
pub fn statefulset_name(cluster_name: &str, rack: &Rack) -> String {
    format!("{cluster_name}-{}", rack.name)
}

/// The id `pod` runs as: the newest id `status.members` records for the
/// pod that is not removed, else [`initial_node_id`].
pub fn assigned_node_id(cluster: &KVCluster, pod: &str, rack_index: usize, ordinal: u32) -> u64 {
    cluster
        .status
        .as_ref()
        .and_then(|status| {
            status
                .members
                .iter()
                .rev()
                .find(|m| m.pod == pod && m.lifecycle != Lifecycle::Removed)
        })
        .map_or_else(|| initial_node_id(rack_index, ordinal), |m| m.node_id)
}
