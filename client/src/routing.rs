//! Shard routing: which node leads each shard, and a connection to each.
//!
//! The client learns the shard map from `Admin.ShardMap` on any node and
//! keeps it fresh cheaply: every response names the shard's leader as the
//! serving node knows it (`header.leader_id`), so a moved leader is learned
//! on the next request. A failed call forgets the leader it went to and asks
//! for a new map in the background; meanwhile requests go to the configured
//! endpoint, which forwards them, so routing can only save a hop, never
//! lose a request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use cairn_keyspace::{ShardCount, ShardId};
use cairn_proto::admin::v1 as apb;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::pb;

/// A node that refused connections is skipped for this long.
const NODE_DOWN_FOR: Duration = Duration::from_secs(2);
/// Shard maps are fetched at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The shard map as last learned.
struct ShardMap {
    shards: ShardCount,
    /// Leader per shard; 0 when unknown.
    leaders: Vec<u64>,
    nodes: HashMap<u64, Node>,
}

/// A cluster member the client may send requests to directly.
struct Node {
    addr: String,
    channel: Channel,
    /// Set after a connection failure; the node is skipped until then.
    down_until: Option<Instant>,
}

/// Routing state shared by all clones of a client.
pub(crate) struct Router {
    connect_timeout: Duration,
    dialer: crate::dial::Dialer,
    map: RwLock<Option<ShardMap>>,
    /// When the last refresh started (`None`: never), and whether the
    /// cluster answered at all (`false` once a node says it has no Admin
    /// service: a standalone node, nothing to route).
    refresh: Mutex<RefreshState>,
}

struct RefreshState {
    last: Option<Instant>,
    in_flight: bool,
    standalone: bool,
}

/// Where a request for one shard should go.
pub(crate) struct Route {
    pub node_id: u64,
    pub channel: Channel,
}

impl Router {
    pub(crate) fn new(connect_timeout: Duration, dialer: crate::dial::Dialer) -> Self {
        Router {
            connect_timeout,
            dialer,
            map: RwLock::new(None),
            refresh: Mutex::new(RefreshState {
                last: None,
                in_flight: false,
                standalone: false,
            }),
        }
    }

