//! Record numbers of inserts, and how many of them are known to be done.
//!
//! Inserts take the next record number; reads may only pick records below
//! the *acknowledged* count, the length of the prefix of record numbers whose
//! inserts have all finished (YCSB's `AcknowledgedCounterGenerator`). An
//! insert that failed is acknowledged too, so one failure cannot stall the
//! count; reads of it then count as "not found".

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared insert counter with an acknowledged watermark.
#[derive(Debug)]
pub struct InsertSequence {
    next: AtomicU64,
    acknowledged: AtomicU64,
    /// Finished record numbers at or above the watermark.
    finished: Mutex<BTreeSet<u64>>,
}

impl InsertSequence {
    /// A sequence whose first `existing` records are already present.
    pub fn new(existing: u64) -> Self {
        Self {
            next: AtomicU64::new(existing),
            acknowledged: AtomicU64::new(existing),
            finished: Mutex::new(BTreeSet::new()),
        }
    }

    /// The record number of a new insert.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the insert of `record` finished.
    pub fn acknowledge(&self, record: u64) {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        let mut mark = self.acknowledged.load(Ordering::Acquire);
        if record < mark {
            return;
        }
        finished.insert(record);
        while finished.remove(&mark) {
            mark += 1;
        }
        self.acknowledged.store(mark, Ordering::Release);
    }

    /// Records `0..acknowledged()` are all present.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }

    /// Record numbers handed out so far (present or in flight).
    pub fn issued(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_gaps() {
        let s = InsertSequence::new(10);
        let (a, b, c) = (s.next(), s.next(), s.next());
        assert_eq!((a, b, c), (10, 11, 12));
        s.acknowledge(c);
        s.acknowledge(b);
        assert_eq!(s.acknowledged(), 10, "record 10 still in flight");
        s.acknowledge(a);
        assert_eq!(s.acknowledged(), 13);
        assert_eq!(s.issued(), 13);
        s.acknowledge(5); // below the mark: ignored
        assert_eq!(s.acknowledged(), 13);
    }

    #[test]
    fn concurrent_acknowledgements_reach_the_end() {
        let s = std::sync::Arc::new(InsertSequence::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let r = s.next();
                        s.acknowledge(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.acknowledged(), 4000);
    }
}
