//! Where a shard's replicas should live: rendezvous (highest-random-weight)
//! hashing over the active nodes.
//!
//! Each node gets a score `xxh3(shard ‖ node)`; a shard's replicas are the
//! `rf` highest-scoring nodes, best first, and the first is its preferred
//! leader. It is pure and deterministic, so every node computes the same
//! answer from the same node list, and when one node joins or leaves only the
//! shards whose top `rf` it enters or leaves change, by one replica each.
//! (Rack awareness and weighted balance come with the placement work.)

use xxhash_rust::xxh3::xxh3_64;

use crate::partition::ShardId;

fn score(shard: ShardId, node: u64) -> u64 {
    let mut buf = [0u8; 12];
    buf[..4].copy_from_slice(&shard.to_be_bytes());
    buf[4..].copy_from_slice(&node.to_be_bytes());
    xxh3_64(&buf)
}

/// The target replicas of `shard` among `nodes`, best first (at most `rf`;
/// fewer when the cluster has fewer nodes).
pub fn replicas(shard: ShardId, nodes: &[u64], rf: u32) -> Vec<u64> {
    let mut ranked: Vec<(u64, u64)> = nodes.iter().map(|&n| (score(shard, n), n)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by_key(|(_, n)| *n);
    ranked
        .into_iter()
        .take(rf as usize)
        .map(|(_, n)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn replicas_are_distinct_members_and_stable(
            nodes in proptest::collection::btree_set(1u64..1000, 1..12),
            rf in 1u32..6,
            shard in any::<u32>(),
        ) {
            let nodes: Vec<u64> = nodes.into_iter().collect();
            let r = replicas(shard, &nodes, rf);
            prop_assert_eq!(r.len(), nodes.len().min(rf as usize));
            let set: std::collections::BTreeSet<_> = r.iter().collect();
            prop_assert_eq!(set.len(), r.len());
            prop_assert!(r.iter().all(|n| nodes.contains(n)));
            let mut reversed = nodes.clone();
            reversed.reverse();
            prop_assert_eq!(replicas(shard, &reversed, rf), r);
        }

        #[test]
        fn a_joining_node_moves_at_most_one_replica_per_shard(
            nodes in proptest::collection::btree_set(1u64..1000, 3..10),
            new in 1000u64..2000,
        ) {
            let before: Vec<u64> = nodes.into_iter().collect();
            let mut after = before.clone();
            after.push(new);
            for shard in 0..64 {
                let a = replicas(shard, &before, 3);
                let b = replicas(shard, &after, 3);
                let kept = a.iter().filter(|n| b.contains(n)).count();
                prop_assert!(kept >= 2, "shard {shard}: {a:?} -> {b:?}");
                prop_assert!(b.iter().all(|n| a.contains(n) || *n == new));
            }
        }
    }

    #[test]
    fn leaders_spread_over_nodes() {
        let nodes = [1, 2, 3];
        let mut leaders = [0usize; 4];
        for shard in 0..64 {
            leaders[replicas(shard, &nodes, 3)[0] as usize] += 1;
        }
        for (n, led) in leaders.iter().enumerate().skip(1) {
            assert!((10..=32).contains(led), "node {n} leads {led} of 64");
        }
    }
}
