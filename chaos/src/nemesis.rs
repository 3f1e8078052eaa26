//! The nemesis: a seeded schedule of faults, and their injection into a
//! cluster of real `cairn-node` processes on a [`crate::network::Network`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a node, restart it on its data later.
    Kill,
    /// SIGSTOP a node, SIGCONT it later (a paused leader).
    Pause,
    /// Split the nodes: one isolated, majority/minority, or a bridge node
    /// that sees both sides.
    Partition,
    /// Packet loss or a slow, queueing link on one node.
    Delay,
    /// A node joins, or one is drained and removed, under load.
    Churn,
    /// A node's filesystem fills up.
    Disk,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Delay,
        FaultKind::Churn,
        FaultKind::Disk,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Churn => "churn",
            FaultKind::Disk => "disk",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault {s:?}; the kinds are {}",
                    FaultKind::ALL.map(FaultKind::name).join(", ")
                )
            })
    }
}

/// Who a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The node leading the most shards when the fault starts.
    BusiestLeader,
    /// A node picked by the seed (an index into the running nodes).
    Random(usize),
}

/// The shape of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The target alone against the rest.
    Isolate,
    /// The target and the next nodes up to a minority against the rest.
    Minority,
    /// The target sees everyone; the others are split in two halves that
    /// do not see each other.
    Bridge,
}

/// What a churn step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnStep {
    /// Start one more node.
    Join,
    /// Drain a node, remove it, and check that its fenced identity stops
    /// when restarted on its data without `--join`.
    Remove,
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// Seconds after the start of the run at which it begins.
    pub at_s: f64,
    /// How long it lasts (seconds).
    pub for_s: f64,
    /// Who it hits.
    pub target: Target,
    /// The partition shape (partitions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Loss probability (delay faults with loss), else a slow link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Join or remove (churn only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnStep>,
}

/// Draws the schedule for a run of `duration`: faults back to back with
/// quiet gaps, kinds cycling through `kinds` in a seeded order so a short
/// run still covers each of them.
pub fn schedule(seed: u64, duration: Duration, kinds: &[FaultKind]) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<FaultKind> = kinds.to_vec();
    let mut faults = Vec::new();
    let mut t = rng.random_range(1.0..2.5);
    let end = duration.as_secs_f64() - 1.0;
    let mut joined = false;
    let mut i = 0;
    while t < end && !order.is_empty() {
        if i % order.len() == 0 {
            // A fresh shuffle each cycle.
            for j in (1..order.len()).rev() {
                order.swap(j, rng.random_range(0..=j));
            }
        }
        let kind = order[i % order.len()];
        i += 1;
        let for_s: f64 = rng.random_range(2.0..5.0);
        let target = if rng.random_bool(0.5) {
            Target::BusiestLeader
        } else {
            Target::Random(rng.random_range(0..16))
        };
        let mut fault = Fault {
            kind,
            at_s: t,
            for_s: for_s.min((end - t).max(0.5)),
            target,
            split: None,
            loss: None,
            churn: None,
        };
        match kind {
            FaultKind::Partition => {
                fault.split = [Split::Isolate, Split::Minority, Split::Bridge]
                    .choose(&mut rng)
                    .copied();
            }
            FaultKind::Delay => {
                if rng.random_bool(0.5) {
                    let p: f64 = rng.random_range(0.1..0.4);
                    fault.loss = Some((p * 100.0).round() / 100.0);
                }
            }
            FaultKind::Churn => {
                fault.churn = Some(if joined {
                    ChurnStep::Remove
                } else {
                    ChurnStep::Join
                });
                joined = !joined;
            }
            FaultKind::Kill | FaultKind::Pause | FaultKind::Disk => {}
        }
        faults.push(fault);
        t += for_s + rng.random_range(0.5..2.0);
    }
    faults
}

/// Stops or continues a process.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(pid as i32), sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_the_same_for_the_same_seed_and_covers_every_kind() {
        let d = Duration::from_secs(40);
        let a = schedule(7, d, &FaultKind::ALL);
        assert_eq!(a, schedule(7, d, &FaultKind::ALL));
        assert_ne!(a, schedule(8, d, &FaultKind::ALL));
        for kind in FaultKind::ALL {
            assert!(a.iter().any(|f| f.kind == kind), "{kind} missing: {a:?}");
        }
        assert!(a.iter().all(|f| f.at_s + f.for_s <= 40.0));
    }

    #[test]
    fn fault_names_parse_back() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
        }
        assert!("flood".parse::<FaultKind>().unwrap_err().contains("kill"));
    }
}
