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
pub mod log_writer;
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

/// Writes `batch` with `write` (synced or not) on a blocking thread,
/// waiting out a full disk ([`write_retrying_while_full`]).
pub(crate) async fn write_waiting_for_space(
    engine: &crate::storage::Engine,
    batch: rocksdb::WriteBatch,
    write: WriteFn,
) -> std::io::Result<()> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || write_retrying_while_full(&engine, batch, write))
        .await
        .map_err(io_err)?
        .map_err(io_err)
}

/// A way of writing a batch to the engine (synced or not).
pub(crate) type WriteFn =
    fn(&crate::storage::Engine, rocksdb::WriteBatch) -> Result<(), crate::storage::StorageError>;

/// Writes `batch` with `write`, blocking the calling thread while the disk
/// is full (retrying after 100 ms, doubling to 1 s).
///
/// A full disk is waited out, not reported: openraft treats any storage
/// error as fatal and stops the group for good, while a log append or an
/// apply that has not happened yet is only late. The group stalls like a
/// slow disk — a follower stops acknowledging, a leader stops heartbeating
/// and the others elect a new one — and carries on once RocksDB has
/// cleared the error (it does so itself when space returns). Client
/// writes meanwhile get `disk_full` at admission (`Cluster::propose`).
pub(crate) fn write_retrying_while_full(
    engine: &crate::storage::Engine,
    batch: rocksdb::WriteBatch,
    write: WriteFn,
) -> Result<(), crate::storage::StorageError> {
    let data = batch.data().to_vec();
    let mut attempt = batch;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match write(engine, attempt) {
            Err(crate::storage::StorageError::DiskFull { .. }) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                attempt = rocksdb::WriteBatch::from_data(&data);
            }
            other => return other,
        }
    }
}
