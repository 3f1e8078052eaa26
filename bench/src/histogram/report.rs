//! The result of a benchmark run: JSON (`--json`) and a human table.
//!
//! JSON shape (latencies in integer microseconds, rates in operations/s):
//!
//! ```json
//! {
//!   "target": "cairn", "endpoints": ["127.0.0.1:7000"], "workload": "a",
//!   "distribution": "zipfian", "records": 1000, "value_size": 100,
//!   "clients": 16, "warmup_s": 0.0, "duration_s": 2.0, "target_rate": null,
//!   "serializable": false, "coordinated_omission_corrected": false,
//!   "load": {"records": 1000, "seconds": 0.4, "throughput": 2500.0},
//!   "run": {
//!     "elapsed_s": 2.0, "ops": 5000, "errors": 0, "not_found": 0,
//!     "throughput": 2500.0, "missed_sends": null,
//!     "latency_us": {"p50": 900, "p90": 1500, "p99": 3000, "p99_9": 5000, "max": 7000, "mean": 1000.5},
//!     "operations": {
//!       "read": {"ops": 2500, "errors": 0, "not_found": 0, "throughput": 1250.0, "latency_us": {"...": 0}},
//!       "update": {"...": 0}
//!     }
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{OpStats, Recorder};

/// What was run: the parameters echoed into the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Target system (`cairn`, `cairn-http`, `etcd`, `redis`).
    pub target: String,
    /// Endpoints driven.
    pub endpoints: Vec<String>,
    /// Core workload letter.
    pub workload: String,
    /// Request distribution.
    pub distribution: String,
    /// Records loaded (or assumed loaded).
    pub records: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Concurrent in-flight operations.
    pub clients: usize,
    /// Unmeasured warm-up, seconds.
    pub warmup_s: f64,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Open-loop target rate (operations/s), if any.
    pub target_rate: Option<f64>,
    /// Whether reads were serializable rather than linearizable.
    pub serializable: bool,
    /// Whether latencies are measured from the intended send time.
    pub coordinated_omission_corrected: bool,
}

/// The load phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Records inserted.
    pub records: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Records per second.
    pub throughput: f64,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Summary of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One operation kind in the measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    /// Successful operations.
    pub ops: u64,
    /// Failed or timed-out operations.
    pub errors: u64,
    /// Reads that found nothing (counted in `ops`).
    pub not_found: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of successful operations.
    pub latency_us: Latency,
}

impl OpReport {
    fn of(s: &OpStats, elapsed: f64) -> Self {
        Self {
            ops: s.ops(),
            errors: s.errors,
            not_found: s.not_found,
            throughput: rate(s.ops(), elapsed),
            latency_us: Latency::of(&s.latency),
        }
    }
}

/// The measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Measured wall time, seconds.
    pub elapsed_s: f64,
    /// Successful operations, all kinds.
    pub ops: u64,
    /// Failed operations, all kinds.
    pub errors: u64,
    /// Reads that found nothing.
    pub not_found: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Open loop only: sends due in the measured window that never went out
    /// because every client was still busy when the run ended.
    pub missed_sends: Option<u64>,
    /// Latency over all kinds.
    pub latency_us: Latency,
    /// Per operation kind (`read`, `update`, `insert`, `scan`, `read_modify_write`).
    pub operations: BTreeMap<String, OpReport>,
}

/// A whole benchmark result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Parameters.
    #[serde(flatten)]
    pub settings: Settings,
    /// Load phase, unless it was skipped.
    pub load: Option<LoadReport>,
    /// Measured phase.
    pub run: RunReport,
}

fn rate(ops: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        ops as f64 / seconds
    } else {
        0.0
    }
}

impl RunReport {
    /// Summarises what `recorder` saw over `elapsed`.
    pub fn new(recorder: &Recorder, elapsed: Duration, missed_sends: Option<u64>) -> Self {
        let secs = elapsed.as_secs_f64();
        let total = recorder.total();
        Self {
            elapsed_s: secs,
            ops: total.ops(),
            errors: total.errors,
            not_found: total.not_found,
            throughput: rate(total.ops(), secs),
            missed_sends,
            latency_us: Latency::of(&total.latency),
            operations: recorder
                .kinds()
                .map(|(k, s)| (k.name().to_string(), OpReport::of(s, secs)))
                .collect(),
        }
    }
}

