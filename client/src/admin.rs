//! [`Admin`]: the one typed client of the cluster admin API
//! (`cairn.admin.v1.Admin`).
//!
//! Every tool that manages a cluster goes through it — `cairnctl`, the
//! Kubernetes operator, the test harness and a node asking a member to admit
//! it — so endpoint parsing, timeouts, message limits and the mapping of
//! failures into [`ClientError`] (with its stable error code) are written
//! once. Admin calls are not retried here: each caller knows whether to try
//! the next member, wait, or give up.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use cairn_proto::admin::v1 as apb;
use cairn_proto::admin::v1::admin_client::AdminClient as Stub;

use crate::dial::Dialer;
use crate::error::ClientError;

/// How long connecting to a member may take, by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one admin call may take, by default.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The generated admin stub, sending the caller's bearer token (if any).
pub type AdminStub = Stub<InterceptedService<Channel, Authorize>>;

/// The generated stub of the access-control API (`cairn.auth.v1.Auth`:
/// login, users, roles, API tokens), sending the caller's bearer token.
pub type AccessStub =
    cairn_proto::auth::v1::auth_client::AuthClient<InterceptedService<Channel, Authorize>>;

/// Adds `authorization: Bearer <token>` to every request of a stub.
#[derive(Debug, Clone, Default)]
pub struct Authorize(pub(crate) Option<AsciiMetadataValue>);

impl Authorize {
    /// Sends `token` as a bearer token (`None`: sends nothing).
    ///
    /// # Errors
    /// [`ClientError::InvalidToken`] for an empty or non-printable token.
    pub fn token(token: Option<&str>) -> Result<Self, ClientError> {
        Ok(Self(token.map(crate::client::bearer).transpose()?))
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Timeouts of an [`Admin`] connection.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    connect_timeout: Duration,
    call_timeout: Duration,
    tls: Option<Arc<cairn_tls::TlsContext>>,
    token: Option<String>,
}

impl Default for AdminOptions {
    /// 2 s to connect, 10 s per call.
    fn default() -> Self {
        AdminOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            tls: None,
            token: None,
        }
    }
}

impl AdminOptions {
    /// How long to wait for the member to accept the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one call may take before it fails with `DeadlineExceeded`
    /// (`Cancelled` on some transports).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Speak TLS, verifying the member with `tls`'s CA bundle and
    /// presenting its certificate if it has one.
    pub fn tls(mut self, tls: Arc<cairn_tls::TlsContext>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A token (session or API) sent as `authorization: Bearer <token>` on
    /// every call, for clusters with authentication on.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// A lifecycle change of one node, as the admin API offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Move the node's replicas and leaderships away (`DrainNode`).
    Drain,
    /// Stop a drain; the node takes replicas again (`CancelDrain`).
    CancelDrain,
    /// Take a drained (or dead) node out of the cluster for good
    /// (`RemoveNode`).
    Remove,
    /// Rebuild the node's replicas elsewhere (`ReplaceNode`); with `force`,
    /// the node is declared dead first so its replicas are replaced in place.
    Replace {
        /// Declare the node dead instead of waiting for it to answer.
        force: bool,
    },
    /// Move only the node's leaderships away (`EvacuateLeaders`).
    EvacuateLeaders,
    /// Let the node lead shards again (`RestoreLeaders`).
    RestoreLeaders,
}

impl NodeAction {
    /// The action as `cairnctl node` spells it.
    pub fn name(self) -> &'static str {
        match self {
            NodeAction::Drain => "drain",
            NodeAction::CancelDrain => "cancel-drain",
            NodeAction::Remove => "remove",
            NodeAction::Replace { .. } => "replace",
            NodeAction::EvacuateLeaders => "evacuate-leaders",
            NodeAction::RestoreLeaders => "restore-leaders",
        }
    }
}

/// A connection to one member's admin API.
///
/// Any member answers any admin call: membership changes are handed to the
/// meta group's leader by the member itself. Cloning is cheap and clones
/// share the connection.
#[derive(Debug, Clone)]
pub struct Admin {
    stub: AdminStub,
    access: AccessStub,
    endpoint: String,
}

impl Admin {
    /// Connects to the member at `endpoint` (`HOST:PORT` or
    /// `http://HOST:PORT`).
    pub async fn connect(endpoint: &str, options: AdminOptions) -> Result<Admin, ClientError> {
        let dialer = Dialer::new(options.tls.clone());
        let target = dialer
            .endpoint(endpoint, options.connect_timeout)?
            .timeout(options.call_timeout);
        let channel = dialer
            .connect(&target, options.connect_timeout)
            .await
            .map_err(|source| ClientError::Connect {
                endpoints: vec![endpoint.to_owned()],
                source,
            })?;
        let authorization = options
            .token
            .as_deref()
            .map(crate::client::bearer)
            .transpose()?;
        Ok(Admin::authorized(channel, endpoint, authorization))
    }

    /// An admin client on an existing channel (a node's peer connection,
    /// or the one [`crate::Client::admin`] hands out); `endpoint` names it
    /// in messages.
    pub fn on_channel(channel: Channel, endpoint: impl Into<String>) -> Admin {
        Self::authorized(channel, endpoint, None)
    }

