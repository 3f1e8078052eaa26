//! The `KVCluster` custom resource (`cairn.dev/v1alpha1`): what a user asks
//! for (spec) and what the operator reports back (status).
//!
//! The schema carries its own admission rules so a bad spec is refused by the
//! apiserver before the operator ever sees it:
//! - structural bounds (types, required fields, minimum/maximum, patterns),
//!   checkable by any OpenAPI validator;
//! - CEL rules (`x-kubernetes-validations`), among them transition rules
//!   (`self == oldSelf`) that only an apiserver evaluating an update can check.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Flags of `cairn-node` the operator sets itself; `spec.config` may not
/// override them (a CEL rule refuses them at admission).
pub const OPERATOR_OWNED_FLAGS: &[&str] = &[
    "config",
    "node-id",
    "data-dir",
    "grpc-addr",
    "http-addr",
    "metrics-addr",
    "advertise-addr",
    "bootstrap",
    "join",
    "rack",
    "shards",
    "replication-factor",
];

/// Desired state of a Cairn cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "cairn.dev",
    version = "v1alpha1",
    kind = "KVCluster",
    plural = "kvclusters",
    shortname = "kvc",
    namespaced,
    status = "KVClusterStatus",
    derive = "PartialEq",
    doc = "A Cairn key-value cluster: nodes spread over racks, each an identity the operator keeps stable.",
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
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 26")
        .message("KVCluster names are at most 26 characters: StatefulSet and pod names are built from them")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.replicationFactor <= self.nodes")
    .message("replicationFactor must not exceed nodes: every shard needs that many distinct nodes")
    .field_path(".replicationFactor"))]
pub struct KVClusterSpec {
    /// Number of `cairn-node` pods over all racks. Scaling in below
    /// `replicationFactor` is refused.
    #[schemars(range(min = 1, max = 999))]
    pub nodes: u32,

    /// Failure domains. Nodes are spread evenly over racks in list order
    /// (earlier racks take the remainder). A rack's position is part of its
    /// nodes' ids, so racks may only be appended.
    #[serde(default = "default_racks")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(
        validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))")
            .message("rack names must be unique"),
        validation = Rule::new("oldSelf.all(r, self.exists(s, s.name == r.name) && self.map(s, s.name).indexOf(r.name) == oldSelf.map(s, s.name).indexOf(r.name))")
            .message("racks may only be appended: node ids derive from a rack's position, so existing racks cannot be removed or reordered")
    )]
    pub racks: Vec<Rack>,

    /// Hash shards (power of two, 1 to 4096). Fixed when the cluster is created.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 4096))]
    #[x_kube(
        validation = Rule::new("self in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]")
            .message("shards must be a power of two between 1 and 4096"),
        validation = Rule::new("self == oldSelf").message("shards is immutable")
    )]
    pub shards: u32,

    /// Replicas per shard (1 to 7). Fixed when the cluster is created.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor is immutable"))]
    pub replication_factor: u32,

    /// Container image of `cairn-node`, without tag (e.g. `ghcr.io/cairn/cairn-node`).
    #[schemars(length(min = 1))]
    pub image: String,

    /// Image tag to run (e.g. `0.1.0`). Changing it is a rolling upgrade.
    #[schemars(length(min = 1))]
    pub version: String,

    /// CPU and memory of each node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The persistent volume of each node.
    pub storage: Storage,

    /// Extra `cairn-node` flags, passed as `--key value` (e.g.
    /// `block-cache-bytes: "1073741824"`). Flags the operator sets itself
    /// (node id, addresses, join, …) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^[a-z][a-z0-9-]{0,62}$'))")
            .message("config keys are cairn-node flag names without the leading dashes, e.g. block-cache-bytes"),
        validation = Rule::new("!self.exists(k, k in ['config', 'node-id', 'data-dir', 'grpc-addr', 'http-addr', 'metrics-addr', 'advertise-addr', 'bootstrap', 'join', 'rack', 'shards', 'replication-factor'])")
            .message("config may not set flags the operator owns (config, node-id, data-dir, grpc-addr, http-addr, metrics-addr, advertise-addr, bootstrap, join, rack, shards, replication-factor)")
    )]
    pub config: BTreeMap<String, String>,

    /// When and how a node that stays down is replaced.
    #[serde(default)]
    pub failover: Failover,

    /// How long an operation (drain, replacement, restart) may go without
    /// progress (no member changing state or replica count, no rebalance
    /// move finishing) before the `Stalled` condition is set, as a Go-style
    /// duration (default `10m`).
    #[serde(default = "default_stall_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub stall_timeout: String,

    /// Stop acting on this cluster (no scaling, replacement or upgrade)
    /// while keeping what runs.
    #[serde(default)]
    pub paused: bool,

    /// Prometheus scraping of the nodes through a prometheus-operator
    /// `ServiceMonitor` the operator creates (off by default).
    #[serde(default, skip_serializing_if = "Monitoring::is_default")]
    pub monitoring: Monitoring,
}

