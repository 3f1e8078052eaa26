//! One step of a scale-in: drain the highest-ordinal node of the rack that
//! shrinks, wait until it holds nothing, remove it, then let its
//! StatefulSet shrink.

use super::*;

pub(super) fn scale_in_step(
    cx: &Context<'_>,
    view: &ClusterView,
    member: Option<Member>,
    located: Option<(usize, u32)>,
    decision: &mut Decision,
) {
    let (Some(member), Some((rack, ordinal))) = (member, located) else {
        done(
            decision,
            "ScaleInAbandoned",
            "the node to drain is unknown".into(),
        );
        return;
    };
    let id = member.node_id;
    let state = view.node(id).map(|n| (n.state, n.replicas));
    // More nodes wanted again: the drain is cancelled and the node stays.
    if ordinal < cx.targets[rack] {
        match state {
            Some((NodeState::Draining, _)) => {
                decision.action = Action::Admin(AdminCall::CancelDrain(id));
                progressing(
                    decision,
                    "CancellingDrain",
                    format!("spec.nodes grew: cancelling the drain of node {id}"),
                );
            }
            _ => done(
                decision,
                "ScaleInCancelled",
                format!("node {id} stays: spec.nodes grew"),
            ),
        }
        return;
    }
    let replicas = decision.replicas.get_or_insert_with(Vec::new);
    match state {
        Some((NodeState::Active, _)) => {
            decision.action = Action::Admin(AdminCall::Drain(id));
            progressing(
                decision,
                "Draining",
                format!("draining node {id} (pod {})", member.pod),
            );
        }
        Some((NodeState::Draining, left)) if left > 0 => {
            progressing(
                decision,
                "Draining",
                format!(
                    "draining node {id} (pod {}): {left} replicas left",
                    member.pod
                ),
            );
        }
        Some((NodeState::Draining, _)) => {
            decision.action = Action::Admin(AdminCall::Remove(id));
            progressing(
                decision,
                "Removing",
                format!("node {id} is empty: removing it"),
            );
        }
        Some((NodeState::Dead, _)) => {
            done(
                decision,
                "ScaleInAbandoned",
                format!("node {id} was declared dead during its drain"),
            );
        }
        Some((NodeState::Removed, _)) | None => {
            // Removed from the cluster: shrink the StatefulSet past it.
            if let Some(slot) = replicas.get_mut(rack) {
                *slot = (*slot).min(ordinal);
            }
            if let Some(m) = decision.members.iter_mut().find(|m| m.node_id == id) {
                m.lifecycle = Lifecycle::Removed;
            }
            if cx.pod(rack, ordinal).is_none() {
                done(
                    decision,
                    "ScaleInDone",
                    format!("node {id} drained and removed; pod {} deleted", member.pod),
                );
            } else {
                progressing(
                    decision,
                    "DeletingPod",
                    format!("node {id} removed; its pod {} is being deleted", member.pod),
                );
            }
        }
    }
}
