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
mod scan;

use cairn_proto::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_keyspace::batch_get;
use cairn_keyspace::scan_page::{ShardsPage, merge_pages};
use cairn_proto::kv::v1 as pb;
use rocksdb::ReadOptions;

pub use error::KvError;
pub use limits::Limits;

use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::commit::{CommitPipeline, ShardProgress};
use crate::metrics::Metrics;
use crate::partition::{ShardCount, ShardId};
use crate::state_machine::to_kv;
use crate::state_machine::{Applied, Command, CommandOp, CommandOutput, ShardState};
use crate::storage::keys::{CLUSTER_KEY, data_key, shard_state_key};
use crate::storage::record::Record;
use crate::storage::{CF_DATA, CF_META, Engine, EngineOptions, StorageError};

/// How long a `min_revision` read waits for its shard before failing.
pub const MIN_REVISION_WAIT: Duration = Duration::from_secs(5);

/// Identity written into a data directory when it is first used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ClusterIdentity {
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

    /// What `engine`'s data directory was created as.
    ///
    /// # Errors
    /// Storage failure or an unreadable identity record.
    pub fn stored_role(engine: &Engine) -> Result<StoredRole, StorageError> {
        Ok(match read_identity(engine)? {
            None => StoredRole::New,
            Some(ClusterIdentity {
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
                .map_err(|e| ClusterError::Storage(e.to_string()))??
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
                    None => Err(KvError::Storage("the shard returned no result".into())),
                }
            }
        }
    }

    /// Makes reads of `shards` on this node safe: in a cluster, checks this
    /// node holds them and, unless the read is `SERIALIZABLE`, waits for a
    /// linearizable read index; then waits for `min_revision`.
    async fn read_gate(
        &self,
        shards: &[ShardId],
        read: Option<&pb::ReadOptions>,
    ) -> Result<(), KvError> {
        if let Writes::Replicated(c) = &self.inner.writes {
            for &s in shards {
                if c.member_group(s).is_none() {
                    let hint = c
                        .leader(s)
                        .map(|l| format!("; its leader is node {} at {}", l.id, l.addr))
                        .unwrap_or_default();
                    return Err(KvError::Unavailable(format!(
                        "shard {s} has no replica on node {}{hint}; send reads for it to a node that holds it (cairn-client routes by shard map)",
                        self.inner.node_id
                    )));
                }
            }
            let serializable =
                read.is_some_and(|r| r.consistency == pb::Consistency::Serializable as i32);
            if !serializable {
                let barriers = shards.iter().map(|&s| c.read_barrier(s));
                for r in futures::future::join_all(barriers).await {
                    r?;
                }
            }
        }
        if let (Some(&s), true) = (shards.first(), shards.len() == 1) {
            self.wait_read(s, read).await?;
        }
        Ok(())
    }

    async fn wait_read(
        &self,
        shard: ShardId,
        read: Option<&pb::ReadOptions>,
    ) -> Result<(), KvError> {
        let min = read.map_or(0, |r| r.min_revision);
        if min == 0 {
            return Ok(());
        }
        let progress = &self.inner.progress;
        if progress.wait_for(shard, min, MIN_REVISION_WAIT).await {
            Ok(())
        } else {
            Err(KvError::RevisionNotReached {
                shard,
                min_revision: min,
                current: progress.revision(shard),
            })
        }
    }

    fn shard_state_at(
        &self,
        snap: &rocksdb::SnapshotWithThreadMode<'_, crate::storage::Db>,
        shard: ShardId,
    ) -> Result<ShardState, KvError> {
        let meta = self.inner.engine.cf(CF_META)?;
        Ok(match snap.get_cf(meta, shard_state_key(shard))? {
            Some(b) => ShardState::decode(&b)?,
            None => ShardState::default(),
        })
    }

    /// Reads one key.
    ///
    /// # Errors
    /// Bad key, `min_revision` timeout, storage failure.
    pub async fn get(&self, req: &pb::GetRequest) -> Result<pb::GetResponse, KvError> {
        self.get_from(req, false).await
    }

    /// [`KvStore::get`], for a request another node `forwarded` here (it is
    /// then never forwarded again).
    ///
    /// # Errors
    /// As `get`; `UNAVAILABLE` when a forwarded read finds no replica here.
    pub async fn get_from(
        &self,
        req: &pb::GetRequest,
        forwarded: bool,
    ) -> Result<pb::GetResponse, KvError> {
        self.inner.limits.check_key(&req.key)?;
        let shard = self.inner.shards.shard_for_key(&req.key);
        if let Writes::Replicated(c) = &self.inner.writes {
            let (_, remote) = forward::split(c, &[shard], forwarded)?;
            if let Some(r) = remote.first() {
                return forward::get(c, &r.to, req).await;
            }
        }
        self.read_gate(&[shard], req.read.as_ref()).await?;
        let now = self.inner.clock.now_ms();
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let revision = self.shard_state_at(&snap, shard)?.revision;
        let data = self.inner.engine.cf(CF_DATA)?;
        let kv = match snap.get_cf(data, data_key(shard, &req.key))? {
            Some(bytes) => {
                let r = Record::decode(&bytes)?;
                (!r.meta.is_expired(now)).then(|| to_kv(&req.key, &r.meta, Some(&r.value)))
            }
            None => None,
        };
        Ok(pb::GetResponse {
            header: Some(self.header(revision, Some(shard))),
            kv,
        })
    }

    /// Reads many keys from one snapshot; results in request order.
    ///
    /// # Errors
    /// Bad keys, too many keys, `min_revision` timeout, storage failure.
    pub async fn batch_get(
        &self,
        req: &pb::BatchGetRequest,
    ) -> Result<pb::BatchGetResponse, KvError> {
        self.batch_get_from(req, false).await
    }

    /// [`KvStore::batch_get`], for a request another node `forwarded` here.
    /// Keys of shards held elsewhere are read there (one request per node,
    /// concurrently) and put back in request order.
    ///
    /// # Errors
    /// As `batch_get`; a forwarded node's error is passed on.
    pub async fn batch_get_from(
        &self,
        req: &pb::BatchGetRequest,
        forwarded: bool,
    ) -> Result<pb::BatchGetResponse, KvError> {
        let limits = &self.inner.limits;
        limits.check_batch_totals("batch_get", req.keys.len(), 0)?;
        let mut shards = Vec::with_capacity(req.keys.len());
        for k in &req.keys {
            limits.check_key(k)?;
            shards.push(self.inner.shards.shard_for_key(k));
        }
        let mut distinct = shards.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if req.read.as_ref().is_some_and(|r| r.min_revision > 0) && distinct.len() > 1 {
            return Err(cross_shard_token());
        }
        if let Writes::Replicated(c) = &self.inner.writes {
            let (local, remote) = forward::split(c, &distinct, forwarded)?;
            if !remote.is_empty() {
                return self.batch_get_split(c, req, &shards, &local, remote).await;
            }
        }
        self.batch_get_local(req, &shards, &distinct).await
    }

    /// A BatchGet whose keys live partly on other nodes: the local part and
    /// one request per other node run concurrently; results go back to
    /// their keys' positions.
    async fn batch_get_split(
        &self,
        cluster: &Cluster,
        req: &pb::BatchGetRequest,
        shards: &[ShardId],
        local: &[ShardId],
        remote: Vec<forward::RemoteShards>,
    ) -> Result<pb::BatchGetResponse, KvError> {
        // The request positions each part answers for.
        let positions = |set: &[ShardId]| -> Vec<usize> {
            (0..shards.len())
                .filter(|&i| set.binary_search(&shards[i]).is_ok())
                .collect()
        };
        let local_pos = positions(local);
        let local_req = batch_get::part(req, &local_pos);
        let local_shards: Vec<ShardId> = local_pos.iter().map(|&i| shards[i]).collect();
        let local_part = async {
            if local_pos.is_empty() {
                return Ok(None);
            }
            self.batch_get_local(&local_req, &local_shards, local)
                .await
                .map(Some)
        };
        let remote_pos: Vec<Vec<usize>> = remote.iter().map(|r| positions(&r.shards)).collect();
        let remote_parts = futures::future::try_join_all(
            remote
                .iter()
                .zip(&remote_pos)
                .map(|(r, pos)| forward::batch_get(cluster, &r.to, batch_get::part(req, pos))),
        );
        let (local_resp, remote_resps) =
            futures::future::try_join(local_part, remote_parts).await?;

        let parts = local_resp
            .map(|r| (local_pos, r))
            .into_iter()
            .chain(remote_pos.into_iter().zip(remote_resps));
        let (results, revision) =
            batch_get::merge(req.keys.len(), parts).map_err(|e| KvError::Storage(e.to_string()))?;
        Ok(pb::BatchGetResponse {
            header: Some(self.header(revision, None)),
            results,
        })
    }

    /// Reads keys of shards this node holds, from one snapshot.
    async fn batch_get_local(
        &self,
        req: &pb::BatchGetRequest,
        shards: &[ShardId],
        distinct: &[ShardId],
    ) -> Result<pb::BatchGetResponse, KvError> {
        self.read_gate(distinct, req.read.as_ref()).await?;
        let now = self.inner.clock.now_ms();
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let data = self.inner.engine.cf(CF_DATA)?;
        let mut results = Vec::with_capacity(req.keys.len());
        let mut revision = 0;
        let mut seen = std::collections::HashSet::new();
        for (k, &s) in req.keys.iter().zip(shards) {
            if seen.insert(s) {
                revision = revision.max(self.shard_state_at(&snap, s)?.revision);
            }
            let kv = match snap.get_cf(data, data_key(s, k))? {
                Some(bytes) => {
                    let r = Record::decode(&bytes)?;
                    (!r.meta.is_expired(now)).then(|| to_kv(k, &r.meta, Some(&r.value)))
                }
                None => None,
            };
            results.push(pb::BatchGetResult {
                found: kv.is_some(),
                kv,
            });
        }
        let single = (seen.len() == 1).then(|| shards[0]);
        Ok(pb::BatchGetResponse {
            header: Some(self.header(revision, single)),
            results,
        })
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
                .ok_or_else(|| KvError::Storage("empty write result".into())),
            _ => Err(KvError::Storage("unexpected write result".into())),
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
            _ => Err(KvError::Storage("unexpected write result".into())),
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
            _ => Err(KvError::Storage("unexpected write result".into())),
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
            _ => Err(KvError::Storage("unexpected write result".into())),
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
            _ => Err(KvError::Storage("unexpected batch result".into())),
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
            _ => Err(KvError::Storage("unexpected txn result".into())),
        }
    }

    /// Lists keys in order across all shards, one page at a time.
    ///
    /// # Errors
    /// Bad range or token, limit too large, `min_revision` timeout, storage failure.
    pub async fn scan(&self, req: pb::ScanRequest) -> Result<pb::ScanResponse, KvError> {
        self.scan_from(req, false).await
    }

    /// [`KvStore::scan`], for a request another node `forwarded` here.
    /// Shards held elsewhere are scanned there (one request per node,
    /// concurrently) and the pages merged in key order.
    ///
    /// # Errors
    /// As `scan`; a forwarded node's error is passed on.
    pub async fn scan_from(
        &self,
        req: pb::ScanRequest,
        forwarded: bool,
    ) -> Result<pb::ScanResponse, KvError> {
        let plan = scan::ScanPlan::new(&req, &self.inner.limits)?;
        if req.read.as_ref().is_some_and(|r| r.min_revision > 0) {
            return Err(cross_shard_token());
        }
        let shards = self.requested_shards(&req.shards)?;
        let Writes::Replicated(c) = &self.inner.writes else {
            return self.scan_local(plan, shards, req.read.as_ref()).await;
        };
        let (local, remote) = forward::split(c, &shards, forwarded)?;
        if remote.is_empty() {
            return self.scan_local(plan, local, req.read.as_ref()).await;
        }
        let limit = plan.limit();
        let local_part = async {
            if local.is_empty() {
                return Ok(None);
            }
            self.scan_local(plan, local, req.read.as_ref())
                .await
                .map(Some)
        };
        let remote_parts = futures::future::try_join_all(remote.into_iter().map(|r| {
            let sub = pb::ScanRequest {
                shards: r.shards,
                ..req.clone()
            };
            async move { forward::scan(c, &r.to, sub).await }
        }));
        let (local_page, remote_pages) =
            futures::future::try_join(local_part, remote_parts).await?;
        let mut revision = 0;
        let pages = local_page
            .into_iter()
            .chain(remote_pages)
            .map(|p| {
                revision = revision.max(p.header.map_or(0, |h| h.revision));
                ShardsPage {
                    more: !p.next_page_token.is_empty(),
                    kvs: p.kvs,
                }
            })
            .collect();
        let (kvs, next_page_token) = merge_pages(pages, limit)
            .map_err(|e| KvError::Storage(format!("merging scan pages: {e}")))?;
        Ok(pb::ScanResponse {
            header: Some(self.header(revision, None)),
            kvs,
            next_page_token,
        })
    }

    /// The shards a scan covers: all, or the listed ones (validated, sorted,
    /// without duplicates).
    fn requested_shards(&self, listed: &[u32]) -> Result<Vec<ShardId>, KvError> {
        let count = self.inner.shards.get();
        if listed.is_empty() {
            return Ok((0..count).collect());
        }
        if let Some(bad) = listed.iter().find(|&&s| s >= count) {
            return Err(KvError::invalid(
                ErrorCode::BadShard,
                format!("shard {bad} does not exist (the cluster has {count} shards)"),
            ));
        }
        let mut shards = listed.to_vec();
        shards.sort_unstable();
        shards.dedup();
        Ok(shards)
    }

    /// One scan page over `shards`, all held by this node.
    async fn scan_local(
        &self,
        plan: scan::ScanPlan,
        shards: Vec<ShardId>,
        read: Option<&pb::ReadOptions>,
    ) -> Result<pb::ScanResponse, KvError> {
        self.read_gate(&shards, read).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.scan_blocking(&plan, &shards))
            .await
            .map_err(|e| KvError::Storage(format!("scan task failed: {e}")))?
    }

    fn scan_blocking(
        &self,
        plan: &scan::ScanPlan,
        shards: &[ShardId],
    ) -> Result<pb::ScanResponse, KvError> {
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let mut revision = 0;
        for &s in shards {
            revision = revision.max(self.shard_state_at(&snap, s)?.revision);
        }
        let data = self.inner.engine.cf(CF_DATA)?;
        let now = self.inner.clock.now_ms();
        let (kvs, next_page_token) = plan.run(shards, now, |lower, upper| {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(lower);
            if let Some(u) = upper {
                ro.set_iterate_upper_bound(u);
            }
            ro.set_snapshot(&snap);
            snap_iter(db, data, ro)
        })?;
        Ok(pb::ScanResponse {
            header: Some(self.header(revision, None)),
            kvs,
            next_page_token,
        })
    }
}

