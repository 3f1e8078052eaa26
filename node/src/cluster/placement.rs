//! The target placement of every shard: which nodes hold its replicas and
//! which one should lead it, computed from the nodes and the current
//! placement. Pure and deterministic, so it can be tested exhaustively and
//! any node computes the same plan from the same inputs.
//!
//! Rules, in priority order:
//! 1. Every shard gets `min(RF, eligible nodes)` replicas on distinct
//!    eligible nodes, and on distinct racks when there are at least that
//!    many racks.
//! 2. Each node holds its weighted share of the replicas and of the
//!    leaderships, within ±1 (`floor(share) ..= ceil(share)`). A share is
//!    capped where the rules above make it unreachable (a node holds at
//!    most one replica per shard; with rack spreading a rack holds at most
//!    one replica per shard), and the excess goes to the others by weight.
//! 3. Nothing moves that need not move: of all placements meeting 1 and 2,
//!    the one keeping the most current replicas, so a node joining or
//!    leaving moves the minimum, not a reshuffle; then the one keeping the
//!    most current leaders.
//!
//! Rules 1–3 are solved as two minimum-cost flows (the solver is in
//! `balance/flow.rs`), not by greedy moves, which get stuck above the
//! minimum with weights or racks: first the replicas, exactly (balanced
//! and the fewest moves, leader changes only approximated as a
//! tie-breaker), then the leaders among them, exactly (balanced and the
//! fewest changes for those replicas). A plan is a fixed point: fed back
//! as the current placement it comes out unchanged.
//!
//! Ties are broken by a hash of (shard, node), which spreads choices evenly
//! without depending on the order of the inputs.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use flow::{EdgeId, Network};

mod flow;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node id.
    pub id: u64,
    /// Rack or zone; replicas of a shard spread over racks.
    pub rack: String,
    /// Relative capacity (1 = normal); a node of weight 2 gets twice the share.
    pub weight: u32,
    /// Whether the node may hold replicas (not draining, removed or dead).
    pub eligible: bool,
}

/// Where one shard lives. Serializable because the plan is stored in the
/// meta group (as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// Nodes holding a replica, the leader first.
    pub replicas: Vec<u64>,
}

impl ShardPlacement {
    /// The (preferred) leader, when the shard has replicas.
    pub fn leader(&self) -> Option<u64> {
        self.replicas.first().copied()
    }
}

/// The target placement of shards `0..current.len()` with `rf` replicas
/// each, starting from `current` (empty entries for new shards; ids of
/// unknown or ineligible nodes, duplicates and surplus replicas are
/// allowed and dropped as needed).
///
/// Replicas that stay keep their order after the leader, new ones follow,
/// so feeding the result back in returns it unchanged.
pub fn target(nodes: &[NodeSpec], current: &[ShardPlacement], rf: u32) -> Vec<ShardPlacement> {
    let mut eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    // Sorted on every field, so even duplicated ids (invalid input) give
    // the same result whatever the input order.
    eligible.sort_by(|a, b| (a.id, &a.rack, a.weight).cmp(&(b.id, &b.rack, b.weight)));
    eligible.dedup_by_key(|n| n.id);
    let shards = current.len();
    if eligible.is_empty() {
        return vec![ShardPlacement::default(); shards];
    }
    let rf = (rf as usize).min(eligible.len()).max(1);
    let layout = Layout::new(&eligible, shards, rf);
    // Current holders as node indices, eligible only, each once, in order.
    let held: Vec<Vec<usize>> = current
        .iter()
        .map(|p| {
            let mut out: Vec<usize> = Vec::new();
            for i in p.replicas.iter().filter_map(|&id| layout.index(id)) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            out
        })
        .collect();
    // The current leader counts only while it is eligible: the next
    // replica listed is no better a successor than any other.
    let led: Vec<Option<usize>> = current
        .iter()
        .map(|p| p.leader().and_then(|id| layout.index(id)))
        .collect();
    let replicas = layout.replicas(&held, &led);
    let leaders = layout.leaders(&replicas, &led);
    replicas
        .into_iter()
        .zip(leaders)
        .map(|(mut holders, leader)| {
            if let Some(pos) = leader.and_then(|l| holders.iter().position(|&h| h == l)) {
                holders[..=pos].rotate_right(1);
            }
            ShardPlacement {
                replicas: holders.into_iter().map(|i| layout.ids[i]).collect(),
            }
        })
        .collect()
}

