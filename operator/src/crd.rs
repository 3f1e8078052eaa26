//! The `KVCluster` custom resource (`cairn.dev/v1alpha1`): what a platform
//! team declares (spec) and what the operator reports back (status).
//!
//! Rules the apiserver enforces from the generated schema: ranges and
//! types (OpenAPI), and CEL rules in `x-kubernetes-validations` — `shards`
//! a power of two, `replicationFactor` at most `nodes`, and both immutable
//! once the cluster exists (its data is laid out by them).

// kube's `printcolumn(...)` repeats `type_ = ...` in every column, which
// clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// CEL has no bit operations: the powers of two up to the maximum.
const SHARDS_POWER_OF_TWO: &str =
    "self in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]";

/// A Cairn cluster: `nodes` storage nodes spread over `racks`, holding
/// `shards` hash shards with `replicationFactor` replicas each.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cairn.dev",
    version = "v1alpha1",
    kind = "KVCluster",
    plural = "kvclusters",
    shortname = "kvc",
    namespaced,
    status = "KVClusterStatus",
    scale(
        spec_replicas_path = ".spec.nodes",
        status_replicas_path = ".status.readyNodes"
    ),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".spec.nodes"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(
        name = "Under-replicated",
        type_ = "integer",
        json_path = ".status.shardHealth.underReplicated"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.replicationFactor <= self.nodes").message("replicationFactor must not exceed nodes"))]
#[serde(rename_all = "camelCase")]
pub struct KVClusterSpec {
    /// Storage nodes (pods), spread evenly over the racks.
    #[schemars(range(min = 1, max = 1000))]
    pub nodes: u32,
    /// Racks or zones; each gets its own StatefulSet. Default: one rack.
    #[serde(default = "default_racks")]
    pub racks: Vec<Rack>,
    /// Hash shards: a power of two, fixed for the cluster's life.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("shards cannot change after creation"))]
    #[x_kube(validation = Rule::new(SHARDS_POWER_OF_TWO).message("shards must be a power of two"))]
    pub shards: u32,
    /// Replicas per shard, fixed for the cluster's life.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor cannot change after creation"))]
    pub replication_factor: u32,
    /// Container image of `cairn-node`.
    pub image: String,
    /// Cairn version the image carries (shown in status, used for upgrades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CPU and memory of each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Each node's volume.
    #[serde(default)]
    pub storage: Storage,
    /// Node settings passed through as `--key value` flags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Replacing nodes that stay down.
    #[serde(default)]
    pub failover: Failover,
    /// Stops every change the operator would make, and says so in status.
    #[serde(default)]
    pub paused: bool,
}

/// A rack or zone: where its nodes run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// Name, also the node's `--rack`.
    pub name: String,
    /// Kubernetes nodes its pods may run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Zone (`topology.kubernetes.io/zone`) its pods are pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// A node's persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Storage class (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Size, e.g. `10Gi`.
    #[serde(default = "default_size")]
    pub size: String,
    /// Keep a removed node's volume after a scale-in (default: delete it).
    #[serde(default)]
    pub retain_on_scale_in: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            size: default_size(),
            retain_on_scale_in: false,
        }
    }
}

/// What happens to a node that stays down.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// How long a node may be down before it is replaced, e.g. `5m`.
    #[serde(default = "default_down_timeout")]
    pub down_timeout: String,
    /// Replace such nodes (re-create their replicas elsewhere) by itself.
    #[serde(default = "default_true")]
    pub auto_replace: bool,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            down_timeout: default_down_timeout(),
            auto_replace: true,
        }
    }
}

/// What the operator observed and is doing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterStatus {
    /// One word for the state: Creating, Running, Scaling, Upgrading, Degraded, Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Available, Progressing, Degraded, ScaleBlocked, Stalled, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes whose pod is Ready and that serve.
    #[serde(default)]
    pub ready_nodes: u32,
    /// Every node the operator knows of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// Shards as the cluster reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_health: Option<ShardHealth>,
    /// The lifecycle step in progress, written before it is taken so a
    /// restarted operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// A status condition, as Kubernetes conventions have it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One storage node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Cairn node id.
    pub node_id: u64,
    /// Pod name.
    pub pod: String,
    /// Rack name.
    pub rack: String,
    /// Where it is in its life.
    pub lifecycle: Lifecycle,
    /// Shard replicas it holds.
    #[serde(default)]
    pub replicas: u32,
    /// Shards it leads.
    #[serde(default)]
    pub leaders: u32,
}

/// A node's lifecycle as the operator drives it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Lifecycle {
    /// Pod created, not Ready yet.
    Pending,
    /// Ready, joining the cluster.
    Joining,
    /// Member, taking replicas.
    Serving,
    /// Its replicas are moving off.
    Draining,
    /// Holds nothing any more.
    Drained,
    /// Removed from the cluster; its id is fenced.
    Removed,
    /// Declared lost; its replicas are re-created elsewhere.
    Replacing,
}

/// Shard health as the cluster reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardHealth {
    /// Shards.
    pub total: u32,
    /// Shards with fewer caught-up replicas than the replication factor.
    pub under_replicated: u32,
    /// Shards without a leader.
    pub leaderless: u32,
}

/// A lifecycle step in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// ScaleOut, ScaleIn, Replace, RollingRestart.
    pub kind: String,
    /// The node it acts on, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// When it started (RFC 3339).
    pub started_at: String,
}

fn default_racks() -> Vec<Rack> {
    vec![Rack {
        name: "default".into(),
        node_selector: BTreeMap::new(),
        zone: None,
    }]
}

fn default_shards() -> u32 {
    64
}

fn default_replication_factor() -> u32 {
    3
}

fn default_size() -> String {
    "10Gi".into()
}

fn default_down_timeout() -> String {
    "5m".into()
}

fn default_true() -> bool {
    true
}
