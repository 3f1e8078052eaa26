//! What the controller observed of one `KVCluster`: its StatefulSets and
//! pods as the API server reports them, and the Cairn cluster as its admin
//! API reports it. Plain data, so [`super::decide`] is a pure function of it.

use jiff::Timestamp;

/// One pod of a rack's StatefulSet.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// Pod name, `<cluster>-<rack>-<ordinal>`.
    pub name: String,
    /// Pod uid (a re-created pod has a new one).
    pub uid: String,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// The Ready condition is true.
    pub ready: bool,
    /// When the Ready condition last changed (creation time when unknown).
    pub ready_changed_at: Timestamp,
    /// When the pod object was created.
    pub created_at: Timestamp,
    /// The pod-spec hash the pod was created with.
    pub spec_hash: Option<String>,
    /// A deletion is under way (deletionTimestamp set).
    pub deleting: bool,
    /// Pod IP, once the pod runs.
    pub ip: Option<String>,
}

/// One rack: its StatefulSet and pods.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RackView {
    /// `spec.replicas` of the rack's StatefulSet; `None` before it exists.
    pub replicas: Option<u32>,
    /// The pod-spec hash the StatefulSet's template carries now.
    pub expected_hash: String,
    /// The rack's pods, any ordinal.
    pub pods: Vec<PodView>,
}

impl RackView {
    /// The pod with `ordinal`, if it exists.
    pub fn pod(&self, ordinal: u32) -> Option<&PodView> {
        self.pods.iter().find(|p| p.ordinal == ordinal)
    }
}

/// A node's membership state as the cluster records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Member taking replicas.
    Active,
    /// Replicas moving off it.
    Draining,
    /// Removed for good.
    Removed,
    /// Declared lost; being replaced.
    Dead,
}

/// One node as the cluster reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Cairn node id.
    pub id: u64,
    /// Membership state.
    pub state: NodeState,
    /// Its report could be fetched just now.
    pub reachable: bool,
    /// Shard replicas it holds.
    pub replicas: u32,
    /// Shards it leads.
    pub leaders: u32,
    /// Leaderships are kept off it (EvacuateLeaders).
    pub evacuating: bool,
}

/// The Cairn cluster as its admin API reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterView {
    /// Id the bootstrap node gave the cluster.
    pub cluster_id: String,
    /// Every node the cluster knows.
    pub nodes: Vec<NodeView>,
    /// Shards in the cluster.
    pub shards: u32,
    /// Shards with fewer caught-up voters than the replication factor.
    pub under_replicated: u32,
    /// Shards without a leader.
    pub leaderless: u32,
    /// Replica moves of the current rebalance, done and in all.
    pub moves_done: u32,
    /// See `moves_done`.
    pub moves_total: u32,
    /// Moves still to do.
    pub moves_remaining: u32,
}

impl ClusterView {
    /// The node with `id`, if the cluster knows it.
    pub fn node(&self, id: u64) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// Everything one reconcile looked at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// One entry per `spec.racks` entry, same order.
    pub racks: Vec<RackView>,
    /// `None` when no node's admin API answered.
    pub cluster: Option<ClusterView>,
    /// gRPC addresses of the running pods, ready ones first: where admin
    /// calls go.
    pub endpoints: Vec<String>,
    /// Data volume claims of existing pods that are missing or being
    /// deleted: those nodes lost their data.
    pub lost_claims: Vec<String>,
    /// Pods bound to a Kubernetes Node that is gone or being deleted, with
    /// that Node's name: their machine, and any local volume, went with it.
    pub lost_nodes: Vec<(String, String)>,
}