/// Hash of (shard, node): the deterministic tie-breaker.
fn score(shard: usize, node: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&(shard as u64).to_be_bytes());
    buf[8..].copy_from_slice(&node.to_be_bytes());
    xxh3_64(&buf)
}

/// Weighted shares of `total` items over `weights`, each capped by its
/// `cap`, the capped excess going to the others by weight (water filling).
fn shares(total: f64, weights: &[f64], caps: &[f64]) -> Vec<f64> {
    let mut share = vec![0.0; weights.len()];
    let mut fixed = vec![false; weights.len()];
    loop {
        let left = total
            - share
                .iter()
                .zip(&fixed)
                .filter(|(_, f)| **f)
                .map(|(s, _)| s)
                .sum::<f64>();
        let weight: f64 = weights
            .iter()
            .zip(&fixed)
            .filter(|(_, f)| !**f)
            .map(|(w, _)| w)
            .sum();
        if weight <= 0.0 {
            return share;
        }
        let mut capped_any = false;
        for i in 0..weights.len() {
            if fixed[i] {
                continue;
            }
            share[i] = left * weights[i] / weight;
            if share[i] > caps[i] {
                share[i] = caps[i];
                fixed[i] = true;
                capped_any = true;
            }
        }
        if !capped_any {
            return share;
        }
    }
}

/// Lower and upper bound of a count that should be `share` within ±1:
/// `floor(share) ..= ceil(share)`, with float noise (a share computed as
/// 10.999999999 or 11.000000001) read as the integer it stands for.
fn band(share: f64) -> (i64, i64) {
    let eps = 1e-9 * share.abs().max(1.0);
    let lo = (share + eps).floor();
    let hi = (share - eps).ceil().max(lo);
    // Float-to-int `as` saturates (and maps NaN to 0): total.
    (lo as i64, hi as i64)
}

/// Adds `vertex`'s edges to `sink` for a count banded by `(lo, hi)` and at
/// most `max`: the first `lo` units are free, the next up to `hi` cost
/// `unit` each, and any beyond `hi` (only when the band cannot be met)
/// cost twice that. Filling every floor and respecting every ceiling thus
/// outweighs any saving made elsewhere that costs less than `unit`.
fn add_band(
    g: &mut Network,
    vertex: usize,
    sink: usize,
    (lo, hi): (i64, i64),
    max: i64,
    unit: i64,
) {
    let lo = lo.clamp(0, max);
    let hi = hi.clamp(lo, max);
    g.add_edge(vertex, sink, lo, 0);
    g.add_edge(vertex, sink, hi - lo, unit);
    g.add_edge(vertex, sink, max - hi, unit.saturating_mul(2));
}

/// Vertex numbering shared by both flows.
const SOURCE: usize = 0;
const SINK: usize = 1;

/// The eligible nodes and their bands, for one placement computation.
struct Layout {
    /// Eligible node ids, ascending; a node's index here names it below.
    ids: Vec<u64>,
    /// Rack index of each node; every node its own rack when racks are
    /// not spread (fewer racks than replicas).
    rack: Vec<usize>,
    racks: usize,
    /// Whether replicas of a shard go to distinct racks.
    spread: bool,
    /// Replicas per shard.
    rf: usize,
    shards: usize,
    /// Band of replicas and of leaderships per node.
    replica_band: Vec<(i64, i64)>,
    leader_band: Vec<(i64, i64)>,
}

