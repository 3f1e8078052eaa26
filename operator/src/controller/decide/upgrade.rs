//! One step of a rolling restart or version change: evacuate one pod's
//! leaderships, restart it, wait for it to serve and catch up, restore its
//! leaderships, then the next pod.

use super::*;

pub(super) fn upgrade_step(
    cx: &Context<'_>,
    view: &ClusterView,
    op: &Operation,
    member: Option<Member>,
    located: Option<(usize, u32)>,
    decision: &mut Decision,
) {
    let (Some(member), Some((rack, ordinal))) = (member, located) else {
        done(
            decision,
            "RestartAbandoned",
            "the node to restart is unknown".into(),
        );
        return;
    };
    let id = member.node_id;
    let expected = &cx.observed.racks[rack].expected_hash;
    let node = view.node(id);
    match cx.pod(rack, ordinal) {
        Some(pod) if pod.spec_hash.as_deref() != Some(expected.as_str()) => {
            if pod.deleting {
                progressing(
                    decision,
                    "Restarting",
                    format!("pod {} is stopping", pod.name),
                );
            } else if node.is_some_and(|n| n.leaders > 0 || !n.evacuating)
                && elapsed(op.started_at.0, cx.now) < EVACUATION_WAIT
            {
                decision.action = Action::Admin(AdminCall::EvacuateLeaders(id));
                progressing(
                    decision,
                    "EvacuatingLeaders",
                    format!(
                        "moving leaders off node {id} before restarting pod {}",
                        pod.name
                    ),
                );
            } else {
                decision.action = Action::DeletePod(pod.name.clone());
                progressing(
                    decision,
                    "Restarting",
                    format!("restarting pod {} on the new template", pod.name),
                );
            }
        }
        Some(pod) => {
            let back = pod.ready && node.is_some_and(|n| n.reachable);
            if !back && elapsed(pod.created_at, cx.now) > RESTART_TIMEOUT {
                decision.conditions.push(condition(
                    ConditionType::Degraded,
                    true,
                    "RestartTimedOut",
                    &format!(
                        "pod {} did not come back within {} s of its restart",
                        pod.name,
                        RESTART_TIMEOUT.as_secs()
                    ),
                ));
            }
            if !back || !cx.healthy() {
                progressing(
                    decision,
                    "Restarting",
                    format!("waiting for pod {} to serve and catch up", pod.name),
                );
            } else if node.is_some_and(|n| n.evacuating) {
                decision.action = Action::Admin(AdminCall::RestoreLeaders(id));
                progressing(
                    decision,
                    "RestoringLeaders",
                    format!("pod {} is back: leaders may return to node {id}", pod.name),
                );
            } else {
                done(
                    decision,
                    "RestartDone",
                    format!("pod {} runs the new template", pod.name),
                );
            }
        }
        None => progressing(
            decision,
            "Restarting",
            format!("waiting for pod of node {id} to be re-created"),
        ),
    }
}
