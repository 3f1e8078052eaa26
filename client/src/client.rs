//! [`Client`]: the key-value API with endpoint fail-over and bounded retries.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use cairn_keyspace::ShardId;
use cairn_keyspace::batch_get;
use cairn_keyspace::scan_page::merge_responses;
use cairn_proto::ERROR_CODE_METADATA;

use crate::admin::Admin;
use crate::backoff::Backoff;
use crate::dial::Dialer;
use crate::error::ClientError;
use crate::pb;
use crate::pb::kv_client::KvClient;
use crate::routing::{self, Headed, Router};

/// Largest gRPC message the client sends or accepts:
/// [`cairn_proto::MAX_MESSAGE_BYTES`], the one limit node and client share.
pub const MAX_MESSAGE_SIZE: usize = cairn_proto::MAX_MESSAGE_BYTES;

/// How long to wait for one endpoint to accept a connection, by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a call keeps retrying on other endpoints, by default.
const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(10);

/// Tuning knobs for [`Client::connect_with`].
///
/// Built from [`ClientOptions::default`] and the builder methods, so new
/// options can be added without breaking callers.
#[derive(Clone)]
pub struct ClientOptions {
    connect_timeout: Duration,
    retry_deadline: Duration,
    token: Option<String>,
    tls: Option<Arc<cairn_tls::TlsContext>>,
}

impl Default for ClientOptions {
    /// 3 s connect timeout per endpoint, 10 s retry deadline, no token.
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            token: None,
            tls: None,
        }
    }
}

