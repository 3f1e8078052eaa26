//! YCSB's core workloads A–F: which operations run, in what proportions.

use rand::Rng;

use crate::distribution::DistributionKind;

/// One of YCSB's core workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadName {
    /// Update heavy: 50% reads, 50% updates.
    A,
    /// Read mostly: 95% reads, 5% updates.
    B,
    /// Read only.
    C,
    /// Read latest: 95% reads, 5% inserts, newest records most popular.
    D,
    /// Short ranges: 95% scans (1–100 records), 5% inserts.
    E,
    /// Read-modify-write: 50% reads, 50% read-then-update.
    F,
}

impl WorkloadName {
    /// Lower-case letter, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::D => "d",
            Self::E => "e",
            Self::F => "f",
        }
    }
}

/// Kind of a measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Read one record.
    Read,
    /// Overwrite one existing record.
    Update,
    /// Write a new record.
    Insert,
    /// Read up to N records in key order from a start key.
    Scan,
    /// Read one record, then write it back (measured as one operation).
    ReadModifyWrite,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
    ];

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Update => "update",
            Self::Insert => "insert",
            Self::Scan => "scan",
            Self::ReadModifyWrite => "read_modify_write",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Proportions of each operation kind (they sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Share of reads.
    pub read: f64,
    /// Share of updates.
    pub update: f64,
    /// Share of inserts.
    pub insert: f64,
    /// Share of scans.
    pub scan: f64,
    /// Share of read-modify-writes.
    pub read_modify_write: f64,
}

impl Mix {
    const NONE: Mix = Mix {
        read: 0.0,
        update: 0.0,
        insert: 0.0,
        scan: 0.0,
        read_modify_write: 0.0,
    };

    fn share(&self, kind: OpKind) -> f64 {
        match kind {
            OpKind::Read => self.read,
            OpKind::Update => self.update,
            OpKind::Insert => self.insert,
            OpKind::Scan => self.scan,
            OpKind::ReadModifyWrite => self.read_modify_write,
        }
    }
}

/// A workload: its mix, its default request distribution, its scan lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Which core workload.
    pub name: WorkloadName,
    /// Operation proportions.
    pub mix: Mix,
    /// Distribution when none is given on the command line.
    pub default_distribution: DistributionKind,
    /// Longest scan; scan lengths are uniform in `1..=max_scan_length`.
    pub max_scan_length: u32,
}

impl Workload {
    /// The definition of core workload `name` (YCSB's `workloads/workload?`).
    pub fn core(name: WorkloadName) -> Self {
        let (mix, default_distribution) = match name {
            WorkloadName::A => (
                Mix {
                    read: 0.5,
                    update: 0.5,
                    ..Mix::NONE
                },
                DistributionKind::Zipfian,
            ),
            WorkloadName::B => (
                Mix {
                    read: 0.95,
                    update: 0.05,
                    ..Mix::NONE
                },
                DistributionKind::Zipfian,
            ),
            WorkloadName::C => (
                Mix {
                    read: 1.0,
                    ..Mix::NONE
                },
                DistributionKind::Zipfian,
            ),
            WorkloadName::D => (
                Mix {
                    read: 0.95,
                    insert: 0.05,
                    ..Mix::NONE
                },
                DistributionKind::Latest,
            ),
            WorkloadName::E => (
                Mix {
                    scan: 0.95,
                    insert: 0.05,
                    ..Mix::NONE
                },
                DistributionKind::Zipfian,
            ),
            WorkloadName::F => (
                Mix {
                    read: 0.5,
                    read_modify_write: 0.5,
                    ..Mix::NONE
                },
                DistributionKind::Zipfian,
            ),
        };
        Self {
            name,
            mix,
            default_distribution,
            max_scan_length: 100,
        }
    }

    /// The kind of the next operation.
    pub fn next_op(&self, rng: &mut impl Rng) -> OpKind {
        let mut u: f64 = rng.random();
        let mut last = OpKind::Read;
        for kind in OpKind::ALL {
            let share = self.mix.share(kind);
            if share <= 0.0 {
                continue;
            }
            last = kind;
            if u < share {
                return kind;
            }
            u -= share;
        }
        // Rounding left a sliver past the last share.
        last
    }

    /// Length of the next scan.
    pub fn scan_length(&self, rng: &mut impl Rng) -> u32 {
        rng.random_range(1..=self.max_scan_length.max(1))
    }

    /// Whether the workload writes new records.
    pub fn inserts(&self) -> bool {
        self.mix.insert > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn mixes_sum_to_one() {
        for name in WorkloadName::value_variants() {
            let m = Workload::core(*name).mix;
            let total: f64 = OpKind::ALL.iter().map(|k| m.share(*k)).sum();
            assert!((total - 1.0).abs() < 1e-12, "{name:?}: {total}");
        }
    }

    #[test]
    fn sampled_mix_matches_definition() {
        const N: usize = 200_000;
        let mut rng = SmallRng::seed_from_u64(9);
        for name in WorkloadName::value_variants() {
            let w = Workload::core(*name);
            let mut counts = [0usize; 5];
            for _ in 0..N {
                counts[w.next_op(&mut rng).index()] += 1;
            }
            for kind in OpKind::ALL {
                let got = counts[kind.index()] as f64 / N as f64;
                let want = w.mix.share(kind);
                assert!(
                    (got - want).abs() < 0.005,
                    "{name:?} {kind:?}: {got} vs {want}"
                );
                if want == 0.0 {
                    assert_eq!(counts[kind.index()], 0, "{name:?} must never run {kind:?}");
                }
            }
        }
    }

    #[test]
    fn defaults_follow_ycsb() {
        assert_eq!(
            Workload::core(WorkloadName::D).default_distribution,
            DistributionKind::Latest
        );
        assert_eq!(
            Workload::core(WorkloadName::A).default_distribution,
            DistributionKind::Zipfian
        );
        assert!(Workload::core(WorkloadName::E).inserts());
        assert!(!Workload::core(WorkloadName::F).inserts());
    }

    #[test]
    fn scan_lengths_are_bounded() {
        let mut rng = SmallRng::seed_from_u64(10);
        let w = Workload::core(WorkloadName::E);
        let lens: Vec<u32> = (0..10_000).map(|_| w.scan_length(&mut rng)).collect();
        assert!(lens.iter().all(|l| (1..=100).contains(l)));
        assert!(lens.contains(&1) && lens.contains(&100));
    }

    #[test]
    fn op_index_matches_all_order() {
        for (i, k) in OpKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
