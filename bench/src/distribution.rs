//! Which record an operation touches: YCSB's request distributions.
//!
//! - [`Zipfian`]: Gray et al.'s "Quickly generating billion-record synthetic
//!   databases" generator (YCSB `ZipfianGenerator`), item 0 the most popular.
//! - [`ScrambledZipfian`]: zipfian popularity, but the popular items are
//!   scattered over the key space by hashing (YCSB `ScrambledZipfianGenerator`).
//! - [`SkewedLatest`]: the most recently inserted records are the most
//!   popular (YCSB `SkewedLatestGenerator`, workload D).
//! - uniform: every record equally likely.

use rand::Rng;

use crate::keygen::fnv_hash64;

/// Skew of every zipfian generator (YCSB's `zipfian_constant`).
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Item count of the zipfian behind [`ScrambledZipfian`] (YCSB's).
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;
/// zeta(10^10, 0.99), precomputed by YCSB so it need not be summed here.
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// Which distribution picks the records of reads, updates and scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionKind {
    /// Popular records scattered over the key space.
    Zipfian,
    /// Every record equally likely.
    Uniform,
    /// The newest records are the most popular.
    Latest,
}

impl DistributionKind {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zipfian => "zipfian",
            Self::Uniform => "uniform",
            Self::Latest => "latest",
        }
    }
}

