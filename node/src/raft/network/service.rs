//! The receiving side of node-to-node gRPC: [`RaftTransportService`] hands
//! each message to the shard group it is for ([`GroupHost`]), openraft's
//! messages and the KV layer's alike.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cairn_proto::raft::v1 as rpb;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use super::{OnlyFor, PeerNode, RemoteError, ShardRaftHandle};
use crate::partition::ShardId;
use crate::raft::log_store::{decode, encode};
use crate::raft::snapshot;
use crate::raft::state_machine::ShardStateMachine;
use crate::raft::types::{ShardRaft, ShardRequest, ShardResponse};
use openraft::raft::AppendEntriesResponse;

/// The shard groups this node hosts, by shard.
#[derive(Clone, Default)]
pub struct ShardGroups {
    groups: Arc<RwLock<HashMap<ShardId, ShardRaftHandle>>>,
}

impl ShardGroups {
    /// Registers the Raft instance of `shard`.
    pub fn insert(&self, shard: ShardId, raft: ShardRaftHandle) {
        if let Ok(mut g) = self.groups.write() {
            g.insert(shard, raft);
        }
    }

    /// The Raft instance of `shard`, if hosted here.
    pub fn get(&self, shard: ShardId) -> Option<ShardRaftHandle> {
        self.groups.read().ok()?.get(&shard).cloned()
    }
}

/// What the transport's server side needs from the node hosting the groups.
#[tonic::async_trait]
pub trait GroupHost: Send + Sync + 'static {
    /// The group a peer's message is for; may start it (a new replica).
    async fn group_for_peer(&self, shard: ShardId) -> Option<ShardRaftHandle>;
    /// Commits a write forwarded by a peer.
    async fn forward(
        &self,
        shard: ShardId,
        req: ShardRequest,
        hops: u32,
    ) -> Result<ShardResponse, RemoteError>;
    /// The read index of `shard` (leader only).
    async fn read_index(&self, shard: ShardId) -> Result<u64, RemoteError>;
    /// The membership of `shard` as this replica knows it.
    async fn membership(&self, shard: ShardId) -> Result<MembershipView, RemoteError>;
    /// Why this node must not answer a vote request of `shard` now, if it
    /// must not: when it removed its replica of the group and has not been
    /// given a newer membership since (a replica with no log would vote for
    /// anyone), or when a lease it granted before a restart may still be
    /// held.
    async fn vote_refusal(&self, shard: ShardId) -> Option<String>;
}

/// A replica's view of its group's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MembershipView {
    /// The answering replica leads the group.
    pub leader: bool,
    /// Log index of the membership config (0: none yet).
    pub log_index: u64,
    /// The config is committed (applied on the answering replica).
    pub committed: bool,
    /// Voters and learners.
    pub members: Vec<u64>,
}

impl MembershipView {
    /// The view of `raft`.
    pub fn of(raft: &ShardRaftHandle) -> Self {
        use openraft::async_runtime::watch::WatchReceiver as _;
        let m = raft.metrics().borrow_watched().clone();
        let stored = &m.membership_config;
        let log_index = stored.log_id().as_ref().map_or(0, |l| l.index());
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index());
        let membership = stored.membership();
        Self {
            leader: m.state == openraft::ServerState::Leader,
            log_index,
            committed: applied >= log_index && membership.get_joint_config().len() == 1,
            members: membership
                .voter_ids()
                .chain(membership.learner_ids())
                .collect(),
        }
    }
}

fn not_hosted(shard: ShardId) -> RemoteError {
    RemoteError {
        retryable: true,
        message: format!("shard {shard} has no replica here"),
    }
}

#[tonic::async_trait]
impl GroupHost for ShardGroups {
    async fn group_for_peer(&self, shard: ShardId) -> Option<ShardRaftHandle> {
        self.get(shard)
    }

    async fn forward(
        &self,
        shard: ShardId,
        req: ShardRequest,
        _hops: u32,
    ) -> Result<ShardResponse, RemoteError> {
        let raft = self.get(shard).ok_or_else(|| not_hosted(shard))?;
        raft.client_write(req)
            .await
            .map(|r| r.data)
            .map_err(RemoteError::unreachable)
    }

