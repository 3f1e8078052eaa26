//! The meta group's records: the cluster's identity and its nodes.
//!
//! The meta group is one more Raft group, on the reserved shard id
//! [`META_SHARD`], with the same log, state machine and snapshots as a data
//! shard. Its records are ordinary key-value records (JSON values) in that
//! shard, written by ordinary replicated `Batch` commands, so they get
//! exactly-once, snapshots and catch-up for free. Every node holds a replica
//! (up to five voters, the rest learners) and reads them locally.

use serde::{Deserialize, Serialize};

use super::placement::ShardPlacement;
use crate::apply::{Command, CommandOp, ShardState};
use crate::partition::ShardId;
use crate::raft::ShardRequest;
use crate::storage::keys::{data_key, prefix_successor, shard_state_key};
use crate::storage::record::Record;
use crate::storage::{CF_DATA, Engine, StorageError};
use cairn_proto::kv::v1 as pb;

/// The shard id of the meta group (outside every data shard's range).
pub const META_SHARD: ShardId = u32::MAX;

/// Most voters of the meta group; later nodes follow it as learners.
pub const MAX_META_VOTERS: usize = 5;

const CLUSTER_KEY: &[u8] = b"cluster";
const NODE_PREFIX: &[u8] = b"node/";
const PLAN_KEY: &[u8] = b"placement";

/// A cluster's identity, fixed at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Random id given at bootstrap; a node refuses to mix clusters.
    pub cluster_id: String,
    /// Hash shards.
    pub shards: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
}

/// What a node is doing in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes replicas.
    Active,
    /// Replicas and leaderships move off it; it takes no new ones.
    Draining,
    /// Removed for good: its id is fenced.
    Removed,
    /// Declared lost: its replicas are re-created elsewhere; its id is fenced.
    Dead,
}

/// A member node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: u64,
    /// gRPC address (peers and clients).
    pub addr: String,
    /// HTTP gateway address.
    pub http_addr: String,
    /// Rack or zone.
    pub rack: String,
    /// State.
    pub state: NodeState,
    /// Relative capacity (1 = normal): placement gives a node a share of
    /// replicas and leaderships proportional to it.
    #[serde(default = "unit_weight")]
    pub weight: u32,
    /// Leaderships are kept off this node (set before a restart, cleared
    /// after); it still holds its replicas.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuate_leaders: bool,
}

/// The placement the balancer has committed to: every shard's target
/// replicas, preferred leader first. Shard leaders move their shards to it;
/// the balancer (on the meta leader) changes it a few shards at a time, and
/// records each change here before any replica moves, so a crash or a new
/// meta leader resumes exactly where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementPlan {
    /// Bumped by every change.
    pub epoch: u64,
    /// Target replicas of shard `i`, preferred leader first.
    pub shards: Vec<ShardPlacement>,
    /// No new moves start while set (moves in flight finish).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl PlacementPlan {
    /// The target of `shard` (empty when the plan does not cover it).
    pub fn of(&self, shard: ShardId) -> &[u64] {
        self.shards
            .get(shard as usize)
            .map_or(&[], |s| s.replicas.as_slice())
    }
}

fn unit_weight() -> u32 {
    1
}

fn node_key(id: u64) -> Vec<u8> {
    let mut k = NODE_PREFIX.to_vec();
    k.extend_from_slice(format!("{id:020}").as_bytes());
    k
}

fn get_record(engine: &Engine, key: &[u8]) -> Result<Option<Record>, StorageError> {
    let cf = engine.cf(CF_DATA)?;
    match engine.db().get_cf(cf, data_key(META_SHARD, key))? {
        Some(bytes) => Ok(Some(Record::decode(&bytes)?)),
        None => Ok(None),
    }
}

fn get(engine: &Engine, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(get_record(engine, key)?.map(|r| r.value))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(b).map_err(|e| StorageError::Corrupt(format!("meta record {what}: {e}")))
}

/// The cluster record as this node's meta replica has it.
///
/// # Errors
/// Storage failure or an unreadable record.
pub fn read_cluster(engine: &Engine) -> Result<Option<ClusterRecord>, StorageError> {
    get(engine, CLUSTER_KEY)?
        .map(|b| json("cluster", &b))
        .transpose()
}

/// Every node record, by id.
///
/// # Errors
/// Storage failure or an unreadable record.
pub fn read_nodes(engine: &Engine) -> Result<Vec<NodeRecord>, StorageError> {
    records_under(engine, NODE_PREFIX)?
        .into_iter()
        .map(|(_, r)| json("node", &r.value))
        .collect()
}

