//! A bytes-per-second limit shared by every snapshot a node sends, so that
//! creating replicas elsewhere (a rebalance, a repair) cannot take the disk
//! and network bandwidth that client traffic needs. It also counts the
//! bytes it lets through, which is how much data rebalancing has copied.
//!
//! It is a virtual-clock pacer: each piece reserves the interval its bytes
//! take at the configured rate, right after the previous reservation, and
//! its sender waits until that interval starts. Idle time is not banked
//! beyond one second, so a pause is not followed by an unlimited burst.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Paces snapshot bytes across all of a node's outgoing snapshot streams.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next_free: Mutex<Option<Instant>>,
    sent: AtomicU64,
}

/// Most idle time that counts as credit.
const MAX_CREDIT: Duration = Duration::from_secs(1);

impl Throttle {
    /// A pacer at `bytes_per_sec` (0: unlimited).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            next_free: Mutex::new(None),
            sent: AtomicU64::new(0),
        }
    }

    /// Snapshot bytes let through since the node started.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` and says how long to wait before sending them.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let mut next = self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let earliest = now.checked_sub(MAX_CREDIT).unwrap_or(now);
        let start = next.map_or(now, |t| t.max(earliest));
        *next = Some(start + cost);
        start.saturating_duration_since(now)
    }

    /// Waits (blocking the thread; for the snapshot reader's blocking task)
    /// until `bytes` may be sent.
    pub fn wait_blocking(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_spaced_at_the_rate() {
        let t = Throttle::new(1000);
        let t0 = Instant::now();
        // 500 bytes at 1000 B/s each: 0 s, 0.5 s, 1.0 s, ...
        let waits: Vec<Duration> = (0..4).map(|_| t.reserve(500, t0)).collect();
        assert_eq!(
            waits,
            [0, 500, 1000, 1500].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn idle_time_buys_at_most_one_second_of_burst() {
        let t = Throttle::new(1000);
        let t0 = Instant::now();
        assert_eq!(t.reserve(1000, t0), Duration::ZERO);
        // Ten idle seconds later, one second's worth goes at once, then
        // the rate applies again.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.reserve(1000, later), Duration::ZERO);
        assert_eq!(t.reserve(1000, later), Duration::ZERO);
        assert_eq!(t.reserve(1000, later), Duration::from_secs(1));
    }

    #[test]
    fn zero_means_unlimited() {
        let t = Throttle::new(0);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.reserve(1 << 30, now), Duration::ZERO);
        }
        assert_eq!(t.sent(), 3 << 30);
    }
}
