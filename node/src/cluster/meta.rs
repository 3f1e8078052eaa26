//! The meta group's records: the cluster's identity and its nodes.
//!
//! The meta group is one more Raft group, on the reserved shard id
//! [`META_SHARD`], with the same log, state machine and snapshots as a data
//! shard. Its records are ordinary key-value records (JSON values) in that
//! shard, written by ordinary replicated `Batch` commands, so they get
//! exactly-once, snapshots and catch-up for free. Every node holds a replica
//! (up to five voters, the rest learners) and reads them locally.

use serde::{Deserialize, Serialize};

use crate::partition::ShardId;
use crate::raft::ShardRequest;
use crate::state_machine::{Command, CommandOp, ShardState};
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
    /// Leaderships are kept off this node (set before a restart, cleared
    /// after); it still holds its replicas.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuate_leaders: bool,
}

fn node_key(id: u64) -> Vec<u8> {
    let mut k = NODE_PREFIX.to_vec();
    k.extend_from_slice(format!("{id:020}").as_bytes());
    k
}

fn get(engine: &Engine, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
    let cf = engine.cf(CF_DATA)?;
    match engine.db().get_cf(cf, data_key(META_SHARD, key))? {
        Some(bytes) => Ok(Some(Record::decode(&bytes)?.value)),
        None => Ok(None),
    }
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
    let cf = engine.cf(CF_DATA)?;
    let start = data_key(META_SHARD, NODE_PREFIX);
    let mut ro = rocksdb::ReadOptions::default();
    if let Some(end) = prefix_successor(&start) {
        ro.set_iterate_upper_bound(end);
    }
    let mut it = engine.db().raw_iterator_cf_opt(cf, ro);
    it.seek(&start);
    let mut out = Vec::new();
    while let (true, Some(v)) = (it.valid(), it.value()) {
        out.push(json("node", &Record::decode(v)?.value)?);
        it.next();
    }
    it.status()?;
    Ok(out)
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
