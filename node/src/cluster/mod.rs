//! A node's part in a replicated cluster: the Raft groups it hosts (one per
//! hash shard it holds a replica of, plus the meta group), and the rules for
//! writing and reading through them from any node.
//!
//! - **Writes** go to the shard's leader: proposed locally when this node
//!   leads, otherwise forwarded over the peer connection (at most
//!   [`MAX_HOPS`] hops, so a stale leader hint cannot loop a request).
//!   Forwarded writes always carry a request id, so retrying one whose answer
//!   was lost can never apply it twice.
//! - **Linearizable reads** use ReadIndex: the leader confirms its leadership
//!   with a quorum and names the log index the read must see; the serving
//!   replica (leader or follower) waits until it has applied that index and
//!   reads its own RocksDB. No clock assumptions are needed, at the price of
//!   one quorum round trip per read.
//! - **Groups** are created at startup for every shard with persisted Raft
//!   state, and on demand when a peer's leader sends a shard this node was
//!   just given (up-replication needs nothing else on the receiving side).

pub mod balancer;
pub mod fence;
pub mod heartbeat;
pub mod join;
pub mod lifecycle;
pub mod meta;
pub mod observe;
pub mod placement;
pub mod reconciler;
pub mod replica_gc;
mod requests;
mod seeds;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use openraft::async_runtime::watch::WatchReceiver as _;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ReadPolicy, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::apply::ShardProgress;
use crate::partition::{ShardCount, ShardId};
use crate::raft::log_store::{ShardLogStore, raft_meta_key};
use crate::raft::log_writer::LogWriter;
use crate::raft::network::{
    GroupHost, MembershipView, Peers, RemoteError, ShardNetworkFactory, ShardRaftHandle,
};
use crate::raft::state_machine::ShardStateMachine;
use crate::raft::{ShardRequest, ShardResponse};
use crate::storage::{Engine, StorageError};
use meta::{ClusterRecord, META_SHARD, NodeRecord, NodeState};

/// Most times a write is passed on between nodes before it is refused.
pub const MAX_HOPS: u32 = 3;
/// How long a write or a linearizable read keeps looking for a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The least time a proposal or read gets to complete once it reached a
/// leader, even when the leader search used up most of [`LEADER_WAIT`].
const MIN_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Raft timing and log compaction settings (the `[raft]` config table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RaftTuning {
    /// Leader heartbeat interval in milliseconds (default 400).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout in milliseconds
    /// (default 1200; the upper bound is twice this). A dead leader is
    /// replaced after roughly 1.5 times this. The defaults keep an idle node
    /// with hundreds of shards cheap; lower both for faster failover.
    pub election_timeout_ms: u64,
    /// Log entries between snapshots of a shard (default 10,000); older
    /// entries are then purged and a lagging replica catches up by snapshot.
    pub snapshot_logs: u64,
    /// How a linearizable read confirms its replica still leads (default
    /// `lease`).
    pub read_mode: ReadMode,
}

/// How a linearizable read makes sure the leader it reads from is still the
/// leader: the `[raft] read-mode` setting, `--read-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// Leader lease: the leader serves the read locally while a quorum
    /// acknowledged one of its heartbeats or appends less than the lease
    /// (`2 × election-timeout-ms`) ago — no follower can have granted a vote
    /// to anyone else since, because a follower refuses votes for that long
    /// after it last heard from its leader. Assumes the nodes' clocks *rate*
    /// (not their wall time) differs by less than the time between the
    /// lease's end and the follower's (one election timeout, ≥ 50% of the
    /// lease with the defaults); a read outside a valid lease falls back to
    /// [`ReadMode::ReadIndex`].
    #[default]
    Lease,
    /// ReadIndex: every read waits for a quorum to acknowledge a heartbeat
    /// sent after it arrived (concurrent reads share the round). Depends on
    /// no clock.
    ReadIndex,
}

impl std::str::FromStr for ReadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lease" => Ok(Self::Lease),
            "read-index" => Ok(Self::ReadIndex),
            other => Err(format!(
                "unknown read mode {other:?}; expected lease or read-index"
            )),
        }
    }
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 400,
            election_timeout_ms: 1200,
            snapshot_logs: 10_000,
            read_mode: ReadMode::Lease,
        }
    }
}

