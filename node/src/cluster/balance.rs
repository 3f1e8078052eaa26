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
//!    leaderships, within ±1. A share is capped where the rules above make
//!    it unreachable (a node holds at most one replica per shard; with rack
//!    spreading a rack holds at most one replica per shard), and the
//!    excess goes to the others by weight.
//! 3. Nothing moves that need not move: replicas on eligible nodes stay,
//!    missing replicas go where there is the most room, and balancing moves
//!    one replica from the most loaded node to the least loaded one at a
//!    time, so a node joining or leaving moves about the minimum
//!    (`S·RF/N`), not a reshuffle.
//!
//! Ties are broken by a hash of (shard, node), which spreads choices evenly
//! without depending on the order of the inputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use xxhash_rust::xxh3::xxh3_64;

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

/// Where one shard lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
/// each, starting from `current` (missing or empty entries for new shards).
pub fn target(nodes: &[NodeSpec], current: &[ShardPlacement], rf: u32) -> Vec<ShardPlacement> {
    let mut eligible: Vec<&NodeSpec> = nodes.iter().filter(|n| n.eligible).collect();
    eligible.sort_by_key(|n| n.id);
    eligible.dedup_by_key(|n| n.id);
    let shards = current.len();
    if eligible.is_empty() {
        return vec![ShardPlacement::default(); shards];
    }
    let rf = (rf as usize).min(eligible.len()).max(1);
    let racks: BTreeSet<&str> = eligible.iter().map(|n| n.rack.as_str()).collect();
    let spread_racks = racks.len() >= rf && racks.len() > 1;
    let mut plan = Plan::new(&eligible, shards, rf, spread_racks);
    plan.keep(current);
    plan.fill();
    plan.balance_replicas();
    plan.choose_leaders(current);
    plan.into_placement()
}

/// Hash of (shard, node): the deterministic tie-breaker.
fn score(shard: usize, node: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&(shard as u64).to_be_bytes());
    buf[8..].copy_from_slice(&node.to_be_bytes());
    xxh3_64(&buf)
}

/// Width, in replicas, of the load buckets `fill` treats as equal.
const FILL_BUCKET: f64 = 4.0;