    /// The shard of `key`, once a shard map is known.
    pub(crate) fn shard_of(&self, key: &[u8]) -> Option<ShardId> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.as_ref().map(|m| m.shards.shard_for_key(key))
    }

    /// The shard count, once a shard map is known.
    pub(crate) fn shard_count(&self) -> Option<u32> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.as_ref().map(|m| m.shards.get())
    }

    /// The leader of `shard`, when known and not marked down.
    pub(crate) fn route(&self, shard: ShardId) -> Option<Route> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let map = map.as_ref()?;
        let id = *map.leaders.get(shard as usize)?;
        let node = map.nodes.get(&id)?;
        if node.down_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        Some(Route {
            node_id: id,
            channel: node.channel.clone(),
        })
    }

    /// Records what a response said about `shard`'s leader. Returns whether
    /// the map is out of date: the serving node knew no leader (it holds no
    /// replica of the shard any more), or named one the map does not know.
    pub(crate) fn learn(&self, shard: ShardId, header: Option<&pb::ResponseHeader>) -> bool {
        let Some(header) = header else {
            return false;
        };
        // The common case, on every response: the map already says so.
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if header.leader_id != 0
                && map
                    .as_ref()
                    .and_then(|m| m.leaders.get(shard as usize))
                    .is_some_and(|&l| l == header.leader_id)
            {
                return false;
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let Some(map) = map.as_mut() else {
            return true;
        };
        let known = map.nodes.contains_key(&header.leader_id);
        let Some(slot) = map.leaders.get_mut(shard as usize) else {
            return true;
        };
        if header.leader_id == 0 {
            if *slot == header.node_id {
                *slot = 0;
            }
            return true;
        }
        if known {
            *slot = header.leader_id;
        }
        !known
    }

    /// Forgets `node` as `shard`'s leader after a failed call; when the
    /// connection itself failed, skips the node for a while.
    pub(crate) fn forget(&self, shard: ShardId, node: u64, unreachable: bool) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let Some(map) = map.as_mut() else {
            return;
        };
        if let Some(slot) = map.leaders.get_mut(shard as usize)
            && *slot == node
        {
            *slot = 0;
        }
        if unreachable && let Some(n) = map.nodes.get_mut(&node) {
            n.down_until = Some(Instant::now() + NODE_DOWN_FOR);
        }
    }

    /// Whether a refresh should be scheduled, and after what delay: at most
    /// one is pending at a time, and they start at least
    /// [`MIN_REFRESH_INTERVAL`] apart (a request that comes too soon is
    /// deferred, not dropped, so a needed refresh always happens).
    pub(crate) fn schedule_refresh(&self) -> Option<Duration> {
        let mut r = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        if r.standalone || r.in_flight {
            return None;
        }
        let now = Instant::now();
        let start = r
            .last
            .map_or(now, |last| (last + MIN_REFRESH_INTERVAL).max(now));
        r.in_flight = true;
        r.last = Some(start);
        Some(start - now)
    }

    /// Fetches the shard map through `channel` and installs it. Marks the
    /// router standalone when the node serves no Admin API.
    pub(crate) async fn refresh(
        &self,
        channel: Channel,
        authorization: Option<tonic::metadata::AsciiMetadataValue>,
    ) {
        let mut admin = apb::admin_client::AdminClient::with_interceptor(
            channel,
            crate::admin::Authorize(authorization),
        );
        let mut request = tonic::Request::new(apb::ShardMapRequest {});
        request.set_timeout(Duration::from_secs(5));
        let reply = admin.shard_map(request).await;
        let mut state = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight = false;
        match reply {
            Ok(reply) => {
                drop(state);
                self.install(reply.into_inner());
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                state.standalone = true;
            }
            Err(_) => {}
        }
    }

    /// Replaces the map by `reply`, keeping connections to known nodes.
    fn install(&self, reply: apb::ShardMapResponse) {
        let Some(shards) = reply.cluster.and_then(|c| ShardCount::new(c.shards).ok()) else {
            return;
        };
        let mut guard = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let mut old = guard.take().map(|m| m.nodes).unwrap_or_default();
        let mut nodes = HashMap::new();
        for n in reply.nodes {
            let node = match old.remove(&n.id) {
                Some(known) if known.addr == n.addr => known,
                _ => match self.lazy_channel(&n.addr) {
                    Some(channel) => Node {
                        addr: n.addr,
                        channel,
                        down_until: None,
                    },
                    None => continue,
                },
            };
            nodes.insert(n.id, node);
        }
        let mut leaders = vec![0; shards.get() as usize];
        for s in reply.shards {
            if let Some(slot) = leaders.get_mut(s.shard as usize) {
                *slot = s.leader_id;
            }
        }
        *guard = Some(ShardMap {
            shards,
            leaders,
            nodes,
        });
    }

    /// A channel to `addr` that connects on first use (so an unreachable
    /// node costs nothing until a request is routed to it).
    fn lazy_channel(&self, addr: &str) -> Option<Channel> {
        let endpoint = self.dialer.endpoint(addr, self.connect_timeout).ok()?;
        Some(self.dialer.lazy(&endpoint))
    }
}

/// The key that decides a write's shard: the first key it touches.
pub(crate) fn first_key_of_ops<'a>(
    ops: impl IntoIterator<Item = &'a pb::WriteOp>,
) -> Option<&'a [u8]> {
    ops.into_iter().find_map(|op| match op.op.as_ref()? {
        pb::write_op::Op::Put(p) => Some(&p.key[..]),
        pb::write_op::Op::Update(u) => Some(&u.key[..]),
        pb::write_op::Op::Delete(d) => Some(&d.key[..]),
    })
}

/// The first key a transaction compares or touches.
pub(crate) fn first_key_of_txn(txn: &pb::TxnRequest) -> Option<&[u8]> {
    if let Some(c) = txn.compares.first() {
        return Some(&c.key);
    }
    txn.success
        .iter()
        .chain(&txn.failure)
        .find_map(|op| match op.op.as_ref()? {
            pb::txn_op::Op::Put(p) => Some(&p.key[..]),
            pb::txn_op::Op::Update(u) => Some(&u.key[..]),
            pb::txn_op::Op::Delete(d) => Some(&d.key[..]),
            pb::txn_op::Op::Get(g) => Some(&g.key[..]),
        })
}

/// Responses that carry a [`pb::ResponseHeader`].
pub(crate) trait Headed {
    fn header(&self) -> Option<&pb::ResponseHeader>;
}

macro_rules! headed {
    ($($t:ty),*) => {$(
        impl Headed for $t {
            fn header(&self) -> Option<&pb::ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}

headed!(
    pb::GetResponse,
    pb::PutResponse,
    pb::UpdateResponse,
    pb::DeleteResponse,
    pb::BatchGetResponse,
    pb::BatchResponse,
    pb::TxnResponse,
    pb::ScanResponse
);
