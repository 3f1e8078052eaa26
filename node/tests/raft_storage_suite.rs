//! A shard's Raft log store and state machine on RocksDB pass openraft's own
//! storage conformance suite (votes, appends, truncation, purge, membership,
//! snapshots), with several shards sharing one database as in a real node.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_node::raft::ShardRaft;
use cairn_node::raft::log_store::ShardLogStore;
use cairn_node::raft::log_writer::LogWriter;
use cairn_node::raft::state_machine::ShardStateMachine;
use cairn_node::storage::{Engine, EngineOptions, SyncMode};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

struct Builder {
    shard: u32,
}

impl StoreBuilder<ShardRaft, ShardLogStore, ShardStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, ShardLogStore, ShardStateMachine), StorageError<ShardRaft>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(&EngineOptions {
            data_dir: dir.path().to_path_buf(),
            block_cache_bytes: 8 << 20,
            row_cache_bytes: 0,
            sync: SyncMode::Fsync,
        })
        .expect("open engine");
        // Another shard's log in the same database must stay invisible.
        let writer = LogWriter::start(engine.clone()).expect("log writer");
        let mut neighbour = ShardLogStore::new(engine.clone(), writer.clone(), self.shard + 1);
        let _ = openraft::storage::RaftLogStorage::get_log_state(&mut neighbour).await;
        Ok((
            dir,
            ShardLogStore::new(engine.clone(), writer, self.shard),
            ShardStateMachine::new(engine, self.shard),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_raft_storage_passes_the_openraft_storage_suite() {
    Suite::test_all(Builder { shard: 5 })
        .await
        .expect("openraft storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_shard_id_passes_too() {
    // Shard prefixes are big-endian: a high id must not bleed into its neighbour.
    Suite::test_all(Builder {
        shard: u32::MAX - 1,
    })
    .await
    .expect("openraft storage suite");
}
