//! Raft transport over gRPC: the client side ([`ShardNetworkFactory`]) and
//! the server side ([`RaftTransportService`]).
//!
//! Every shard group of a node talks to a peer over the same connection
//! ([`Peers`] keeps one lazily connected channel per peer), so 64–1,024 groups
//! cost one HTTP/2 connection per peer, not one per group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cairn_proto::raft::v1 as rpb;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetworkV2};
use rpb::raft_transport_client::RaftTransportClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::log_store::{decode, encode};
use super::snapshot::{self, SnapshotFiles};
use super::state_machine::ShardStateMachine;
use super::types::{ShardRaft, ShardRequest, ShardResponse};
use crate::partition::ShardId;

/// A shard's Raft instance.
pub type ShardRaftHandle = Raft<ShardRaft, ShardStateMachine>;

/// One channel per peer, shared by all shard groups of this node.
#[derive(Clone, Default, Debug)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<u64, (String, Channel)>>>,
    batchers: Arc<Mutex<HashMap<u64, Batcher>>>,
    batching: bool,
    snapshot_throttle: Arc<super::throttle::Throttle>,
}

/// Most messages in one batch.
const MAX_BATCH: usize = 1024;

type Pending = (
    rpb::RaftMessage,
    oneshot::Sender<Result<rpb::RaftMessage, String>>,
);
/// A peer's address and the queue of its batcher task.
type Batcher = (String, mpsc::Sender<Pending>);

/// Why a peer could not do what was asked (travels inside a reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// Whether asking again (there or elsewhere) may succeed.
    pub retryable: bool,
    /// What went wrong.
    pub message: String,
}

impl RemoteError {
    fn unreachable(e: impl std::fmt::Display) -> Self {
        Self {
            retryable: true,
            message: e.to_string(),
        }
    }
}

impl Peers {
    /// Peers whose entry-less AppendEntries to the same peer travel together
    /// in one `AppendBatch` call, and whose snapshot streams together send at
    /// most `snapshot_bytes_per_sec` (0: unlimited).
    pub fn batched(snapshot_bytes_per_sec: u64) -> Self {
        Self {
            batching: true,
            snapshot_throttle: Arc::new(super::throttle::Throttle::new(snapshot_bytes_per_sec)),
            ..Self::default()
        }
    }

    /// Snapshot bytes this node has sent to other nodes since it started.
    pub fn snapshot_bytes_sent(&self) -> u64 {
        self.snapshot_throttle.sent()
    }

    /// Sends `msg` in the next batch to peer `id`.
    async fn send_batched(
        &self,
        id: u64,
        addr: &str,
        msg: rpb::RaftMessage,
    ) -> Result<rpb::RaftMessage, String> {
        let tx = {
            let mut map = self.batchers.lock().map_err(|e| e.to_string())?;
            match map.get(&id) {
                Some((known, tx)) if known == addr && !tx.is_closed() => tx.clone(),
                _ => {
                    let client = self.client(id, addr)?;
                    let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
                    tokio::spawn(run_batcher(client, rx));
                    map.insert(id, (addr.to_string(), tx.clone()));
                    tx
                }
            }
        };
        let (reply, rx) = oneshot::channel();
        tx.send((msg, reply))
            .await
            .map_err(|_| "batcher stopped".to_string())?;
        rx.await.map_err(|_| "batch dropped".to_string())?
    }

    /// Passes a write for `shard` to peer `id` (see `cairn.raft.v1.Forward`).
    ///
    /// # Errors
    /// The peer is unreachable or refused; `retryable` says whether to retry.
    pub async fn forward(
        &self,
        id: u64,
        addr: &str,
        shard: ShardId,
        req: &ShardRequest,
        hops: u32,
    ) -> Result<ShardResponse, RemoteError> {
        let mut client = self.client(id, addr).map_err(RemoteError::unreachable)?;
        let mut msg = Request::new(rpb::ForwardRequest {
            shard,
            command: req.command.clone(),
            hops,
        });
        msg.set_timeout(std::time::Duration::from_secs(15));
        let reply = client
            .forward(msg)
            .await
            .map_err(RemoteError::unreachable)?
            .into_inner();
        decode::<Result<ShardResponse, RemoteError>>(&reply.payload)
            .map_err(RemoteError::unreachable)?
    }

