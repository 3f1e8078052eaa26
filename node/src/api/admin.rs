//! The `cairn.admin.v1.Admin` gRPC service: joining, cluster status, the
//! shard map and leadership transfer.
//!
//! Cluster-wide views come from [`ClusterObserver`] (every node's own
//! report, merged); this module only maps requests and answers.

use cairn_proto::ErrorCode;
use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver as _;
use std::time::Duration;

use cairn_proto::admin::v1 as apb;
use tonic::{Request, Response, Status};

use crate::api::rebalance_progress::{self, Tracker};
use crate::api::status::ERROR_CODE_METADATA;
use crate::clock::Clock;
use crate::cluster::lifecycle::NodeRoom;
use crate::cluster::meta::{self, META_SHARD, NodeRecord, NodeState};
use crate::cluster::observe::{ClusterObserver, Gathered, ObservedShard, state_of};
use crate::cluster::{Cluster, ClusterError, balancer};

/// The admin client a node forwards calls to the meta leader (or a shard's
/// leader) with: it names the caller, who is checked there again.
type Forwarder = apb::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        crate::auth::gate::StampCaller,
    >,
>;

/// Admin front end over a node's [`Cluster`].
#[derive(Clone)]
pub struct AdminGrpc {
    cluster: Arc<Cluster>,
    observer: ClusterObserver,
    clock: Arc<dyn Clock>,
    rebalance: Arc<std::sync::Mutex<Tracker>>,
}

fn status(e: ClusterError) -> Status {
    let code = match &e {
        ClusterError::NoLeader { .. }
        | ClusterError::NotHosted { .. }
        | ClusterError::NotJoined => ErrorCode::Unavailable,
        ClusterError::Config(m) => return Status::invalid_argument(m.clone()),
        ClusterError::Storage(_) => ErrorCode::StorageError,
        ClusterError::Task { .. } => ErrorCode::Internal,
        ClusterError::Raft(_) => return Status::internal(e.to_string()),
        ClusterError::UnknownNode(_) => return Status::not_found(e.to_string()),
        ClusterError::DiskFull(_) => ErrorCode::DiskFull,
        ClusterError::Refused { code, .. } => *code,
    };
    let mut s = Status::new(code.grpc(), e.to_string());
    s.metadata_mut().insert(
        ERROR_CODE_METADATA,
        tonic::metadata::MetadataValue::from_static(code.as_str()),
    );
    s
}

impl AdminGrpc {
    /// Serves `cluster`.
    pub fn new(cluster: Arc<Cluster>, clock: Arc<dyn Clock>) -> Self {
        Self {
            observer: ClusterObserver::new(cluster.clone()),
            cluster,
            clock,
            rebalance: Arc::default(),
        }
    }

    /// What the balancer observes the cluster through.
    pub fn observer(&self) -> ClusterObserver {
        self.observer.clone()
    }

    /// The tonic service, behind `gate` (every call is authorized by its
    /// path before it reaches a handler).
    pub fn into_server(
        self,
        gate: crate::auth::AccessGate,
    ) -> crate::auth::admin_gate::AdminGate<apb::admin_server::AdminServer<Self>> {
        crate::auth::admin_gate::AdminGate::new(apb::admin_server::AdminServer::new(self), gate)
    }

    fn client(&self, id: u64, addr: &str) -> Result<Forwarder, Status> {
        let ch = self
            .cluster
            .peers()
            .channel(id, addr)
            .map_err(Status::unavailable)?;
        Ok(apb::admin_client::AdminClient::with_interceptor(
            ch,
            crate::auth::gate::StampCaller,
        ))
    }

    /// Whether this node leads the meta group (where membership changes run).
    fn meta_leader_here(&self) -> Result<bool, Status> {
        if self.cluster.is_leader(META_SHARD) {
            return Ok(true);
        }
        match self.cluster.leader(META_SHARD) {
            Some(l) if l.id != self.cluster.node_id() => Ok(false),
            Some(_) => Err(Status::unavailable("meta leadership is changing; retry")),
            None => Err(Status::unavailable(
                "the meta group has no leader right now; retry",
            )),
        }
    }

