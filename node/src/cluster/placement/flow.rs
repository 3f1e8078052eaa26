//! Minimum-cost maximum flow on a small integer network: the exact solver
//! behind placement, which turns "keep as many replicas as possible while
//! every node ends within its band" into one optimisation instead of a
//! sequence of greedy moves that can get stuck far from the optimum.
//!
//! Primal-dual successive shortest paths: Dijkstra over reduced costs
//! (Johnson potentials, so costs must be non-negative when added) finds the
//! current shortest distance, then blocking flows (Dinic) push every unit
//! that can go along paths of that distance before the next Dijkstra. The
//! number of Dijkstra rounds is the number of distinct path costs, which
//! placement keeps small, so a thousand shards take milliseconds.
//!
//! Deterministic: among equally cheap paths, edges are tried in the order
//! they were added, so callers decide ties by the order they build in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// "Unreachable" distance: far above any path cost placement builds.
const INF: i64 = i64::MAX / 4;

/// A flow network: vertices `0..n`, directed edges with a capacity and a
/// cost per unit. Edge `e`'s residual twin is `e ^ 1`.
#[derive(Debug, Clone)]
pub(super) struct Network {
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
    adj: Vec<Vec<usize>>,
}

/// Edge handle returned by [`Network::add_edge`], to read its flow back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EdgeId(usize);

impl Network {
    /// An empty network on `vertices` vertices.
    pub(super) fn new(vertices: usize) -> Self {
        Network {
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
            adj: vec![Vec::new(); vertices],
        }
    }

    /// Adds an edge `from -> to` carrying up to `cap` units at `cost` each.
    /// Negative capacities count as zero and negative costs as zero (the
    /// potentials need non-negative costs to start from).
    pub(super) fn add_edge(&mut self, from: usize, to: usize, cap: i64, cost: i64) -> EdgeId {
        let id = self.to.len();
        self.to.push(to);
        self.cap.push(cap.max(0));
        self.cost.push(cost.max(0));
        self.to.push(from);
        self.cap.push(0);
        self.cost.push(-cost.max(0));
        self.adj[from].push(id);
        self.adj[to].push(id + 1);
        EdgeId(id)
    }

    /// Units flowing through `edge`.
    pub(super) fn flow(&self, edge: EdgeId) -> i64 {
        self.cap[edge.0 ^ 1]
    }

    /// Pushes as much flow as possible, up to `limit`, from `source` to
    /// `sink` at minimum total cost; returns (flow, cost).
    pub(super) fn min_cost_flow(&mut self, source: usize, sink: usize, limit: i64) -> (i64, i64) {
        let n = self.adj.len();
        if source >= n || sink >= n || source == sink {
            return (0, 0);
        }
        let mut potential = vec![0i64; n];
        let mut total = 0i64;
        while total < limit {
            let dist = self.dijkstra(source, sink, &potential);
            let reach = dist[sink];
            if reach >= INF {
                break;
            }
            for (p, d) in potential.iter_mut().zip(&dist) {
                *p = p.saturating_add((*d).min(reach));
            }
            // Every path of reduced cost 0 is now a shortest path: push
            // blocking flows along them until none is left.
            while total < limit {
                let Some(mut level) = self.levels(source, sink, &potential) else {
                    break;
                };
                let mut next = vec![0usize; n];
                loop {
                    let pushed = self.augment(
                        source,
                        sink,
                        &potential,
                        &mut level,
                        &mut next,
                        limit - total,
                    );
                    if pushed == 0 {
                        break;
                    }
                    total += pushed;
                    if total >= limit {
                        break;
                    }
                }
            }
        }
        let cost = (0..self.to.len())
            .step_by(2)
            .map(|e| self.cap[e ^ 1].saturating_mul(self.cost[e]))
            .fold(0i64, i64::saturating_add);
        (total, cost)
    }

    /// Cost of `e` relative to the potentials (never negative on an edge
    /// with residual capacity once the potentials are shortest distances).
    fn reduced(&self, e: usize, potential: &[i64]) -> i64 {
        let from = self.to[e ^ 1];
        self.cost[e]
            .saturating_add(potential[from])
            .saturating_sub(potential[self.to[e]])
    }