    /// Asks peer `id` (the leader of `shard`) for a read index.
    ///
    /// # Errors
    /// The peer is unreachable, not the leader, or could not confirm leadership.
    pub async fn read_index(
        &self,
        id: u64,
        addr: &str,
        shard: ShardId,
    ) -> Result<u64, RemoteError> {
        let mut client = self.client(id, addr).map_err(RemoteError::unreachable)?;
        let mut msg = Request::new(rpb::RaftMessage {
            shard,
            payload: Vec::new(),
        });
        msg.set_timeout(std::time::Duration::from_secs(5));
        let reply = client
            .read_index(msg)
            .await
            .map_err(RemoteError::unreachable)?
            .into_inner();
        decode::<Result<u64, RemoteError>>(&reply.payload).map_err(RemoteError::unreachable)?
    }

    /// The membership of `shard` as peer `id` knows it.
    ///
    /// # Errors
    /// The peer cannot be reached or holds no replica.
    pub async fn membership(
        &self,
        id: u64,
        addr: &str,
        shard: ShardId,
    ) -> Result<MembershipView, RemoteError> {
        let mut client = self.client(id, addr).map_err(RemoteError::unreachable)?;
        let mut msg = Request::new(rpb::RaftMessage {
            shard,
            payload: Vec::new(),
        });
        msg.set_timeout(std::time::Duration::from_secs(5));
        let reply = client
            .membership(msg)
            .await
            .map_err(RemoteError::unreachable)?
            .into_inner();
        decode::<Result<MembershipView, RemoteError>>(&reply.payload)
            .map_err(RemoteError::unreachable)?
    }

    /// A channel to peer `id` at `addr`, for other services on the same connection.
    ///
    /// # Errors
    /// An address that is not a valid URI.
    pub fn channel(&self, id: u64, addr: &str) -> Result<Channel, String> {
        self.client(id, addr)?;
        let map = self.channels.lock().map_err(|e| e.to_string())?;
        map.get(&id)
            .map(|(_, ch)| ch.clone())
            .ok_or_else(|| format!("no channel to node {id}"))
    }

    fn client(&self, id: u64, addr: &str) -> Result<PeerClient, String> {
        let mut map = self.channels.lock().map_err(|e| e.to_string())?;
        let ch = match map.get(&id) {
            Some((known, ch)) if known == addr => ch.clone(),
            _ => {
                let ch = Channel::from_shared(format!("http://{addr}"))
                    .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .connect_lazy();
                map.insert(id, (addr.to_string(), ch.clone()));
                ch
            }
        };
        Ok(RaftTransportClient::with_interceptor(ch, AddressedTo(id))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }
}

/// Request metadata naming the node id a peer message is for. Addresses
/// outlive identities: a StatefulSet re-creates a replaced node's pod under
/// the same name, so the new node (with a new id) is reached at the old
/// node's address. It must never answer for the old id — a vote or an
/// append acknowledged on behalf of a replica that no longer exists would
/// count twice — so every node refuses messages addressed to another id.
pub const ADDRESSED_TO: &str = "cairn-to-node";

/// The client end of [`ADDRESSED_TO`]: stamps every request with the id of
/// the node it is meant for.
#[derive(Debug, Clone, Copy)]
pub struct AddressedTo(pub u64);

impl Interceptor for AddressedTo {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(ADDRESSED_TO, MetadataValue::from(self.0));
        Ok(request)
    }
}

/// The server end of [`ADDRESSED_TO`]: lets through requests for this node
/// (or naming none) and refuses the rest with `FAILED_PRECONDITION`.
#[derive(Debug, Clone, Copy)]
pub struct OnlyFor(pub u64);

impl Interceptor for OnlyFor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get(ADDRESSED_TO) else {
            return Ok(request);
        };
        match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(id) if id == self.0 => Ok(request),
            Some(id) => Err(Status::failed_precondition(format!(
                "message for node {id} reached node {}: that address now belongs to another node",
                self.0
            ))),
            None => Err(Status::invalid_argument(format!(
                "{ADDRESSED_TO} metadata is not a node id"
            ))),
        }
    }
}

/// A connection to one peer whose requests name that peer's id.
type PeerClient = RaftTransportClient<InterceptedService<Channel, AddressedTo>>;

