//! Replication: one Raft group per hash shard, on openraft.
//!
//! Built so far: each shard's Raft **log storage** ([`log_store`]) and
//! **state machine** ([`state_machine`]) on the node's one RocksDB, checked by
//! openraft's own storage conformance suite, its **snapshots** as SST files
//! streamed between nodes and ingested ([`snapshot`]), and the gRPC **transport**
//! ([`network`]) that carries every group's messages over one connection per
//! peer. Running the groups inside `cairn-node` (bootstrap, join, the meta
//! group, routing requests through Raft) comes next; until then the node
//! serves through the single-node commit pipeline.

pub mod log_store;
pub mod network;
pub mod removal;
pub mod snapshot;
pub mod state_machine;
pub mod throttle;
pub mod types;

pub use types::{ShardRaft, ShardRequest, ShardResponse};

/// Maps any displayable error to the `io::Error` openraft's storage API uses.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `batch` with the node's sync mode on a blocking thread.
pub(crate) async fn write_batch(
    engine: &crate::storage::Engine,
    batch: rocksdb::WriteBatch,
) -> std::io::Result<()> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || engine.write(batch))
        .await
        .map_err(io_err)?
        .map_err(io_err)
}
