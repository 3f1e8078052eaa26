//! One step of replacing a node that stays down: declare it dead, let the
//! cluster rebuild its replicas elsewhere, then recreate its pod as a new
//! identity.

use super::*;

pub(super) fn replace_step(
    cx: &Context<'_>,
    view: &ClusterView,
    op: &Operation,
    member: Option<Member>,
    located: Option<(usize, u32)>,
    decision: &mut Decision,
) {
    let (Some(old), Some((rack, ordinal))) = (member, located) else {
        done(
            decision,
            "ReplaceAbandoned",
            "the node to replace is unknown".into(),
        );
        return;
    };
    let id = old.node_id;
    decision.conditions.push(condition(
        ConditionType::Degraded,
        true,
        "ReplacingNode",
        &format!(
            "node {id} (pod {}) stayed down and is being replaced",
            old.pod
        ),
    ));
    // The cluster re-creates a lost node's replicas on the other active
    // nodes, and refuses ReplaceNode while fewer than RF others are active
    // unless forced. Forced here (e.g. 3 nodes, RF 3): the successor the
    // StatefulSet re-creates in the lost node's place is where they go.
    let others_active = view
        .nodes
        .iter()
        .filter(|n| n.id != id && matches!(n.state, NodeState::Active | NodeState::Draining))
        .count();
    let enough_others = others_active as u64 >= u64::from(cx.cluster.spec.replication_factor);
    match view.node(id).map(|n| (n.state, n.replicas)) {
        Some((NodeState::Active | NodeState::Draining, _)) => {
            decision.action = Action::Admin(if enough_others {
                AdminCall::Replace(id)
            } else {
                AdminCall::ReplaceInPlace(id)
            });
            progressing(decision, "Replacing", format!("declaring node {id} lost"));
            return;
        }
        Some((NodeState::Dead, 0)) => {
            decision.action = Action::Admin(AdminCall::Remove(id));
        }
        _ => {}
    }
    // The cluster fenced the old id: the pod gets a new identity (recorded
    // before the identity ConfigMap is rewritten and the pod deleted).
    let has_successor = decision
        .members
        .iter()
        .any(|m| m.pod == old.pod && m.node_id != id && m.lifecycle != Lifecycle::Removed);
    if !has_successor {
        mark_replacing(cx, &mut decision.members, op);
    }
    // The pod still runs (or waits) with the old identity and volume: both go;
    // the StatefulSet re-creates them, and the pod starts as the new member.
    // The pod's uid is recorded before it is deleted, so the pod re-created
    // under the same name is recognised and left alone.
    if let Some(pod) = cx.pod(rack, ordinal)
        && !pod.deleting
        && decision.action == Action::None
        && op.pod_uid.as_ref().is_none_or(|uid| *uid == pod.uid)
    {
        if let Some(recorded) = decision.operation.as_mut() {
            recorded.pod_uid = Some(pod.uid.clone());
        }
        decision.action = Action::DeletePodAndClaim {
            pod: pod.name.clone(),
            claim: format!("{}-{}", crate::builders::statefulset::DATA_VOLUME, pod.name),
        };
    }
    let new_serving = decision
        .members
        .iter()
        .rev()
        .find(|m| m.pod == old.pod && m.node_id != id)
        .is_some_and(|m| m.lifecycle == Lifecycle::Serving);
    let old_gone = matches!(
        view.node(id).map(|n| n.state),
        Some(NodeState::Removed) | None
    );
    if old_gone && let Some(m) = decision.members.iter_mut().find(|m| m.node_id == id) {
        m.lifecycle = Lifecycle::Removed;
    }
    if old_gone && new_serving && cx.healthy() {
        done(
            decision,
            "ReplaceDone",
            format!("node {id} replaced; every shard has its replicas again"),
        );
    } else {
        progressing(
            decision,
            "Replacing",
            format!(
                "replacing node {id}: {} shards under-replicated",
                view.under_replicated
            ),
        );
    }
}
