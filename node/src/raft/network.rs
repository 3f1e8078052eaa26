//! Raft transport over gRPC: the client side ([`ShardNetworkFactory`]) and
//! the server side ([`RaftTransportService`]).
//!
//! Every shard group of a node talks to a peer over the same connection
//! ([`Peers`] keeps one lazily connected channel per peer), so 64–1,024 groups
//! cost one HTTP/2 connection per peer, not one per group.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use cairn_proto::raft::v1 as rpb;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetworkV2};
use rpb::raft_transport_client::RaftTransportClient;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::log_store::{decode, encode};
use super::state_machine::ShardStateMachine;
use super::types::ShardRaft;
use crate::partition::ShardId;

/// A shard's Raft instance.
pub type ShardRaftHandle = Raft<ShardRaft, ShardStateMachine>;

/// One channel per peer, shared by all shard groups of this node.
#[derive(Clone, Default, Debug)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<u64, (String, Channel)>>>,
}

impl Peers {
    fn client(&self, id: u64, addr: &str) -> Result<RaftTransportClient<Channel>, String> {
        let mut map = self.channels.lock().map_err(|e| e.to_string())?;
        if let Some((known, ch)) = map.get(&id)
            && known == addr
        {
            return Ok(RaftTransportClient::new(ch.clone()));
        }
        let ch = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        map.insert(id, (addr.to_string(), ch.clone()));
        Ok(RaftTransportClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
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
            client: self.peers.client(target, &node.addr),
        }
    }
}

/// A shard group's client to one peer.
#[derive(Debug)]
pub struct ShardNetwork {
    shard: ShardId,
    client: Result<RaftTransportClient<Channel>, String>,
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
            _ => client.install_snapshot(msg).await,
        }
        .map_err(unreachable)?;
        let remote: Result<Resp, String> =
            decode(&reply.into_inner().payload).map_err(unreachable)?;
        // A refusal by the peer's Raft (e.g. it is shutting down) makes it unusable for now.
        remote.map_err(unreachable)
    }
}

impl RaftNetworkV2<ShardRaft> for ShardNetwork {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<ShardRaft>, RPCError<ShardRaft>> {
        self.call("append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ShardRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<ShardRaft>, RPCError<ShardRaft>> {
        self.call("vote", &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<ShardRaft>,
        snapshot: SnapshotOf<ShardRaft, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<ShardRaft>, StreamingError<ShardRaft>> {
        let payload = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        Ok(self.call("snapshot", &payload, &option).await?)
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

/// The server side of the transport: hands each message to its group.
#[derive(Clone)]
pub struct RaftTransportService {
    groups: ShardGroups,
}

impl RaftTransportService {
    /// Serves the groups in `groups`.
    pub fn new(groups: ShardGroups) -> Self {
        Self { groups }
    }

    /// The tonic service.
    pub fn into_server(self) -> rpb::raft_transport_server::RaftTransportServer<Self> {
        rpb::raft_transport_server::RaftTransportServer::new(self)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    fn group(&self, shard: ShardId) -> Result<ShardRaftHandle, Status> {
        self.groups
            .get(shard)
            .ok_or_else(|| Status::not_found(format!("shard {shard} has no replica on this node")))
    }
}

fn reply<T: Serialize>(
    shard: ShardId,
    r: &Result<T, String>,
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
        let raft = self.group(m.shard)?;
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
        let raft = self.group(m.shard)?;
        let r = raft.vote(request(&m)?).await.map_err(|e| e.to_string());
        reply(m.shard, &r)
    }

    async fn install_snapshot(
        &self,
        req: Request<rpb::RaftMessage>,
    ) -> Result<Response<rpb::RaftMessage>, Status> {
        let m = req.into_inner();
        let raft = self.group(m.shard)?;
        let (vote, meta, bytes): (
            VoteOf<ShardRaft>,
            openraft::alias::SnapshotMetaOf<ShardRaft>,
            Vec<u8>,
        ) = request(&m)?;
        let snapshot = SnapshotOf::<ShardRaft, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(bytes),
        };
        let r = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        reply(m.shard, &r)
    }
}
