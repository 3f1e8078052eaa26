//! The operator's access to a Cairn cluster: its admin API
//! (`cairn.admin.v1.Admin`) over gRPC, reached at the pods' IPs.
//!
//! Any member answers any admin call (it hands membership changes to the
//! meta leader), so the controller tries the pods in turn until one answers.
//! Behind a trait so reconcile tests can count the calls.

use std::time::Duration;

use cairn_client::{Admin, AdminOptions, ClientError, NodeAction};
use cairn_proto::admin::v1 as apb;
use futures::future::BoxFuture;

use super::decide::AdminCall;
use super::view::{ClusterView, NodeState, NodeView};

/// How long connecting to one pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin call did not happen.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The cluster refused it (FAILED_PRECONDITION): e.g. a drain that
    /// would leave too few nodes or too little room. Not retried as is.
    #[error("refused by the cluster: {0}")]
    Refused(String),
    /// No pod's admin API answered, or the call failed in transit.
    #[error("cluster admin API unavailable: {0}")]
    Unavailable(String),
}

/// What the controller asks of a Cairn cluster.
pub trait ClusterAdmin: Send + Sync {
    /// The cluster's nodes and shard health, from the first pod that answers
    /// (`endpoints` are `IP:PORT` of the cluster's running pods); `None`
    /// when none does.
    fn observe<'a>(
        &'a self,
        endpoints: &'a [String],
        replication_factor: u32,
    ) -> BoxFuture<'a, Option<ClusterView>>;

    /// Makes one (idempotent) admin call through the first pod that answers.
    fn call<'a>(
        &'a self,
        endpoints: &'a [String],
        call: AdminCall,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
}

/// [`ClusterAdmin`] over gRPC.
#[derive(Debug, Default, Clone)]
pub struct GrpcAdmin;

async fn connect(endpoint: &str) -> Result<Admin, AdminError> {
    Admin::connect(
        endpoint,
        AdminOptions::default()
            .connect_timeout(CONNECT_TIMEOUT)
            .call_timeout(CALL_TIMEOUT),
    )
    .await
    .map_err(|e| AdminError::Unavailable(format!("{endpoint}: {e}")))
}

fn node_state(state: i32) -> NodeState {
    match apb::NodeState::try_from(state) {
        Ok(apb::NodeState::Draining) => NodeState::Draining,
        Ok(apb::NodeState::Removed) => NodeState::Removed,
        Ok(apb::NodeState::Dead) => NodeState::Dead,
        _ => NodeState::Active,
    }
}

/// Turns the admin API's answers into a [`ClusterView`]. A shard is
/// under-replicated when fewer than `replication_factor` of its voters sit
/// on reachable, active nodes.
pub fn cluster_view(
    status: &apb::ClusterStatusResponse,
    rebalance: &apb::RebalanceStatusResponse,
    replication_factor: u32,
) -> ClusterView {
    let nodes: Vec<NodeView> = status
        .nodes
        .iter()
        .map(|n| NodeView {
            id: n.id,
            state: node_state(n.state),
            reachable: n.reachable,
            replicas: n.replicas,
            leaders: n.leaders,
            evacuating: n.evacuating_leaders,
        })
        .collect();
    let live = |id: u64| {
        nodes.iter().any(|n| {
            n.id == id && n.reachable && matches!(n.state, NodeState::Active | NodeState::Draining)
        })
    };
    let under_replicated = status
        .shards
        .iter()
        .filter(|s| {
            let voters = s
                .replicas
                .iter()
                .filter(|r| r.voter && live(r.node_id))
                .count();
            (voters as u64) < u64::from(replication_factor)
        })
        .count();
    let leaderless = status.shards.iter().filter(|s| s.leader_id == 0).count();
    ClusterView {
        cluster_id: status
            .cluster
            .as_ref()
            .map(|c| c.cluster_id.clone())
            .unwrap_or_default(),
        nodes,
        shards: u32::try_from(status.shards.len()).unwrap_or(u32::MAX),
        under_replicated: u32::try_from(under_replicated).unwrap_or(u32::MAX),
        leaderless: u32::try_from(leaderless).unwrap_or(u32::MAX),
        moves_done: rebalance.moves_done,
        moves_total: rebalance.moves_total,
        moves_remaining: rebalance.moves_remaining,
    }
}

impl GrpcAdmin {
    async fn observe_one(
        endpoint: &str,
        replication_factor: u32,
    ) -> Result<ClusterView, AdminError> {
        let mut client = connect(endpoint).await?;
        let status = client
            .cluster_status()
            .await
            .map_err(|e| AdminError::Unavailable(format!("{endpoint}: {e}")))?;
        // Without rebalance progress the view cannot tell a balanced cluster
        // from one whose replicas have not moved yet: an endpoint that
        // answers the status but not the progress gives no view at all
        // (a scale-out was once declared balanced with every replica still
        // on the old nodes, because a timed-out progress call read as zero
        // moves remaining).
        let rebalance = client
            .rebalance_status(None)
            .await
            .map_err(|e| AdminError::Unavailable(format!("{endpoint}: rebalance status: {e}")))?;
        Ok(cluster_view(&status, &rebalance, replication_factor))
    }

    async fn call_one(endpoint: &str, call: AdminCall) -> Result<(), AdminError> {
        let mut client = connect(endpoint).await?;
        let (id, action) = match call {
            AdminCall::Drain(id) => (id, NodeAction::Drain),
            AdminCall::CancelDrain(id) => (id, NodeAction::CancelDrain),
            AdminCall::Remove(id) => (id, NodeAction::Remove),
            AdminCall::Replace(id) => (id, NodeAction::Replace { force: false }),
            AdminCall::ReplaceInPlace(id) => (id, NodeAction::Replace { force: true }),
            AdminCall::EvacuateLeaders(id) => (id, NodeAction::EvacuateLeaders),
            AdminCall::RestoreLeaders(id) => (id, NodeAction::RestoreLeaders),
        };
        let result = client.node(id, action).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => {
                Err(AdminError::Refused(match e {
                    ClientError::Status(s) => s.message().to_owned(),
                    other => other.to_string(),
                }))
            }
            Err(e) => Err(AdminError::Unavailable(format!("{endpoint}: {e}"))),
        }
    }
}

impl ClusterAdmin for GrpcAdmin {
    fn observe<'a>(
        &'a self,
        endpoints: &'a [String],
        replication_factor: u32,
    ) -> BoxFuture<'a, Option<ClusterView>> {
        Box::pin(async move {
            for endpoint in endpoints {
                match Self::observe_one(endpoint, replication_factor).await {
                    Ok(view) => return Some(view),
                    Err(e) => tracing::debug!(%endpoint, error = %e, "cluster status unavailable"),
                }
            }
            None
        })
    }

    fn call<'a>(
        &'a self,
        endpoints: &'a [String],
        call: AdminCall,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            let mut last = AdminError::Unavailable("no pod is running".into());
            for endpoint in endpoints {
                match Self::call_one(endpoint, call).await {
                    Ok(()) => return Ok(()),
                    Err(refused @ AdminError::Refused(_)) => return Err(refused),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}
