use super::*;

fn node(id: u64, state: NodeState) -> NodeRecord {
    NodeRecord {
        id,
        addr: format!("127.0.0.1:{}", 7000 + id),
        http_addr: String::new(),
        rack: String::new(),
        state,
        weight: 1,
        evacuate_leaders: false,
    }
}

fn active(ids: std::ops::RangeInclusive<u64>) -> Vec<NodeRecord> {
    ids.map(|id| node(id, NodeState::Active)).collect()
}

/// What the shard leaders would report once every shard matches `plan`.
fn settled(plan: &PlacementPlan) -> Vec<ObservedShard> {
    plan.shards
        .iter()
        .enumerate()
        .map(|(s, p)| ObservedShard {
            shard: s as u32,
            leader: Some(p.replicas[0]),
            voters: p.replicas.clone(),
            learners: Vec::new(),
        })
        .collect()
}

/// A settled, balanced plan over `nodes`, as a fresh cluster reaches it.
fn balanced(nodes: &[NodeRecord], shards: usize) -> PlacementPlan {
    let mut plan = PlacementPlan {
        epoch: 1,
        shards: vec![ShardPlacement::default(); shards],
        paused: false,
    };
    plan.shards = destination(nodes, 3, &plan);
    plan
}

fn replica_moves(a: &PlacementPlan, b: &PlacementPlan) -> usize {
    a.shards
        .iter()
        .zip(&b.shards)
        .filter(|(x, y)| set(&x.replicas) != set(&y.replicas))
        .count()
}

#[test]
fn a_joining_node_is_filled_a_few_shards_at_a_time_until_the_destination() {
    let mut nodes = active(1..=3);
    let mut plan = balanced(&nodes, 32);
    nodes.push(node(4, NodeState::Active));
    let start = plan.clone();
    let goal = destination(&nodes, 3, &plan);
    let mut steps = 0;
    while let Some(next) = next_plan(&nodes, 3, &plan, &settled(&plan), 4) {
        assert!(
            replica_moves(&plan, &next) <= 4,
            "step {steps} moved too many"
        );
        assert_eq!(next.epoch, plan.epoch + 1);
        plan = next;
        steps += 1;
        assert!(steps < 100, "the plan does not converge");
    }
    // It stops where the placement function has nothing left to change,
    // at about the cost of going there in one step.
    assert_eq!(destination(&nodes, 3, &plan), plan.shards);
    let moves = |a: &PlacementPlan, b: &[ShardPlacement]| -> usize {
        a.shards
            .iter()
            .zip(b)
            .map(|(x, y)| {
                y.replicas
                    .iter()
                    .filter(|n| !x.replicas.contains(n))
                    .count()
            })
            .sum()
    };
    let (direct, stepwise) = (moves(&start, &goal), moves(&start, &plan.shards));
    assert!(
        stepwise as f64 <= direct as f64 * 1.1 + 1.0,
        "{stepwise} moves step by step, {direct} at once"
    );
    assert!(steps >= 6, "24 moves at 4 at a time take at least 6 steps");
}

#[test]
fn moves_in_flight_use_up_the_budget() {
    let mut nodes = active(1..=3);
    let plan = balanced(&nodes, 16);
    nodes.push(node(4, NodeState::Active));
    let first = next_plan(&nodes, 3, &plan, &settled(&plan), 2).expect("a step");
    assert_eq!(replica_moves(&plan, &first), 2);
    // The shards still have their old replicas: both moves are in flight.
    assert_eq!(next_plan(&nodes, 3, &first, &settled(&plan), 2), None);
    // One finished: one more starts.
    let mut observed = settled(&plan);
    let done = (0..16)
        .find(|&s| set(&first.shards[s].replicas) != set(&plan.shards[s].replicas))
        .expect("a moved shard");
    observed[done] = settled(&first)[done].clone();
    let second = next_plan(&nodes, 3, &first, &observed, 2).expect("a step");
    assert_eq!(replica_moves(&first, &second), 1);
}

#[test]
fn a_dead_node_is_repaired_at_once_and_a_drain_goes_first() {
    let mut nodes = active(1..=5);
    let plan = balanced(&nodes, 16);
    nodes[4].state = NodeState::Dead;
    let next = next_plan(&nodes, 3, &plan, &settled(&plan), 1).expect("a step");
    let holding: Vec<usize> = (0..16)
        .filter(|&s| plan.shards[s].replicas.contains(&5))
        .collect();
    assert!(!holding.is_empty());
    for s in 0..16 {
        assert!(
            !next.shards[s].replicas.contains(&5),
            "shard {s} keeps the dead node"
        );
    }
    // Repairs ignore the budget of 1.
    assert!(replica_moves(&plan, &next) >= holding.len());

    let mut nodes = active(1..=5);
    nodes[1].state = NodeState::Draining;
    let next = next_plan(&nodes, 3, &plan, &settled(&plan), 1).expect("a step");
    let moved: Vec<usize> = (0..16)
        .filter(|&s| set(&plan.shards[s].replicas) != set(&next.shards[s].replicas))
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(
        plan.shards[moved[0]].replicas.contains(&2),
        "the drain goes first"
    );
}

#[test]
fn a_forming_cluster_is_up_replicated_without_waiting_for_the_budget() {
    let nodes = active(1..=3);
    let plan = PlacementPlan {
        epoch: 1,
        shards: vec![ShardPlacement { replicas: vec![1] }; 64],
        paused: false,
    };
    let next = next_plan(&nodes, 3, &plan, &settled(&plan), 4).expect("a step");
    assert!(next.shards.iter().all(|s| s.replicas.len() == 3));
}

#[test]
fn a_paused_plan_starts_nothing_and_a_cancel_rolls_back_moves_in_flight() {
    let mut nodes = active(1..=3);
    let plan = balanced(&nodes, 16);
    nodes.push(node(4, NodeState::Active));
    let paused = PlacementPlan {
        paused: true,
        ..plan.clone()
    };
    assert_eq!(next_plan(&nodes, 3, &paused, &settled(&plan), 4), None);

    let moving = next_plan(&nodes, 3, &plan, &settled(&plan), 4).expect("a step");
    let back = cancelled(&moving, &settled(&plan));
    assert!(back.paused);
    for (s, (b, p)) in back.shards.iter().zip(&plan.shards).enumerate() {
        assert_eq!(
            set(&b.replicas),
            set(&p.replicas),
            "shard {s} keeps what it has"
        );
    }
    assert!(back.epoch > moving.epoch);
}

#[test]
fn a_balanced_settled_cluster_needs_no_step() {
    let nodes = active(1..=5);
    let plan = balanced(&nodes, 64);
    assert_eq!(next_plan(&nodes, 3, &plan, &settled(&plan), 4), None);
}
