//! Prometheus metrics of a node. Names follow Prometheus conventions
//! (`cairn_` prefix, `_total` counters, `_seconds` and `_bytes` units, base
//! units only); labels stay bounded (API, method, code, shard id, column
//! family, never a key). `docs/OPERATIONS.md` lists every family.
//!
//! Counters and histograms are recorded where things happen; the state of
//! RocksDB ([`engine`]) and of the Raft replicas ([`replicas`]) is read when
//! `/metrics` is scraped, so it is never stale and costs nothing between
//! scrapes.

pub mod engine;
pub mod replicas;

use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::cluster::Cluster;
use crate::storage::Engine;

/// Every metric the node exports, registered in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Requests served, by API (`grpc`/`http`), method and result code.
    pub requests: IntCounterVec,
    /// Request latency by API and method.
    pub request_duration: HistogramVec,
    /// Commands per group commit (how many writes share one fsync).
    pub commit_group_commands: Histogram,
    /// Time to write and sync one group commit.
    pub commit_write_duration: Histogram,
    /// Expired keys removed by the reaper.
    pub ttl_expired_keys: IntCounter,
    /// Requests the access gate refused, by reason (see
    /// [`crate::auth::gate::DENIAL_REASONS`]).
    pub auth_denials: IntCounterVec,
    /// What the replicated layer records (present on standalone nodes
    /// too, where it stays at zero).
    pub cluster: ClusterMetrics,
}

/// The handles the replicated layer (proposals, reads, snapshots, the
/// balancer) records into. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    /// Raft snapshots this node installed (a replica caught up by snapshot).
    pub snapshots_installed: IntCounter,
    /// Proposals made on this node while it led the shard, by result:
    /// `committed`, `not_leader` (leadership moved; retried elsewhere),
    /// `timeout` (outcome unknown), `failed`.
    pub proposals: IntCounterVec,
    /// Time from proposing an entry to its being applied, for committed
    /// proposals.
    pub proposal_duration: Histogram,
    /// Linearizable read barriers, by `path` (`local`: this node leads,
    /// `leader`: ReadIndex asked of the leader) and `result` (`ok`, `error`).
    pub read_index: IntCounterVec,
    /// Shards whose replicas differ from the balanced target or still have
    /// learners catching up; set by the meta group's leader, 0 elsewhere.
    pub rebalance_shards_moving: IntGauge,
    /// WAL syncs of the Raft log writer (one per round of appends).
    pub log_syncs: IntCounter,
    /// Log writes (appends, votes, truncations of any group) made durable
    /// by one WAL sync: how well appends share fsyncs.
    pub log_writes_per_sync: Histogram,
}

impl ClusterMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let m = Self {
            snapshots_installed: IntCounter::new(
                "cairn_raft_snapshots_installed_total",
                "Shard snapshots installed from a leader (catch-up of a lagging replica).",
            )?,
            proposals: IntCounterVec::new(
                Opts::new(
                    "cairn_raft_proposals_total",
                    "Raft proposals made on this node as leader, by result.",
                ),
                &["result"],
            )?,
            proposal_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "cairn_raft_proposal_duration_seconds",
                    "Time from proposal to apply of committed proposals.",
                )
                .buckets(latency_buckets()),
            )?,
            read_index: IntCounterVec::new(
                Opts::new(
                    "cairn_raft_read_index_total",
                    "Linearizable read barriers (a lease or ReadIndex on the leader, or ReadIndex asked of the leader), by path and result.",
                ),
                &["path", "result"],
            )?,
            rebalance_shards_moving: IntGauge::new(
                "cairn_rebalance_shards_moving",
                "Shards not yet at their balanced placement (reported by the meta group's leader; 0 on other nodes).",
            )?,
            log_syncs: IntCounter::new(
                "cairn_raft_log_syncs_total",
                "WAL syncs made by the Raft log writer (one per round of log writes).",
            )?,
            log_writes_per_sync: Histogram::with_opts(
                HistogramOpts::new(
                    "cairn_raft_log_writes_per_sync",
                    "Raft log writes (appends, votes, truncations of any group) made durable by one WAL sync.",
                )
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 13)?),
            )?,
        };
        // Every label value from the start, so rates and alerts over them
        // have a series before the first timeout or error.
        for result in ["committed", "not_leader", "timeout", "failed"] {
            m.proposals.with_label_values(&[result]);
        }
        for path in ["local", "leader"] {
            for result in ["ok", "error"] {
                m.read_index.with_label_values(&[path, result]);
            }
        }
        Ok(m)
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.snapshots_installed.clone()))?;
        registry.register(Box::new(self.proposals.clone()))?;
        registry.register(Box::new(self.proposal_duration.clone()))?;
        registry.register(Box::new(self.read_index.clone()))?;
        registry.register(Box::new(self.rebalance_shards_moving.clone()))?;
        registry.register(Box::new(self.log_syncs.clone()))?;
        registry.register(Box::new(self.log_writes_per_sync.clone()))?;
        Ok(())
    }
}