    /// [`Admin::on_channel`], sending `authorization` on every call.
    pub(crate) fn authorized(
        channel: Channel,
        endpoint: impl Into<String>,
        authorization: Option<AsciiMetadataValue>,
    ) -> Admin {
        Admin {
            access: cairn_proto::auth::v1::auth_client::AuthClient::with_interceptor(
                channel.clone(),
                Authorize(authorization.clone()),
            ),
            stub: Stub::with_interceptor(channel, Authorize(authorization))
                .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES),
            endpoint: endpoint.into(),
        }
    }

    /// The member this connection talks to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The generated stub underneath, for calls with metadata of the
    /// caller's own.
    pub fn stub(&mut self) -> &mut AdminStub {
        &mut self.stub
    }

    /// The access-control API on the same connection and credentials.
    pub fn access(&self) -> AccessStub {
        self.access.clone()
    }

    /// The generated stub, owned: for tests of the wire API itself, which
    /// look at the raw `tonic::Status` of each answer.
    pub fn into_stub(self) -> AdminStub {
        self.stub
    }

    /// The cluster's identity (`GetCluster`).
    pub async fn get_cluster(&mut self) -> Result<apb::ClusterInfo, ClientError> {
        Ok(self
            .stub
            .get_cluster(apb::GetClusterRequest {})
            .await?
            .into_inner())
    }

    /// Asks the cluster to admit the node `request` describes (`Join`); an
    /// active member is admitted again unchanged. A node whose id was removed
    /// is refused with [`cairn_proto::ErrorCode::NodeRemoved`].
    pub async fn join(
        &mut self,
        request: apb::JoinRequest,
    ) -> Result<apb::JoinResponse, ClientError> {
        Ok(self.stub.join(request).await?.into_inner())
    }

    /// The answering node's own view: its replicas, their roles and
    /// progress, and what it has sent (`NodeReport`).
    pub async fn node_report(&mut self) -> Result<apb::NodeReportResponse, ClientError> {
        Ok(self
            .stub
            .node_report(apb::NodeReportRequest {})
            .await?
            .into_inner())
    }

    /// Nodes, shards and their replicas as the answering member sees them
    /// (`ClusterStatus`).
    pub async fn cluster_status(&mut self) -> Result<apb::ClusterStatusResponse, ClientError> {
        Ok(self
            .stub
            .cluster_status(apb::ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Which node leads each shard, and where its replicas are (`ShardMap`).
    pub async fn shard_map(&mut self) -> Result<apb::ShardMapResponse, ClientError> {
        Ok(self
            .stub
            .shard_map(apb::ShardMapRequest {})
            .await?
            .into_inner())
    }

    /// Moves the leadership of `shard` to node `to` (`TransferLeader`).
    pub async fn transfer_leader(
        &mut self,
        shard: u32,
        to: u64,
    ) -> Result<apb::TransferLeaderResponse, ClientError> {
        Ok(self
            .stub
            .transfer_leader(apb::TransferLeaderRequest {
                shard,
                to_node_id: to,
            })
            .await?
            .into_inner())
    }

    /// Applies `action` to node `node_id`; the answer is the node's state
    /// once the change was accepted (a drain has started, not finished).
    pub async fn node(
        &mut self,
        node_id: u64,
        action: NodeAction,
    ) -> Result<apb::NodeStateResponse, ClientError> {
        let request = apb::NodeRequest {
            node_id,
            force: matches!(action, NodeAction::Replace { force: true }),
        };
        let reply = match action {
            NodeAction::Drain => self.stub.drain_node(request).await,
            NodeAction::CancelDrain => self.stub.cancel_drain(request).await,
            NodeAction::Remove => self.stub.remove_node(request).await,
            NodeAction::Replace { .. } => self.stub.replace_node(request).await,
            NodeAction::EvacuateLeaders => self.stub.evacuate_leaders(request).await,
            NodeAction::RestoreLeaders => self.stub.restore_leaders(request).await,
        };
        Ok(reply?.into_inner())
    }

    /// Progress of the placement plan (`RebalanceStatus`); it reports
    /// `stalled` when nothing moved for `stall_after` (whole seconds; the
    /// server's 300 s when `None` or under a second).
    pub async fn rebalance_status(
        &mut self,
        stall_after: Option<Duration>,
    ) -> Result<apb::RebalanceStatusResponse, ClientError> {
        let stall_after_seconds = stall_after
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        Ok(self
            .stub
            .rebalance_status(apb::RebalanceStatusRequest {
                stall_after_seconds,
            })
            .await?
            .into_inner())
    }

    /// Pauses (`true`) or resumes (`false`) replica moves
    /// (`PauseRebalance`); moves in flight finish.
    pub async fn pause_rebalance(
        &mut self,
        paused: bool,
    ) -> Result<apb::PlanResponse, ClientError> {
        Ok(self
            .stub
            .pause_rebalance(apb::PauseRebalanceRequest { paused })
            .await?
            .into_inner())
    }

    /// Drops the moves of the current plan that have not started
    /// (`CancelRebalance`).
    pub async fn cancel_rebalance(&mut self) -> Result<apb::PlanResponse, ClientError> {
        Ok(self
            .stub
            .cancel_rebalance(apb::CancelRebalanceRequest {})
            .await?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_endpoints_are_refused_before_connecting() {
        let err = Admin::connect("https://127.0.0.1:7000", AdminOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidEndpoint(_)), "{err}");
    }

    #[tokio::test]
    async fn a_member_that_is_not_listening_is_a_connect_error() {
        // Port 1 on loopback: nothing listens there.
        let err = Admin::connect("127.0.0.1:1", AdminOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.to_string(), "could not connect to any of 127.0.0.1:1");
    }

    #[test]
    fn actions_are_named_as_cairnctl_spells_them() {
        assert_eq!(NodeAction::Replace { force: true }.name(), "replace");
        assert_eq!(NodeAction::Drain.name(), "drain");
    }
}