impl ClientOptions {
    /// How long to wait for a single endpoint to accept a connection before
    /// moving on to the next one.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one call may keep retrying (across endpoints, with backoff)
    /// after it was first refused with `Unavailable`. Zero disables retries.
    pub fn retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// A token sent as `authorization: Bearer <token>` metadata on every
    /// request made through the convenience methods and [`Client::request`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Speak TLS to every node, verifying them with `tls`'s CA bundle and
    /// presenting its certificate if it has one. Endpoints may then be
    /// written `https://HOST:PORT`.
    pub fn tls(mut self, tls: Arc<cairn_tls::TlsContext>) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl fmt::Debug for ClientOptions {
    /// Like a derived `Debug`, but never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_deadline", &self.retry_deadline)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A handle to a Cairn cluster: one live gRPC channel to one of the
/// configured endpoints (the *seed*), moved to the next endpoint when the
/// current one becomes unavailable, plus a connection to each cluster node
/// for routing.
///
/// Cloning is cheap and clones share the connections, so one `Client` can be
/// handed to many tasks.
///
/// # Routing
///
/// Against a cluster, the client fetches the shard map (`Admin.ShardMap`)
/// when it connects and sends each request straight to its shard's leader,
/// saving the hop a forwarding node would add. `BatchGet` and `Scan` are
/// split by leader and their results put back in request order and key
/// order. Responses name the current leader, so leader moves are learned as
/// they happen; a failed leader is forgotten and the map re-fetched in the
/// background while requests go through the seed, which forwards them. If
/// the nodes' own addresses are not reachable from the client (say, outside
/// Kubernetes), every request simply keeps going through the seed.
///
/// # Retries
///
/// A call is retried only when its status is `Unavailable` (which includes
/// "could not connect") or the connection broke under it (a transport error,
/// as when the node was killed). The client then waits a jittered, exponentially
/// growing delay (20 ms doubling up to 1 s), connects to the next endpoint
/// and tries again, until the call succeeds, fails with another status, or
/// the retry deadline (10 s by default) would be exceeded.
///
/// Retries of writes are *exactly once*: every write without a
/// `request_id` gets a random one, kept across its retries, so a write whose
/// response was lost is answered from the shard's record of it instead of
/// being applied again (the server remembers ids for 2 minutes).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// State shared by all clones of a [`Client`].
struct Inner {
    targets: Vec<SeedEndpoint>,
    authorization: Option<AsciiMetadataValue>,
    connect_timeout: Duration,
    retry_deadline: Duration,
    current: Mutex<Current>,
    router: Router,
    dialer: Dialer,
    /// Per shard, the highest revision this client has seen in an answer:
    /// a `SERIALIZABLE` read asks for at least that much (`min_revision`),
    /// so a replica that lags (a paused old leader, a follower catching
    /// up) cannot take the client back in time. Reads through one client
    /// are monotonic per shard and see the client's own writes.
    seen: Mutex<HashMap<ShardId, u64>>,
}

/// One configured endpoint.
struct SeedEndpoint {
    /// As the user wrote it, for messages.
    name: String,
    endpoint: Endpoint,
}

/// The endpoint in use.
struct Current {
    index: usize,
    channel: Channel,
    /// Bumped whenever `channel` is replaced, so concurrent callers that saw
    /// the same failure fail over only once.
    epoch: u64,
}

impl fmt::Debug for Client {
    /// Shows the endpoints and the one in use; never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<&str> = self.inner.targets.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Client")
            .field("endpoints", &endpoints)
            .field("current", &self.current_endpoint())
            .finish()
    }
}

impl Client {
    /// Connects to the first of `endpoints` that answers, with default
    /// [`ClientOptions`].
    ///
    /// Each endpoint is `HOST:PORT` or `http://HOST:PORT`; they are tried in
    /// order with a 3 s connect timeout each. The others are kept for
    /// fail-over.
    pub async fn connect(endpoints: &[String]) -> Result<Client, ClientError> {
        Client::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Like [`Client::connect`], with explicit options (token, timeouts).
    pub async fn connect_with(
        endpoints: &[String],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let dialer = Dialer::new(options.tls.clone());
        let targets = endpoints
            .iter()
            .map(|name| {
                let endpoint = dialer.endpoint(name, options.connect_timeout)?;
                Ok(SeedEndpoint {
                    name: name.trim().to_string(),
                    endpoint,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let authorization = options.token.as_deref().map(bearer).transpose()?;

        let mut last_failure = None;
        for (index, target) in targets.iter().enumerate() {
            match dialer
                .connect(&target.endpoint, options.connect_timeout)
                .await
            {
                Ok(channel) => {
                    let current = Current {
                        index,
                        channel,
                        epoch: 0,
                    };
                    let inner = Inner {
                        targets,
                        authorization,
                        connect_timeout: options.connect_timeout,
                        retry_deadline: options.retry_deadline,
                        current: Mutex::new(current),
                        router: Router::new(options.connect_timeout, dialer.clone()),
                        dialer: dialer.clone(),
                        seen: Mutex::new(HashMap::new()),
                    };
                    let client = Client {
                        inner: Arc::new(inner),
                    };
                    // Without a map the client still works (through the
                    // seed), so a failure here is not an error.
                    if client.inner.router.schedule_refresh().is_some() {
                        let seed = client.lock_current().channel.clone();
                        client
                            .inner
                            .router
                            .refresh(seed, client.inner.authorization.clone())
                            .await;
                    }
                    return Ok(client);
                }
                Err(failure) => last_failure = Some(failure),
            }
        }
        match last_failure {
            Some(source) => Err(ClientError::Connect {
                endpoints: targets.into_iter().map(|t| t.name).collect(),
                source,
            }),
            None => Err(ClientError::NoEndpoints),
        }
    }

    /// The endpoint currently in use, as it was given to `connect`.
    pub fn current_endpoint(&self) -> &str {
        let index = self.lock_current().index;
        self.inner
            .targets
            .get(index)
            .map_or("", |t| t.name.as_str())
    }

    /// The raw generated gRPC stub on the current connection, for calls the
    /// convenience methods do not cover (or to manage metadata yourself).
    ///
    /// Calls made through it are not retried, and the bearer token is not
    /// added unless the request is built with [`Client::request`]. Message
    /// size limits are already raised to [`MAX_MESSAGE_SIZE`].
    pub fn kv(&self) -> KvClient<Channel> {
        stub(self.lock_current().channel.clone())
    }

    /// The admin API (`cairn.admin.v1.Admin`) on the current connection.
    /// Its calls are not retried (see [`Admin`]).
    pub fn admin(&self) -> Admin {
        let current = self.lock_current();
        let name = self
            .inner
            .targets
            .get(current.index)
            .map_or_else(String::new, |t| t.name.clone());
        Admin::authorized(
            current.channel.clone(),
            name,
            self.inner.authorization.clone(),
        )
    }

    /// Wraps `message` in a [`tonic::Request`] carrying the client's bearer
    /// token (if any), for use with [`Client::kv`].
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.inner.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Reads one key; the response's `kv` is `None` when the key does not
    /// exist (or has expired).
    ///
    /// A `SERIALIZABLE` read is served by a replica that may lag, but never
    /// goes back before what this client already saw of the key's shard:
    /// the client sends the highest revision it has seen there as
    /// `min_revision` (or the caller's, if higher). A replica that cannot
    /// catch up within the server's wait answers `DEADLINE_EXCEEDED`.
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        read: pb::ReadOptions,
    ) -> Result<pb::GetResponse, ClientError> {
        let key = key.into();
        let shard = self.inner.router.shard_of(&key);
        let mut read = read;
        if read.consistency == pb::Consistency::Serializable as i32
            && let Some(s) = shard
        {
            read.min_revision = read.min_revision.max(self.seen_revision(s));
        }
        let request = pb::GetRequest {
            key,
            read: Some(read),
        };
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.get(r).await
        })
        .await
    }

    /// Creates or replaces one key (optionally conditional, see
    /// [`pb::PutRequest`]); a failed condition is `FAILED_PRECONDITION`.
    pub async fn put(&self, request: pb::PutRequest) -> Result<pb::PutResponse, ClientError> {
        let mut request = request;
        with_request_id(&mut request.request_id);
        let shard = self.inner.router.shard_of(&request.key);
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.put(r).await
        })
        .await
    }

