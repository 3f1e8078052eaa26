use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn node(id: u64, rack: &str, weight: u32) -> NodeSpec {
    NodeSpec {
        id,
        rack: rack.to_string(),
        weight,
        eligible: true,
    }
}

/// Replicas and leaderships per node.
fn counts(p: &[ShardPlacement]) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let mut replicas = BTreeMap::new();
    let mut leaders = BTreeMap::new();
    for s in p {
        for &n in &s.replicas {
            *replicas.entry(n).or_default() += 1;
        }
        if let Some(l) = s.leader() {
            *leaders.entry(l).or_default() += 1;
        }
    }
    (replicas, leaders)
}

/// Replicas that are in `after` but were not in `before`, over all shards.
fn moved(before: &[ShardPlacement], after: &[ShardPlacement]) -> usize {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            a.replicas
                .iter()
                .filter(|n| !b.replicas.contains(n))
                .count()
        })
        .sum()
}

/// A lower bound on the replica moves from `before` to any valid, balanced
/// placement over `nodes`: every replica on a node no longer eligible must
/// move, and a unit (a rack when racks are spread, and a node) below its
/// share after taking every such replica it may hold needs moves from
/// elsewhere. (A rack cannot take a replica of a shard it already holds.)
fn minimum_moves(nodes: &[NodeSpec], before: &[ShardPlacement], rf: u32) -> usize {
    let eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    let rf = (rf as usize).min(eligible.len());
    let total: f64 = eligible.iter().map(|n| f64::from(n.weight)).sum();
    let racks: BTreeSet<&str> = eligible.iter().map(|n| n.rack.as_str()).collect();
    let spread = racks.len() >= rf && racks.len() > 1;
    let rack_of = |id: u64| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .map_or("", |n| n.rack.as_str())
    };
    let is_eligible = |id: u64| eligible.iter().any(|n| n.id == id);
    let orphans: usize = before
        .iter()
        .map(|s| s.replicas.iter().filter(|&&n| !is_eligible(n)).count())
        .sum();
    let slots = (before.len() * rf) as f64;
    // How far `members` (a node, or a whole rack) stays below its share
    // after taking every orphaned replica it may hold.
    let short = |members: &[u64], weight: f64, rack_level: bool| -> usize {
        let share = slots * weight / total;
        let kept: usize = before
            .iter()
            .map(|s| s.replicas.iter().filter(|n| members.contains(n)).count())
            .sum();
        let blocked = |s: &ShardPlacement| {
            s.replicas.iter().any(|&n| {
                is_eligible(n)
                    && (members.contains(&n)
                        || (rack_level && members.iter().any(|&m| rack_of(m) == rack_of(n))))
            })
        };
        let placeable = before
            .iter()
            .filter(|s| s.replicas.iter().any(|&n| !is_eligible(n)) && !blocked(s))
            .count();
        (share.floor() as usize).saturating_sub(kept + placeable)
    };
    let node_short: usize = eligible
        .iter()
        .map(|n| short(&[n.id], f64::from(n.weight), spread))
        .sum();
    let rack_short: usize = if spread {
        racks
            .iter()
            .map(|r| {
                let members: Vec<u64> = eligible
                    .iter()
                    .filter(|n| n.rack == *r)
                    .map(|n| n.id)
                    .collect();
                let w: f64 = eligible
                    .iter()
                    .filter(|n| n.rack == *r)
                    .map(|n| f64::from(n.weight))
                    .sum();
                short(&members, w, true)
            })
            .sum()
    } else {
        0
    };
    orphans + node_short.max(rack_short)
}

/// Moves allowed for a join or leave whose lower bound is `minimum`: 10%
/// over it, plus one for rounding to the ±1 bands.
fn allowed_moves(minimum: usize) -> f64 {
    (minimum as f64 * 1.1).ceil() + 1.0
}

