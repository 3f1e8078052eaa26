//! Latency recording: one HdrHistogram per operation kind, in microseconds.
//!
//! Workers record into a few shared [`Recorder`]s (a histogram is ~100 KiB,
//! too big to keep one per client and kind); the shards are merged at the
//! end and turned into a [`report::Report`].

pub mod report;

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::workload::OpKind;

/// Largest latency a histogram tracks exactly: 10 minutes, in microseconds.
/// Longer ones are clamped (the operation timeout is far below this).
const MAX_TRACKABLE_US: u64 = 600_000_000;
/// Significant figures kept.
const SIGNIFICANT_FIGURES: u8 = 3;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for reads the record was there.
    Ok,
    /// Done, but the record read was absent.
    NotFound,
    /// Failed or timed out.
    Error,
}

/// Counts and latencies of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of successful operations (including "not found"), in µs.
    pub latency: Histogram<u64>,
    /// Failed or timed-out operations (not in the histogram).
    pub errors: u64,
    /// Reads that found no record.
    pub not_found: u64,
}

impl OpStats {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            errors: 0,
            not_found: 0,
        }
    }

    /// Successful operations.
    pub fn ops(&self) -> u64 {
        self.latency.len()
    }

    fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.errors += other.errors;
        self.not_found += other.not_found;
    }
}

/// A histogram with the bounds every recorder uses.
// The bounds are constants that hdrhistogram accepts (every recorder
// builds one at once, so a bad constant fails every test).
#[allow(clippy::expect_used)]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGNIFICANT_FIGURES)
        .expect("static histogram bounds are valid")
}

/// Statistics of every operation kind; histograms are created on first use.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    ops: [Option<OpStats>; OpKind::ALL.len()],
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one operation of `kind` that took `latency`.
    pub fn record(&mut self, kind: OpKind, latency: Duration, outcome: Outcome) {
        let stats = self.ops[kind.index()].get_or_insert_with(OpStats::new);
        match outcome {
            Outcome::Error => stats.errors += 1,
            Outcome::Ok | Outcome::NotFound => {
                if outcome == Outcome::NotFound {
                    stats.not_found += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                stats
                    .latency
                    .saturating_record(us.clamp(1, MAX_TRACKABLE_US));
            }
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(OpStats::new).merge(theirs);
            }
        }
    }

    /// Statistics of `kind`, if any operation of it was recorded.
    pub fn stats(&self, kind: OpKind) -> Option<&OpStats> {
        self.ops[kind.index()].as_ref()
    }

    /// Every kind recorded, in report order.
    pub fn kinds(&self) -> impl Iterator<Item = (OpKind, &OpStats)> {
        OpKind::ALL
            .into_iter()
            .filter_map(|k| self.stats(k).map(|s| (k, s)))
    }

    /// All kinds merged into one.
    pub fn total(&self) -> OpStats {
        let mut all = OpStats::new();
        for (_, s) in self.kinds() {
            all.merge(s);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_kind_and_outcome() {
        let mut r = Recorder::new();
        r.record(OpKind::Read, Duration::from_micros(100), Outcome::Ok);
        r.record(OpKind::Read, Duration::from_micros(300), Outcome::NotFound);
        r.record(OpKind::Update, Duration::from_millis(2), Outcome::Ok);
        r.record(OpKind::Update, Duration::from_secs(1), Outcome::Error);
        let read = r.stats(OpKind::Read).unwrap();
        assert_eq!((read.ops(), read.not_found, read.errors), (2, 1, 0));
        let update = r.stats(OpKind::Update).unwrap();
        assert_eq!((update.ops(), update.errors), (1, 1));
        assert!(r.stats(OpKind::Scan).is_none());
        let total = r.total();
        assert_eq!((total.ops(), total.errors), (3, 1));
        assert!(total.latency.max() >= 1990);
    }

    #[test]
    fn merge_adds_up_and_clamps() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(OpKind::Scan, Duration::ZERO, Outcome::Ok);
        b.record(OpKind::Scan, Duration::from_secs(3600), Outcome::Ok);
        b.record(OpKind::Insert, Duration::from_micros(5), Outcome::Ok);
        a.merge(&b);
        assert_eq!(a.stats(OpKind::Scan).unwrap().ops(), 2);
        assert_eq!(a.stats(OpKind::Insert).unwrap().ops(), 1);
        let kinds: Vec<OpKind> = a.kinds().map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![OpKind::Insert, OpKind::Scan]);
    }
}