impl Layout {
    /// `eligible` sorted by id without duplicates, `rf` at most its length.
    fn new(eligible: &[&NodeSpec], shards: usize, rf: usize) -> Self {
        let ids: Vec<u64> = eligible.iter().map(|n| n.id).collect();
        let names: BTreeSet<&str> = eligible.iter().map(|n| n.rack.as_str()).collect();
        let spread = names.len() >= rf && names.len() > 1;
        let rack: Vec<usize> = if spread {
            let names: Vec<&str> = names.into_iter().collect();
            eligible
                .iter()
                .map(|n| names.binary_search(&n.rack.as_str()).unwrap_or(0))
                .collect()
        } else {
            (0..eligible.len()).collect()
        };
        let racks = rack.iter().max().map_or(0, |r| r + 1);
        let weight: Vec<f64> = eligible
            .iter()
            .map(|n| f64::from(n.weight.max(1)))
            .collect();
        let s = shards as f64;

        // Replicas: racks get their weighted share, at most one replica of
        // each shard (without spreading every node is its own rack); then
        // nodes share their rack's, again at most one per shard.
        let mut rack_weight = vec![0.0; racks];
        for (i, w) in weight.iter().enumerate() {
            rack_weight[rack[i]] += w;
        }
        let rack_total = shares(s * rf as f64, &rack_weight, &vec![s; racks]);
        let mut replica_share = vec![0.0; ids.len()];
        for (r, total) in rack_total.into_iter().enumerate() {
            let members: Vec<usize> = (0..ids.len()).filter(|&i| rack[i] == r).collect();
            let weights: Vec<f64> = members.iter().map(|&i| weight[i]).collect();
            let caps = vec![s; members.len()];
            for (&i, x) in members.iter().zip(shares(total, &weights, &caps)) {
                replica_share[i] = x;
            }
        }
        // Leaderships: weighted, at most the node's replicas.
        let leader_share = shares(s, &weight, &replica_share);
        Layout {
            rack,
            racks,
            spread,
            rf,
            shards,
            replica_band: replica_share.into_iter().map(band).collect(),
            leader_band: leader_share.into_iter().map(band).collect(),
            ids,
        }
    }