/// `excess` rounded down to a multiple of `width` (unchanged for 0).
fn bucket(excess: f64, width: f64) -> f64 {
    if width > 0.0 {
        (excess / width).floor()
    } else {
        excess
    }
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

/// Working state of one placement computation.
struct Plan {
    /// Eligible node ids, ascending.
    ids: Vec<u64>,
    rack: BTreeMap<u64, String>,
    /// Weighted share of replicas per node and per rack, and of
    /// leaderships per node.
    replica_share: BTreeMap<u64, f64>,
    rack_share: BTreeMap<String, f64>,
    leader_share: BTreeMap<u64, f64>,
    rf: usize,
    /// Replica holders per shard (unordered until leaders are chosen).
    holders: Vec<Vec<u64>>,
    /// Replicas per node.
    count: BTreeMap<u64, usize>,
    /// Replicas not in the current placement, as (shard, node): moving one
    /// of these again costs nothing, so balancing prefers them.
    fresh: BTreeSet<(usize, u64)>,
}

impl Plan {
    fn new(eligible: &[&NodeSpec], shards: usize, rf: usize, spread_racks: bool) -> Self {
        let ids: Vec<u64> = eligible.iter().map(|n| n.id).collect();
        let rack: BTreeMap<u64, String> = eligible
            .iter()
            .map(|n| {
                let r = if spread_racks {
                    n.rack.clone()
                } else {
                    // Without enough racks, treat every node as its own.
                    format!("node-{}", n.id)
                };
                (n.id, r)
            })
            .collect();
        let weight = |n: &NodeSpec| f64::from(n.weight.max(1));
        let s = shards as f64;

        // Replicas: racks get their weighted share (at most one replica per
        // shard each), then nodes share their rack's (at most S each).
        let mut rack_weight: BTreeMap<&str, f64> = BTreeMap::new();
        for n in eligible {
            *rack_weight.entry(rack[&n.id].as_str()).or_default() += weight(n);
        }
        let rack_names: Vec<&str> = rack_weight.keys().copied().collect();
        // A rack (or, without spreading, a node) holds at most one replica
        // of each shard.
        let rack_caps = vec![s; rack_names.len()];
        let rack_weights: Vec<f64> = rack_names.iter().map(|r| rack_weight[r]).collect();
        let rack_total = shares(s * rf as f64, &rack_weights, &rack_caps);
        let rack_share: BTreeMap<String, f64> = rack_names
            .iter()
            .zip(&rack_total)
            .map(|(r, x)| (r.to_string(), *x))
            .collect();
        let mut replica_share = BTreeMap::new();
        for (r, total) in rack_names.iter().zip(rack_total) {
            let members: Vec<&&NodeSpec> = eligible.iter().filter(|n| rack[&n.id] == *r).collect();
            let weights: Vec<f64> = members.iter().map(|n| weight(n)).collect();
            let caps = vec![s; members.len()];
            for (n, x) in members.iter().zip(shares(total, &weights, &caps)) {
                replica_share.insert(n.id, x);
            }
        }
        // Leaderships: weighted, at most the node's replicas.
        let weights: Vec<f64> = eligible.iter().map(|n| weight(n)).collect();
        let caps: Vec<f64> = eligible.iter().map(|n| replica_share[&n.id]).collect();
        let leader_share = eligible
            .iter()
            .zip(shares(s, &weights, &caps))
            .map(|(n, x)| (n.id, x))
            .collect();
        Plan {
            count: ids.iter().map(|&id| (id, 0)).collect(),
            ids,
            rack,
            replica_share,
            rack_share,
            leader_share,
            rf,
            holders: vec![Vec::new(); shards],
            fresh: BTreeSet::new(),
        }
    }

    /// How far `node` is above its share (negative: below).
    fn excess(&self, node: u64) -> f64 {
        self.count[&node] as f64 - self.replica_share[&node]
    }

    /// Whether `node` may take a replica of `shard` that `leaving` gives up.
    fn may_take(&self, shard: usize, node: u64, leaving: Option<u64>) -> bool {
        if self.holders[shard].contains(&node) {
            return false;
        }
        let rack = &self.rack[&node];
        !self.holders[shard]
            .iter()
            .filter(|&&h| Some(h) != leaving)
            .any(|h| &self.rack[h] == rack)
    }

    /// Keeps current replicas on eligible nodes (one per rack when racks
    /// are spread, at most RF, the current leader first).
    fn keep(&mut self, current: &[ShardPlacement]) {
        for (shard, placement) in current.iter().enumerate() {
            for &node in &placement.replicas {
                if self.holders[shard].len() >= self.rf || !self.count.contains_key(&node) {
                    continue;
                }
                if self.may_take(shard, node, None) {
                    self.holders[shard].push(node);
                    *self.count.entry(node).or_default() += 1;
                }
            }
        }
    }

    /// Gives every shard its missing replicas, on the nodes furthest below
    /// their share.
    fn fill(&mut self) {
        for shard in 0..self.holders.len() {
            // A shard placed from scratch spreads its partners (coarse
            // buckets); a shard that lost a replica refills exactly where
            // the need is greatest, which keeps a join or leave near the
            // minimum of moves.
            let width = if self.holders[shard].is_empty() {
                FILL_BUCKET
            } else {
                0.0
            };
            while self.holders[shard].len() < self.rf {
                // The rack furthest below its share, then its node furthest
                // below its own.
                let rack_excess = |n: u64| {
                    let r = &self.rack[&n];
                    self.rack_count(r) - self.rack_share[r]
                };
                let best = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|&n| self.may_take(shard, n, None))
                    .min_by(|&a, &b| {
                        // A node whose share is a replica of every shard
                        // must get them all: it comes first.
                        let full =
                            |n: u64| self.replica_share[&n] < self.holders.len() as f64 - 0.5;
                        full(a).cmp(&full(b)).then_with(|| {
                            // Coarse buckets, so near-equal candidates are told
                            // apart by the hash: replicas of different shards
                            // then pair with varied partners, which keeps later
                            // moves free to go anywhere (balancing evens out
                            // what the buckets leave, moving only new replicas).
                            bucket(rack_excess(a), width)
                                .total_cmp(&bucket(rack_excess(b), width))
                                .then_with(|| {
                                    bucket(self.excess(a), width)
                                        .total_cmp(&bucket(self.excess(b), width))
                                })
                                .then_with(|| score(shard, b).cmp(&score(shard, a)))
                        })
                    });
                let Some(node) = best else { break };
                self.holders[shard].push(node);
                self.fresh.insert((shard, node));
                *self.count.entry(node).or_default() += 1;
            }
        }
    }

    /// Moves replicas until every rack, then every node, holds its share
    /// within ±1: first between racks (each move lands on the least loaded
    /// node of the receiving rack, so a new node gets them directly), then
    /// between nodes of the same rack, which never breaks rack spreading.
    /// (Without rack spreading every node is its own rack.)
    fn balance_replicas(&mut self) {
        let limit = self.holders.len() * self.rf + self.ids.len();
        for _ in 0..limit {
            let moves = self.rack_moves();
            if moves.is_empty() {
                break;
            }
            for (shard, from, to) in moves {
                self.move_replica(shard, from, to);
            }
        }
        for _ in 0..limit {
            let Some((shard, from, to)) = self.node_move() else {
                break;
            };
            self.move_replica(shard, from, to);
        }
    }

    fn move_replica(&mut self, shard: usize, from: u64, to: u64) {
        if let Some(slot) = self.holders[shard].iter_mut().find(|h| **h == from) {
            *slot = to;
        }
        self.fresh.remove(&(shard, from));
        self.fresh.insert((shard, to));
        *self.count.entry(from).or_default() -= 1;
        *self.count.entry(to).or_default() += 1;
    }

    fn rack_count(&self, rack: &str) -> f64 {
        self.ids
            .iter()
            .filter(|n| self.rack[n] == rack)
            .map(|n| self.count[n] as f64)
            .sum()
    }

    /// Replica moves between racks that bring a rack outside its band
    /// (`floor(share) ..= ceil(share)`) closer to it: one direct move when
    /// possible, else the shortest chain through other racks (each rack on
    /// the way takes one replica and gives another, of a shard the next
    /// rack lacks). Empty when every rack is in its band or nothing helps.
    fn rack_moves(&self) -> Vec<(usize, u64, u64)> {
        let racks: Vec<(&str, f64, f64)> = self
            .rack_share
            .iter()
            .map(|(r, x)| (r.as_str(), self.rack_count(r), *x))
            .collect();
        let out = |c: f64, x: f64| c > x.ceil() || c < x.floor();
        if !racks.iter().any(|&(_, c, x)| out(c, x)) {
            return Vec::new();
        }
        let mut donors: Vec<&(&str, f64, f64)> =
            racks.iter().filter(|(_, c, x)| *c > x.floor()).collect();
        donors.sort_by(|a, b| (b.1 - b.2).total_cmp(&(a.1 - a.2)).then(a.0.cmp(b.0)));
        let mut takers: Vec<&(&str, f64, f64)> =
            racks.iter().filter(|(_, c, x)| *c < x.ceil()).collect();
        takers.sort_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)).then(a.0.cmp(b.0)));
        let useful = |(f, fc, fx): (&str, f64, f64), (t, tc, tx): (&str, f64, f64)| {
            f != t && (out(fc, fx) || out(tc, tx)) && (fc - fx) - (tc - tx) > 1.0
        };
        for &&from in &donors {
            for &&to in &takers {
                if useful(from, to)
                    && let Some(m) = self.move_between(from.0, to.0)
                {
                    return vec![m];
                }
            }
        }
        for &&from in &donors {
            for &&to in &takers {
                if useful(from, to)
                    && let Some(path) = self.rack_chain(from.0, to.0)
                {
                    return path;
                }
            }
        }
        Vec::new()
    }

    /// The shortest chain of single replica moves carrying one replica's
    /// worth of load from rack `from` to rack `to` through other racks.
    fn rack_chain(&self, from: &str, to: &str) -> Option<Vec<(usize, u64, u64)>> {
        let names: Vec<&str> = self.rack_share.keys().map(String::as_str).collect();
        let mut came_from: BTreeMap<&str, (&str, (usize, u64, u64))> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(rack) = queue.pop_front() {
            for &next in &names {
                if seen.contains(next) {
                    continue;
                }
                let Some(step) = self.move_between(rack, next) else {
                    continue;
                };
                seen.insert(next);
                came_from.insert(next, (rack, step));
                if next == to {
                    let mut path = Vec::new();
                    let mut at = to;
                    while let Some(&(prev, step)) = came_from.get(at) {
                        path.push(step);
                        at = prev;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }

    /// The best replica to move from rack `from` to rack `to`: from the
    /// most loaded node of `from` holding a shard `to` lacks, to the least
    /// loaded node of `to`.
    fn move_between(&self, from: &str, to: &str) -> Option<(usize, u64, u64)> {
        let mut best: Option<(bool, f64, u64, usize, u64, u64)> = None;
        for (shard, holders) in self.holders.iter().enumerate() {
            let Some(&giver) = holders.iter().find(|h| self.rack[*h] == from) else {
                continue;
            };
            if holders.iter().any(|h| self.rack[h] == to) {
                continue;
            }
            let taker = self
                .ids
                .iter()
                .copied()
                .filter(|n| self.rack[n] == to)
                .min_by(|&a, &b| {
                    self.excess(a)
                        .total_cmp(&self.excess(b))
                        .then_with(|| score(shard, b).cmp(&score(shard, a)))
                })?;
            let fresh = self.fresh.contains(&(shard, giver));
            let gap = self.excess(giver) - self.excess(taker);
            let sc = score(shard, taker);
            if best.is_none_or(|(f, d, s, ..)| (fresh, gap, sc) > (f, d, s)) {
                best = Some((fresh, gap, sc, shard, giver, taker));
            }
        }
        best.map(|(_, _, _, shard, giver, taker)| (shard, giver, taker))
    }

    /// One replica move between two nodes of the same rack that brings a
    /// node outside its band closer to it.
    fn node_move(&self) -> Option<(usize, u64, u64)> {
        let out = |n: u64| {
            let (c, x) = (self.count[&n] as f64, self.replica_share[&n]);
            c > x.ceil() || c < x.floor()
        };
        if !self.ids.iter().any(|&n| out(n)) {
            return None;
        }
        let mut donors: Vec<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|&n| self.count[&n] as f64 > self.replica_share[&n].floor())
            .collect();
        donors.sort_by(|&a, &b| self.excess(b).total_cmp(&self.excess(a)).then(a.cmp(&b)));
        let mut takers: Vec<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|&n| (self.count[&n] as f64) < self.replica_share[&n].ceil())
            .collect();
        takers.sort_by(|&a, &b| self.excess(a).total_cmp(&self.excess(b)).then(a.cmp(&b)));
        for &from in &donors {
            for &to in &takers {
                let same_rack = self.rack[&from] == self.rack[&to];
                let helps = out(from) || out(to);
                if from == to || !same_rack || !helps || self.excess(from) - self.excess(to) <= 1.0
                {
                    continue;
                }
                let shard = (0..self.holders.len())
                    .filter(|&s| {
                        self.holders[s].contains(&from) && self.may_take(s, to, Some(from))
                    })
                    .max_by_key(|&s| (self.fresh.contains(&(s, from)), score(s, to)));
                if let Some(shard) = shard {
                    return Some((shard, from, to));
                }
            }
        }
        None
    }

    /// Picks each shard's leader: the current one while it stays a replica,
    /// else the replica leading least; then moves leaderships (along chains
    /// of shards when no direct move exists) until every node leads its
    /// weighted share within ±1.
    fn choose_leaders(&mut self, current: &[ShardPlacement]) {
        let shards = self.holders.len();
        let mut leader: Vec<Option<u64>> = vec![None; shards];
        let mut led: BTreeMap<u64, usize> = self.ids.iter().map(|&n| (n, 0)).collect();
        for (s, slot) in leader.iter_mut().enumerate() {
            let cur = current.get(s).and_then(ShardPlacement::leader);
            if let Some(l) = cur.filter(|l| self.holders[s].contains(l)) {
                *slot = Some(l);
                *led.entry(l).or_default() += 1;
            }
        }
        for (s, slot) in leader.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let pick = self.holders[s].iter().copied().min_by(|&a, &b| {
                let ea = led[&a] as f64 - self.leader_share[&a];
                let eb = led[&b] as f64 - self.leader_share[&b];
                ea.total_cmp(&eb)
                    .then_with(|| score(s, b).cmp(&score(s, a)))
            });
            if let Some(l) = pick {
                *slot = Some(l);
                *led.entry(l).or_default() += 1;
            }
        }
        let limit = shards + self.ids.len();
        for _ in 0..limit {
            let over =
                |n: u64, led: &BTreeMap<u64, usize>| led[&n] as f64 > self.leader_share[&n].ceil();
            let under = |n: u64, led: &BTreeMap<u64, usize>| {
                (led[&n] as f64) < self.leader_share[&n].floor()
            };
            let has_room = |n: u64, led: &BTreeMap<u64, usize>| {
                (led[&n] as f64) < self.leader_share[&n].ceil()
            };
            let can_give =
                |n: u64, led: &BTreeMap<u64, usize>| led[&n] as f64 > self.leader_share[&n].floor();
            let path = if let Some(&start) = self.ids.iter().find(|&&n| over(n, &led)) {
                self.leader_path(&leader, start, |n| has_room(n, &led))
            } else if let Some(&end) = self.ids.iter().find(|&&n| under(n, &led)) {
                // Search backwards: who can hand a leadership towards `end`.
                self.ids
                    .iter()
                    .copied()
                    .filter(|&n| n != end && can_give(n, &led))
                    .find_map(|start| self.leader_path(&leader, start, |n| n == end))
            } else {
                break;
            };
            let Some(path) = path else { break };
            for (shard, from, to) in path {
                leader[shard] = Some(to);
                *led.entry(from).or_default() -= 1;
                *led.entry(to).or_default() += 1;
            }
        }
        for (s, l) in leader.into_iter().enumerate() {
            if let Some(l) = l
                && let Some(pos) = self.holders[s].iter().position(|&h| h == l)
            {
                self.holders[s][..=pos].rotate_right(1);
            }
        }
    }

    /// The shortest chain of leadership moves from `start` to a node that
    /// satisfies `accept`: each step moves one shard's leadership from a
    /// node to another replica of that shard.
    fn leader_path(
        &self,
        leader: &[Option<u64>],
        start: u64,
        accept: impl Fn(u64) -> bool,
    ) -> Option<Vec<(usize, u64, u64)>> {
        let mut came_from: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut seen = BTreeSet::from([start]);
        while let Some(node) = queue.pop_front() {
            for (s, l) in leader.iter().enumerate() {
                if *l != Some(node) {
                    continue;
                }
                for &next in &self.holders[s] {
                    if !seen.insert(next) {
                        continue;
                    }
                    came_from.insert(next, (s, node));
                    if accept(next) {
                        let mut path = Vec::new();
                        let mut at = next;
                        while let Some(&(shard, prev)) = came_from.get(&at) {
                            path.push((shard, prev, at));
                            if prev == start {
                                break;
                            }
                            at = prev;
                        }
                        path.reverse();
                        return Some(path);
                    }
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn into_placement(self) -> Vec<ShardPlacement> {
        self.holders
            .into_iter()
            .map(|replicas| ShardPlacement { replicas })
            .collect()
    }
}

#[cfg(test)]
mod tests;
