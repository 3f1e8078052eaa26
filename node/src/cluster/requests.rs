//! How requests reach a shard from any node: where its leader is
//! ([`Cluster::route`]), proposing a write locally or forwarding it to the
//! leader (at most [`MAX_HOPS`] hops), the ReadIndex barrier of a
//! linearizable read, and the peer-facing side of both ([`GroupHost`]).

use super::*;
use tracing::Instrument as _;

impl Cluster {
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
    #[tracing::instrument(level = "debug", name = "raft.propose", skip(self, req))]
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
                        Err(e) => return Err(ClusterError::Raft(Arc::new(e))),
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
                let write = raft
                    .client_write(req.clone())
                    .instrument(tracing::debug_span!(
                        "raft.client_write",
                        node = self.opts.node_id
                    ));
                let proposed = Instant::now();
                let counted = |result: &str| {
                    self.opts
                        .metrics
                        .proposals
                        .with_label_values(&[result])
                        .inc();
                };
                let Ok(written) = tokio::time::timeout(left, write).await else {
                    counted("timeout");
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
                    Ok(r) => {
                        counted("committed");
                        self.opts
                            .metrics
                            .proposal_duration
                            .observe(proposed.elapsed().as_secs_f64());
                        return Ok(r.data);
                    }
                    Err(RaftError::APIError(
                        ClientWriteError::ForwardToLeader(_)
                        | ClientWriteError::LogEntryDiscarded(_),
                    )) => counted("not_leader"),
                    Err(RaftError::APIError(e)) => {
                        counted("failed");
                        return Err(raft_err(e));
                    }
                    Err(RaftError::Fatal(e)) => {
                        counted("failed");
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
                    Err(e) => return Err(ClusterError::Raft(Arc::new(e))),
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
        tracing::debug!(shard, to = to.id, hops, "forwarding to the shard's leader");
        self.peers.forward(to.id, &to.addr, shard, req, hops).await
    }

    /// Waits until a read of `shard` on this node's replica is linearizable
    /// (ReadIndex; see the module docs).
    ///
    /// # Errors
    /// Not hosted here, or no leader confirmed in time.
    #[tracing::instrument(level = "debug", name = "raft.read_barrier", skip(self))]
    pub async fn read_barrier(&self, shard: ShardId) -> Result<(), ClusterError> {
        let mut path = "local";
        let done = self.read_barrier_via(shard, &mut path).await;
        self.opts
            .metrics
            .read_index
            .with_label_values(&[path, if done.is_ok() { "ok" } else { "error" }])
            .inc();
        done
    }

    /// [`Self::read_barrier`]; sets `path` to `leader` once it asks the
    /// leader for the read index.
    async fn read_barrier_via(
        &self,
        shard: ShardId,
        path: &mut &'static str,
    ) -> Result<(), ClusterError> {
        let raft = self.member_group(shard).ok_or(ClusterError::NotHosted {
            shard,
            node: self.opts.node_id,
        })?;
        let deadline = Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(20);
        let mut last = String::from("no leader elected yet");
        loop {
            match raft
                .get_read_linearizer(self.opts.tuning.linearizer_option())
                .await
            {
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
                        *path = "leader";
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
        match raft
            .get_read_linearizer(self.opts.tuning.linearizer_option())
            .await
        {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(RaftError::APIError(e)) => Err(ClusterError::NoLeader {
                shard,
                detail: e.to_string(),
            }),
            Err(RaftError::Fatal(e)) => Err(raft_err(e)),
        }
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

    async fn vote_refusal(&self, shard: ShardId) -> Option<String> {
        let lease = self.opts.tuning.leader_lease();
        if self.opts.tuning.read_mode == ReadMode::Lease && self.started.elapsed() < lease {
            // A lease this replica granted before a restart lives on in
            // its old leader, which may still serve reads on it; openraft
            // forgets it on restart, so the vote waits it out here.
            return Some(format!(
                "node {} restarted less than one leader lease ({} ms) ago and grants no vote until it has passed",
                self.opts.node_id,
                lease.as_millis()
            ));
        }
        match crate::raft::removal::tombstone(&self.engine, shard) {
            Ok(None) => None,
            Ok(Some(removed_at)) => {
                let readded = self
                    .group(shard)
                    .is_some_and(|g| MembershipView::of(&g).log_index > removed_at);
                (!readded).then(|| removed_replica_refusal(shard))
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "reading a replica tombstone");
                Some(removed_replica_refusal(shard))
            }
        }
    }
}

fn removed_replica_refusal(shard: ShardId) -> String {
    format!("this node's replica of shard {shard} was removed from the group; it does not vote")
}