/// [`cluster`] with every node in one rack. The movement bound is proven
/// for these; with replicas spread over racks the greedy balancer can need
/// up to about a quarter more moves than [`minimum_moves`] in some clusters
/// (open work, see `docs/ARCHITECTURE.md`).
fn one_rack_cluster() -> impl Strategy<Value = (Vec<NodeSpec>, usize, u32)> {
    cluster().prop_map(|(mut nodes, shards, rf)| {
        for n in &mut nodes {
            n.rack = "r0".into();
        }
        (nodes, shards, rf)
    })
}

/// A random cluster: nodes with racks and weights, a shard count and RF,
/// restricted to clusters where every weighted share is reachable (no node
/// or rack would need more than one replica of a shard).
fn cluster() -> impl Strategy<Value = (Vec<NodeSpec>, usize, u32)> {
    (
        proptest::collection::vec((0usize..4, 1u32..4), 3..10),
        prop_oneof![Just(16usize), Just(64), Just(128)],
        1u32..4,
    )
        .prop_map(|(specs, shards, rf)| {
            let nodes: Vec<NodeSpec> = specs
                .into_iter()
                .enumerate()
                .map(|(i, (rack, weight))| node(i as u64 + 1, &format!("r{rack}"), weight))
                .collect();
            (nodes, shards, rf)
        })
        .prop_filter("every share reachable", |(nodes, _, rf)| {
            feasible(nodes, *rf)
        })
}

fn feasible(nodes: &[NodeSpec], rf: u32) -> bool {
    let eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    let rf = (rf as usize).min(eligible.len()) as f64;
    let total: f64 = eligible.iter().map(|n| f64::from(n.weight)).sum();
    let mut racks: BTreeMap<&str, f64> = BTreeMap::new();
    for n in &eligible {
        *racks.entry(&n.rack).or_default() += f64::from(n.weight);
    }
    let spread = racks.len() as f64 >= rf && racks.len() > 1;
    eligible
        .iter()
        .all(|n| f64::from(n.weight) / total <= 1.0 / rf)
        && (!spread || racks.values().all(|w| w / total <= 1.0 / rf))
}

fn check_valid(nodes: &[NodeSpec], p: &[ShardPlacement], rf: u32) -> Result<(), TestCaseError> {
    let eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    let want = (rf as usize).min(eligible.len());
    let racks: BTreeSet<&str> = eligible.iter().map(|n| n.rack.as_str()).collect();
    let spread = racks.len() >= want && racks.len() > 1;
    for (s, sp) in p.iter().enumerate() {
        prop_assert_eq!(sp.replicas.len(), want, "shard {} has {:?}", s, sp.replicas);
        let distinct: BTreeSet<u64> = sp.replicas.iter().copied().collect();
        prop_assert_eq!(distinct.len(), want, "shard {} repeats a node", s);
        for n in &sp.replicas {
            prop_assert!(
                eligible.iter().any(|e| e.id == *n),
                "shard {} on ineligible {}",
                s,
                n
            );
        }
        if spread {
            let used: BTreeSet<&str> = sp
                .replicas
                .iter()
                .map(|n| {
                    eligible
                        .iter()
                        .find(|e| e.id == *n)
                        .map_or("", |e| e.rack.as_str())
                })
                .collect();
            prop_assert_eq!(
                used.len(),
                want,
                "shard {} shares a rack: {:?}",
                s,
                sp.replicas
            );
        }
    }
    Ok(())
}