    async fn read_index(&self, shard: ShardId) -> Result<u64, RemoteError> {
        let raft = self.get(shard).ok_or_else(|| not_hosted(shard))?;
        raft.get_read_linearizer(openraft::ReadPolicy::ReadIndex)
            .await
            .map(|l| l.read_log_id().index())
            .map_err(RemoteError::unreachable)
    }

    async fn membership(&self, shard: ShardId) -> Result<MembershipView, RemoteError> {
        let raft = self.get(shard).ok_or_else(|| not_hosted(shard))?;
        Ok(MembershipView::of(&raft))
    }

    async fn vote_refusal(&self, _shard: ShardId) -> Option<String> {
        None
    }
}

/// The server side of the transport: hands each message to its group.
#[derive(Clone)]
pub struct RaftTransportService {
    host: Arc<dyn GroupHost>,
}

impl RaftTransportService {
    /// Serves the groups of `host`.
    pub fn new(host: impl GroupHost) -> Self {
        Self {
            host: Arc::new(host),
        }
    }

    /// Serves the groups of a shared `host`.
    pub fn shared(host: Arc<dyn GroupHost>) -> Self {
        Self { host }
    }

    /// The tonic service of node `me`, without TLS: it refuses messages
    /// addressed to any other node id.
    pub fn into_server(
        self,
        me: u64,
    ) -> InterceptedService<rpb::raft_transport_server::RaftTransportServer<Self>, OnlyFor> {
        self.into_server_for(me, None)
    }

    /// The tonic service of node `me`; with `cluster` (TLS on) it serves
    /// only connections presenting a node certificate of that cluster, and
    /// only messages whose claimed sender is that node.
    pub fn into_server_for(
        self,
        me: u64,
        cluster: Option<&str>,
    ) -> InterceptedService<rpb::raft_transport_server::RaftTransportServer<Self>, OnlyFor> {
        InterceptedService::new(
            rpb::raft_transport_server::RaftTransportServer::new(self)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            OnlyFor::new(me, cluster),
        )
    }

    async fn group(&self, shard: ShardId) -> Result<ShardRaftHandle, Status> {
        self.host
            .group_for_peer(shard)
            .await
            .ok_or_else(|| Status::not_found(format!("shard {shard} has no replica on this node")))
    }

    /// Runs one openraft RPC carried by `m`: decodes the request, calls
    /// `rpc` on the shard's group, encodes the answer (an openraft error
    /// travels as its text, for the sender to report).
    async fn call<Req, Resp, E, Fut>(
        &self,
        m: rpb::RaftMessage,
        peer: Option<PeerNode>,
        sender: impl FnOnce(&Req) -> u64 + Send,
        rpc: impl FnOnce(ShardRaftHandle, Req) -> Fut + Send,
    ) -> Result<Response<rpb::RaftMessage>, Status>
    where
        Req: DeserializeOwned + Send,
        Resp: Serialize,
        E: std::fmt::Display,
        Fut: std::future::Future<Output = Result<Resp, E>> + Send,
    {
        let raft = self.group(m.shard).await?;
        let req: Req = request(&m)?;
        check_sender(peer, sender(&req))?;
        let r = rpc(raft, req).await.map_err(|e| e.to_string());
        reply(m.shard, &r)
    }
}

/// The span of a peer's request, a child of the sender's trace.
fn peer_span<T>(method: &'static str, req: &Request<T>) -> tracing::Span {
    let span = tracing::debug_span!(
        "peer",
        otel.name = %format_args!("cairn.raft.v1.RaftTransport/{method}"),
        otel.kind = "server",
    );
    crate::telemetry::continue_remote(&span, req.metadata());
    span
}

/// A message claiming to come from `claimed` must arrive on that node's
/// own connection (when TLS proved who is on the other end): a member must
/// not vote, append or send snapshots in another member's name.
fn check_sender(peer: Option<PeerNode>, claimed: u64) -> Result<(), Status> {
    match peer {
        Some(PeerNode(id)) if id != claimed => Err(Status::permission_denied(format!(
            "a message claiming to come from node {claimed} arrived on a connection of node {id}"
        ))),
        _ => Ok(()),
    }
}

