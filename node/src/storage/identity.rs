//! The data directory's identity: which node, shard count and cluster a
//! directory was created for, written once into the `meta` column family
//! (key [`CLUSTER_KEY`]) and checked on every start, so a directory is
//! never opened as another node, with another shard count, or in another
//! cluster (an on-disk format: `format` versions it).

use super::keys::CLUSTER_KEY;
use super::{CF_META, Engine, StorageError};

/// The on-disk version of [`DirIdentity`].
const FORMAT: u32 = 1;

/// Identity written into a data directory when it is first used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DirIdentity {
    format: u32,
    node_id: u64,
    shard_count: u32,
    /// Set for a cluster member; absent for a standalone node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

/// What a data directory was created as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRole {
    /// Never used.
    New,
    /// A standalone node (no replication).
    Standalone,
    /// A member of the cluster with this id and shard count.
    Member {
        /// The cluster's id.
        cluster_id: String,
        /// Its shard count.
        shards: u32,
    },
}

fn read(engine: &Engine) -> Result<Option<DirIdentity>, StorageError> {
    engine
        .get_meta(CLUSTER_KEY)?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Corrupt(format!("cluster identity: {e}")))
        })
        .transpose()
}

/// What `engine`'s data directory was created as.
///
/// # Errors
/// Storage failure or an unreadable identity record.
pub fn stored_role(engine: &Engine) -> Result<StoredRole, StorageError> {
    Ok(match read(engine)? {
        None => StoredRole::New,
        Some(DirIdentity {
            cluster_id: Some(cluster_id),
            shard_count,
            ..
        }) => StoredRole::Member {
            cluster_id,
            shards: shard_count,
        },
        Some(_) => StoredRole::Standalone,
    })
}

/// Checks that the directory was created for node `node_id` with
/// `shard_count` shards, as a member of `cluster_id` (or standalone when
/// `None`); in a new directory, writes that identity.
///
/// # Errors
/// [`StorageError::Mismatch`] naming what differs and what to do; storage
/// failure.
pub fn check_or_write(
    engine: &Engine,
    node_id: u64,
    shard_count: u32,
    cluster_id: Option<&str>,
) -> Result<(), StorageError> {
    let Some(found) = read(engine)? else {
        let identity = DirIdentity {
            format: FORMAT,
            node_id,
            shard_count,
            cluster_id: cluster_id.map(str::to_string),
        };
        let mut batch = rocksdb::WriteBatch::default();
        let json = serde_json::to_vec(&identity)
            .map_err(|e| StorageError::Corrupt(format!("cluster identity: {e}")))?;
        batch.put_cf(engine.cf(CF_META)?, CLUSTER_KEY, json);
        return engine.write(batch);
    };
    if found.node_id != node_id {
        return Err(StorageError::Mismatch(format!(
            "data directory belongs to node {}, but this node was started as node {node_id}",
            found.node_id
        )));
    }
    if found.shard_count != shard_count {
        return Err(StorageError::Mismatch(format!(
            "data directory was created with {} shards, but --shards is {shard_count}; the shard count cannot change",
            found.shard_count
        )));
    }
    match (&found.cluster_id, cluster_id) {
        (None, Some(_)) => Err(StorageError::Mismatch(
            "data directory belongs to a standalone node; a cluster member needs a new --data-dir"
                .into(),
        )),
        (Some(c), None) => Err(StorageError::Mismatch(format!(
            "data directory belongs to a member of cluster {c}; start it with --join (or --bootstrap for the node that created the cluster)"
        ))),
        (Some(a), Some(b)) if a != b => Err(StorageError::Mismatch(format!(
            "data directory belongs to cluster {a}, not {b}"
        ))),
        _ => Ok(()),
    }
}