/// Collects messages for one peer and sends them in `AppendBatch` calls,
/// one call in flight at a time: a message arriving while the peer is idle
/// goes at once, and everything that queues meanwhile goes in the next call
/// (batches grow with load and add no waiting when idle).
async fn run_batcher(mut client: PeerClient, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let mut req = Request::new(rpb::RaftBatch { messages });
        req.set_timeout(std::time::Duration::from_secs(5));
        match client.append_batch(req).await {
            Ok(r) => {
                let mut answers = r.into_inner().messages.into_iter();
                for reply in replies {
                    let _ = reply.send(
                        answers
                            .next()
                            .ok_or_else(|| "peer answered fewer messages than sent".into()),
                    );
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Creates the network clients of one shard group.
#[derive(Clone, Debug)]
pub struct ShardNetworkFactory {
    shard: ShardId,
    peers: Peers,
}

impl ShardNetworkFactory {
    /// Clients for `shard`, sharing `peers`' connections.
    pub fn new(shard: ShardId, peers: Peers) -> Self {
        Self { shard, peers }
    }
}

impl RaftNetworkFactory<ShardRaft> for ShardNetworkFactory {
    type Network = ShardNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        ShardNetwork {
            shard: self.shard,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            client: self.peers.client(target, &node.addr),
        }
    }
}

/// A shard group's client to one peer.
#[derive(Debug)]
pub struct ShardNetwork {
    shard: ShardId,
    target: u64,
    addr: String,
    peers: Peers,
    client: Result<PeerClient, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

fn unreachable<E: std::fmt::Display>(e: E) -> RPCError<ShardRaft> {
    RPCError::Unreachable(Unreachable::new(&TransportError(e.to_string())))
}

impl ShardNetwork {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<ShardRaft>> {
        let client = self.client.as_mut().map_err(|e| unreachable(e.clone()))?;
        let mut msg = Request::new(rpb::RaftMessage {
            shard: self.shard,
            payload: encode(req).map_err(unreachable)?,
        });
        msg.set_timeout(option.hard_ttl());
        let reply = match kind {
            "append" => client.append_entries(msg).await,
            "vote" => client.vote(msg).await,
            _ => client.transfer_leader(msg).await,
        }
        .map_err(unreachable)?;
        let remote: Result<Resp, String> =
            decode(&reply.into_inner().payload).map_err(unreachable)?;
        // A refusal by the peer's Raft (e.g. it is shutting down) makes it unusable for now.
        remote.map_err(unreachable)
    }
}

impl RaftNetworkV2<ShardRaft> for ShardNetwork {
    type SnapshotData = SnapshotFiles;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<ShardRaft>, RPCError<ShardRaft>> {
        if self.peers.batching && rpc.entries.is_empty() {
            let msg = rpb::RaftMessage {
                shard: self.shard,
                payload: encode(&rpc).map_err(unreachable)?,
            };
            let reply = tokio::time::timeout(
                option.hard_ttl(),
                self.peers.send_batched(self.target, &self.addr, msg),
            )
            .await
            .map_err(unreachable)?
            .map_err(unreachable)?;
            let remote: Result<AppendEntriesResponse<ShardRaft>, String> =
                decode(&reply.payload).map_err(unreachable)?;
            return remote.map_err(unreachable);
        }
        self.call("append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<ShardRaft>, RPCError<ShardRaft>> {
        self.call("vote", &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<ShardRaft>, RPCError<ShardRaft>> {
        self.call("transfer", &req, &option).await
    }

    /// Streams the snapshot's files in `InstallSnapshotStream` (a header,
    /// ~1 MiB pieces, a done chunk). Gives up when `cancel` fires or when no
    /// chunk could be sent, or no reply came after the last one, for the
    /// option's hard TTL (a stalled peer), so a large snapshot has no
    /// deadline of its own.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<ShardRaft>,
        snapshot: SnapshotOf<ShardRaft, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<ShardRaft>, StreamingError<ShardRaft>> {
        let mut client = self.client.clone().map_err(unreachable)?;
        let shard = self.shard;
        let files = snapshot.snapshot;
        let header =
            snapshot::header_chunk(shard, &vote, &snapshot.meta, &files).map_err(unreachable)?;
        // Open every file now: a newer snapshot may replace this one meanwhile.
        let opened = {
            let files = files.clone();
            tokio::task::spawn_blocking(move || files.open())
                .await
                .map_err(unreachable)?
                .map_err(|e| unreachable(format!("opening the snapshot files: {e}")))?
        };
        let (tx, mut rx) = mpsc::channel(4);
        tx.try_send(header).map_err(unreachable)?;
        let start = Instant::now();
        let progress = Arc::new(AtomicU64::new(0));
        {
            let progress = progress.clone();
            let target = self.target;
            let throttle = self.peers.snapshot_throttle.clone();
            tokio::task::spawn_blocking(move || {
                // A read failure ends the stream early; the peer refuses it.
                if let Err(e) =
                    snapshot::send_pieces(shard, opened, &tx, start, &progress, &throttle)
                {
                    tracing::warn!(shard, target, error = %e, "reading a snapshot to send failed");
                }
            });
        }
        let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let call = client.install_snapshot_stream(Request::new(chunks));
        let stall = option.hard_ttl();
        let watchdog = async {
            loop {
                tokio::time::sleep(stall.min(Duration::from_secs(1))).await;
                let last = Duration::from_millis(progress.load(Ordering::Relaxed));
                if start.elapsed().saturating_sub(last) > stall {
                    return;
                }
            }
        };
        let reply = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
            () = watchdog => {
                return Err(unreachable(format!(
                    "snapshot stream to node {} made no progress for {stall:?}",
                    self.target
                ))
                .into())
            }
        };
        let reply = reply.map_err(unreachable)?;
        tracing::info!(
            shard,
            target = self.target,
            bytes = files.total_bytes(),
            millis = start.elapsed().as_millis() as u64,
            "sent a snapshot"
        );
        let remote: Result<SnapshotResponse<ShardRaft>, String> =
            decode(&reply.into_inner().payload).map_err(unreachable)?;
        Ok(remote.map_err(unreachable)?)
    }
}

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
    /// Whether this node may answer a vote request of `shard`: not when it
    /// removed its replica of the group and has not been given a newer
    /// membership since (a replica with no log would vote for anyone).
    async fn may_vote(&self, shard: ShardId) -> bool;
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

    async fn may_vote(&self, _shard: ShardId) -> bool {
        true
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

    /// The tonic service of node `me`: it refuses messages addressed to
    /// any other node id.
    pub fn into_server(
        self,
        me: u64,
    ) -> InterceptedService<rpb::raft_transport_server::RaftTransportServer<Self>, OnlyFor> {
        InterceptedService::new(
            rpb::raft_transport_server::RaftTransportServer::new(self)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            OnlyFor(me),
        )
    }

    async fn group(&self, shard: ShardId) -> Result<ShardRaftHandle, Status> {
        self.host
            .group_for_peer(shard)
            .await
            .ok_or_else(|| Status::not_found(format!("shard {shard} has no replica on this node")))
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
        let m = req.into_inner();
        let raft = self.group(m.shard).await?;
        let r = raft
            .append_entries(request(&m)?)
            .await
            .map_err(|e| e.to_string());
        reply(m.shard, &r)
    }

    async fn vote(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let m = req.into_inner();
        if !self.host.may_vote(m.shard).await {
            return Err(Status::failed_precondition(format!(
                "this node's replica of shard {} was removed from the group; it does not vote",
                m.shard
            )));
        }
        let raft = self.group(m.shard).await?;
        let r = raft.vote(request(&m)?).await.map_err(|e| e.to_string());
        reply(m.shard, &r)
    }

    async fn install_snapshot_stream(
        &self,
        req: Request<Streaming<rpb::SnapshotChunk>>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
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
        let batch = req.into_inner();
        let answers = batch.messages.into_iter().map(|m| async move {
            let r: Result<AppendEntriesResponse<ShardRaft>, String> =
                match (self.group(m.shard).await, request(&m)) {
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
        let m = req.into_inner();
        let raft = self.group(m.shard).await?;
        let r = raft
            .handle_transfer_leader(request(&m)?)
            .await
            .map_err(|e| e.to_string());
        reply(m.shard, &r)
    }

    async fn forward(
        &self,
        req: Request<rpb::ForwardRequest>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let m = req.into_inner();
        let r = self
            .host
            .forward(m.shard, ShardRequest { command: m.command }, m.hops)
            .await;
        reply(m.shard, &r)
    }

    async fn read_index(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let m = req.into_inner();
        let r = self.host.read_index(m.shard).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(to: u64) -> Request<()> {
        AddressedTo(to).call(Request::new(())).expect("stamps")
    }

    #[test]
    fn a_node_answers_only_messages_addressed_to_it() {
        assert!(OnlyFor(6).call(stamped(6)).is_ok());
        let refused = OnlyFor(6)
            .call(stamped(5))
            .expect_err("addressed to node 5");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("node 5") && refused.message().contains("node 6"));
        // Peers that name no target (older nodes) are still served.
        assert!(OnlyFor(6).call(Request::new(())).is_ok());
    }
}