    /// Shortest reduced distances from `source`, settled up to `sink`
    /// (vertices beyond it keep a tentative distance, at least the sink's).
    fn dijkstra(&self, source: usize, sink: usize, potential: &[i64]) -> Vec<i64> {
        let mut dist = vec![INF; self.adj.len()];
        let mut heap = BinaryHeap::new();
        dist[source] = 0;
        heap.push(Reverse((0i64, source)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            if u == sink {
                break;
            }
            for &e in &self.adj[u] {
                if self.cap[e] <= 0 {
                    continue;
                }
                let v = self.to[e];
                let nd = d.saturating_add(self.reduced(e, potential).max(0));
                if nd < dist[v] {
                    dist[v] = nd;
                    heap.push(Reverse((nd, v)));
                }
            }
        }
        dist
    }

    /// BFS levels over the admissible edges (residual capacity, reduced
    /// cost 0); `None` when the sink is out of reach.
    fn levels(&self, source: usize, sink: usize, potential: &[i64]) -> Option<Vec<usize>> {
        let mut level = vec![usize::MAX; self.adj.len()];
        level[source] = 0;
        let mut queue = VecDeque::from([source]);
        while let Some(u) = queue.pop_front() {
            for &e in &self.adj[u] {
                let v = self.to[e];
                if self.cap[e] > 0 && level[v] == usize::MAX && self.reduced(e, potential) == 0 {
                    level[v] = level[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        (level[sink] != usize::MAX).then_some(level)
    }

    /// One augmenting path along the level graph (iterative DFS with
    /// current-edge pointers, so a blocking flow costs O(V·E) at worst);
    /// returns the units pushed, 0 when the level graph is exhausted.
    fn augment(
        &mut self,
        source: usize,
        sink: usize,
        potential: &[i64],
        level: &mut [usize],
        next: &mut [usize],
        limit: i64,
    ) -> i64 {
        let mut path: Vec<usize> = Vec::new();
        let mut u = source;
        loop {
            if u == sink {
                let pushed = path
                    .iter()
                    .map(|&e| self.cap[e])
                    .fold(limit, i64::min)
                    .max(0);
                for &e in &path {
                    self.cap[e] -= pushed;
                    self.cap[e ^ 1] += pushed;
                }
                return pushed;
            }
            let mut advanced = false;
            while let Some(&e) = self.adj[u].get(next[u]) {
                let v = self.to[e];
                if self.cap[e] > 0
                    && level[v] == level[u].saturating_add(1)
                    && self.reduced(e, potential) == 0
                {
                    path.push(e);
                    u = v;
                    advanced = true;
                    break;
                }
                next[u] += 1;
            }
            if advanced {
                continue;
            }
            // Dead end: never enter `u` again in this level graph.
            level[u] = usize::MAX;
            match path.pop() {
                Some(e) => {
                    u = self.to[e ^ 1];
                    next[u] += 1;
                }
                None => return 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_cheapest_paths_first() {
        // 0 -> 1 -> 3 costs 1, 0 -> 2 -> 3 costs 5; each carries 2.
        let mut g = Network::new(4);
        let a = g.add_edge(0, 1, 2, 1);
        g.add_edge(1, 3, 2, 0);
        let b = g.add_edge(0, 2, 2, 5);
        g.add_edge(2, 3, 2, 0);
        assert_eq!(g.min_cost_flow(0, 3, 3), (3, 2 + 5));
        assert_eq!((g.flow(a), g.flow(b)), (2, 1));
    }

    #[test]
    fn reroutes_earlier_flow_when_that_is_cheaper() {
        // Unit capacities. The cheapest first path is s-x-y-t (cost 0),
        // but two units need s-x-t' and s-y-t: the solver must undo x-y.
        let (s, x, y, t) = (0, 1, 2, 3);
        let mut g = Network::new(4);
        g.add_edge(s, x, 1, 0);
        g.add_edge(s, y, 1, 0);
        let xy = g.add_edge(x, y, 1, 0);
        g.add_edge(y, t, 1, 0);
        g.add_edge(x, t, 1, 10);
        assert_eq!(g.min_cost_flow(s, t, 10), (2, 10));
        assert_eq!(g.flow(xy), 0);
    }

    #[test]
    fn assignment_matches_brute_force() {
        // 4 workers × 4 jobs, each worker one job: compare with every
        // permutation.
        let costs = [[9, 2, 7, 8], [6, 4, 3, 7], [5, 8, 1, 8], [7, 6, 9, 4]];
        let mut g = Network::new(10);
        for (w, row) in costs.iter().enumerate() {
            g.add_edge(0, 1 + w, 1, 0);
            for (j, &c) in row.iter().enumerate() {
                g.add_edge(1 + w, 5 + j, 1, c);
            }
        }
        for j in 0..4 {
            g.add_edge(5 + j, 9, 1, 0);
        }
        let mut best = i64::MAX;
        let mut perm = [0usize, 1, 2, 3];
        permutations(&mut perm, 0, &mut |p| {
            best = best.min((0..4).map(|w| costs[w][p[w]]).sum());
        });
        assert_eq!(g.min_cost_flow(0, 9, 4), (4, best));
    }

    fn permutations(p: &mut [usize; 4], k: usize, f: &mut impl FnMut(&[usize; 4])) {
        if k == p.len() {
            f(p);
            return;
        }
        for i in k..p.len() {
            p.swap(k, i);
            permutations(p, k + 1, f);
            p.swap(k, i);
        }
    }

    #[test]
    fn stops_at_the_limit_and_when_the_sink_is_cut_off() {
        let mut g = Network::new(3);
        g.add_edge(0, 1, 5, 1);
        g.add_edge(1, 2, 5, 1);
        assert_eq!(g.min_cost_flow(0, 2, 3), (3, 6));
        let mut cut = Network::new(3);
        cut.add_edge(0, 1, 5, 1);
        assert_eq!(cut.min_cost_flow(0, 2, 3), (0, 0));
        assert_eq!(cut.min_cost_flow(0, 0, 3), (0, 0));
    }
}
