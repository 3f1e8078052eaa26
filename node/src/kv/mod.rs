//! The key-value service core: validates requests against [`Limits`], routes
//! each key to its shard, serves reads from consistent RocksDB snapshots and
//! sends writes through the group-commit pipeline as state-machine commands.
//!
//! Both front ends (gRPC and the HTTP gateway) call this; neither touches
//! storage directly, so both enforce the same limits and semantics.

pub mod command;
mod error;
pub mod forward;
mod limits;
mod read;
mod scan;

use cairn_proto::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_keyspace::batch_get;
use cairn_keyspace::scan_page::merge_responses;
use cairn_proto::kv::v1 as pb;
use rocksdb::ReadOptions;

pub use error::KvError;
pub use limits::Limits;

use crate::apply::ShardProgress;
use crate::apply::to_kv;
use crate::apply::{Applied, Command, CommandOp, CommandOutput, ShardState};
use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::commit::CommitPipeline;
use crate::metrics::Metrics;
use crate::partition::{ShardCount, ShardId};
use crate::storage::identity;
use crate::storage::keys::{data_key, shard_state_key};
use crate::storage::record::Record;
use crate::storage::{CF_DATA, CF_META, Engine, EngineOptions, StorageError};

/// How long a `min_revision` read waits for its shard before failing.
pub const MIN_REVISION_WAIT: Duration = Duration::from_secs(5);

/// Settings for [`KvStore::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Storage engine settings.
    pub engine: EngineOptions,
    /// This node's id (must match the data directory's, once written).
    pub node_id: u64,
    /// Shard count for a new data directory (must match an existing one).
    pub shards: ShardCount,
    /// Request limits.
    pub limits: Limits,
}

/// The key-value service of one node. Cheap to clone.
#[derive(Clone)]
pub struct KvStore {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    shards: ShardCount,
    node_id: u64,
    limits: Limits,
    clock: Arc<dyn Clock>,
    progress: Arc<ShardProgress>,
    writes: Writes,
    /// Source of request ids for writes that arrive without one.
    next_internal_id: std::sync::atomic::AtomicU64,
    boot_ms: u64,
}

/// Where writes go.
enum Writes {
    /// The local group-commit pipeline (standalone node).
    Local(CommitPipeline),
    /// The shard's Raft group (cluster member).
    Replicated(Arc<Cluster>),
}

impl KvStore {
    /// Opens the data directory as a standalone node, checks it against the
    /// options, and starts the commit pipeline.
    ///
    /// # Errors
    /// Storage errors, a locked directory, or a directory created with a
    /// different node id or shard count, or as a cluster member.
    pub fn open(
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Self, StorageError> {
        let engine = Engine::open(&opts.engine)?;
        Self::open_on(engine, opts, clock, metrics)
    }

    /// [`KvStore::open`] on an already opened engine.
    ///
    /// # Errors
    /// As [`KvStore::open`].
    pub fn open_on(
        engine: Engine,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Self, StorageError> {
        let states = load_states(&engine, &opts, None)?;
        let progress = Arc::new(ShardProgress::new(&states));
        let pipeline = CommitPipeline::start(engine.clone(), states, progress.clone(), metrics)
            .map_err(|source| StorageError::Io {
                context: "starting the commit thread".into(),
                source,
            })?;
        Ok(Self::assemble(
            engine,
            &opts,
            clock,
            progress,
            Writes::Local(pipeline),
        ))
    }

    /// Opens an engine as a member of cluster `cluster_id`: writes go through
    /// the shards' Raft groups, which start here.
    ///
    /// # Errors
    /// Identity mismatches, storage failure, groups that cannot start.
    pub async fn open_member(
        engine: Engine,
        opts: StoreOptions,
        clock: Arc<dyn Clock>,
        cluster: ClusterOptions,
        cluster_id: &str,
    ) -> Result<(Self, Arc<Cluster>), ClusterError> {
        let states = {
            let engine = engine.clone();
            let opts = opts.clone();
            let id = cluster_id.to_string();
            tokio::task::spawn_blocking(move || load_states(&engine, &opts, Some(&id)))
                .await
                .map_err(|e| ClusterError::task("opening the data directory", e))??
        };
        let progress = Arc::new(ShardProgress::new(&states));
        let cluster = Cluster::open(engine.clone(), opts.shards, progress.clone(), cluster).await?;
        let store = Self::assemble(
            engine,
            &opts,
            clock,
            progress,
            Writes::Replicated(cluster.clone()),
        );
        Ok((store, cluster))
    }

    fn assemble(
        engine: Engine,
        opts: &StoreOptions,
        clock: Arc<dyn Clock>,
        progress: Arc<ShardProgress>,
        writes: Writes,
    ) -> Self {
        let boot_ms = clock.now_ms();
        Self {
            inner: Arc::new(Inner {
                engine,
                shards: opts.shards,
                node_id: opts.node_id,
                limits: opts.limits,
                clock,
                progress,
                writes,
                next_internal_id: std::sync::atomic::AtomicU64::new(0),
                boot_ms,
            }),
        }
    }

    /// The cluster this node is a member of (`None` when standalone).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.inner.writes {
            Writes::Replicated(c) => Some(c),
            Writes::Local(_) => None,
        }
    }

