//! The controller's decisions for each lifecycle path, as a pure function of
//! a `KVCluster` and what was observed: which step it takes, what it
//! records first, and when an operation ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::time::Duration;

use cairn_operator::controller::decide::{Action, AdminCall, allocate_node_id, decide};
use cairn_operator::controller::view::{
    ClusterView, NodeState, NodeView, Observed, PodView, RackView,
};
use cairn_operator::crd::{
    ConditionType, KVCluster, KVClusterSpec, KVClusterStatus, Lifecycle, Member, OperationKind,
    Phase,
};
use jiff::Timestamp;
use kube::api::ObjectMeta;

const HASH: &str = "h1";

fn cluster(nodes: u32) -> KVCluster {
    let spec: KVClusterSpec = serde_json::from_value(serde_json::json!({
        "nodes": nodes,
        "shards": 16,
        "replicationFactor": 3,
        "image": "cairn",
        "version": "1",
        "storage": {"size": "1Gi"},
        "failover": {"downTimeout": "30s", "autoReplace": true},
    }))
    .expect("spec");
    KVCluster {
        metadata: ObjectMeta {
            name: Some("kv".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}

fn ago(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 - seconds).expect("time")
}

fn pod(ordinal: u32, ready: bool) -> PodView {
    PodView {
        name: format!("kv-default-{ordinal}"),
        uid: format!("uid-{ordinal}"),
        ordinal,
        ready,
        ready_changed_at: ago(600),
        created_at: ago(3600),
        spec_hash: Some(HASH.into()),
        deleting: false,
        ip: Some(format!("127.0.0.{}", 10 + ordinal)),
    }
}

fn node(id: u64, state: NodeState, replicas: u32) -> NodeView {
    NodeView {
        id,
        state,
        reachable: true,
        replicas,
        leaders: 1,
        evacuating: false,
    }
}

fn observed(replicas: u32, pods: Vec<PodView>, nodes: Vec<NodeView>) -> Observed {
    Observed {
        racks: vec![RackView {
            replicas: Some(replicas),
            expected_hash: HASH.into(),
            pods,
        }],
        cluster: Some(ClusterView {
            cluster_id: "c1".into(),
            nodes,
            shards: 16,
            ..ClusterView::default()
        }),
        endpoints: vec!["127.0.0.10:7000".into()],
        lost_claims: vec![],
        lost_nodes: vec![],
    }
}

fn serving(n: u32) -> (Vec<PodView>, Vec<NodeView>) {
    (
        (0..n).map(|o| pod(o, true)).collect(),
        (0..n)
            .map(|o| node(u64::from(o) + 1, NodeState::Active, 16 * 3 / n))
            .collect(),
    )
}

/// Applies a decision's recorded status, as the reconcile does.
fn record(mut c: KVCluster, o: &Observed) -> KVCluster {
    let d = decide(&c, o, now());
    c.status = Some(KVClusterStatus {
        members: d.members,
        operation: d.operation,
        cluster_id: d.cluster_id,
        ..KVClusterStatus::default()
    });
    c
}

#[test]
fn a_new_cluster_gets_its_statefulsets_and_identities_and_no_operation() {
    let c = cluster(3);
    let o = Observed {
        racks: vec![RackView {
            replicas: None,
            expected_hash: HASH.into(),
            pods: vec![],
        }],
        cluster: None,
        endpoints: vec![],
        lost_claims: vec![],
        lost_nodes: vec![],
    };
    let d = decide(&c, &o, now());
    assert_eq!(d.replicas, Some(vec![3]));
    assert_eq!(d.operation, None);
    assert_eq!(d.action, Action::None);
    assert_eq!(d.phase, Phase::Creating);
    let ids: Vec<(u64, &str)> = d
        .members
        .iter()
        .map(|m| (m.node_id, m.pod.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (1, "kv-default-0"),
            (2, "kv-default-1"),
            (3, "kv-default-2")
        ]
    );
    assert!(
        d.requeue <= Duration::from_secs(2),
        "polls until the cluster forms"
    );
}

#[test]
fn a_settling_cluster_is_looked_at_often_and_a_steady_one_rarely() {
    let (pods, nodes) = serving(3);
    let steady = observed(3, pods.clone(), nodes.clone());
    let c = record(cluster(3), &steady);
    let d = decide(&c, &steady, now());
    assert_eq!(d.operation, None);
    assert_eq!(d.requeue, Duration::from_secs(30), "steady: every 30 s");

    // Right after forming: replicas are still being added. Nothing in
    // Kubernetes changes, so only the requeue brings the status up to date.
    let mut settling = steady.clone();
    if let Some(view) = settling.cluster.as_mut() {
        view.under_replicated = 12;
    }
    let d = decide(&c, &settling, now());
    assert_eq!(d.operation, None);
    assert!(
        d.requeue <= Duration::from_secs(5),
        "settling: soon, got {:?}",
        d.requeue
    );
}

#[test]
fn scaling_out_grows_the_statefulset_and_ends_when_the_new_nodes_serve_and_moves_are_done() {
    let (pods, nodes) = serving(3);
    let c = cluster(5);
    let o = observed(3, pods.clone(), nodes.clone());
    let d = decide(&c, &o, now());
    assert_eq!(d.replicas, Some(vec![5]));
    assert_eq!(
        d.operation.as_ref().map(|o| o.kind),
        Some(OperationKind::ScaleOut)
    );
    assert!(
        d.members
            .iter()
            .any(|m| m.node_id == 5 && m.pod == "kv-default-4")
    );

    // New nodes joined but replicas still move: keeps going.
    let c = record(c, &o);
    let mut pods5 = pods.clone();
    pods5.extend([pod(3, true), pod(4, true)]);
    let mut nodes5 = nodes.clone();
    nodes5.extend([node(4, NodeState::Active, 0), node(5, NodeState::Active, 0)]);
    let mut moving = observed(5, pods5.clone(), nodes5.clone());
    if let Some(v) = moving.cluster.as_mut() {
        v.moves_total = 20;
        v.moves_done = 5;
        v.moves_remaining = 15;
    }
    let d = decide(&c, &moving, now());
    assert!(d.operation.is_some());
    let progressing = d
        .conditions
        .iter()
        .find(|c| c.kind.as_str() == "Progressing")
        .expect("progressing");
    assert!(
        progressing.status && progressing.message.contains("5/20"),
        "{progressing:?}"
    );

    // No moves reported, but a shard has no leader: its placement is
    // unknown, so the scale-out is not declared balanced.
    let mut unknown = observed(5, pods5.clone(), nodes5.clone());
    if let Some(v) = unknown.cluster.as_mut() {
        v.leaderless = 1;
    }
    let d = decide(&c, &unknown, now());
    assert!(
        d.operation.is_some(),
        "a leaderless shard keeps the scale-out going"
    );

    let d = decide(&c, &observed(5, pods5, nodes5), now());
    assert_eq!(d.operation, None, "done once balanced");
    assert!(d.events.iter().any(|(r, _)| r == "ScaleOutDone"));
}

#[test]
fn scaling_in_drains_then_removes_then_shrinks_the_highest_ordinal() {
    let (pods, nodes) = serving(5);
    let c = cluster(3);
    let o = observed(5, pods.clone(), nodes.clone());
    let d = decide(&c, &o, now());
    let op = d.operation.clone().expect("scale-in recorded");
    assert_eq!((op.kind, op.node_id), (OperationKind::ScaleIn, Some(5)));
    assert_eq!(
        d.action,
        Action::None,
        "intent is recorded before the first step"
    );
    assert_eq!(
        d.replicas,
        Some(vec![5]),
        "the StatefulSet holds while the node drains"
    );

    let c = record(c, &o);
    let d = decide(&c, &o, now());
    assert_eq!(d.action, Action::Admin(AdminCall::Drain(5)));

    let mut draining = nodes.clone();
    draining[4] = node(5, NodeState::Draining, 7);
    let d = decide(&c, &observed(5, pods.clone(), draining.clone()), now());
    assert_eq!(d.action, Action::None, "waits while replicas remain");
    assert_eq!(d.replicas, Some(vec![5]));

    draining[4] = node(5, NodeState::Draining, 0);
    let d = decide(&c, &observed(5, pods.clone(), draining.clone()), now());
    assert_eq!(d.action, Action::Admin(AdminCall::Remove(5)));

    draining[4] = node(5, NodeState::Removed, 0);
    let d = decide(&c, &observed(5, pods.clone(), draining.clone()), now());
    assert_eq!(d.replicas, Some(vec![4]), "shrinks past the removed node");
    assert!(d.operation.is_some(), "until its pod is gone");
    let m5 = d.members.iter().find(|m| m.node_id == 5).expect("member");
    assert_eq!(m5.lifecycle, Lifecycle::Removed);

    let d = decide(&c, &observed(4, pods[..4].to_vec(), draining), now());
    assert_eq!(d.operation, None);
}

#[test]
fn an_operation_is_stalled_only_after_stall_timeout_without_progress() {
    let (pods, nodes) = serving(5);
    let with_replicas_on_5 = |replicas| {
        let mut n = nodes.clone();
        n[4] = node(5, NodeState::Draining, replicas);
        observed(5, pods.clone(), n)
    };
    // Decides at `at` and records the status, as a reconcile then would.
    let step = |c: KVCluster, o: &Observed, at: Timestamp| {
        let d = decide(&c, o, at);
        let mut c = c;
        c.status = Some(KVClusterStatus {
            members: d.members.clone(),
            operation: d.operation.clone(),
            cluster_id: d.cluster_id.clone(),
            ..KVClusterStatus::default()
        });
        let stalled = d
            .conditions
            .iter()
            .find(|u| u.kind == ConditionType::Stalled)
            .filter(|u| u.status)
            .map(|u| u.message.clone());
        (c, stalled)
    };
    // Scale-in recorded an hour ago; the default stallTimeout is 10m.
    let (c, _) = step(
        cluster(3),
        &observed(5, pods.clone(), nodes.clone()),
        ago(3600),
    );
    let (c, stalled) = step(c, &with_replicas_on_5(9), ago(3000));
    assert_eq!(stalled, None, "first look at a draining node");
    let (c, stalled) = step(c, &with_replicas_on_5(9), ago(2500));
    assert_eq!(stalled, None, "500 s without progress is within 10m");
    let (c, stalled) = step(c, &with_replicas_on_5(5), ago(2300));
    assert_eq!(
        stalled, None,
        "replicas left the node: progress, although the drain is older than 10m"
    );
    let (c, stalled) = step(c, &with_replicas_on_5(5), ago(1900));
    assert_eq!(stalled, None);
    let (_, stalled) = step(c, &with_replicas_on_5(5), ago(1600));
    let message = stalled.expect("700 s without progress is past stallTimeout");
    assert!(
        message.contains("ScaleIn of node 5") && message.contains("no progress"),
        "{message}"
    );
}

#[test]
fn raising_nodes_during_a_drain_cancels_it() {
    let (pods, nodes) = serving(5);
    let c = record(cluster(3), &observed(5, pods.clone(), nodes.clone()));
    let mut c = c;
    c.spec.nodes = 5;
    let mut draining = nodes.clone();
    draining[4] = node(5, NodeState::Draining, 3);
    let d = decide(&c, &observed(5, pods.clone(), draining), now());
    assert_eq!(d.action, Action::Admin(AdminCall::CancelDrain(5)));
    let d = decide(&c, &observed(5, pods, nodes), now());
    assert_eq!(
        d.operation, None,
        "the node is active again: nothing left to do"
    );
}

#[test]
fn a_removed_identity_is_never_handed_out_again() {
    let members = vec![
        Member {
            node_id: 1,
            pod: "kv-default-0".into(),
            rack: "default".into(),
            lifecycle: Lifecycle::Serving,
            replicas: 0,
            leaders: 0,
        },
        Member {
            node_id: 2,
            pod: "kv-default-1".into(),
            rack: "default".into(),
            lifecycle: Lifecycle::Removed,
            replicas: 0,
            leaders: 0,
        },
    ];
    assert_eq!(
        allocate_node_id(&members, 0, 1),
        3,
        "pod 1 again: a fresh id"
    );
    assert_eq!(
        allocate_node_id(&members, 0, 5),
        6,
        "an unused initial id is used as is"
    );
    assert_eq!(
        allocate_node_id(&members, 1, 0),
        1001,
        "another rack has its own range"
    );
}

#[test]
fn a_rack_that_used_its_thousand_ids_continues_in_its_overflow_range() {
    let member = |node_id: u64, lifecycle: Lifecycle| Member {
        node_id,
        pod: "kv-default-0".into(),
        rack: "default".into(),
        lifecycle,
        replicas: 0,
        leaders: 0,
    };
    // Rack 0 replaced pod 0 until its last id, 999, was taken.
    let mut members: Vec<Member> = (1..999).map(|id| member(id, Lifecycle::Removed)).collect();
    members.push(member(999, Lifecycle::Serving));
    // Rack 1's first node: 1001 must stay rack 1's.
    members.push(Member {
        pod: "kv-b-0".into(),
        rack: "b".into(),
        ..member(1001, Lifecycle::Serving)
    });
    let next = allocate_node_id(&members, 0, 0);
    assert_eq!(
        next,
        1 << 32,
        "past 999: the overflow range, not 1000 or 1001"
    );
    members.push(member(next, Lifecycle::Serving));
    let after = allocate_node_id(&members, 0, 0);
    assert_eq!(after, (1 << 32) + 1, "and onwards from there");
    assert!(
        !members.iter().any(|m| m.node_id == after),
        "never an id used before"
    );
    assert_eq!(
        allocate_node_id(&members, 1, 0),
        1002,
        "rack 1 is unaffected"
    );
}

#[test]
fn a_node_down_longer_than_down_timeout_is_replaced_with_a_new_identity() {
    let (mut pods, mut nodes) = serving(3);
    pods[1].ready = false;
    pods[1].ready_changed_at = ago(20);
    nodes[1].reachable = false;
    let c = cluster(3);
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    assert_eq!(d.operation, None, "20 s is within the 30 s downTimeout");

    pods[1].ready_changed_at = ago(31);
    let o = observed(3, pods.clone(), nodes.clone());
    let d = decide(&c, &o, now());
    let op = d.operation.clone().expect("replace");
    assert_eq!((op.kind, op.node_id), (OperationKind::Replace, Some(2)));

    let c = record(c, &o);
    // Three nodes and RF 3: no other node can take node 2's replicas until
    // its successor joins, so the declaration is forced.
    let d = decide(&c, &o, now());
    assert_eq!(d.action, Action::Admin(AdminCall::ReplaceInPlace(2)));

    nodes[1].state = NodeState::Dead;
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    let successor = d
        .members
        .iter()
        .find(|m| m.pod == "kv-default-1" && m.node_id != 2)
        .expect("a new identity for the pod");
    assert_eq!(successor.node_id, 4);
    assert_eq!(
        d.action,
        Action::DeletePodAndClaim {
            pod: "kv-default-1".into(),
            claim: "data-kv-default-1".into()
        }
    );
    assert_eq!(
        d.operation.as_ref().and_then(|o| o.pod_uid.as_deref()),
        Some("uid-1"),
        "the pod is recorded before it is deleted"
    );
    let c = {
        let mut c = c;
        if let Some(s) = c.status.as_mut() {
            s.members = d.members.clone();
            s.operation = d.operation.clone();
        }
        c
    };
    // Deleting again is harmless while the old pod is still there...
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    assert!(matches!(d.action, Action::DeletePodAndClaim { .. }));
    // ...and the re-created pod (a new uid) is left alone.
    pods[1] = PodView {
        uid: "uid-1-new".into(),
        ..pod(1, true)
    };
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    assert!(
        !matches!(d.action, Action::DeletePodAndClaim { .. }),
        "{:?}",
        d.action
    );
}

#[test]
fn a_node_whose_volume_claim_is_gone_is_replaced_at_once() {
    let (pods, nodes) = serving(3);
    let mut o = observed(3, pods, nodes);
    o.lost_claims = vec!["data-kv-default-2".into()];
    let d = decide(&cluster(3), &o, now());
    let op = d.operation.expect("replace");
    assert_eq!((op.kind, op.node_id), (OperationKind::Replace, Some(3)));
    assert!(
        d.events
            .iter()
            .any(|(_, note)| note.contains("data-kv-default-2"))
    );
}

#[test]
fn a_node_whose_kubernetes_node_is_gone_is_replaced_at_once() {
    let (pods, nodes) = serving(3);
    let mut o = observed(3, pods, nodes);
    o.lost_nodes = vec![("kv-default-1".into(), "worker-7".into())];
    let d = decide(&cluster(3), &o, now());
    let op = d.operation.expect("replace");
    assert_eq!((op.kind, op.node_id), (OperationKind::Replace, Some(2)));
    assert!(
        d.events
            .iter()
            .any(|(_, note)| note.contains("worker-7") && note.contains("kv-default-1"))
    );
}

#[test]
fn with_enough_other_nodes_the_lost_node_is_declared_lost_first() {
    let (mut pods, mut nodes) = serving(4);
    pods[3].ready = false;
    pods[3].ready_changed_at = ago(60);
    nodes[3].reachable = false;
    let c = cluster(4);
    let o = observed(4, pods, nodes);
    let c = record(c, &o);
    let d = decide(&c, &o, now());
    assert_eq!(d.action, Action::Admin(AdminCall::Replace(4)));
}

#[test]
fn an_outdated_pod_is_restarted_after_its_leaders_leave() {
    let (mut pods, mut nodes) = serving(3);
    for p in &mut pods {
        p.spec_hash = Some("old".into());
    }
    let c = cluster(3);
    let o = observed(3, pods.clone(), nodes.clone());
    let d = decide(&c, &o, now());
    let op = d.operation.clone().expect("upgrade");
    assert_eq!(
        (op.kind, op.node_id),
        (OperationKind::Upgrade, Some(3)),
        "highest ordinal first"
    );
    let c = record(c, &o);
    let d = decide(&c, &o, now());
    assert_eq!(d.action, Action::Admin(AdminCall::EvacuateLeaders(3)));

    nodes[2].leaders = 0;
    nodes[2].evacuating = true;
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    assert_eq!(d.action, Action::DeletePod("kv-default-2".into()));

    pods[2] = pod(2, true);
    let d = decide(&c, &observed(3, pods.clone(), nodes.clone()), now());
    assert_eq!(d.action, Action::Admin(AdminCall::RestoreLeaders(3)));
    nodes[2].evacuating = false;
    let d = decide(&c, &observed(3, pods, nodes), now());
    assert_eq!(d.operation, None);
}

#[test]
fn a_paused_cluster_is_left_alone() {
    let (pods, nodes) = serving(5);
    let mut c = cluster(3);
    c.spec.paused = true;
    let d = decide(&c, &observed(5, pods, nodes), now());
    assert_eq!(d.replicas, None);
    assert_eq!(d.operation, None);
    assert_eq!(d.phase, Phase::Paused);
    assert!(
        d.conditions
            .iter()
            .any(|c| c.kind.as_str() == "Paused" && c.status)
    );
}
