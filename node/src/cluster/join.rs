//! How a node becomes a member. The first node creates the cluster
//! ([`Cluster::bootstrap`], with an id from `new_cluster_id`); a new node
//! learns the cluster's identity from a `--join` member (`discover`) and
//! asks the members to admit it until one does (`join_until_admitted`,
//! through the one admin client, `cairn_client::Admin`); the meta leader
//! records it ([`Cluster::admit`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Admin, AdminOptions, ClientError};
use cairn_proto::ErrorCode;
use tokio::sync::watch;

use super::*;

/// A cluster id: unique enough to tell clusters apart, readable in logs.
pub(crate) fn new_cluster_id(node_id: u64, now_ms: u64) -> String {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut seed = Vec::new();
    for part in [node_id, now_ms, u64::from(pid), u64::from(nanos)] {
        seed.extend_from_slice(&part.to_be_bytes());
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&seed))
}

/// How long a joining node looks for a member to learn the cluster from.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one member may take to say what the cluster is.
const DISCOVER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one member may take to admit this node before the next is
/// asked (a member still starting has its port bound but does not answer).
const JOIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// An admin connection to the member at `addr`, for discovery and join.
async fn admin_client(
    addr: &str,
    tls: Option<&Arc<cairn_tls::TlsContext>>,
) -> Result<Admin, String> {
    let mut options = AdminOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        options = options.tls(tls.clone());
    }
    Admin::connect(addr, options)
        .await
        .map_err(|e| format!("{addr}: {e}"))
}

/// Learns the cluster's identity from any of `seeds` (other than this
/// node, bound at `me`), asking all of them at once and taking the first
/// answer: a member that is still starting has its port bound but does not
/// answer yet, and must not hold up the others.
pub(crate) async fn discover(
    seeds: &[String],
    me: SocketAddr,
    tls: Option<&Arc<cairn_tls::TlsContext>>,
) -> Result<cairn_proto::admin::v1::ClusterInfo, ClusterError> {
    use futures::stream::{FuturesUnordered, StreamExt as _};
    let deadline = tokio::time::Instant::now() + DISCOVER_TIMEOUT;
    let mut last = String::new();
    loop {
        let mut asks: FuturesUnordered<_> = seeds::remote_seeds(seeds, me)
            .await
            .into_iter()
            .map(|seed| async move {
                let ask = async {
                    let mut c = admin_client(&seed, tls).await?;
                    c.get_cluster().await.map_err(|e| format!("{seed}: {e}"))
                };
                tokio::time::timeout(DISCOVER_ATTEMPT_TIMEOUT, ask)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "{seed}: no answer within {}s",
                            DISCOVER_ATTEMPT_TIMEOUT.as_secs()
                        ))
                    })
            })
            .collect();
        while let Some(answer) = asks.next().await {
            match answer {
                Ok(info) => return Ok(info),
                Err(e) => last = e,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Config(format!(
                "could not reach any --join member within {}s (last error: {last})",
                DISCOVER_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asks the members in `seeds` to admit this node until one does (an
/// active member is admitted again, unchanged). A refusal because this
/// node's id was removed or declared dead is final: it is reported on
/// `fatal` and the node must stop (its data is stale by definition).
pub(crate) async fn join_until_admitted(
    cluster: Arc<Cluster>,
    seeds: Vec<String>,
    bound: SocketAddr,
    mut stop: watch::Receiver<bool>,
    fatal: watch::Sender<Option<String>>,
) {
    let me = cluster.self_record();
    let req = cairn_proto::admin::v1::JoinRequest {
        node_id: me.id,
        addr: me.addr,
        http_addr: me.http_addr,
        rack: me.rack,
        weight: me.weight,
    };
    let mut pause = Duration::from_millis(200);
    loop {
        for seed in seeds::remote_seeds(&seeds, bound).await {
            let result = match admin_client(&seed, cluster.options().tls.as_ref()).await {
                Ok(mut c) => {
                    match tokio::time::timeout(JOIN_ATTEMPT_TIMEOUT, c.join(req.clone())).await {
                        Ok(Ok(r)) => Ok(r),
                        Ok(Err(e)) if e.stable_code() == Some(ErrorCode::NodeRemoved) => {
                            let why = match &e {
                                ClientError::Status(status) => status.message().to_string(),
                                other => other.to_string(),
                            };
                            tracing::error!(error = %why, "this node was removed from the cluster; stopping");
                            let _ = fatal.send(Some(why));
                            return;
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {}s",
                            JOIN_ATTEMPT_TIMEOUT.as_secs()
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    tracing::info!(via = %seed, "joined the cluster");
                    return;
                }
                Err(e) => {
                    tracing::info!(via = %seed, error = %e, "join not accepted yet; retrying")
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

impl Cluster {
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
                .map(|_| placement::ShardPlacement {
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
}
