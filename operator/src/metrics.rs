//! The operator's own Prometheus metrics, served on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::crd::OperationKind;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Counters and gauges of the reconcile loop.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: HistogramVec,
    operations: IntGaugeVec,
    stalled: IntGaugeVec,
    lifecycle_events: IntCounterVec,
    /// Operation kind per cluster (`namespace/name`), to count in-progress ones.
    current: Mutex<BTreeMap<String, (Option<OperationKind>, bool)>>,
}

/// The `kind` label of an operation: its name in the CRD (`ScaleOut`, …).
fn kind_label(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Bootstrap => "Bootstrap",
        OperationKind::ScaleOut => "ScaleOut",
        OperationKind::ScaleIn => "ScaleIn",
        OperationKind::Replace => "Replace",
        OperationKind::Upgrade => "Upgrade",
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Registers every metric in a fresh registry.
    ///
    /// # Errors
    /// [`MetricsError`] when a metric definition is invalid.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "cairn_operator_reconciles_total",
                "Reconciles of KVClusters, by result (ok, error).",
            ),
            &["result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "cairn_operator_reconcile_duration_seconds",
                "Time one reconcile took.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &[],
        )?;
        let operations = IntGaugeVec::new(
            Opts::new(
                "cairn_operator_operations_in_progress",
                "KVClusters with an operation in progress, by kind (Bootstrap, ScaleOut, ScaleIn, Replace, Upgrade).",
            ),
            &["kind"],
        )?;
        let stalled = IntGaugeVec::new(
            Opts::new(
                "cairn_operator_stalled_operations",
                "Operations past their stall timeout.",
            ),
            &[],
        )?;
        let lifecycle_events = IntCounterVec::new(
            Opts::new(
                "cairn_operator_lifecycle_events_total",
                "Lifecycle steps taken, by Event reason.",
            ),
            &["reason"],
        )?;
        // Every known label value from the start, so a rate or an alert
        // over them has a series before the first error or operation.
        for result in ["ok", "error"] {
            reconciles.with_label_values(&[result]);
        }
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(stalled.clone()))?;
        registry.register(Box::new(lifecycle_events.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            duration,
            operations,
            stalled,
            lifecycle_events,
            current: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records one reconcile's outcome and duration.
    pub fn reconciled(&self, ok: bool, seconds: f64) {
        self.reconciles
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.duration
            .with_label_values(&[] as &[&str])
            .observe(seconds);
    }

    /// Records a lifecycle Event.
    pub fn lifecycle_event(&self, reason: &str) {
        self.lifecycle_events.with_label_values(&[reason]).inc();
    }

    /// Records which operation `cluster` is in (if any) and whether it stalled.
    pub fn operation(&self, cluster: &str, kind: Option<OperationKind>, stalled: bool) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.insert(cluster.to_owned(), (kind, stalled));
        self.operations.reset();
        for kind in OperationKind::ALL {
            self.operations
                .with_label_values(&[kind_label(kind)])
                .set(0);
        }
        let mut stalled_count = 0;
        for (kind, stalled) in current.values() {
            if let Some(kind) = kind {
                self.operations
                    .with_label_values(&[kind_label(*kind)])
                    .inc();
            }
            stalled_count += i64::from(*stalled);
        }
        self.stalled
            .with_label_values(&[] as &[&str])
            .set(stalled_count);
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, cluster: &str) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.remove(cluster);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for valid metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
