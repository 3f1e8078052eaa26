//! Which operation to start when none is in progress: bootstrap, scale out
//! or in, replace a node that stays down, or roll an upgrade — one at a
//! time, recorded in the status before its first step.

use super::*;

/// Picks the next operation when none is in progress.
pub(super) fn start_operation(
    cx: &Context<'_>,
    status: &crate::crd::KVClusterStatus,
    members: &[Member],
    events: &mut Vec<(String, String)>,
) -> Option<Operation> {
    let spec = &cx.cluster.spec;
    let name = kube::ResourceExt::name_any(cx.cluster);
    let view = cx.view()?;

    // A step the cluster refused recently (ScaleBlocked) is not retried yet.
    let blocked = status.conditions.iter().any(|c| {
        c.type_ == ConditionType::ScaleBlocked.as_str()
            && c.status == "True"
            && c.observed_generation == cx.cluster.metadata.generation
            && elapsed(c.last_transition_time.0, cx.now) < SCALE_BLOCKED_RETRY
    });

    // Failover: a serving node whose pod has not been Ready for downTimeout.
    let down_timeout =
        parse_duration(&spec.failover.down_timeout).unwrap_or(Duration::from_secs(300));
    if spec.failover.auto_replace && !blocked {
        for (i, rack) in spec.racks.iter().enumerate() {
            for ordinal in 0..cx.current[i] {
                let pod = pod_name(&name, rack, ordinal);
                let Some(member) = current_member(members, &pod) else {
                    continue;
                };
                let Some(node) = view.node(member.node_id) else {
                    continue;
                };
                if !matches!(node.state, NodeState::Active | NodeState::Draining) {
                    continue;
                }
                // A lost volume or machine: the node's data is gone, waiting
                // cannot help.
                let claim = format!("{}-{pod}", crate::builders::statefulset::DATA_VOLUME);
                let lost = if cx.observed.lost_claims.contains(&claim) {
                    Some(format!("the volume claim {claim}"))
                } else {
                    cx.observed
                        .lost_nodes
                        .iter()
                        .find(|(p, _)| *p == pod)
                        .map(|(_, k8s_node)| format!("the Kubernetes node {k8s_node}"))
                };
                if let Some(what) = lost {
                    events.push((
                        "ReplaceStarted".into(),
                        format!(
                            "{what} of node {} (pod {pod}) is gone: replacing it",
                            member.node_id
                        ),
                    ));
                    return Some(operation(
                        OperationKind::Replace,
                        Some(member.node_id),
                        cx.now,
                    ));
                }
                if node.reachable {
                    continue;
                }
                let down_since = cx
                    .pod(i, ordinal)
                    .filter(|p| !p.ready)
                    .map(|p| p.ready_changed_at);
                if down_since.is_some_and(|t| elapsed(t, cx.now) >= down_timeout) {
                    events.push((
                        "ReplaceStarted".into(),
                        format!(
                            "node {} (pod {pod}) has been down longer than {}: replacing it",
                            member.node_id, spec.failover.down_timeout
                        ),
                    ));
                    return Some(operation(
                        OperationKind::Replace,
                        Some(member.node_id),
                        cx.now,
                    ));
                }
            }
        }
    }

    // Scale in: the highest ordinal of the last rack with a surplus.
    if !blocked {
        for (i, rack) in spec.racks.iter().enumerate().rev() {
            if cx.current[i] > cx.targets[i] {
                let pod = pod_name(&name, rack, cx.current[i] - 1);
                if let Some(member) = current_member(members, &pod) {
                    events.push((
                        "ScaleInStarted".into(),
                        format!("draining node {} (pod {pod}) to remove it", member.node_id),
                    ));
                    return Some(operation(
                        OperationKind::ScaleIn,
                        Some(member.node_id),
                        cx.now,
                    ));
                }
            }
        }
    }

    // Scale out: some rack is below its share (the StatefulSets grow now).
    if cx.current.iter().zip(&cx.targets).any(|(c, t)| c < t) {
        events.push((
            "ScaleOutStarted".into(),
            format!("growing to {} nodes", spec.nodes),
        ));
        return Some(operation(OperationKind::ScaleOut, None, cx.now));
    }

    // Rolling restart: pods on an outdated template, one at a time, highest
    // ordinal of the last rack first, only while everything is healthy.
    let all_ready = cx
        .observed
        .racks
        .iter()
        .zip(&cx.current)
        .all(|(r, n)| (0..*n).all(|o| r.pod(o).is_some_and(|p| p.ready && !p.deleting)));
    if all_ready && cx.healthy() {
        for (i, rack) in spec.racks.iter().enumerate().rev() {
            let view = &cx.observed.racks[i];
            for ordinal in (0..cx.current[i]).rev() {
                let outdated = view
                    .pod(ordinal)
                    .is_some_and(|p| p.spec_hash.as_deref() != Some(view.expected_hash.as_str()));
                if !outdated {
                    continue;
                }
                let pod = pod_name(&name, rack, ordinal);
                if let Some(member) = current_member(members, &pod) {
                    events.push((
                        "RestartStarted".into(),
                        format!(
                            "restarting pod {pod} (node {}) on the new template",
                            member.node_id
                        ),
                    ));
                    return Some(operation(
                        OperationKind::Upgrade,
                        Some(member.node_id),
                        cx.now,
                    ));
                }
            }
        }
    }
    None
}