/// zeta(n, theta) = sum over i in 1..=n of 1 / i^theta, continuing a partial
/// sum that already covers `1..=from`.
fn zeta_from(from: u64, n: u64, theta: f64, partial: f64) -> f64 {
    (from..n).fold(partial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// Zipfian over `0..items`, item 0 the most popular. The item count may grow
/// between samples (the sum behind it is extended, not recomputed).
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `0..items` (`items` >= 1), summing zeta(items).
    pub fn new(items: u64) -> Self {
        let items = items.max(1);
        let zetan = zeta_from(0, items, ZIPFIAN_CONSTANT, 0.0);
        Self::with_zetan(items, zetan)
    }

    /// A generator over `0..items` with zeta(items) given.
    fn with_zetan(items: u64, zetan: f64) -> Self {
        let theta = ZIPFIAN_CONSTANT;
        let zeta2 = zeta_from(0, 2, theta, 0.0);
        let mut z = Self {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// Items the generator currently ranges over.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows the range to `0..items` (shrinking is ignored: the popular
    /// items stay the same and callers bound the result themselves).
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan = zeta_from(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
    }

    /// The next item, in `0..items()`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// Zipfian popularity over `0..items`, hot items scattered by hashing.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    zipf: Zipfian,
    items: u64,
}

impl ScrambledZipfian {
    /// A generator over `0..items` (`items` >= 1).
    pub fn new(items: u64) -> Self {
        Self {
            zipf: Zipfian::with_zetan(SCRAMBLED_ITEMS, SCRAMBLED_ZETAN),
            items: items.max(1),
        }
    }

    /// The next item, in `0..items`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        fnv_hash64(self.zipf.sample(rng)) % self.items
    }
}

/// Popularity skewed towards the newest of `0..latest`.
#[derive(Debug, Clone)]
pub struct SkewedLatest {
    zipf: Zipfian,
}

impl SkewedLatest {
    /// A generator for a store that starts with `items` records.
    pub fn new(items: u64) -> Self {
        Self {
            zipf: Zipfian::new(items),
        }
    }

    /// The next item in `0..latest`: `latest - 1` the most likely.
    pub fn sample(&mut self, rng: &mut impl Rng, latest: u64) -> u64 {
        let latest = latest.max(1);
        self.zipf.grow_to(latest);
        let back = self.zipf.sample(rng);
        latest - 1 - back.min(latest - 1)
    }
}

/// Picks record numbers for reads, updates and scans.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over the records present (loaded plus acknowledged inserts).
    Uniform,
    /// Scrambled zipfian over the loaded records.
    Zipfian(ScrambledZipfian),
    /// Skewed towards the newest acknowledged insert.
    Latest(SkewedLatest),
}

impl KeyChooser {
    /// A chooser of `kind` for a store loaded with `records` records.
    pub fn new(kind: DistributionKind, records: u64) -> Self {
        match kind {
            DistributionKind::Uniform => Self::Uniform,
            DistributionKind::Zipfian => Self::Zipfian(ScrambledZipfian::new(records)),
            DistributionKind::Latest => Self::Latest(SkewedLatest::new(records)),
        }
    }

    /// The next record number; `present` is how many records (from 0) are
    /// known to exist.
    pub fn next(&mut self, rng: &mut impl Rng, present: u64) -> u64 {
        let present = present.max(1);
        match self {
            Self::Uniform => rng.random_range(0..present),
            Self::Zipfian(z) => z.sample(rng).min(present - 1),
            Self::Latest(l) => l.sample(rng, present),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const SAMPLES: usize = 200_000;

    fn counts(n: u64, mut f: impl FnMut() -> u64) -> Vec<usize> {
        let mut c = vec![0usize; n as usize];
        for _ in 0..SAMPLES {
            let v = f();
            assert!(v < n, "sample {v} out of 0..{n}");
            c[v as usize] += 1;
        }
        c
    }

    #[test]
    fn zipfian_is_in_range_and_rank_ordered() {
        let mut rng = SmallRng::seed_from_u64(1);
        let z = Zipfian::new(1000);
        let c = counts(1000, || z.sample(&mut rng));
        // P(0) = 1/zeta(1000, 0.99) ~ 0.133.
        let p0 = c[0] as f64 / SAMPLES as f64;
        let expected = 1.0 / zeta_from(0, 1000, ZIPFIAN_CONSTANT, 0.0);
        assert!((p0 - expected).abs() < 0.01, "p0 {p0} expected {expected}");
        // Popularity falls with rank: head > middle > tail.
        assert!(c[0] > c[1] && c[1] > c[10]);
        let head: usize = c[..10].iter().sum();
        let tail: usize = c[990..].iter().sum();
        assert!(head > 20 * tail, "head {head} tail {tail}");
    }

    #[test]
    fn zipfian_growth_matches_fresh_sum() {
        let mut grown = Zipfian::new(100);
        grown.grow_to(5000);
        let fresh = Zipfian::new(5000);
        assert_eq!(grown.items(), 5000);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
    }

    #[test]
    fn scrambled_zipfian_is_skewed_but_scattered() {
        let mut rng = SmallRng::seed_from_u64(2);
        let z = ScrambledZipfian::new(10_000);
        let c = counts(10_000, || z.sample(&mut rng));
        let mut sorted = c.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // Skewed: the hottest 1% of records take far more than 1% of the
        // requests (YCSB's scrambling flattens the head somewhat: ~20%).
        let top: usize = sorted[..100].iter().sum();
        assert!(top > SAMPLES / 10, "top 1% got {top} of {SAMPLES}");
        // Scattered: the hottest record is not simply record 0, and hot
        // records appear in every tenth of the key space.
        let hottest = c
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map(|(i, _)| i);
        assert_ne!(hottest, Some(0));
        let threshold = sorted[99];
        for tenth in c.chunks(1000) {
            assert!(
                tenth.iter().any(|n| *n >= threshold),
                "a tenth of the key space has no hot key"
            );
        }
    }

    #[test]
    fn latest_favours_newest_and_follows_growth() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut l = SkewedLatest::new(1000);
        let c = counts(1000, || l.sample(&mut rng, 1000));
        assert!(c[999] > c[998] && c[998] > c[900]);
        let newest_tenth: usize = c[900..].iter().sum();
        assert!(newest_tenth > SAMPLES / 2, "{newest_tenth}");
        // After inserts the newest record is the most popular.
        let c = counts(2000, || l.sample(&mut rng, 2000));
        let hottest = c
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map(|(i, _)| i);
        assert_eq!(hottest, Some(1999));
    }

    #[test]
    fn uniform_is_flat() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut k = KeyChooser::new(DistributionKind::Uniform, 100);
        let c = counts(100, || k.next(&mut rng, 100));
        let expected = SAMPLES / 100;
        for n in c {
            assert!(n.abs_diff(expected) < expected / 5, "{n} vs {expected}");
        }
    }

    #[test]
    fn chooser_stays_below_present_records() {
        let mut rng = SmallRng::seed_from_u64(5);
        for kind in [
            DistributionKind::Zipfian,
            DistributionKind::Uniform,
            DistributionKind::Latest,
        ] {
            let mut k = KeyChooser::new(kind, 1000);
            for _ in 0..10_000 {
                assert!(k.next(&mut rng, 500) < 500);
                assert!(k.next(&mut rng, 1) == 0);
            }
        }
    }
}
