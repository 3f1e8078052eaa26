//! The requests the KV layer sends a shard's leader over the peer
//! connection: a forwarded write, a ReadIndex, the shard's membership. Each
//! answer carries a [`RemoteError`] that says whether asking again may help.

use cairn_proto::raft::v1 as rpb;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Request;

use super::{MembershipView, PeerClient, Peers};
use crate::partition::ShardId;
use crate::raft::log_store::decode;
use crate::raft::types::{ShardRequest, ShardResponse};

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
    pub(super) fn unreachable(e: impl std::fmt::Display) -> Self {
        Self {
            retryable: true,
            message: e.to_string(),
        }
    }
}

impl Peers {
    /// Passes a write for `shard` to peer `id` (see `cairn.raft.v1.Forward`).
    ///
    /// # Errors
    /// The peer is unreachable or refused; `retryable` says whether to retry.
    #[tracing::instrument(level = "debug", name = "raft.forward", skip(self, addr, req))]
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
        crate::telemetry::inject_current(msg.metadata_mut());
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
        self.ask(id, addr, shard, async |mut c, m| c.read_index(m).await)
            .await
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
        self.ask(id, addr, shard, async |mut c, m| c.membership(m).await)
            .await
    }

    /// One question about `shard` to peer `id` (an empty envelope, 5 s to
    /// answer), whose reply carries a `Result<T, RemoteError>`.
    async fn ask<T: DeserializeOwned>(
        &self,
        id: u64,
        addr: &str,
        shard: ShardId,
        call: impl AsyncFnOnce(
            PeerClient,
            Request<rpb::RaftMessage>,
        ) -> Result<tonic::Response<rpb::RaftMessage>, tonic::Status>,
    ) -> Result<T, RemoteError> {
        let client = self.client(id, addr).map_err(RemoteError::unreachable)?;
        let mut msg = Request::new(rpb::RaftMessage {
            shard,
            payload: Vec::new(),
        });
        msg.set_timeout(std::time::Duration::from_secs(5));
        crate::telemetry::inject_current(msg.metadata_mut());
        let reply = call(client, msg)
            .await
            .map_err(RemoteError::unreachable)?
            .into_inner();
        decode::<Result<T, RemoteError>>(&reply.payload).map_err(RemoteError::unreachable)?
    }
}