impl RaftTuning {
    /// openraft's leader lease: a follower refuses votes for this long after
    /// it last heard from its leader (openraft uses `election_timeout_max`).
    pub fn leader_lease(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms.saturating_mul(2))
    }

    /// The oldest quorum acknowledgement a lease read accepts: 90% of
    /// [`Self::leader_lease`], leaving 10% of it for the leader's and the
    /// followers' clocks to run at different rates.
    fn lease_read_age(&self) -> Duration {
        self.leader_lease().mul_f64(0.9)
    }

    /// How a linearizable read asks its group to confirm leadership under
    /// this read mode. Lease: served at once while a quorum acknowledged
    /// the leader within [`Self::lease_read_age`]; otherwise the leader
    /// sends heartbeats and the read waits for their acknowledgement (the
    /// ReadIndex fallback). ReadIndex: always a fresh quorum round.
    pub(crate) fn linearizer_option(&self) -> openraft::LinearizerOption {
        match self.read_mode {
            ReadMode::Lease => openraft::LinearizerOption::new(Some(self.lease_read_age()), true),
            ReadMode::ReadIndex => ReadPolicy::ReadIndex.into(),
        }
    }

    fn config(&self) -> Result<openraft::Config, ClusterError> {
        openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms.saturating_mul(2),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.snapshot_logs / 10,
            install_snapshot_timeout: 30_000,
            // Heartbeats are driven for all groups at once (see `heartbeat`).
            enable_heartbeat: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(format!("raft settings: {e}")))
    }
}

/// How this node presents itself to the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's id.
    pub node_id: u64,
    /// gRPC address peers and clients use to reach this node.
    pub addr: String,
    /// HTTP gateway address, for status displays.
    pub http_addr: String,
    /// Rack or zone.
    pub rack: String,
    /// Relative capacity (placement weight).
    pub weight: u32,
    /// Bytes of data this node may hold (0: bounded by the disk only).
    pub capacity_bytes: u64,
    /// Replica move limits.
    pub rebalance: balancer::RebalanceTuning,
    /// Raft timing.
    pub tuning: RaftTuning,
    /// Where proposals, reads, snapshot installs and the balancer are
    /// counted.
    pub metrics: crate::metrics::ClusterMetrics,
    /// TLS for connections to peers (and the identity the peer API
    /// demands), when on.
    pub tls: Option<Arc<cairn_tls::TlsContext>>,
}

/// Why a cluster operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// No leader could be reached in time; retrying later is safe.
    #[error("shard {shard} has no reachable leader: {detail}")]
    NoLeader {
        /// The shard.
        shard: ShardId,
        /// What was tried.
        detail: String,
    },
    /// This node holds no replica of the shard.
    #[error("shard {shard} has no replica on node {node}")]
    NotHosted {
        /// The shard.
        shard: ShardId,
        /// This node.
        node: u64,
    },
    /// The cluster is not formed yet (no cluster record on this node).
    #[error("this node has not joined a cluster yet")]
    NotJoined,
    /// Invalid settings.
    #[error("{0}")]
    Config(String),
    /// Storage failed (the [`StorageError`] is the source).
    #[error("storage: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// This node leads the shard but its disk is full: the write was not
    /// proposed. It succeeds once space returns or leadership moves.
    #[error("{0}")]
    DiskFull(String),
    /// A Raft group stopped or refused in a way that retrying will not fix
    /// (openraft's error, or a peer's answer, is the source).
    #[error("raft: {0}")]
    Raft(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A task this operation waited for stopped (panicked or was cancelled).
    #[error("{what} stopped: {source}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// Why it stopped.
        #[source]
        source: Arc<tokio::task::JoinError>,
    },
    /// No node has this id.
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(u64),
    /// A lifecycle request that would be unsafe or makes no sense in the
    /// node's state; nothing was changed.
    #[error("{message}")]
    Refused {
        /// Stable code, e.g. `node_removed`.
        code: cairn_proto::ErrorCode,
        /// Why, naming the rule.
        message: String,
    },
}

impl ClusterError {
    /// Whether trying again (here or elsewhere) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::NoLeader { .. } | Self::NotHosted { .. })
    }
}

impl From<StorageError> for ClusterError {
    fn from(e: StorageError) -> Self {
        Self::Storage(Arc::new(e))
    }
}

impl ClusterError {
    /// A task of `what` that stopped.
    pub(crate) fn task(what: &'static str, e: tokio::task::JoinError) -> Self {
        Self::Task {
            what,
            source: Arc::new(e),
        }
    }
}