    /// Replaces the value of an existing key; `NOT_FOUND` when it is missing.
    pub async fn update(
        &self,
        request: pb::UpdateRequest,
    ) -> Result<pb::UpdateResponse, ClientError> {
        let mut request = request;
        with_request_id(&mut request.request_id);
        let shard = self.inner.router.shard_of(&request.key);
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.update(r).await
        })
        .await
    }

    /// Deletes one key; `existed` in the response tells whether it was there.
    pub async fn delete(
        &self,
        request: pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, ClientError> {
        let mut request = request;
        with_request_id(&mut request.request_id);
        let shard = self.inner.router.shard_of(&request.key);
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.delete(r).await
        })
        .await
    }

    /// Reads many keys (from any shards); results come back in request order.
    ///
    /// Against a cluster the keys are split by shard leader and read from
    /// each leader concurrently.
    pub async fn batch_get(
        &self,
        request: pb::BatchGetRequest,
    ) -> Result<pb::BatchGetResponse, ClientError> {
        let groups =
            self.group_by_leader(request.keys.iter().map(|k| self.inner.router.shard_of(k)));
        if groups.len() <= 1 {
            let target = groups.first().map_or(Target::Seed, LeaderGroup::target);
            return self
                .call(
                    target,
                    request,
                    |mut kv, r| async move { kv.batch_get(r).await },
                )
                .await;
        }
        let parts = groups.iter().map(|g| {
            self.call(
                g.target(),
                batch_get::part(&request, &g.members),
                |mut kv, r| async move { kv.batch_get(r).await },
            )
        });
        let responses = futures::future::try_join_all(parts).await?;
        let (results, revision) = batch_get::merge(
            request.keys.len(),
            groups.into_iter().map(|g| g.members).zip(responses),
        )
        .map_err(|e| ClientError::UnexpectedResponse(format!("batch_get: {e}")))?;
        Ok(pb::BatchGetResponse {
            header: Some(pb::ResponseHeader {
                revision,
                ..pb::ResponseHeader::default()
            }),
            results,
        })
    }

    /// Groups items (given by their shard, `None` when no map is known) by
    /// the node that leads their shard; items of shards without a known
    /// leader form one group for the seed.
    fn group_by_leader(&self, shards: impl Iterator<Item = Option<ShardId>>) -> Vec<LeaderGroup> {
        let mut groups: Vec<(u64, LeaderGroup)> = Vec::new();
        for (i, shard) in shards.enumerate() {
            let leader = shard
                .and_then(|s| self.inner.router.route(s))
                .map_or(0, |r| r.node_id);
            match groups.iter_mut().find(|(l, _)| *l == leader) {
                Some((_, g)) => {
                    g.members.push(i);
                    g.one_shard &= g.shard == shard;
                }
                None => groups.push((
                    leader,
                    LeaderGroup {
                        shard,
                        routed: leader != 0,
                        one_shard: true,
                        members: vec![i],
                    },
                )),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Applies writes to keys of one shard atomically: all or none.
    pub async fn batch(&self, request: pb::BatchRequest) -> Result<pb::BatchResponse, ClientError> {
        let mut request = request;
        with_request_id(&mut request.request_id);
        let shard =
            routing::first_key_of_ops(&request.ops).and_then(|k| self.inner.router.shard_of(k));
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.batch(r).await
        })
        .await
    }

    /// Compare-then-act on keys of one shard, atomically.
    pub async fn txn(&self, request: pb::TxnRequest) -> Result<pb::TxnResponse, ClientError> {
        let mut request = request;
        with_request_id(&mut request.request_id);
        let shard = routing::first_key_of_txn(&request).and_then(|k| self.inner.router.shard_of(k));
        self.call(Target::of(shard), request, |mut kv, r| async move {
            kv.txn(r).await
        })
        .await
    }

    /// Reads one page of a prefix or range scan; pass the response's
    /// `next_page_token` back as `page_token` to continue.
    ///
    /// Against a cluster the shards are split by leader, each leader pages
    /// through its own shards, and the pages are merged in key order.
    pub async fn scan(&self, request: pb::ScanRequest) -> Result<pb::ScanResponse, ClientError> {
        let all: Vec<ShardId> = if !request.shards.is_empty() {
            request.shards.clone()
        } else {
            (0..self.inner.router.shard_count().unwrap_or(0)).collect()
        };
        let groups = self.group_by_leader(all.iter().map(|&s| Some(s)));
        if groups.len() <= 1 {
            let target = groups.first().map_or(Target::Seed, LeaderGroup::target);
            return self
                .call(target, request, |mut kv, r| async move { kv.scan(r).await })
                .await;
        }
        let parts = groups.iter().map(|g| {
            let sub = pb::ScanRequest {
                shards: g.members.iter().map(|&i| all[i]).collect(),
                ..request.clone()
            };
            self.call(g.target(), sub, |mut kv, r| async move { kv.scan(r).await })
        });
        let responses = futures::future::try_join_all(parts).await?;
        // With no limit each part got the server's default page size; only a
        // part cut short (`next_page_token` set) shows what that size is, and
        // without one nothing needs cutting (taking the longest part's length
        // instead cut pages short for no reason: a 10-key range over three
        // leaders came back as 7 keys and a token).
        let limit = match request.limit {
            0 => responses
                .iter()
                .filter(|r| !r.next_page_token.is_empty())
                .map(|r| r.kvs.len())
                .max()
                .unwrap_or(usize::MAX),
            n => n as usize,
        };
        let (kvs, next_page_token, revision) = merge_responses(responses, limit)
            .map_err(|e| ClientError::UnexpectedResponse(e.to_string()))?;
        Ok(pb::ScanResponse {
            header: Some(pb::ResponseHeader {
                revision,
                ..pb::ResponseHeader::default()
            }),
            kvs,
            next_page_token,
        })
    }

    /// Scans every page, following `next_page_token` until it is empty, and
    /// returns all key-values in key order.
    ///
    /// `request.limit` is the page size (0 = server default), not a total.
    /// The pages are separate reads, so the result is not a snapshot.
    pub async fn scan_all(
        &self,
        mut request: pb::ScanRequest,
    ) -> Result<Vec<pb::KeyValue>, ClientError> {
        let mut kvs = Vec::new();
        loop {
            let page = self.scan(request.clone()).await?;
            kvs.extend(page.kvs);
            if page.next_page_token.is_empty() {
                return Ok(kvs);
            }
            if page.next_page_token == request.page_token {
                return Err(ClientError::UnexpectedResponse(
                    "scan returned the same page token twice".to_string(),
                ));
            }
            request.page_token = page.next_page_token;
        }
    }

    /// The highest revision of `shard` this client has seen.
    fn seen_revision(&self, shard: ShardId) -> u64 {
        let seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.get(&shard).copied().unwrap_or(0)
    }

    /// Records that an answer about `shard` reflected `revision`.
    fn saw_revision(&self, shard: ShardId, revision: u64) {
        let mut seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = seen.entry(shard).or_insert(0);
        *at = (*at).max(revision);
    }

    /// Runs `rpc` with `message` at `target` (the seed when its leader is
    /// unknown), retrying on `Unavailable` as described on [`Client`].
    async fn call<Req, Resp, F, Fut>(
        &self,
        target: Target,
        message: Req,
        mut rpc: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        Resp: Headed,
        F: FnMut(KvClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let router = &self.inner.router;
        let shard = target.shard();
        let deadline = Instant::now() + self.inner.retry_deadline;
        let mut backoff = Backoff::new();
        loop {
            let route = shard.and_then(|s| router.route(s).map(|r| (s, r)));
            let (channel, epoch) = match &route {
                Some((_, r)) => (r.channel.clone(), None),
                None => {
                    let current = self.lock_current();
                    (current.channel.clone(), Some(current.epoch))
                }
            };
            let status = match rpc(stub(channel), self.request(message.clone())).await {
                Ok(response) => {
                    let response = response.into_inner();
                    // No route (no map, or the shard's leader unknown) or a
                    // leader the map lacks: the map needs refreshing.
                    if let (Target::Shard(s), Some(h)) = (target, response.header()) {
                        self.saw_revision(s, h.revision);
                    }
                    let stale = match (target, &route) {
                        (Target::Shard(s), Some(_)) => router.learn(s, response.header()),
                        (Target::Shard(s), None) => {
                            router.learn(s, response.header());
                            true
                        }
                        (Target::LeaderOf(_), route) => route.is_none(),
                        (Target::Seed, _) => router.shard_count().is_none(),
                    };
                    if stale {
                        self.spawn_refresh();
                    }
                    return Ok(response);
                }
                Err(status) if is_connection_failure(&status) => status,
                Err(status) => return Err(ClientError::Status(status)),
            };
            let unreachable = !status.metadata().contains_key(ERROR_CODE_METADATA);
            let mut last_error = ClientError::Status(status);
            if let Some((s, r)) = route {
                // The leader failed us: forget it, fetch a new map, and go
                // through the seed (which forwards) until then.
                router.forget(s, r.node_id, unreachable);
                self.spawn_refresh();
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(last_error);
                }
                tokio::time::sleep(delay).await;
                continue;
            }
            let epoch = epoch.unwrap_or_default();
            // Wait, then move to the next endpoint; repeat until one accepts
            // a connection or the deadline would be exceeded.
            loop {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(last_error);
                }
                tokio::time::sleep(delay).await;
                match self.fail_over(epoch, deadline).await {
                    Ok(()) => break,
                    Err(error) => last_error = error,
                }
            }
            if shard.is_some() {
                self.spawn_refresh();
            }
        }
    }

    /// Fetches a new shard map through the seed in the background (soon,
    /// but not more often than the router allows).
    fn spawn_refresh(&self) {
        let Some(delay) = self.inner.router.schedule_refresh() else {
            return;
        };
        let client = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let seed = client.lock_current().channel.clone();
            let auth = client.inner.authorization.clone();
            client.inner.router.refresh(seed, auth).await;
        });
    }

    /// Replaces the channel of generation `seen_epoch` by a connection to the
    /// next endpoint. Does nothing if another caller already did so; on
    /// failure the position still advances, so the next attempt tries the
    /// endpoint after.
    async fn fail_over(&self, seen_epoch: u64, deadline: Instant) -> Result<(), ClientError> {
        let index = {
            let current = self.lock_current();
            if current.epoch != seen_epoch {
                return Ok(());
            }
            current.index
        };
        let next = (index + 1) % self.inner.targets.len();
        let Some(target) = self.inner.targets.get(next) else {
            return Err(ClientError::NoEndpoints);
        };
        let timeout = self
            .inner
            .connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let result = self.inner.dialer.connect(&target.endpoint, timeout).await;

        let mut current = self.lock_current();
        if current.epoch != seen_epoch {
            return Ok(());
        }
        current.index = next;
        match result {
            Ok(channel) => {
                current.channel = channel;
                current.epoch += 1;
                Ok(())
            }
            Err(source) => Err(ClientError::Connect {
                endpoints: vec![target.name.clone()],
                source,
            }),
        }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        // The critical sections never panic, but a poisoned lock must not
        // take the client down with it either.
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a call goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A single-shard request, to the shard's leader; the response names
    /// the current leader, which the router learns.
    Shard(ShardId),
    /// Part of a split request, to the node leading this shard; the
    /// response spans several shards and says nothing about leaders.
    LeaderOf(ShardId),
    /// The seed endpoint (no map, or no known leader).
    Seed,
}