    /// The storage engine (for metrics and admin tasks).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The request limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The shard count.
    pub fn shards(&self) -> ShardCount {
        self.inner.shards
    }

    /// The clock commands and reads use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// The last durable revision of `shard`.
    pub fn revision(&self, shard: ShardId) -> u64 {
        self.inner.progress.revision(shard)
    }

    /// Commits everything queued and stops accepting writes.
    pub fn close(&self) {
        if let Writes::Local(p) = &self.inner.writes {
            p.close();
        }
        if let Err(e) = self.inner.engine.sync_wal() {
            tracing::error!(error = %e, "syncing the WAL at shutdown failed");
        }
    }

    fn header(&self, revision: u64, shard: Option<ShardId>) -> pb::ResponseHeader {
        let leader_id = match (&self.inner.writes, shard) {
            (Writes::Replicated(c), Some(s)) => c.leader(s).map_or(0, |l| l.id),
            (Writes::Local(_), Some(_)) => self.inner.node_id,
            _ => 0,
        };
        pb::ResponseHeader {
            revision,
            shard: shard.unwrap_or(0),
            node_id: self.inner.node_id,
            leader_id,
        }
    }

    /// Whether this node should run background writes (TTL expiry) for
    /// `shard`: always when standalone, only on the leader in a cluster.
    pub fn leads(&self, shard: ShardId) -> bool {
        match &self.inner.writes {
            Writes::Local(_) => true,
            Writes::Replicated(c) => c.is_leader(shard),
        }
    }

    /// Submits a write command and waits until it is durable.
    ///
    /// # Errors
    /// Refusals by the state machine, storage failure, shutdown.
    pub async fn propose(
        &self,
        shard: ShardId,
        op: CommandOp,
        request_id: Vec<u8>,
    ) -> Result<Applied, KvError> {
        self.inner.limits.check_request_id(&request_id)?;
        let mut cmd = Command {
            shard,
            now_ms: self.inner.clock.now_ms(),
            op,
            request_id,
        };
        match &self.inner.writes {
            Writes::Local(p) => Ok(p.submit(cmd).await?),
            Writes::Replicated(c) => {
                if cmd.request_id.is_empty() {
                    // Forwarding may retry after an unknown outcome; an id
                    // makes that retry answer from the exactly-once table.
                    let n = self
                        .inner
                        .next_internal_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    cmd.request_id = format!(
                        "cairn-node/{}/{}/{n}",
                        self.inner.node_id, self.inner.boot_ms
                    )
                    .into_bytes();
                }
                let resp = c
                    .propose(shard, crate::raft::ShardRequest::from_command(&cmd), 0)
                    .await?;
                match resp.outcome {
                    Some(Ok(out)) => Ok(Applied {
                        output: out.to_output()?,
                        revision: resp.revision,
                    }),
                    Some(Err(refused)) => Err(KvError::Refused(refused)),
                    None => Err(KvError::Internal("the shard returned no result".into())),
                }
            }
        }
    }