/// Whether and how the operator asks a Prometheus (run by
/// prometheus-operator) to scrape the nodes' `/metrics`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create a `monitoring.coreos.com/v1` ServiceMonitor named after the
    /// cluster, selecting its `<name>-peers` Service's `metrics` port. Needs
    /// prometheus-operator's CRDs; without them the operator reports a
    /// `MonitoringUnavailable` event and carries on.
    #[serde(default)]
    pub enabled: bool,
    /// How often Prometheus scrapes each node, as a Go-style duration
    /// (default `30s`).
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,
    /// Extra labels of the ServiceMonitor, for a Prometheus whose
    /// `serviceMonitorSelector` picks monitors by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_scrape_interval(),
            labels: BTreeMap::new(),
        }
    }
}

impl Monitoring {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_scrape_interval() -> String {
    "30s".into()
}

fn default_racks() -> Vec<Rack> {
    vec![Rack {
        name: "default".into(),
        node_selector: BTreeMap::new(),
        zone: None,
    }]
}

fn default_stall_timeout() -> String {
    "10m".into()
}

fn default_shards() -> u32 {
    64
}

fn default_replication_factor() -> u32 {
    3
}

/// One failure domain: a StatefulSet of nodes scheduled where `nodeSelector` says.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// DNS label naming the rack; part of the StatefulSet name and passed to
    /// each node as `--rack`.
    #[schemars(
        length(min = 1, max = 24),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Node labels the rack's pods must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Zone of the rack; when set, pods are also pinned to
    /// `topology.kubernetes.io/zone=<zone>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// The persistent volume each node keeps its data on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Storage class of the volume claims (cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Volume size as a Kubernetes quantity, e.g. `10Gi`.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// Keep a removed node's volume claim after scale-in (default false:
    /// a drained node's data is no longer part of the cluster).
    #[serde(default)]
    pub retain_on_scale_in: bool,
}

/// Replacement of nodes that stay down.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// How long a node may be down before it is replaced, as a Go-style
    /// duration (`90s`, `5m`, `1h30m`; default `5m`).
    #[serde(default = "default_down_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub down_timeout: String,
    /// Replace such a node automatically (default true); when false the
    /// operator only reports it.
    #[serde(default = "default_auto_replace")]
    pub auto_replace: bool,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            down_timeout: default_down_timeout(),
            auto_replace: default_auto_replace(),
        }
    }
}

fn default_down_timeout() -> String {
    "5m".into()
}

fn default_auto_replace() -> bool {
    true
}