fn read_identity(engine: &Engine) -> Result<Option<ClusterIdentity>, StorageError> {
    engine
        .get_meta(CLUSTER_KEY)?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Corrupt(format!("cluster identity: {e}")))
        })
        .transpose()
}

/// Checks (or, in a new directory, writes) the directory's identity and
/// loads every shard's state.
fn load_states(
    engine: &Engine,
    opts: &StoreOptions,
    cluster_id: Option<&str>,
) -> Result<Vec<ShardState>, StorageError> {
    let identity = ClusterIdentity {
        format: 1,
        node_id: opts.node_id,
        shard_count: opts.shards.get(),
        cluster_id: cluster_id.map(str::to_string),
    };
    match read_identity(engine)? {
        Some(found) => {
            if found.node_id != identity.node_id {
                return Err(StorageError::Mismatch(format!(
                    "data directory belongs to node {}, but this node was started as node {}",
                    found.node_id, identity.node_id
                )));
            }
            if found.shard_count != identity.shard_count {
                return Err(StorageError::Mismatch(format!(
                    "data directory was created with {} shards, but --shards is {}; the shard count cannot change",
                    found.shard_count, identity.shard_count
                )));
            }
            match (&found.cluster_id, cluster_id) {
                (None, Some(_)) => {
                    return Err(StorageError::Mismatch(
                        "data directory belongs to a standalone node; a cluster member needs a new --data-dir".into(),
                    ));
                }
                (Some(c), None) => {
                    return Err(StorageError::Mismatch(format!(
                        "data directory belongs to a member of cluster {c}; start it with --join (or --bootstrap for the node that created the cluster)"
                    )));
                }
                (Some(a), Some(b)) if a != b => {
                    return Err(StorageError::Mismatch(format!(
                        "data directory belongs to cluster {a}, not {b}"
                    )));
                }
                _ => {}
            }
        }
        None => {
            let mut batch = rocksdb::WriteBatch::default();
            let json = serde_json::to_vec(&identity)
                .map_err(|e| StorageError::Corrupt(format!("cluster identity: {e}")))?;
            batch.put_cf(engine.cf(CF_META)?, CLUSTER_KEY, json);
            engine.write(batch)?;
        }
    }
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

fn snap_iter<'a>(
    db: &'a crate::storage::Db,
    cf: &rocksdb::ColumnFamily,
    ro: ReadOptions,
) -> rocksdb::DBRawIteratorWithThreadMode<'a, crate::storage::Db> {
    db.raw_iterator_cf_opt(cf, ro)
}

/// `min_revision` is a revision of one shard, so it cannot bound a read
/// that spans shards; refusing beats waiting for a revision other shards may
/// never reach.
fn cross_shard_token() -> KvError {
    KvError::invalid(
        ErrorCode::MinRevisionCrossShard,
        "min_revision is a per-shard token: it applies to Get and to a BatchGet whose keys share one shard, not to Scan or multi-shard BatchGet",
    )
}
