//! Replication: one Raft group per hash shard, on openraft.
//!
//! Each shard's Raft **log storage** ([`log_store`]) and **state machine**
//! ([`state_machine`], applying through [`crate::apply`]) live on the node's
//! one RocksDB, checked by openraft's own storage conformance suite; its
//! **snapshots** are SST files streamed between nodes and ingested
//! ([`snapshot`]); the gRPC **transport** ([`network`]) carries every
//! group's messages over one connection per peer. Which groups a node runs,
//! and how requests reach them, is [`crate::cluster`]'s business.

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
///
/// A full disk is waited out, not reported: openraft treats any storage
/// error as fatal and stops the group for good, while a log append or an
/// apply that has not happened yet is only late. The group stalls like a
/// slow disk — a follower stops acknowledging, a leader stops heartbeating
/// and the others elect a new one — and carries on once RocksDB has
/// cleared the error (it does so itself when space returns). Client
/// writes meanwhile get `disk_full` at admission (`Cluster::propose`).
pub(crate) async fn write_batch(
    engine: &crate::storage::Engine,
    batch: rocksdb::WriteBatch,
) -> std::io::Result<()> {
    write_waiting_for_space(engine, batch, crate::storage::Engine::write).await
}

/// [`write_batch`] with the write function given (synced or not).
pub(crate) async fn write_waiting_for_space(
    engine: &crate::storage::Engine,
    batch: rocksdb::WriteBatch,
    write: fn(
        &crate::storage::Engine,
        rocksdb::WriteBatch,
    ) -> Result<(), crate::storage::StorageError>,
) -> std::io::Result<()> {
    let data = batch.data().to_vec();
    let mut batch = Some(batch);
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let engine = engine.clone();
        let attempt = batch
            .take()
            .unwrap_or_else(|| rocksdb::WriteBatch::from_data(&data));
        let result = tokio::task::spawn_blocking(move || write(&engine, attempt))
            .await
            .map_err(io_err)?;
        match result {
            Err(crate::storage::StorageError::DiskFull { .. }) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            other => return other.map_err(io_err),
        }
    }
}
