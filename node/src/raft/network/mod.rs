//! Node-to-node gRPC (`cairn.raft.v1.RaftTransport`): openraft's transport
//! ([`ShardNetworkFactory`], this file), the requests the KV layer sends a
//! shard's leader — forwarded writes, ReadIndex, membership — (`shard_rpc.rs`),
//! and the receiving side of both (`service.rs`: [`RaftTransportService`]).
//!
//! Every shard group of a node talks to a peer over the same connection
//! ([`Peers`] keeps one lazily connected channel per peer), so 64–1,024 groups
//! cost one HTTP/2 connection per peer, not one per group.

mod service;
mod shard_rpc;

pub use service::{GroupHost, MembershipView, RaftTransportService, ShardGroups};
pub use shard_rpc::RemoteError;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
use tonic::{Request, Status};

use super::log_store::{decode, encode};
use super::snapshot::{self, SnapshotFiles};
use super::state_machine::ShardStateMachine;
use super::types::ShardRaft;
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
    tls: Option<Arc<cairn_tls::TlsContext>>,
}

/// Most messages in one batch.
const MAX_BATCH: usize = 1024;

/// Most payload bytes in one batch (a larger single message goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// `AppendBatch` calls in flight to one peer at once.
const FRAMES_IN_FLIGHT: usize = 4;

type Pending = (
    rpb::RaftMessage,
    oneshot::Sender<Result<rpb::RaftMessage, String>>,
);
/// A peer's address and the queue of its batcher task.
type Batcher = (String, mpsc::Sender<Pending>);

impl Peers {
    /// Peers whose AppendEntries (heartbeats and entries) to the same peer
    /// travel together in `AppendBatch` calls, and whose snapshot streams together send at
    /// most `snapshot_bytes_per_sec` (0: unlimited).
    pub fn batched(snapshot_bytes_per_sec: u64) -> Self {
        Self {
            batching: true,
            snapshot_throttle: Arc::new(super::throttle::Throttle::new(snapshot_bytes_per_sec)),
            ..Self::default()
        }
    }

    /// Dial peers over TLS with `tls` (this node's certificate is its
    /// identity to them); plaintext when `None`.
    pub fn with_tls(mut self, tls: Option<Arc<cairn_tls::TlsContext>>) -> Self {
        self.tls = tls;
        self
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

    pub(super) fn client(&self, id: u64, addr: &str) -> Result<PeerClient, String> {
        let mut map = self.channels.lock().map_err(|e| e.to_string())?;
        let ch = match map.get(&id) {
            Some((known, ch)) if known == addr => ch.clone(),
            _ => {
                let endpoint = Channel::from_shared(format!("http://{addr}"))
                    .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .tcp_nodelay(true);
                let ch = match &self.tls {
                    None => endpoint.connect_lazy(),
                    Some(tls) => endpoint.connect_with_connector_lazy(tls.connector()),
                };
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
/// (or naming none) and refuses the rest with `FAILED_PRECONDITION`. With
/// TLS on (`cluster` set) it also lets through only connections whose
/// certificate names a node of `cluster` (`UNAUTHENTICATED` without a
/// certificate, `PERMISSION_DENIED` for any other), and records that node
/// as [`PeerNode`] for the handlers to match against the sender a message
/// claims.
#[derive(Debug, Clone)]
pub struct OnlyFor {
    node: u64,
    cluster: Option<Arc<str>>,
}

impl OnlyFor {
    /// The gate of node `node`; `cluster` is the name node certificates
    /// must carry, `None` without TLS.
    pub fn new(node: u64, cluster: Option<&str>) -> Self {
        Self {
            node,
            cluster: cluster.map(Arc::from),
        }
    }
}

/// The node a peer connection's certificate proved it is (TLS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNode(pub u64);

impl Interceptor for OnlyFor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(cluster) = &self.cluster {
            let presented = request
                .extensions()
                .get::<cairn_tls::ConnInfo>()
                .and_then(|i| i.identity.clone());
            let Some(presented) = presented else {
                return Err(Status::unauthenticated(
                    "the peer API needs a node certificate (mutual TLS); none was presented",
                ));
            };
            match presented.node() {
                Some(n) if *n.cluster == **cluster => {
                    request.extensions_mut().insert(PeerNode(n.node_id));
                }
                _ => {
                    return Err(Status::permission_denied(format!(
                        "the peer API accepts only node certificates of cluster {cluster:?} (SAN URI cairn://{cluster}/node/ID); this connection presented {}",
                        presented.describe()
                    )));
                }
            }
        }
        let Some(value) = request.metadata().get(ADDRESSED_TO) else {
            return Ok(request);
        };
        match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(id) if id == self.node => Ok(request),
            Some(id) => Err(Status::failed_precondition(format!(
                "message for node {id} reached node {}: that address now belongs to another node",
                self.node
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
/// up to [`FRAMES_IN_FLIGHT`] at a time: a message arriving while a call
/// slot is free goes at once, and everything that queues meanwhile goes in
/// the next call, so batches grow with load and add no waiting when idle. A
/// call is cut at [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`] (the message
/// that would cross it starts the next one). A group never has two appends
/// to one peer in flight (openraft waits for each reply), so frames racing
/// each other reorder nothing within a group.
async fn run_batcher(client: PeerClient, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(FRAMES_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.0.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) if bytes + p.0.payload.len() > MAX_BATCH_BYTES => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.0.payload.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let mut client = client.clone();
        tokio::spawn(async move {
            send_frame(&mut client, batch).await;
            drop(slot);
        });
    }
}

/// One `AppendBatch` call: every message's reply goes to its sender.
async fn send_frame(client: &mut PeerClient, batch: Vec<Pending>) {
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
        if self.peers.batching {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(to: u64) -> Request<()> {
        AddressedTo(to).call(Request::new(())).expect("stamps")
    }

    #[test]
    fn a_node_answers_only_messages_addressed_to_it() {
        assert!(OnlyFor::new(6, None).call(stamped(6)).is_ok());
        let refused = OnlyFor::new(6, None)
            .call(stamped(5))
            .expect_err("addressed to node 5");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("node 5") && refused.message().contains("node 6"));
        // Peers that name no target (older nodes) are still served.
        assert!(OnlyFor::new(6, None).call(Request::new(())).is_ok());
    }
}