impl LoadReport {
    /// `records` inserted in `elapsed`.
    pub fn new(records: u64, elapsed: Duration) -> Self {
        Self {
            records,
            seconds: elapsed.as_secs_f64(),
            throughput: rate(records, elapsed.as_secs_f64()),
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl Report {
    /// Failed operations as a share of all attempted in the measured phase.
    pub fn error_ratio(&self) -> f64 {
        let attempted = self.run.ops + self.run.errors;
        if attempted == 0 {
            0.0
        } else {
            self.run.errors as f64 / attempted as f64
        }
    }

    /// The report as a human-readable table (latencies in milliseconds).
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let rate = s.target_rate.map_or("closed loop".to_string(), |r| {
            format!("open loop at {r} ops/s")
        });
        let _ = writeln!(
            out,
            "target={} endpoints={} workload={} distribution={} records={} value_size={} clients={} {}{}",
            s.target,
            s.endpoints.join(","),
            s.workload,
            s.distribution,
            s.records,
            s.value_size,
            s.clients,
            rate,
            if s.serializable { " serializable" } else { "" },
        );
        if let Some(l) = &self.load {
            let _ = writeln!(
                out,
                "load: {} records in {:.1} s ({:.0} records/s)",
                l.records, l.seconds, l.throughput
            );
        }
        let r = &self.run;
        let _ = writeln!(
            out,
            "run: {:.1} s, {} ops, {:.0} ops/s, {} errors, {} not found{}",
            r.elapsed_s,
            r.ops,
            r.throughput,
            r.errors,
            r.not_found,
            r.missed_sends
                .map_or(String::new(), |m| format!(", {m} sends missed")),
        );
        let _ = writeln!(
            out,
            "{:<18} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation",
            "ops",
            "ops/s",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "not found"
        );
        let rows = r
            .operations
            .iter()
            .map(|(name, o)| {
                (
                    name.as_str(),
                    o.ops,
                    o.throughput,
                    o.errors,
                    o.latency_us,
                    o.not_found,
                )
            })
            .chain(std::iter::once((
                "all",
                r.ops,
                r.throughput,
                r.errors,
                r.latency_us,
                r.not_found,
            )));
        for (name, ops, thr, errors, l, nf) in rows {
            let _ = writeln!(
                out,
                "{:<18} {:>10} {:>10.0} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                ops,
                thr,
                errors,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max),
                nf
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Outcome;
    use crate::workload::OpKind;

    fn sample() -> Report {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            r.record(OpKind::Read, Duration::from_micros(i * 10), Outcome::Ok);
        }
        r.record(OpKind::Read, Duration::from_micros(50), Outcome::NotFound);
        r.record(OpKind::Update, Duration::from_micros(2000), Outcome::Ok);
        r.record(OpKind::Update, Duration::from_micros(1), Outcome::Error);
        Report {
            settings: Settings {
                target: "cairn".into(),
                endpoints: vec!["127.0.0.1:7000".into()],
                workload: "a".into(),
                distribution: "zipfian".into(),
                records: 1000,
                value_size: 100,
                clients: 4,
                warmup_s: 0.0,
                duration_s: 2.0,
                target_rate: None,
                serializable: false,
                coordinated_omission_corrected: false,
            },
            load: Some(LoadReport::new(1000, Duration::from_millis(500))),
            run: RunReport::new(&r, Duration::from_secs(2), None),
        }
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        for field in [
            "target",
            "endpoints",
            "workload",
            "distribution",
            "records",
            "clients",
            "load",
            "run",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        let run = &v["run"];
        assert_eq!(run["ops"], 1002);
        assert_eq!(run["errors"], 1);
        assert_eq!(run["not_found"], 1);
        assert_eq!(run["throughput"], 501.0);
        let ops = run["operations"].as_object().unwrap();
        assert_eq!(ops.keys().collect::<Vec<_>>(), ["read", "update"]);
        assert_eq!(ops["read"]["ops"], 1001);
        for l in [
            &run["latency_us"],
            &ops["read"]["latency_us"],
            &ops["update"]["latency_us"],
        ] {
            let get = |f: &str| l[f].as_u64().unwrap_or_else(|| panic!("{f} in {l}"));
            assert!(get("p50") <= get("p90"));
            assert!(get("p90") <= get("p99"));
            assert!(get("p99") <= get("p99_9"));
            assert!(get("p99_9") <= get("max"));
            assert!(l["mean"].as_f64().is_some());
        }
        // Read latencies are 10 µs .. 10 ms, uniform: p50 ~ 5 ms.
        let p50 = ops["read"]["latency_us"]["p50"].as_u64().unwrap();
        assert!((4900..=5100).contains(&p50), "{p50}");
        assert_eq!(v["load"]["throughput"], 2000.0);
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn empty_run_is_all_zero() {
        let r = RunReport::new(&Recorder::new(), Duration::ZERO, Some(0));
        assert_eq!(r.ops, 0);
        assert_eq!(r.throughput, 0.0);
        assert_eq!(r.latency_us.max, 0);
        assert!(r.operations.is_empty());
    }

    #[test]
    fn table_lists_every_kind_and_total() {
        let t = sample().table();
        assert!(t.contains("target=cairn"));
        for row in ["read", "update", "all"] {
            assert!(
                t.lines().any(|l| l.starts_with(row)),
                "no {row} row in\n{t}"
            );
        }
        assert!((sample().error_ratio() - 1.0 / 1003.0).abs() < 1e-12);
    }
}