/// Every meta record whose key begins with `prefix`, in key order, as
/// `(key without the shard prefix, record)`.
///
/// # Errors
/// Storage failure or an undecodable record.
pub fn records_under(
    engine: &Engine,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Record)>, StorageError> {
    let cf = engine.cf(CF_DATA)?;
    let start = data_key(META_SHARD, prefix);
    let skip = data_key(META_SHARD, b"").len();
    let mut ro = rocksdb::ReadOptions::default();
    if let Some(end) = prefix_successor(&start) {
        ro.set_iterate_upper_bound(end);
    }
    let mut it = engine.db().raw_iterator_cf_opt(cf, ro);
    it.seek(&start);
    let mut out = Vec::new();
    while let (true, Some(k), Some(v)) = (it.valid(), it.key(), it.value()) {
        out.push((
            k.get(skip..).unwrap_or_default().to_vec(),
            Record::decode(v)?,
        ));
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// The committed placement plan (as this node's meta replica has it), if
/// the cluster has one yet.
///
/// # Errors
/// Storage failure or an unreadable record.
pub fn read_plan(engine: &Engine) -> Result<Option<PlacementPlan>, StorageError> {
    get(engine, PLAN_KEY)?
        .map(|b| json("placement", &b))
        .transpose()
}

/// The committed placement plan with the meta revision that last wrote it
/// (the condition for replacing it, see [`replace_plan`]).
///
/// # Errors
/// Storage failure or an unreadable record.
pub fn read_plan_versioned(engine: &Engine) -> Result<Option<(PlacementPlan, u64)>, StorageError> {
    get_record(engine, PLAN_KEY)?
        .map(|r| Ok((json("placement", &r.value)?, r.meta.mod_revision)))
        .transpose()
}

/// The command that records `plan` when the stored plan is still the one
/// written at meta revision `written_at` (0: when there is none), so a
/// writer working from a stale read changes nothing. See
/// [`txn_succeeded`] for the outcome.
///
/// # Errors
/// Serialisation failure.
pub fn replace_plan(
    plan: &PlacementPlan,
    written_at: u64,
    now_ms: u64,
) -> Result<ShardRequest, StorageError> {
    let v = serde_json::to_vec(plan).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(ShardRequest::from_command(&Command {
        shard: META_SHARD,
        now_ms,
        op: CommandOp::Txn(pb::TxnRequest {
            compares: vec![pb::Compare {
                key: PLAN_KEY.to_vec(),
                target: pb::compare::Target::ModRevision as i32,
                op: pb::compare::Op::Equal as i32,
                number: written_at,
                ..Default::default()
            }],
            success: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Put(pb::PutRequest {
                    key: PLAN_KEY.to_vec(),
                    value: v,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }),
        request_id: Vec::new(),
    }))
}

/// Whether a conditional meta command (such as [`replace_plan`]) found its
/// conditions holding and applied.
pub fn txn_succeeded(resp: &crate::raft::ShardResponse) -> bool {
    use prost::Message as _;
    match &resp.outcome {
        Some(Ok(crate::apply::EncodedOutput::Txn(b))) => {
            pb::TxnResponse::decode(b.as_slice()).is_ok_and(|t| t.succeeded)
        }
        _ => false,
    }
}

/// The meta group's revision: changes with every meta write, so it serves as
/// the placement epoch.
///
/// # Errors
/// Storage failure.
pub fn epoch(engine: &Engine) -> Result<u64, StorageError> {
    Ok(match engine.get_meta(&shard_state_key(META_SHARD))? {
        Some(b) => ShardState::decode(&b)?.revision,
        None => 0,
    })
}

fn put(key: Vec<u8>, value: Vec<u8>, now_ms: u64) -> ShardRequest {
    ShardRequest::from_command(&Command {
        shard: META_SHARD,
        now_ms,
        op: CommandOp::Batch(vec![pb::WriteOp {
            op: Some(pb::write_op::Op::Put(pb::PutRequest {
                key,
                value,
                ..Default::default()
            })),
        }]),
        request_id: Vec::new(),
    })
}

/// The command that records the cluster's identity.
///
/// # Errors
/// Serialisation failure.
pub fn put_cluster(rec: &ClusterRecord, now_ms: u64) -> Result<ShardRequest, StorageError> {
    let v = serde_json::to_vec(rec).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(put(CLUSTER_KEY.to_vec(), v, now_ms))
}

/// The command that records (or updates) a node.
///
/// # Errors
/// Serialisation failure.
pub fn put_node(rec: &NodeRecord, now_ms: u64) -> Result<ShardRequest, StorageError> {
    let v = serde_json::to_vec(rec).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(put(node_key(rec.id), v, now_ms))
}
