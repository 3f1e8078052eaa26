//! Jittered exponential backoff between retry attempts.

use std::time::Duration;

use rand::Rng;

/// First delay before a retry.
pub(crate) const INITIAL: Duration = Duration::from_millis(20);
/// Upper bound of a single delay.
pub(crate) const CAP: Duration = Duration::from_secs(1);

/// Produces growing, randomised delays so that many clients retrying after
/// the same failure do not hammer the cluster in lock-step.
///
/// The nominal delay starts at [`INITIAL`] and doubles on every step up to
/// [`CAP`]; each returned delay is drawn uniformly from the upper half of the
/// nominal one ("equal jitter"), which keeps a useful minimum wait.
#[derive(Debug)]
pub(crate) struct Backoff {
    nominal: Duration,
}

impl Backoff {
    /// A backoff at its initial delay.
    pub(crate) fn new() -> Self {
        Backoff { nominal: INITIAL }
    }

    /// The delay to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal;
        self.nominal = (nominal * 2).min(CAP);
        let half = nominal / 2;
        let jitter_nanos = rand::rng().random_range(0..=half.as_nanos());
        // `jitter_nanos <= half <= CAP`, so it always fits in a u64.
        half + Duration::from_nanos(u64::try_from(jitter_nanos).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_half_and_full_nominal_delay() {
        let mut backoff = Backoff::new();
        let mut nominal = INITIAL;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{delay:?} vs {nominal:?}"
            );
            nominal = (nominal * 2).min(CAP);
        }
    }

    #[test]
    fn delays_never_exceed_cap() {
        let mut backoff = Backoff::new();
        let max = (0..100).map(|_| backoff.next_delay()).max();
        assert!(max <= Some(CAP));
    }
}