impl Target {
    fn of(shard: Option<ShardId>) -> Self {
        shard.map_or(Target::Seed, Target::Shard)
    }

    fn shard(self) -> Option<ShardId> {
        match self {
            Target::Shard(s) | Target::LeaderOf(s) => Some(s),
            Target::Seed => None,
        }
    }
}

/// Items of a split request that go to one node.
struct LeaderGroup {
    /// The shard of the group's first item (`None` without a map).
    shard: Option<ShardId>,
    /// Whether the group goes to a known leader (else to the seed).
    routed: bool,
    /// Whether every item is of the same shard.
    one_shard: bool,
    /// Positions of the items in the request.
    members: Vec<usize>,
}

impl LeaderGroup {
    fn target(&self) -> Target {
        match (self.shard, self.routed, self.one_shard) {
            (Some(s), _, true) => Target::Shard(s),
            (Some(s), true, false) => Target::LeaderOf(s),
            _ => Target::Seed,
        }
    }
}

/// The generated stub on `channel`, with Cairn's message size limits.
fn stub(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Zstd)
}

/// The `authorization` metadata value for `token`.
pub(crate) fn bearer(token: &str) -> Result<AsciiMetadataValue, ClientError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidToken);
    }
    AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| ClientError::InvalidToken)
}

/// Gives a write without a request id a random 16-byte one.
fn with_request_id(id: &mut Vec<u8>) {
    if id.is_empty() {
        *id = rand::random::<[u8; 16]>().to_vec();
    }
}