fn reply<T: Serialize, E: Serialize>(
    shard: ShardId,
    r: &Result<T, E>,
) -> Result<Response<rpb::RaftMessage>, Status> {
    let payload = encode(r).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(rpb::RaftMessage { shard, payload }))
}

fn request<T: DeserializeOwned>(m: &rpb::RaftMessage) -> Result<T, Status> {
    decode(&m.payload)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

#[tonic::async_trait]
impl rpb::raft_transport_server::RaftTransport for RaftTransportService {
    async fn append_entries(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let peer = req.extensions().get::<PeerNode>().copied();
        self.call(
            req.into_inner(),
            peer,
            |r: &openraft::raft::AppendEntriesRequest<ShardRaft>| r.vote.leader_id().node_id,
            |raft, rpc| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn vote(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let peer = req.extensions().get::<PeerNode>().copied();
        let m = req.into_inner();
        if let Some(why) = self.host.vote_refusal(m.shard).await {
            return Err(Status::failed_precondition(why));
        }
        self.call(
            m,
            peer,
            |r: &openraft::raft::VoteRequest<ShardRaft>| r.vote.leader_id().node_id,
            |raft, rpc| async move { raft.vote(rpc).await },
        )
        .await
    }

    async fn install_snapshot_stream(
        &self,
        req: Request<Streaming<rpb::SnapshotChunk>>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let peer = req.extensions().get::<PeerNode>().copied();
        let mut chunks = req.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("bad snapshot stream: no chunk"))?;
        let shard = first.shard;
        let raft = self.group(shard).await?;
        let staging = raft
            .with_state_machine(|sm: &mut ShardStateMachine| {
                let dir = sm.staging_dir();
                Box::pin(async move { dir })
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let (vote, snapshot) = snapshot::receive(staging.clone(), first, chunks)
            .await
            .inspect_err(|e| tracing::warn!(shard, error = %e, "refused a snapshot"))?;
        if let Err(e) = check_sender(peer, vote.leader_id().node_id) {
            snapshot::discard(staging).await;
            return Err(e);
        }
        let r = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        // An installed snapshot was moved away; one Raft did not need stays.
        snapshot::discard(staging).await;
        reply(shard, &r)
    }

    async fn append_batch(
        &self,
        req: Request<rpb::RaftBatch>,
    ) -> Result<Response<rpb::RaftBatch>, Status> {
        let peer = req.extensions().get::<PeerNode>().copied();
        let batch = req.into_inner();
        let answers = batch.messages.into_iter().map(|m| async move {
            let decoded = request::<openraft::raft::AppendEntriesRequest<ShardRaft>>(&m)
                .and_then(|rpc| check_sender(peer, rpc.vote.leader_id().node_id).map(|()| rpc));
            let r: Result<AppendEntriesResponse<ShardRaft>, String> =
                match (self.group(m.shard).await, decoded) {
                    (Ok(raft), Ok(rpc)) => {
                        raft.append_entries(rpc).await.map_err(|e| e.to_string())
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e.message().to_string()),
                };
            let payload = encode(&r).unwrap_or_default();
            rpb::RaftMessage {
                shard: m.shard,
                payload,
            }
        });
        let messages = futures::future::join_all(answers).await;
        Ok(Response::new(rpb::RaftBatch { messages }))
    }

    async fn transfer_leader(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let peer = req.extensions().get::<PeerNode>().copied();
        self.call(
            req.into_inner(),
            peer,
            |r: &openraft::raft::TransferLeaderRequest<ShardRaft>| {
                r.from_leader().leader_id().node_id
            },
            |raft, rpc| async move { raft.handle_transfer_leader(rpc).await },
        )
        .await
    }

    async fn forward(
        &self,
        req: Request<rpb::ForwardRequest>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let span = peer_span("Forward", &req);
        let m = req.into_inner();
        let r = self
            .host
            .forward(m.shard, ShardRequest { command: m.command }, m.hops)
            .instrument(span)
            .await;
        reply(m.shard, &r)
    }

    async fn read_index(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let span = peer_span("ReadIndex", &req);
        let m = req.into_inner();
        let r = self.host.read_index(m.shard).instrument(span).await;
        reply(m.shard, &r)
    }

    async fn membership(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let m = req.into_inner();
        let r = self.host.membership(m.shard).await;
        reply(m.shard, &r)
    }
}