/// The descriptions of `collectors`, for a scrape-time collector's `desc`.
fn descs<'a>(
    collectors: &[&'a dyn prometheus::core::Collector],
) -> Vec<&'a prometheus::core::Desc> {
    collectors.iter().flat_map(|c| c.desc()).collect()
}

/// One scrape of a scrape-time collector: under `scrape` (each scrape
/// resets and refills the families), `fill` them, then gather `collectors`.
fn refilled(
    scrape: &std::sync::Mutex<()>,
    fill: impl FnOnce(),
    collectors: &[&dyn prometheus::core::Collector],
) -> Vec<prometheus::proto::MetricFamily> {
    let _scrape = scrape
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    fill();
    collectors.iter().flat_map(|c| c.collect()).collect()
}

/// Latency buckets from 50µs to ~13s.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_05, 2.0, 19).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers all metrics.
    ///
    /// # Errors
    /// A registration conflict (a programming error caught by tests).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "cairn_requests_total",
                "Requests served, by API, method and result code.",
            ),
            &["api", "method", "code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("cairn_request_duration_seconds", "Request latency.")
                .buckets(latency_buckets()),
            &["api", "method"],
        )?;
        let commit_group_commands = Histogram::with_opts(
            HistogramOpts::new(
                "cairn_commit_group_commands",
                "Write commands made durable by one group commit.",
            )
            .buckets(prometheus::exponential_buckets(1.0, 2.0, 12)?),
        )?;
        let commit_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "cairn_commit_write_duration_seconds",
                "Time to write and sync one group commit.",
            )
            .buckets(latency_buckets()),
        )?;
        let ttl_expired_keys = IntCounter::new(
            "cairn_ttl_expired_keys_total",
            "Expired keys removed by the reaper.",
        )?;
        let auth_denials = IntCounterVec::new(
            Opts::new(
                "cairn_auth_denials_total",
                "Requests refused by access control, by reason.",
            ),
            &["reason"],
        )?;
        for reason in crate::auth::gate::DENIAL_REASONS {
            auth_denials.with_label_values(&[reason]);
        }
        registry.register(Box::new(auth_denials.clone()))?;
        let cluster = ClusterMetrics::new()?;
        cluster.register(&registry)?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(commit_group_commands.clone()))?;
        registry.register(Box::new(commit_write_duration.clone()))?;
        registry.register(Box::new(ttl_expired_keys.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            commit_group_commands,
            commit_write_duration,
            ttl_expired_keys,
            auth_denials,
            cluster,
        })
    }

    /// Adds RocksDB's statistics, sizes and the disk's space, read from
    /// `engine` at every scrape.
    ///
    /// # Errors
    /// Called twice (a registration conflict).
    pub fn watch_engine(&self, engine: Engine) -> Result<(), prometheus::Error> {
        self.registry
            .register(Box::new(engine::EngineCollector::new(engine)?))
    }

    /// Adds the state of every Raft replica this node hosts, read from
    /// `cluster` at every scrape.
    ///
    /// # Errors
    /// Called twice (a registration conflict).
    pub fn watch_cluster(&self, cluster: Arc<Cluster>) -> Result<(), prometheus::Error> {
        self.registry
            .register(Box::new(replicas::ReplicaCollector::new(cluster)?))
    }

    /// Records one served request.
    pub fn observe(&self, api: &str, method: &str, code: &str, elapsed: std::time::Duration) {
        self.requests.with_label_values(&[api, method, code]).inc();
        self.request_duration
            .with_label_values(&[api, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}