    /// Runs a node lifecycle change: on the meta leader (`act` with the node
    /// id and the time), or by handing the request to it (`forward`).
    async fn lifecycle(
        &self,
        req: Request<apb::NodeRequest>,
        forward: impl AsyncFnOnce(
            Forwarder,
            apb::NodeRequest,
        ) -> Result<Response<apb::NodeStateResponse>, Status>,
        act: impl AsyncFnOnce(&Cluster, u64, u64) -> Result<NodeState, ClusterError>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        let id = req.get_ref().node_id;
        if !self.meta_leader_here()? {
            return forward(self.meta_leader_client()?, req.into_inner()).await;
        }
        let state = act(&self.cluster, id, self.clock.now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(node_state(id, state)))
    }

    /// An admin client to the meta group's leader.
    fn meta_leader_client(&self) -> Result<Forwarder, Status> {
        let leader = self
            .cluster
            .leader(META_SHARD)
            .ok_or_else(|| Status::unavailable("the meta group has no leader right now; retry"))?;
        self.client(leader.id, &leader.addr)
    }

    fn info(&self) -> Result<apb::ClusterInfo, Status> {
        self.observer.info().map_err(status)
    }
}

fn node_state(node_id: u64, state: NodeState) -> apb::NodeStateResponse {
    apb::NodeStateResponse {
        node_id,
        state: state_of(state) as i32,
    }
}

fn node_from(req: &apb::JoinRequest) -> Result<NodeRecord, Status> {
    if req.node_id == 0 {
        return Err(Status::invalid_argument("node_id must be at least 1"));
    }
    if req.addr.is_empty() {
        return Err(Status::invalid_argument(
            "addr is required (the joining node's gRPC address)",
        ));
    }
    Ok(NodeRecord {
        id: req.node_id,
        addr: req.addr.clone(),
        http_addr: req.http_addr.clone(),
        rack: req.rack.clone(),
        state: NodeState::Active,
        weight: req.weight.max(1),
        evacuate_leaders: false,
    })
}

#[tonic::async_trait]
impl apb::admin_server::Admin for AdminGrpc {
    async fn get_cluster(
        &self,
        _req: Request<apb::GetClusterRequest>,
    ) -> Result<Response<apb::ClusterInfo>, Status> {
        self.info().map(Response::new)
    }

    async fn join(
        &self,
        req: Request<apb::JoinRequest>,
    ) -> Result<Response<apb::JoinResponse>, Status> {
        let req = req.into_inner();
        let node = node_from(&req)?;
        if !self.meta_leader_here()? {
            return self.meta_leader_client()?.join(req).await;
        }
        self.cluster
            .admit(&node, self.clock.now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(apb::JoinResponse {
            cluster: Some(self.info()?),
        }))
    }

    async fn node_report(
        &self,
        _req: Request<apb::NodeReportRequest>,
    ) -> Result<Response<apb::NodeReportResponse>, Status> {
        Ok(Response::new(self.observer.local_report()))
    }

    async fn cluster_status(
        &self,
        _req: Request<apb::ClusterStatusRequest>,
    ) -> Result<Response<apb::ClusterStatusResponse>, Status> {
        let Gathered {
            info: cluster,
            nodes,
            shards,
            meta,
            ..
        } = self.observer.gather().await.map_err(status)?;
        Ok(Response::new(apb::ClusterStatusResponse {
            cluster: Some(cluster),
            nodes,
            shards,
            meta: Some(meta),
        }))
    }

