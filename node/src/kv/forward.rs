//! Reads of shards this node holds no replica of, sent on to a node that
//! holds one (the shard's leader when known), so a client that knows
//! nothing about placement can read any key through any node.
//!
//! Writes are forwarded inside the Raft layer (`Cluster::propose`); reads go
//! through the peer's ordinary KV service on the same connection. A
//! forwarded read is marked, and a node never forwards a marked read again:
//! one hop at most, so stale routing cannot bounce a request around.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_proto::kv::v1 as pb;
use cairn_proto::kv::v1::kv_client::KvClient;
use tonic::transport::Channel;

use super::KvError;
use crate::cluster::{Cluster, LeaderHint};
use crate::partition::ShardId;

/// gRPC metadata marking a read another node forwarded.
pub const FORWARDED_METADATA: &str = "cairn-forwarded";

/// How long a forwarded read may take before the forwarding node gives up.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest message a forwarded read sends or accepts: the KV API's own limit.
const MAX_FORWARD_MESSAGE: usize = cairn_proto::MAX_MESSAGE_BYTES;

/// Shards of one request that live on one other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteShards {
    /// Where to send them.
    pub to: LeaderHint,
    /// Which shards, ascending.
    pub shards: Vec<ShardId>,
}

/// Splits `shards` into those this node holds and groups for other nodes.
///
/// # Errors
/// `UNAVAILABLE` when a shard is not held here and the read was already
/// forwarded once, or when no node holding it is known.
pub fn split(
    cluster: &Cluster,
    shards: &[ShardId],
    forwarded: bool,
) -> Result<(Vec<ShardId>, Vec<RemoteShards>), KvError> {
    let mut local = Vec::new();
    let mut remote: BTreeMap<u64, RemoteShards> = BTreeMap::new();
    for &s in shards {
        if cluster.member_group(s).is_some() {
            local.push(s);
            continue;
        }
        if forwarded {
            return Err(KvError::Unavailable(format!(
                "shard {s} has no replica on node {} either (the read was forwarded here); retry once placement settles",
                cluster.node_id()
            )));
        }
        let to = cluster.route(s).ok_or_else(|| {
            KvError::Unavailable(format!(
                "shard {s} has no replica on node {} and no node holding it is known yet; retry",
                cluster.node_id()
            ))
        })?;
        remote
            .entry(to.id)
            .or_insert_with(|| RemoteShards {
                to,
                shards: Vec::new(),
            })
            .shards
            .push(s);
    }
    Ok((local, remote.into_values().collect()))
}

/// A KV stub to `to` on the node's shared peer connection.
fn client(cluster: &Cluster, to: &LeaderHint) -> Result<KvClient<Channel>, KvError> {
    let channel = cluster.peers().channel(to.id, &to.addr).map_err(|e| {
        KvError::Unavailable(format!("cannot reach node {} at {}: {e}", to.id, to.addr))
    })?;
    Ok(KvClient::new(channel)
        .max_decoding_message_size(MAX_FORWARD_MESSAGE)
        .max_encoding_message_size(MAX_FORWARD_MESSAGE))
}

/// `message` marked as forwarded, with the forwarding timeout, the
/// caller's trace context and the caller's identity (their bearer token, and
/// their user name, which the receiving node trusts only from a node
/// certificate): the receiving node checks the request again.
fn marked<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    crate::auth::gate::stamp_caller(request.metadata_mut());
    request.set_timeout(FORWARD_TIMEOUT);
    crate::telemetry::inject_current(request.metadata_mut());
    request
}

/// Reads one key on `to`.
///
/// # Errors
/// The remote node's error, passed on unchanged.
pub async fn get(
    cluster: &Cluster,
    to: &LeaderHint,
    req: &pb::GetRequest,
) -> Result<pb::GetResponse, KvError> {
    let reply = client(cluster, to)?.get(marked(req.clone())).await;
    reply
        .map(tonic::Response::into_inner)
        .map_err(KvError::Remote)
}

/// Reads `req.keys` on `to`.
///
/// # Errors
/// The remote node's error, passed on unchanged.
pub async fn batch_get(
    cluster: &Cluster,
    to: &LeaderHint,
    req: pb::BatchGetRequest,
) -> Result<pb::BatchGetResponse, KvError> {
    let reply = client(cluster, to)?.batch_get(marked(req)).await;
    reply
        .map(tonic::Response::into_inner)
        .map_err(KvError::Remote)
}

/// Reads one scan page of `req.shards` on `to`.
///
/// # Errors
/// The remote node's error, passed on unchanged.
pub async fn scan(
    cluster: &Cluster,
    to: &LeaderHint,
    req: pb::ScanRequest,
) -> Result<pb::ScanResponse, KvError> {
    let reply = client(cluster, to)?.scan(marked(req)).await;
    reply
        .map(tonic::Response::into_inner)
        .map_err(KvError::Remote)
}
