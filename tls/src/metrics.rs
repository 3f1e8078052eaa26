//! What TLS exports to `/metrics`.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::bundle::Bundle;

/// TLS metrics: certificate expiry per listener, reloads by result and
/// handshake failures by listener and reason. Clones share the series.
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    expiry: IntGaugeVec,
    reloads: IntCounterVec,
    handshake_failures: IntCounterVec,
}

/// The listeners whose certificate expiry is exported.
const LISTENERS: [&str; 2] = ["grpc", "http"];

impl TlsMetrics {
    /// New, unregistered series (a client-only context or a test).
    ///
    /// # Errors
    /// Never for these constant definitions; prometheus's API is fallible.
    pub fn new() -> Result<Self, prometheus::Error> {
        let m = Self {
            expiry: IntGaugeVec::new(
                Opts::new(
                    "cairn_tls_cert_expiry_timestamp_seconds",
                    "When the certificate a listener serves expires (Unix seconds).",
                ),
                &["listener"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "cairn_tls_reloads_total",
                    "TLS material reloads by result: success swapped new material in; failure kept the previous material because the new files were invalid.",
                ),
                &["result"],
            )?,
            handshake_failures: IntCounterVec::new(
                Opts::new(
                    "cairn_tls_handshake_failures_total",
                    "TLS handshakes refused or failed, by listener and reason (expired, not_yet_valid, unknown_ca, revoked, bad_certificate, no_certificate, protocol, timeout, io).",
                ),
                &["listener", "reason"],
            )?,
        };
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
        }
        Ok(m)
    }

    /// Adds the series to `registry`.
    ///
    /// # Errors
    /// A series of the same name already registered.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.expiry.clone()))?;
        registry.register(Box::new(self.reloads.clone()))?;
        registry.register(Box::new(self.handshake_failures.clone()))?;
        Ok(())
    }

    pub(crate) fn observe_bundle(&self, bundle: &Bundle) {
        if let Some(t) = bundle.not_after {
            for l in LISTENERS {
                self.expiry.with_label_values(&[l]).set(t);
            }
        }
    }

    pub(crate) fn reloaded(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub(crate) fn handshake_failed(&self, listener: &str, reason: &str) {
        self.handshake_failures
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// Reloads counted with `result` (`success` or `failure`).
    pub fn reloads(&self, result: &str) -> u64 {
        self.reloads.with_label_values(&[result]).get()
    }

    /// Handshake failures counted for `listener` and `reason`.
    pub fn handshake_failures(&self, listener: &str, reason: &str) -> u64 {
        self.handshake_failures
            .with_label_values(&[listener, reason])
            .get()
    }
}
