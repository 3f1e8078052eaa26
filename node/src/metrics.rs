//! Prometheus metrics of a node. Names follow Prometheus conventions
//! (`cairn_` prefix, `_total` counters, `_seconds` and `_bytes` units).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

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
    /// Bytes held by the block cache.
    pub block_cache_usage: IntGauge,
    /// 1 while the data directory is full (the last write failed for want
    /// of space), else 0.
    pub storage_disk_full: IntGauge,
    /// Raft snapshots this node installed (a replica caught up by snapshot).
    pub raft_snapshots_installed: IntCounter,
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
        let block_cache_usage = IntGauge::new(
            "cairn_block_cache_usage_bytes",
            "Bytes held by the block cache.",
        )?;
        let storage_disk_full = IntGauge::new(
            "cairn_storage_disk_full",
            "1 while the data directory is full: writes there fail until space returns.",
        )?;
        let raft_snapshots_installed = IntCounter::new(
            "cairn_raft_snapshots_installed_total",
            "Shard snapshots installed from a leader (catch-up of a lagging replica).",
        )?;
        registry.register(Box::new(raft_snapshots_installed.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(commit_group_commands.clone()))?;
        registry.register(Box::new(commit_write_duration.clone()))?;
        registry.register(Box::new(ttl_expired_keys.clone()))?;
        registry.register(Box::new(block_cache_usage.clone()))?;
        registry.register(Box::new(storage_disk_full.clone()))?;
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
            block_cache_usage,
            storage_disk_full,
            raft_snapshots_installed,
        })
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