impl From<ClusterError> for RemoteError {
    fn from(e: ClusterError) -> Self {
        RemoteError {
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}

/// A shard's leader as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// Leader node id.
    pub id: u64,
    /// Its gRPC address.
    pub addr: String,
}

/// The node's Raft groups and the routing rules over them. Shared (`Arc`).
pub struct Cluster {
    opts: ClusterOptions,
    engine: Engine,
    shards: ShardCount,
    progress: Arc<ShardProgress>,
    peers: Peers,
    config: Arc<openraft::Config>,
    groups: RwLock<HashMap<ShardId, ShardRaftHandle>>,
    creating: tokio::sync::Mutex<()>,
    /// The one writer of every group's Raft log on this node.
    log_writer: LogWriter,
    /// When this process opened the cluster: in lease mode it grants no
    /// vote for one lease after it, see [`Cluster::vote_refusal`].
    started: Instant,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.opts.node_id)
            .finish_non_exhaustive()
    }
}

fn raft_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> ClusterError {
    ClusterError::Raft(Arc::new(e))
}

impl Cluster {
    /// Starts the groups this node has persisted state for.
    ///
    /// # Errors
    /// Invalid Raft settings, storage failure, a group that cannot start.
    pub async fn open(
        engine: Engine,
        shards: ShardCount,
        progress: Arc<ShardProgress>,
        opts: ClusterOptions,
    ) -> Result<Arc<Self>, ClusterError> {
        let config = Arc::new(opts.tuning.config()?);
        let peers = Peers::batched(opts.rebalance.rate_bytes_per_sec).with_tls(opts.tls.clone());
        let counters = crate::raft::log_writer::SyncCounters {
            syncs: opts.metrics.log_syncs.clone(),
            writes_per_sync: opts.metrics.log_writes_per_sync.clone(),
        };
        let log_writer = LogWriter::start_counted(engine.clone(), Some(counters)).map_err(|e| {
            ClusterError::Storage(Arc::new(StorageError::Io {
                context: "starting the raft log writer thread".into(),
                source: e,
            }))
        })?;
        let cluster = Arc::new(Self {
            opts,
            engine,
            shards,
            progress,
            peers,
            config,
            groups: RwLock::default(),
            creating: tokio::sync::Mutex::new(()),
            log_writer,
            started: Instant::now(),
        });
        for shard in std::iter::once(META_SHARD).chain(0..shards.get()) {
            if cluster
                .engine
                .get_meta(&raft_meta_key("vote", shard))?
                .is_some()
            {
                cluster.ensure_group(shard).await?;
            }
        }
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.opts.node_id
    }

    /// This node's advertised gRPC address.
    pub fn addr(&self) -> &str {
        &self.opts.addr
    }

    /// The node's options.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The shard count.
    pub fn shards(&self) -> ShardCount {
        self.shards
    }

    /// The group of `shard`, if this node hosts one.
    pub fn group(&self, shard: ShardId) -> Option<ShardRaftHandle> {
        self.groups.read().ok()?.get(&shard).cloned()
    }

