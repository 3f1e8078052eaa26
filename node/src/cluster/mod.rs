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

pub mod balance;
pub mod balancer;
pub mod fence;
pub mod heartbeat;
pub mod lifecycle;
pub mod meta;
pub mod reconciler;
pub mod replica_gc;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use openraft::async_runtime::watch::WatchReceiver as _;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ReadPolicy, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::commit::ShardProgress;
use crate::partition::{ShardCount, ShardId};
use crate::raft::log_store::{ShardLogStore, raft_meta_key};
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
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 400,
            election_timeout_ms: 1200,
            snapshot_logs: 10_000,
        }
    }
}

impl RaftTuning {
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
    /// Counts snapshots installed on this node.
    pub snapshot_installs: prometheus::IntCounter,
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
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// This node leads the shard but its disk is full: the write was not
    /// proposed. It succeeds once space returns or leadership moves.
    #[error("{0}")]
    DiskFull(String),
    /// A Raft group stopped or refused in a way that retrying will not fix.
    #[error("raft: {0}")]
    Raft(String),
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
        Self::Storage(e.to_string())
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
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.opts.node_id)
            .finish_non_exhaustive()
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> ClusterError {
    ClusterError::Raft(e.to_string())
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
        let peers = Peers::batched(opts.rebalance.rate_bytes_per_sec);
        let cluster = Arc::new(Self {
            opts,
            engine,
            shards,
            progress,
            peers,
            config,
            groups: RwLock::default(),
            creating: tokio::sync::Mutex::new(()),
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
        .map_err(|e| ClusterError::Storage(e.to_string()))?
        .map_err(|e| ClusterError::Storage(e.to_string()))?;
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
            ShardLogStore::new(self.engine.clone(), shard),
            ShardStateMachine::new(self.engine.clone(), shard)
                .with_progress(self.progress.clone())
                .with_install_counter(self.opts.snapshot_installs.clone()),
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

    /// Creates a new cluster with this node as its only member: every group
    /// starts with this node as its single voter, and the meta group records
    /// the cluster and the node.
    ///
    /// # Errors
    /// A group that cannot start or be initialised, or the records not
    /// committing.
    pub async fn bootstrap(&self, record: &ClusterRecord, now_ms: u64) -> Result<(), ClusterError> {
        let members: BTreeMap<u64, BasicNode> = [(self.opts.node_id, self.self_node())]
            .into_iter()
            .collect();
        for shard in std::iter::once(META_SHARD).chain(0..self.shards.get()) {
            let raft = self.ensure_group(shard).await?;
            if !raft.is_initialized().await.map_err(raft_err)? {
                raft.initialize(members.clone()).await.map_err(raft_err)?;
            }
        }
        self.propose(META_SHARD, meta::put_cluster(record, now_ms)?, 0)
            .await?;
        self.propose(META_SHARD, meta::put_node(&self.self_record(), now_ms)?, 0)
            .await?;
        // Every shard starts here; the balancer spreads them as nodes join.
        // (Written only if absent, so a repeated bootstrap keeps the plan.)
        let plan = meta::PlacementPlan {
            epoch: 1,
            shards: (0..self.shards.get())
                .map(|_| balance::ShardPlacement {
                    replicas: vec![self.opts.node_id],
                })
                .collect(),
            paused: false,
        };
        self.propose(META_SHARD, meta::replace_plan(&plan, 0, now_ms)?, 0)
            .await?;
        Ok(())
    }

    /// Records a node in the meta group and makes it a meta replica (a voter
    /// while there are fewer than [`meta::MAX_META_VOTERS`]). Must run on the
    /// meta leader; idempotent.
    ///
    /// # Errors
    /// Not the meta leader ([`ClusterError::NoLeader`] names the leader), or
    /// the change not committing.
    pub async fn admit(
        &self,
        node: &NodeRecord,
        now_ms: u64,
    ) -> Result<ClusterRecord, ClusterError> {
        let raft = self.group(META_SHARD).ok_or(ClusterError::NotJoined)?;
        if !raft.is_leader() {
            return Err(ClusterError::NoLeader {
                shard: META_SHARD,
                detail: "this node does not lead the meta group".into(),
            });
        }
        let known = meta::read_nodes(&self.engine)?;
        let mut node = node.clone();
        if let Some(existing) = known.iter().find(|n| n.id == node.id) {
            if let Some(refused) = lifecycle::refusal(node.id, existing.state) {
                return Err(refused);
            }
            // A restarting member re-joins; its lifecycle state stays.
            node.state = existing.state;
            node.evacuate_leaders = existing.evacuate_leaders;
        }
        let node = &node;
        if known.iter().find(|n| n.id == node.id) != Some(node) {
            // A removed or dead node's address may be taken over (a
            // re-created pod keeps its name); peers address messages by id,
            // so the old identity cannot be impersonated.
            if let Some(other) = known
                .iter()
                .find(|n| n.id != node.id && n.addr == node.addr && !lifecycle::fenced(n.state))
            {
                return Err(ClusterError::Config(format!(
                    "address {} already belongs to node {}",
                    node.addr, other.id
                )));
            }
            self.propose(META_SHARD, meta::put_node(node, now_ms)?, 0)
                .await?;
        }
        let m = raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let is_member = membership.get_node(&node.id).is_some();
        if !is_member || membership.get_node(&node.id).map(|n| &n.addr) != Some(&node.addr) {
            raft.add_learner(node.id, BasicNode::new(node.addr.clone()), true)
                .await
                .map_err(raft_err)?;
        }
        if !voters.contains(&node.id) && voters.len() < meta::MAX_META_VOTERS {
            raft.change_membership(ChangeMembers::AddVoterIds([node.id].into()), true)
                .await
                .map_err(raft_err)?;
        }
        meta::read_cluster(&self.engine)?.ok_or(ClusterError::NotJoined)
    }

    /// The leader of `shard` as this node knows it.
    pub fn leader(&self, shard: ShardId) -> Option<LeaderHint> {
        let raft = self.member_group(shard)?;
        let m = raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some(LeaderHint {
            id,
            addr: node.addr.clone(),
        })
    }

    /// The last revision this node's replica of `shard` applied (0 for the
    /// meta group, whose revision is the placement epoch).
    pub fn revision(&self, shard: ShardId) -> u64 {
        self.progress.revision(shard)
    }

    /// Whether this node leads `shard` right now.
    pub fn is_leader(&self, shard: ShardId) -> bool {
        self.group(shard).is_some_and(|r| r.is_leader())
    }

    /// Nodes that should hold `shard` (the placement plan's target, from
    /// this node's meta replica).
    fn placement_of(&self, shard: ShardId) -> Vec<NodeRecord> {
        let (Ok(Some(plan)), Ok(nodes)) = (
            meta::read_plan(&self.engine),
            meta::read_nodes(&self.engine),
        ) else {
            return Vec::new();
        };
        plan.of(shard)
            .iter()
            .filter_map(|id| nodes.iter().find(|n| n.id == *id).cloned())
            .collect()
    }

    /// Where to send a request for `shard` that this node cannot serve
    /// itself: the known leader, else a replica from the placement.
    pub fn route(&self, shard: ShardId) -> Option<LeaderHint> {
        if let Some(l) = self.leader(shard)
            && l.id != self.opts.node_id
        {
            return Some(l);
        }
        if self.member_group(shard).is_some() {
            return None;
        }
        self.placement_of(shard)
            .into_iter()
            .find(|n| n.id != self.opts.node_id)
            .map(|n| LeaderHint {
                id: n.id,
                addr: n.addr,
            })
    }

    /// Commits `req` in `shard`'s log and returns what applying it returned.
    /// Proposes locally when this node leads the shard, else forwards to the
    /// leader; keeps trying for [`LEADER_WAIT`] while there is no leader.
    ///
    /// The caller must give every write a request id: a retry after an
    /// unknown outcome is then answered from the shard's exactly-once table.
    ///
    /// # Errors
    /// [`ClusterError::NoLeader`] after the wait; group failures.
    pub async fn propose(
        &self,
        shard: ShardId,
        req: ShardRequest,
        hops: u32,
    ) -> Result<ShardResponse, ClusterError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(20);
        let mut last = String::from("no leader elected yet");
        let mut attempt = 0usize;
        loop {
            if let Some(raft) = self.group(shard) {
                // A leader that cannot append stalls. It has gone silent
                // (see `heartbeat`), so the other replicas elect a leader
                // among themselves; hand the write to one of them, which
                // answers or forwards it on (retried here until then).
                if self.engine.is_disk_full()
                    && raft.metrics().borrow_watched().current_leader == Some(self.opts.node_id)
                {
                    let others: Vec<LeaderHint> = self
                        .placement_of(shard)
                        .into_iter()
                        .filter(|n| n.id != self.opts.node_id)
                        .map(|n| LeaderHint {
                            id: n.id,
                            addr: n.addr,
                        })
                        .collect();
                    let full = || {
                        ClusterError::DiskFull(format!(
                            "node {} leads shard {shard} and its data directory {} is full ({} bytes free); writes to the shard are refused until space returns (at least {} MiB) or leadership moves",
                            self.opts.node_id,
                            self.engine.data_dir().display(),
                            self.engine.disk_free_bytes(),
                            crate::storage::RESUME_FREE_MIB,
                        ))
                    };
                    if others.is_empty() || hops >= MAX_HOPS {
                        return Err(full());
                    }
                    let target = &others[attempt % others.len()];
                    attempt += 1;
                    match self.forward(target, shard, &req, hops + 1).await {
                        Ok(r) => return Ok(r),
                        Err(e) if e.retryable => {
                            last = format!("node {}: {}", target.id, e.message)
                        }
                        Err(e) => return Err(ClusterError::Raft(e.message)),
                    }
                    if Instant::now() + pause > deadline {
                        return Err(full());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                    continue;
                }
                // Bounded: a leader whose log cannot advance (a stalled
                // disk) must not hold the caller forever. The entry may
                // still commit later, so the answer is "unknown, retry":
                // a retry under the same request id applies at most once.
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(MIN_WRITE_WAIT);
                let Ok(written) = tokio::time::timeout(left, raft.client_write(req.clone())).await
                else {
                    return Err(ClusterError::NoLeader {
                        shard,
                        detail: format!(
                            "the write was proposed on node {} but not committed within {} s; it may still apply, so retry it (under the same request id)",
                            self.opts.node_id,
                            left.as_secs()
                        ),
                    });
                };
                match written {
                    Ok(r) => return Ok(r.data),
                    Err(RaftError::APIError(
                        ClientWriteError::ForwardToLeader(_)
                        | ClientWriteError::LogEntryDiscarded(_),
                    )) => {}
                    Err(RaftError::APIError(e)) => return Err(raft_err(e)),
                    Err(RaftError::Fatal(e)) => {
                        return Err(ClusterError::NoLeader {
                            shard,
                            detail: format!("the local group stopped: {e}"),
                        });
                    }
                }
            }
            if let Some(target) = self.route(shard) {
                if hops >= MAX_HOPS {
                    return Err(ClusterError::NoLeader {
                        shard,
                        detail: format!("forwarded {hops} times without reaching the leader"),
                    });
                }
                match self.forward(&target, shard, &req, hops + 1).await {
                    Ok(r) => return Ok(r),
                    Err(e) if e.retryable => last = format!("node {}: {}", target.id, e.message),
                    Err(e) => return Err(ClusterError::Raft(e.message)),
                }
            } else if self.member_group(shard).is_none() {
                return Err(ClusterError::NotHosted {
                    shard,
                    node: self.opts.node_id,
                });
            }
            if hops > 0 || Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader {
                    shard,
                    detail: last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn forward(
        &self,
        to: &LeaderHint,
        shard: ShardId,
        req: &ShardRequest,
        hops: u32,
    ) -> Result<ShardResponse, RemoteError> {
        self.peers.forward(to.id, &to.addr, shard, req, hops).await
    }

    /// Waits until a read of `shard` on this node's replica is linearizable
    /// (ReadIndex; see the module docs).
    ///
    /// # Errors
    /// Not hosted here, or no leader confirmed in time.
    pub async fn read_barrier(&self, shard: ShardId) -> Result<(), ClusterError> {
        let raft = self.member_group(shard).ok_or(ClusterError::NotHosted {
            shard,
            node: self.opts.node_id,
        })?;
        let deadline = Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(20);
        let mut last = String::from("no leader elected yet");
        loop {
            match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
                Ok(lin) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(MIN_WRITE_WAIT);
                    return match tokio::time::timeout(left, lin.await_ready(&raft)).await {
                        Ok(ready) => ready.map(|_| ()).map_err(raft_err),
                        Err(_) => Err(ClusterError::NoLeader {
                            shard,
                            detail: format!(
                                "node {}'s replica did not apply up to the read index within {} s",
                                self.opts.node_id,
                                left.as_secs()
                            ),
                        }),
                    };
                }
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    if let (Some(id), Some(node)) = (f.leader_id, f.leader_node) {
                        let hint = LeaderHint {
                            id,
                            addr: node.addr,
                        };
                        match self.peers.read_index(id, &hint.addr, shard).await {
                            Ok(index) => {
                                let left = deadline.saturating_duration_since(Instant::now());
                                raft.wait(Some(left.max(Duration::from_millis(100))))
                                    .applied_index_at_least(Some(index), "linearizable read")
                                    .await
                                    .map_err(|e| ClusterError::NoLeader {
                                        shard,
                                        detail: format!("replica did not catch up: {e}"),
                                    })?;
                                return Ok(());
                            }
                            Err(e) => last = format!("node {id}: {}", e.message),
                        }
                    }
                }
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q))) => {
                    last = q.to_string();
                }
                Err(RaftError::Fatal(e)) => return Err(raft_err(e)),
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader {
                    shard,
                    detail: last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The log index a linearizable read of `shard` must wait for; only the
    /// leader answers.
    ///
    /// # Errors
    /// Not the leader, or leadership not confirmed.
    pub async fn read_index(&self, shard: ShardId) -> Result<u64, ClusterError> {
        let raft = self.member_group(shard).ok_or(ClusterError::NotHosted {
            shard,
            node: self.opts.node_id,
        })?;
        match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(RaftError::APIError(e)) => Err(ClusterError::NoLeader {
                shard,
                detail: e.to_string(),
            }),
            Err(RaftError::Fatal(e)) => Err(raft_err(e)),
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

#[tonic::async_trait]
impl GroupHost for Cluster {
    async fn group_for_peer(&self, shard: ShardId) -> Option<ShardRaftHandle> {
        match self.ensure_group(shard).await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(shard, error = %e, "refusing a peer's message");
                None
            }
        }
    }

    async fn forward(
        &self,
        shard: ShardId,
        req: ShardRequest,
        hops: u32,
    ) -> Result<ShardResponse, RemoteError> {
        Ok(self.propose(shard, req, hops).await?)
    }

    async fn read_index(&self, shard: ShardId) -> Result<u64, RemoteError> {
        Ok(Cluster::read_index(self, shard).await?)
    }

    async fn membership(&self, shard: ShardId) -> Result<MembershipView, RemoteError> {
        let raft = self.group(shard).ok_or_else(|| RemoteError {
            retryable: true,
            message: format!("shard {shard} has no replica here"),
        })?;
        Ok(MembershipView::of(&raft))
    }

    async fn may_vote(&self, shard: ShardId) -> bool {
        match crate::raft::removal::tombstone(&self.engine, shard) {
            Ok(None) => true,
            Ok(Some(removed_at)) => self
                .group(shard)
                .is_some_and(|g| MembershipView::of(&g).log_index > removed_at),
            Err(e) => {
                tracing::warn!(shard, error = %e, "reading a replica tombstone");
                false
            }
        }
    }
}