/// Whether `status` means the connection, not the server, failed: the node
/// is unreachable, refused, or died with the call in flight.
fn is_connection_failure(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::Unavailable {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_be_visible_ascii() {
        assert_eq!(
            bearer("abc.DEF-123").ok().as_ref().map(|v| v.to_str().ok()),
            Some(Some("Bearer abc.DEF-123"))
        );
        assert!(matches!(bearer(""), Err(ClientError::InvalidToken)));
        assert!(matches!(
            bearer("two words"),
            Err(ClientError::InvalidToken)
        ));
        assert!(matches!(
            bearer("new\nline"),
            Err(ClientError::InvalidToken)
        ));
        assert!(matches!(bearer("café"), Err(ClientError::InvalidToken)));
    }

    #[test]
    fn options_debug_redacts_token() {
        let shown = format!("{:?}", ClientOptions::default().token("s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    /// Compile-time proof that the client's futures can be spawned on a
    /// multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(client: &Client) {
        fn assert_send<T: Send>(_: T) {}
        assert_send(Client::connect(&[]));
        assert_send(client.get("k", pb::ReadOptions::default()));
        assert_send(client.put(pb::PutRequest::default()));
        assert_send(client.batch(pb::BatchRequest::default()));
        assert_send(client.scan_all(pb::ScanRequest::default()));
    }
}