    /// The group of `shard` if this node is a replica of it: it hosts a
    /// group and is a voter or learner of the group's latest membership.
    ///
    /// A node taken out of a shard keeps its group (and data) until replica
    /// removal cleans it up; it knows no leader any more and its data goes
    /// stale, so it must neither serve reads of the shard nor route by it.
    pub fn member_group(&self, shard: ShardId) -> Option<ShardRaftHandle> {
        let raft = self.group(shard)?;
        let member = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            let membership = m.membership_config.membership();
            let id = self.opts.node_id;
            membership.voter_ids().any(|v| v == id) || membership.learner_ids().any(|l| l == id)
        };
        member.then_some(raft)
    }

    /// Shards (and the meta group) this node hosts a group for, sorted.
    pub fn hosted(&self) -> Vec<ShardId> {
        let mut v: Vec<ShardId> = self
            .groups
            .read()
            .map(|g| g.keys().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Estimated live data on this node and the room it has for more (free
    /// disk, or what is left of the configured capacity if that is less).
    pub fn data_and_room(&self) -> (u64, u64) {
        let data = self.engine.data_bytes();
        let disk = self.engine.disk_free_bytes();
        let room = match self.opts.capacity_bytes {
            0 => disk,
            cap => disk.min(cap.saturating_sub(data)),
        };
        (data, room)
    }

    /// Stops this node's replica of `shard` and deletes it, leaving a
    /// tombstone at membership index `removed_at` (see
    /// [`crate::raft::removal`]). Only for a replica the group's committed
    /// membership no longer names.
    ///
    /// # Errors
    /// Storage failure (the replica is stopped either way).
    pub async fn drop_replica(&self, shard: ShardId, removed_at: u64) -> Result<(), ClusterError> {
        if shard == META_SHARD {
            return Err(ClusterError::Config(
                "the meta group is never dropped".into(),
            ));
        }
        let _guard = self.creating.lock().await;
        let raft = self.groups.write().ok().and_then(|mut g| g.remove(&shard));
        if let Some(raft) = raft
            && let Err(e) = raft.shutdown().await
        {
            tracing::warn!(shard, error = %e, "stopping a removed replica");
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            crate::raft::removal::destroy(&engine, shard, removed_at)
        })
        .await
        .map_err(|e| ClusterError::task("removing a replica's data", e))?
        .map_err(|source| StorageError::Io {
            context: format!("removing the data of shard {shard}"),
            source,
        })?;
        tracing::info!(
            shard,
            removed_at,
            "deleted a replica removed from its group"
        );
        Ok(())
    }

    /// The group of `shard`, started now if needed.
    ///
    /// # Errors
    /// Not a shard of this cluster, or the group failed to start.
    pub async fn ensure_group(&self, shard: ShardId) -> Result<ShardRaftHandle, ClusterError> {
        if let Some(g) = self.group(shard) {
            return Ok(g);
        }
        if shard != META_SHARD && shard >= self.shards.get() {
            return Err(ClusterError::Config(format!(
                "shard {shard} does not exist (the cluster has {} shards)",
                self.shards.get()
            )));
        }
        let _guard = self.creating.lock().await;
        if let Some(g) = self.group(shard) {
            return Ok(g);
        }
        let raft = Raft::new(
            self.opts.node_id,
            self.config.clone(),
            ShardNetworkFactory::new(shard, self.peers.clone()),
            ShardLogStore::new(self.engine.clone(), self.log_writer.clone(), shard),
            ShardStateMachine::new(self.engine.clone(), shard)
                .with_progress(self.progress.clone())
                .with_install_counter(self.opts.metrics.snapshots_installed.clone()),
        )
        .await
        .map_err(raft_err)?;
        if let Ok(mut g) = self.groups.write() {
            g.insert(shard, raft.clone());
        }
        Ok(raft)
    }

    fn self_node(&self) -> BasicNode {
        BasicNode::new(self.opts.addr.clone())
    }

    /// This node's own record.
    pub fn self_record(&self) -> NodeRecord {
        NodeRecord {
            id: self.opts.node_id,
            addr: self.opts.addr.clone(),
            http_addr: self.opts.http_addr.clone(),
            rack: self.opts.rack.clone(),
            state: NodeState::Active,
            weight: self.opts.weight,
            evacuate_leaders: false,
        }
    }

    /// Every node record in this node's meta replica.
    ///
    /// # Errors
    /// Storage failure.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        Ok(meta::read_nodes(&self.engine)?)
    }

    /// The cluster record in this node's meta replica.
    ///
    /// # Errors
    /// [`ClusterError::NotJoined`] before the record arrives.
    pub fn record(&self) -> Result<ClusterRecord, ClusterError> {
        meta::read_cluster(&self.engine)?.ok_or(ClusterError::NotJoined)
    }

    /// The client for a peer's admin and KV services shares the peer channel.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Stops every group.
    pub async fn shutdown(&self, limit: Duration) {
        let groups: Vec<(ShardId, ShardRaftHandle)> = self
            .groups
            .read()
            .map(|g| g.iter().map(|(s, h)| (*s, h.clone())).collect())
            .unwrap_or_default();
        // All groups stop together, within one bound: a group whose storage
        // is stuck (a full disk) must not hold the process.
        let stops = groups.into_iter().map(|(shard, g)| async move {
            match tokio::time::timeout(limit, g.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(shard, error = %e, "stopping a raft group"),
                Err(_) => {
                    tracing::warn!(shard, "a raft group did not stop within the grace period")
                }
            }
        });
        futures::future::join_all(stops).await;
    }
}