/// What the operator observed and is doing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterStatus {
    /// One-word summary for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Standard conditions; `type` is one of [`ConditionType`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes whose pods are Ready and serving.
    #[serde(default)]
    pub ready_nodes: u32,
    /// Id of the cluster the bootstrap node formed. Once set, no pod is
    /// started with `--bootstrap` again: a bootstrap pod that lost its volume
    /// must join, not found a second cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Every node identity the operator manages, including removed ones
    /// (a removed id is never reused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// Shard replication as the cluster reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_health: Option<ShardHealth>,
    /// The step the operator decided on and is carrying out, recorded before
    /// it acts so a restarted operator resumes or undoes it instead of
    /// starting a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// One-word state of the cluster.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Objects are being created; the cluster is not formed yet.
    Creating,
    /// All nodes serve and every shard has its full replica set.
    Running,
    /// Nodes are being added or drained.
    Scaling,
    /// Pods are being moved to a new image or configuration.
    Upgrading,
    /// The cluster serves but some shard lacks replicas or a leader.
    Degraded,
    /// `spec.paused` is set.
    Paused,
    /// The operator cannot make progress without help (see conditions).
    Failed,
}

/// Condition types the operator sets in `status.conditions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// Every node serves and clients can reach the cluster.
    Available,
    /// An operation (scale, replace, upgrade) is under way.
    Progressing,
    /// Some shard is under-replicated or leaderless.
    Degraded,
    /// A requested scale-in is refused (replication factor or capacity).
    ScaleBlocked,
    /// An operation stopped advancing past its deadline.
    Stalled,
    /// `spec.paused` is set; the operator only observes.
    Paused,
}

impl ConditionType {
    /// The `type` string written into a [`Condition`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "Available",
            Self::Progressing => "Progressing",
            Self::Degraded => "Degraded",
            Self::ScaleBlocked => "ScaleBlocked",
            Self::Stalled => "Stalled",
            Self::Paused => "Paused",
        }
    }
}

/// One node identity and where it stands.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Cairn node id (see [`crate::topology`]).
    pub node_id: u64,
    /// Pod that runs (or ran) this node.
    pub pod: String,
    /// Rack of the node.
    pub rack: String,
    /// Where the node is in its life.
    pub lifecycle: Lifecycle,
    /// Shard replicas the node holds.
    #[serde(default)]
    pub replicas: u32,
    /// Shards the node leads.
    #[serde(default)]
    pub leaders: u32,
}

/// Life of a node identity, in the order the operator moves it through.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum Lifecycle {
    /// Pod created, not running yet.
    Pending,
    /// Running, asking the cluster to admit it.
    Joining,
    /// Member holding and serving replicas.
    Serving,
    /// Moving its replicas away before removal.
    Draining,
    /// Holds no replicas; may be removed.
    Drained,
    /// Removed from the cluster; its id is never used again.
    Removed,
    /// Stayed down or lost its volume; a new identity takes its place.
    Replacing,
}

/// Shard replication summary.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardHealth {
    /// Shards in the cluster.
    pub total: u32,
    /// Shards with fewer live replicas than the replication factor.
    pub under_replicated: u32,
    /// Shards without a leader.
    pub leaderless: u32,
}

/// An operation the operator has started and not finished.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What is being done.
    pub kind: OperationKind,
    /// The node it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// When the operator recorded it.
    pub started_at: Time,
    /// Uid of the pod the operation deletes, recorded before the deletion,
    /// so the pod the StatefulSet re-creates under the same name is told
    /// apart from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// When the operation last moved forward: a member changed lifecycle or
    /// replica count, a rebalance move finished, or a pod came or went.
    /// `Stalled` is measured from here, so a long but moving operation (a
    /// drain of a large node) is not called stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressed_at: Option<Time>,
    /// Fingerprint of the state seen at `progressedAt`, to tell the next
    /// change from none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_mark: Option<String>,
}

/// Kinds of [`Operation`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum OperationKind {
    /// First node forming the cluster.
    Bootstrap,
    /// Adding a node and rebalancing onto it.
    ScaleOut,
    /// Draining a node, then removing it.
    ScaleIn,
    /// Replacing a node that stayed down or lost its volume.
    Replace,
    /// Restarting a node on a new pod template.
    Upgrade,
}

impl OperationKind {
    /// Every kind, for metrics that show each one even at zero.
    pub const ALL: [OperationKind; 5] = [
        OperationKind::Bootstrap,
        OperationKind::ScaleOut,
        OperationKind::ScaleIn,
        OperationKind::Replace,
        OperationKind::Upgrade,
    ];
}