    /// Index of node `id`, when it is eligible.
    fn index(&self, id: u64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Node indices in the order shard `shard` prefers them when nothing
    /// else decides: by the (shard, node) hash, so ties spread evenly and
    /// a shard's partners vary from shard to shard.
    fn preference(&self, shard: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_by_key(|&i| (Reverse(score(shard, self.ids[i])), i));
        order
    }

    /// Each shard's replica holders (node indices), by one min-cost flow:
    ///
    /// source → shard (RF units) → (shard, rack) (1 unit, when racks are
    /// spread) → node (1 unit: one replica per node and shard) → sink
    /// (the node's band, see [`add_band`]).
    ///
    /// A (shard, node) unit costs `K` (more than all the cheaper units
    /// together) when the replica is new, so the cheapest flow fills every
    /// node's band first, then moves the fewest replicas, which no sequence
    /// of greedy moves can promise.
    ///
    /// Among plans moving the fewest, it saves leader changes (2 per unit
    /// otherwise, so a plan's extra cost counts changes it will likely
    /// need):
    /// - a node keeping a replica of a shard it leads pays 0, for as many
    ///   such shards as it may still lead (its leadership ceiling: a vertex
    ///   per node carries these units, the first `ceil` free), and 3 beyond
    ///   that: it must hand those leaderships over anyway, and handing one
    ///   over with the replica (to the node taking it) beats giving up a
    ///   replica it does not lead, which would force a change elsewhere;
    /// - a node short of its leadership floor pays 1 for a replica (kept
    ///   or new) of a shard whose leader must hand it over (led beyond its
    ///   ceiling, or by a node that is gone), for as many as it is short:
    ///   there it can take the leadership in one change.
    fn replicas(&self, held: &[Vec<usize>], led: &[Option<usize>]) -> Vec<Vec<usize>> {
        let (n, shards, racks) = (self.ids.len(), self.shards, self.racks);
        let shard_v = |s: usize| 2 + s;
        let node_v = |i: usize| 2 + shards + i;
        let lead_v = |i: usize| 2 + shards + n + i;
        let gain_v = |i: usize| 2 + shards + 2 * n + i;
        let rack_v = |s: usize, r: usize| 2 + shards + 3 * n + s * racks + r;
        let vertices = 2 + shards + 3 * n + if self.spread { shards * racks } else { 0 };
        let mut g = Network::new(vertices);
        let slots = (shards * self.rf) as i64;
        let new_cost = slots.saturating_mul(3).saturating_add(1);
        let unit = new_cost
            .saturating_add(3)
            .saturating_mul(slots)
            .saturating_add(1);
        // Leaderships now, and how many each node must give up or gain.
        let mut leading = vec![0i64; n];
        for &l in led.iter().flatten() {
            leading[l] += 1;
        }
        let over: Vec<bool> = (0..n).map(|i| leading[i] > self.leader_band[i].1).collect();
        let short: Vec<i64> = (0..n)
            .map(|i| (self.leader_band[i].0 - leading[i]).max(0))
            .collect();
        let mut pairs: Vec<(usize, usize, EdgeId)> = Vec::with_capacity(shards * self.rf * 2);
        for s in 0..shards {
            g.add_edge(SOURCE, shard_v(s), self.rf as i64, 0);
            let handed_over = led[s].is_none_or(|l| over[l]);
            // Where the (shard, node) unit goes, at what cost.
            let to = |i: usize| {
                let moved = if held[s].contains(&i) { 0 } else { new_cost };
                if led[s] == Some(i) {
                    (lead_v(i), 0)
                } else if handed_over && short[i] > 0 {
                    (gain_v(i), moved)
                } else {
                    (node_v(i), moved + 2)
                }
            };
            let order = self.preference(s);
            if self.spread {
                let mut seen = vec![false; racks];
                for &first in &order {
                    let r = self.rack[first];
                    if std::mem::replace(&mut seen[r], true) {
                        continue;
                    }
                    g.add_edge(shard_v(s), rack_v(s, r), 1, 0);
                    for &i in order.iter().filter(|&&i| self.rack[i] == r) {
                        let (v, cost) = to(i);
                        pairs.push((s, i, g.add_edge(rack_v(s, r), v, 1, cost)));
                    }
                }
            } else {
                for &i in &order {
                    let (v, cost) = to(i);
                    pairs.push((s, i, g.add_edge(shard_v(s), v, 1, cost)));
                }
            }
        }
        for (i, &short) in short.iter().enumerate() {
            let ceil = self.leader_band[i].1.max(0);
            g.add_edge(lead_v(i), node_v(i), ceil, 0);
            g.add_edge(lead_v(i), node_v(i), shards as i64, 3);
            g.add_edge(gain_v(i), node_v(i), short, 1);
            g.add_edge(gain_v(i), node_v(i), shards as i64, 2);
            let band = self.replica_band[i];
            add_band(&mut g, node_v(i), SINK, band, shards as i64, unit);
        }
        g.min_cost_flow(SOURCE, SINK, slots);

        // Current holders that stay keep their order, new ones follow in
        // the shard's preference order.
        let mut chosen = vec![Vec::new(); shards];
        for &(s, i, e) in &pairs {
            if g.flow(e) > 0 {
                chosen[s].push(i);
            }
        }
        chosen
            .into_iter()
            .zip(held)
            .map(|(picked, held)| {
                let mut out: Vec<usize> = held
                    .iter()
                    .copied()
                    .filter(|i| picked.contains(i))
                    .collect();
                out.extend(picked.iter().filter(|i| !held.contains(i)));
                out
            })
            .collect()
    }

    /// Each shard's leader (a node index among its replicas), by a second
    /// min-cost flow: source → shard (1 unit) → each replica (cost 0 for
    /// the current leader, else 1) → sink (the node's leadership band). So
    /// every node leads its share within ±1 when the replicas allow it,
    /// with the fewest leader changes.
    fn leaders(&self, replicas: &[Vec<usize>], led: &[Option<usize>]) -> Vec<Option<usize>> {
        let (n, shards) = (self.ids.len(), self.shards);
        let shard_v = |s: usize| 2 + s;
        let node_v = |i: usize| 2 + shards + i;
        let mut g = Network::new(2 + shards + n);
        let unit = shards as i64 + 1;
        let mut pairs: Vec<Vec<(usize, EdgeId)>> = Vec::with_capacity(shards);
        for (s, holders) in replicas.iter().enumerate() {
            g.add_edge(SOURCE, shard_v(s), 1, 0);
            let current = led[s].filter(|l| holders.contains(l));
            let mut order: Vec<usize> = holders.clone();
            order.sort_by_key(|&i| (Some(i) != current, Reverse(score(s, self.ids[i])), i));
            pairs.push(
                order
                    .into_iter()
                    .map(|i| {
                        let cost = i64::from(Some(i) != current);
                        (i, g.add_edge(shard_v(s), node_v(i), 1, cost))
                    })
                    .collect(),
            );
        }
        for i in 0..n {
            add_band(
                &mut g,
                node_v(i),
                SINK,
                self.leader_band[i],
                shards as i64,
                unit,
            );
        }
        g.min_cost_flow(SOURCE, SINK, shards as i64);
        pairs
            .iter()
            .map(|edges| {
                edges
                    .iter()
                    .find(|(_, e)| g.flow(*e) > 0)
                    .or(edges.first())
                    .map(|(i, _)| *i)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