fn check_balanced(nodes: &[NodeSpec], p: &[ShardPlacement], rf: u32) -> Result<(), TestCaseError> {
    let eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    let rf = (rf as usize).min(eligible.len()) as f64;
    let total: f64 = eligible.iter().map(|n| f64::from(n.weight)).sum();
    let shards = p.len() as f64;
    let (replicas, leaders) = counts(p);
    for n in &eligible {
        let share = f64::from(n.weight) / total;
        let (r, l) = (
            replicas.get(&n.id).copied().unwrap_or(0) as f64,
            leaders.get(&n.id).copied().unwrap_or(0) as f64,
        );
        let want_r = shards * rf * share;
        let want_l = shards * share;
        prop_assert!(
            (r - want_r).abs() <= 1.0,
            "node {} holds {} replicas, share {:.2}",
            n.id,
            r,
            want_r
        );
        prop_assert!(
            (l - want_l).abs() <= 1.0,
            "node {} leads {}, share {:.2}",
            n.id,
            l,
            want_l
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_new_cluster_is_valid_and_balanced((nodes, shards, rf) in cluster()) {
        let p = target(&nodes, &vec![ShardPlacement::default(); shards], rf);
        check_valid(&nodes, &p, rf)?;
        check_balanced(&nodes, &p, rf)?;
        // Deterministic whatever the input order, and a fixed point.
        let mut reversed = nodes.clone();
        reversed.reverse();
        prop_assert_eq!(&target(&reversed, &vec![ShardPlacement::default(); shards], rf), &p);
        prop_assert_eq!(&target(&nodes, &p, rf), &p);
    }

    #[test]
    fn a_joining_node_moves_about_the_minimum((nodes, shards, rf) in one_rack_cluster(), weight in 1u32..3) {
        let before = target(&nodes, &vec![ShardPlacement::default(); shards], rf);
        let mut grown = nodes.clone();
        grown.push(node(100, "r0", weight));
        prop_assume!(feasible(&grown, rf));
        let after = target(&grown, &before, rf);
        check_valid(&grown, &after, rf)?;
        check_balanced(&grown, &after, rf)?;
        let minimum = minimum_moves(&grown, &before, rf);
        let m = moved(&before, &after);
        prop_assert!(m as f64 <= allowed_moves(minimum),
            "moved {} replicas, minimum {}", m, minimum);
    }

    #[test]
    fn a_leaving_node_moves_about_the_minimum((nodes, shards, rf) in one_rack_cluster(), leaving in 0usize..10) {
        let before = target(&nodes, &vec![ShardPlacement::default(); shards], rf);
        let mut shrunk = nodes.clone();
        let idx = leaving % shrunk.len();
        shrunk[idx].eligible = false;
        prop_assume!(shrunk.iter().filter(|n| n.eligible).count() >= rf as usize);
        prop_assume!(feasible(&shrunk, rf));
        let after = target(&shrunk, &before, rf);
        check_valid(&shrunk, &after, rf)?;
        check_balanced(&shrunk, &after, rf)?;
        let minimum = minimum_moves(&shrunk, &before, rf);
        let m = moved(&before, &after);
        prop_assert!(m as f64 <= allowed_moves(minimum),
            "moved {} replicas, minimum {}", m, minimum);
    }
}

#[test]
fn fewer_nodes_than_rf_give_every_shard_every_node() {
    let nodes = [node(1, "a", 1), node(2, "a", 1)];
    let p = target(&nodes, &vec![ShardPlacement::default(); 8], 3);
    assert!(p.iter().all(|s| {
        let mut r = s.replicas.clone();
        r.sort_unstable();
        r == [1, 2]
    }));
}

#[test]
fn a_node_too_heavy_for_its_share_is_capped_at_one_replica_per_shard() {
    // Node 1 would get 10/12 of 3 × 16 replicas, but can hold only 16.
    let nodes = [
        node(1, "a", 10),
        node(2, "b", 1),
        node(3, "c", 1),
        node(4, "d", 1),
    ];
    let p = target(&nodes, &vec![ShardPlacement::default(); 16], 3);
    let (replicas, _) = counts(&p);
    assert_eq!(replicas[&1], 16);
    assert_eq!(replicas[&2] + replicas[&3] + replicas[&4], 32);
    for n in 2..=4 {
        assert!((10..=11).contains(&replicas[&n]), "{replicas:?}");
    }
}

#[test]
fn no_eligible_node_leaves_shards_unplaced() {
    let mut n = node(1, "a", 1);
    n.eligible = false;
    let p = target(&[n], &vec![ShardPlacement::default(); 4], 3);
    assert!(p.iter().all(|s| s.replicas.is_empty()));
}