    async fn shard_map(
        &self,
        _req: Request<apb::ShardMapRequest>,
    ) -> Result<Response<apb::ShardMapResponse>, Status> {
        let Gathered {
            info: cluster,
            nodes,
            shards,
            ..
        } = self.observer.gather().await.map_err(status)?;
        Ok(Response::new(apb::ShardMapResponse {
            cluster: Some(cluster),
            nodes,
            shards,
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<apb::TransferLeaderRequest>,
    ) -> Result<Response<apb::TransferLeaderResponse>, Status> {
        let req = req.into_inner();
        let shards = self.cluster.shards().get();
        if req.shard >= shards {
            return Err(Status::invalid_argument(format!(
                "shard {} does not exist (the cluster has {shards} shards)",
                req.shard
            )));
        }
        let Some(raft) = self.cluster.group(req.shard) else {
            let leader = self.cluster.leader(req.shard).ok_or_else(|| {
                Status::unavailable(format!("shard {} has no replica on this node", req.shard))
            })?;
            let mut c = self.client(leader.id, &leader.addr)?;
            return c.transfer_leader(req).await;
        };
        let voters: Vec<u64> = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.contains(&req.to_node_id) {
            return Err(Status::failed_precondition(format!(
                "node {} is not a voter of shard {} (voters: {voters:?})",
                req.to_node_id, req.shard
            )));
        }
        if !raft.is_leader() {
            let leader = self.cluster.leader(req.shard).ok_or_else(|| {
                Status::unavailable(format!(
                    "shard {} has no leader right now; retry",
                    req.shard
                ))
            })?;
            let mut c = self.client(leader.id, &leader.addr)?;
            return c.transfer_leader(req).await;
        }
        raft.trigger()
            .transfer_leader(req.to_node_id)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let m = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.current_leader == Some(req.to_node_id),
                "leadership transfer",
            )
            .await
            .map_err(|e| Status::deadline_exceeded(format!("leadership did not move: {e}")))?;
        Ok(Response::new(apb::TransferLeaderResponse {
            leader_id: m.current_leader.unwrap_or(0),
        }))
    }

    async fn pause_rebalance(
        &self,
        req: Request<apb::PauseRebalanceRequest>,
    ) -> Result<Response<apb::PlanResponse>, Status> {
        if !self.meta_leader_here()? {
            return self
                .meta_leader_client()?
                .pause_rebalance(req.into_inner())
                .await;
        }
        let paused = req.get_ref().paused;
        let plan = self
            .cluster
            .update_plan(self.clock.now_ms(), |p| {
                (p.paused != paused).then(|| {
                    let mut next = p.clone();
                    next.paused = paused;
                    next.epoch += 1;
                    next
                })
            })
            .await
            .map_err(status)?;
        tracing::info!(paused, epoch = plan.epoch, "rebalance pause changed");
        Ok(Response::new(apb::PlanResponse {
            placement_epoch: plan.epoch,
            paused: plan.paused,
        }))
    }

    async fn cancel_rebalance(
        &self,
        req: Request<apb::CancelRebalanceRequest>,
    ) -> Result<Response<apb::PlanResponse>, Status> {
        if !self.meta_leader_here()? {
            return self
                .meta_leader_client()?
                .cancel_rebalance(req.into_inner())
                .await;
        }
        let shards: Vec<ObservedShard> = self
            .observer
            .gather()
            .await
            .map_err(status)?
            .shards
            .iter()
            .map(ObservedShard::of)
            .collect();
        let plan = self
            .cluster
            .update_plan(self.clock.now_ms(), |p| {
                Some(balancer::cancelled(p, &shards))
            })
            .await
            .map_err(status)?;
        tracing::info!(epoch = plan.epoch, "rebalance cancelled");
        Ok(Response::new(apb::PlanResponse {
            placement_epoch: plan.epoch,
            paused: plan.paused,
        }))
    }

    async fn drain_node(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        self.lifecycle(
            req,
            async |mut leader, r| leader.drain_node(r).await,
            async |cluster, id, now| {
                let nodes = cluster.nodes()?;
                let room: Vec<NodeRoom> = self
                    .observer
                    .reports(&nodes)
                    .await
                    .into_iter()
                    .flatten()
                    .map(|r| NodeRoom {
                        id: r.node_id,
                        data_bytes: r.data_bytes,
                        free_bytes: r.free_bytes,
                    })
                    .collect();
                cluster.drain(id, &room, now).await
            },
        )
        .await
    }

    async fn cancel_drain(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        self.lifecycle(
            req,
            async |mut leader, r| leader.cancel_drain(r).await,
            async |cluster, id, now| cluster.cancel_drain(id, now).await,
        )
        .await
    }

    async fn replace_node(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        let force = req.get_ref().force;
        self.lifecycle(
            req,
            async |mut leader, r| leader.replace_node(r).await,
            async |cluster, id, now| cluster.replace(id, force, now).await,
        )
        .await
    }

    async fn evacuate_leaders(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        self.lifecycle(
            req,
            async |mut leader, r| leader.evacuate_leaders(r).await,
            async |cluster, id, now| cluster.evacuate_leaders(id, true, now).await,
        )
        .await
    }

    async fn restore_leaders(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        self.lifecycle(
            req,
            async |mut leader, r| leader.restore_leaders(r).await,
            async |cluster, id, now| cluster.evacuate_leaders(id, false, now).await,
        )
        .await
    }

    async fn rebalance_status(
        &self,
        req: Request<apb::RebalanceStatusRequest>,
    ) -> Result<Response<apb::RebalanceStatusResponse>, Status> {
        let stall_after = match req.get_ref().stall_after_seconds {
            0 => Duration::from_secs(300),
            s => Duration::from_secs(u64::from(s)),
        };
        let Gathered {
            info,
            shards,
            snapshot_bytes_sent,
            ..
        } = self.observer.gather().await.map_err(status)?;
        let nodes = self.cluster.nodes().map_err(status)?;
        let plan = meta::read_plan(self.cluster.engine())
            .map_err(|e| Status::internal(e.to_string()))?
            .unwrap_or_default();
        let destination = balancer::destination(&nodes, info.replication_factor, &plan);
        let gap = rebalance_progress::measure(&shards, &nodes, &destination, &plan);
        // A rebalance is what follows a change of the nodes (a join, a
        // drain, a failure, a weight): progress counts from there.
        let shape: Vec<_> = nodes
            .iter()
            .map(|n| (n.id, n.state, n.weight, &n.rack, n.evacuate_leaders))
            .collect();
        let key = xxhash_rust::xxh3::xxh3_64(format!("{shape:?}").as_bytes());
        let mut tracker = self
            .rebalance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut r = tracker.observe(
            key,
            &gap,
            snapshot_bytes_sent,
            std::time::Instant::now(),
            stall_after,
        );
        r.placement_epoch = plan.epoch;
        r.paused = plan.paused;
        Ok(Response::new(r))
    }

    async fn remove_node(
        &self,
        req: Request<apb::NodeRequest>,
    ) -> Result<Response<apb::NodeStateResponse>, Status> {
        let id = req.get_ref().node_id;
        if !self.meta_leader_here()? {
            return self
                .meta_leader_client()?
                .remove_node(req.into_inner())
                .await;
        }
        // Count what the node still holds from every node's report; a node
        // that cannot be asked may still hold replicas, so its report being
        // missing does not count as "holds none" for itself.
        let shards = self.observer.gather().await.map_err(status)?.shards;
        let held = shards
            .iter()
            .filter(|s| s.replicas.iter().any(|r| r.node_id == id))
            .count();
        let unsettled = shards.iter().filter(|s| s.leader_id == 0).count();
        if held == 0 && unsettled > 0 {
            return Err(Status::unavailable(format!(
                "{unsettled} shards have no leader right now, so what node {id} holds is unknown; retry"
            )));
        }
        let state = self
            .cluster
            .remove(id, held, self.clock.now_ms())
            .await
            .map_err(status)?;
        Ok(Response::new(node_state(id, state)))
    }
}