    async fn single_result(
        &self,
        op: pb::write_op::Op,
    ) -> Result<(pb::write_result::Result, pb::ResponseHeader), KvError> {
        let p = command::single_command(&self.inner.limits, self.inner.shards, op)?;
        let shard = p.shard;
        let applied = self.propose(shard, p.op, p.request_id).await?;
        let header = self.header(applied.revision, Some(shard));
        match applied.output {
            CommandOutput::Batch(mut rs) if rs.len() == 1 => rs
                .pop()
                .and_then(|r| r.result)
                .map(|r| (r, header))
                .ok_or_else(|| KvError::Internal("empty write result".into())),
            _ => Err(KvError::Internal("unexpected write result".into())),
        }
    }

    /// Writes one key.
    ///
    /// # Errors
    /// Limits, failed conditions, storage failure, shutdown.
    pub async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, KvError> {
        match self.single_result(pb::write_op::Op::Put(req)).await? {
            (pb::write_result::Result::Put(mut r), h) => {
                r.header = Some(h);
                Ok(r)
            }
            _ => Err(KvError::Internal("unexpected write result".into())),
        }
    }

    /// Replaces the value of an existing key.
    ///
    /// # Errors
    /// Limits, missing key, failed condition, storage failure, shutdown.
    pub async fn update(&self, req: pb::UpdateRequest) -> Result<pb::UpdateResponse, KvError> {
        match self.single_result(pb::write_op::Op::Update(req)).await? {
            (pb::write_result::Result::Update(mut r), h) => {
                r.header = Some(h);
                Ok(r)
            }
            _ => Err(KvError::Internal("unexpected write result".into())),
        }
    }

    /// Deletes one key.
    ///
    /// # Errors
    /// Bad key, failed condition, storage failure, shutdown.
    pub async fn delete(&self, req: pb::DeleteRequest) -> Result<pb::DeleteResponse, KvError> {
        match self.single_result(pb::write_op::Op::Delete(req)).await? {
            (pb::write_result::Result::Delete(mut r), h) => {
                r.header = Some(h);
                Ok(r)
            }
            _ => Err(KvError::Internal("unexpected write result".into())),
        }
    }

    /// Applies writes atomically within one shard.
    ///
    /// # Errors
    /// Limits, cross-shard keys, a failed op condition (nothing applied),
    /// storage failure, shutdown.
    pub async fn batch(&self, req: pb::BatchRequest) -> Result<pb::BatchResponse, KvError> {
        let p = command::batch_command(&self.inner.limits, self.inner.shards, req)?;
        let shard = p.shard;
        let applied = self.propose(shard, p.op, p.request_id).await?;
        let header = self.header(applied.revision, Some(shard));
        match applied.output {
            CommandOutput::Batch(results) => Ok(pb::BatchResponse {
                header: Some(header),
                results,
            }),
            _ => Err(KvError::Internal("unexpected batch result".into())),
        }
    }

    /// Compare-then-act within one shard.
    ///
    /// # Errors
    /// Limits, cross-shard keys, a failed op condition in the chosen branch
    /// (nothing applied), storage failure, shutdown.
    pub async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, KvError> {
        let p = command::txn_command(&self.inner.limits, self.inner.shards, req)?;
        let shard = p.shard;
        let applied = self.propose(shard, p.op, p.request_id).await?;
        let header = self.header(applied.revision, Some(shard));
        match applied.output {
            CommandOutput::Txn { succeeded, results } => Ok(pb::TxnResponse {
                header: Some(header),
                succeeded,
                results,
            }),
            _ => Err(KvError::Internal("unexpected txn result".into())),
        }
    }
}

/// Checks (or, in a new directory, writes) the directory's identity and
/// loads every shard's state.
fn load_states(
    engine: &Engine,
    opts: &StoreOptions,
    cluster_id: Option<&str>,
) -> Result<Vec<ShardState>, StorageError> {
    identity::check_or_write(engine, opts.node_id, opts.shards.get(), cluster_id)?;
    let mut states = Vec::with_capacity(opts.shards.get() as usize);
    for shard in 0..opts.shards.get() {
        states.push(match engine.get_meta(&shard_state_key(shard))? {
            Some(b) => ShardState::decode(&b)?,
            None => ShardState::default(),
        });
    }
    engine
        .clocks()
        .init(&states.iter().map(|s| s.clock_ms).collect::<Vec<_>>());
    Ok(states)
}
