//! The controller's judgement, as a pure function: from a `KVCluster` and
//! what was [`Observed`] of it, the replica count of every rack's
//! StatefulSet, the status to record, and the one step to take now.
//!
//! Level-triggered: nothing here remembers earlier calls. An operation in
//! progress lives in `status.operation` (written before its first step is
//! taken), and every step is chosen from what the cluster shows now, so a
//! controller that crashed or restarted anywhere picks up where it was.
//! Every step is idempotent (drain, remove, replace and evacuate are
//! idempotent in the admin API; deleting a pod is guarded by its creation
//! time), so doing one twice is harmless.

mod replace;
mod scale_in;
mod start;
mod upgrade;

use replace::replace_step;
use scale_in::scale_in_step;
use start::start_operation;
use upgrade::upgrade_step;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::view::{ClusterView, NodeState, Observed, PodView};
use crate::crd::{
    ConditionType, KVCluster, Lifecycle, Member, Operation, OperationKind, Phase, ShardHealth,
};
use crate::topology::{NODE_IDS_PER_RACK, initial_node_id, pod_name, rack_shares};

/// How long to wait for leaders to leave a node before restarting it anyway.
pub const EVACUATION_WAIT: Duration = Duration::from_secs(60);
/// How long a restarted pod may take to come back before `Degraded`.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a cluster that is not yet healthy is looked at without an
/// operation in progress (a steady one: every 30 s).
pub const SETTLING_REQUEUE: Duration = Duration::from_secs(5);
/// How long a refused scale-in waits before it is tried again.
pub const SCALE_BLOCKED_RETRY: Duration = Duration::from_secs(60);

/// A call to the Cairn admin API (all idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCall {
    /// Move every replica off the node.
    Drain(u64),
    /// Make a draining node active again.
    CancelDrain(u64),
    /// Remove a drained (or replaced, empty) node for good.
    Remove(u64),
    /// Declare a node lost and re-create its replicas elsewhere.
    Replace(u64),
    /// Declare a node lost although fewer than RF other nodes are active:
    /// its successor (the re-created pod) is where its replicas go.
    ReplaceInPlace(u64),
    /// Move leaderships off a node before restarting it.
    EvacuateLeaders(u64),
    /// Let leaderships return after a restart.
    RestoreLeaders(u64),
}

/// The one step a reconcile takes after recording the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing but applying objects and status.
    None,
    /// Call the admin API.
    Admin(AdminCall),
    /// Delete a pod (the StatefulSet controller re-creates it from the current template).
    DeletePod(String),
    /// Delete a pod's volume claim, then the pod: it comes back empty.
    DeletePodAndClaim {
        /// The pod.
        pod: String,
        /// Its data volume claim.
        claim: String,
    },
}

/// A condition to record: type, status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Which condition.
    pub kind: ConditionType,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// What one reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `spec.replicas` for each rack's StatefulSet, in `spec.racks` order;
    /// `None` leaves the StatefulSets alone (paused).
    pub replicas: Option<Vec<u32>>,
    /// `status.members` to record (before the identity ConfigMap is built from it).
    pub members: Vec<Member>,
    /// `status.operation` to record.
    pub operation: Option<Operation>,
    /// `status.clusterId` to record.
    pub cluster_id: Option<String>,
    /// The step to take after the status is recorded.
    pub action: Action,
    /// Conditions to set (the others keep their value).
    pub conditions: Vec<ConditionUpdate>,
    /// One-word state.
    pub phase: Phase,
    /// Pods Ready and serving.
    pub ready_nodes: u32,
    /// Shard health, when the cluster answered.
    pub shard_health: Option<ShardHealth>,
    /// An operation started or finished: (reason, note) for an Event.
    pub events: Vec<(String, String)>,
    /// When to look again.
    pub requeue: Duration,
}

/// Parses a `KVCluster` duration field in Cairn's one grammar (Go's:
/// `90s`, `5m`, `1h30m`, `500ms`); the CRD's pattern admits a subset of it.
pub fn parse_duration(text: &str) -> Option<Duration> {
    cairn_client::duration::parse(text).ok()
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// A fresh node id for a pod of the rack at `rack_index`: its initial id if
/// no identity ever used it, else one above every id the rack ever used.
///
/// When the rack's range of [`NODE_IDS_PER_RACK`] ids is used up (after
/// about a thousand replacements), ids continue in the rack's overflow
/// range, [`overflow_node_ids`], so an id is never reused and never taken
/// from another rack.
pub fn allocate_node_id(members: &[Member], rack_index: usize, ordinal: u32) -> u64 {
    let initial = initial_node_id(rack_index, ordinal);
    if !members.iter().any(|m| m.node_id == initial) {
        return initial;
    }
    let highest_in = |range: std::ops::Range<u64>| {
        members
            .iter()
            .map(|m| m.node_id)
            .filter(|id| range.contains(id))
            .max()
    };
    let low = rack_index as u64 * NODE_IDS_PER_RACK;
    let range = low..low + NODE_IDS_PER_RACK;
    let overflow = overflow_node_ids(rack_index);
    if let Some(max) = highest_in(overflow.clone()) {
        return max + 1;
    }
    match highest_in(range.clone()) {
        Some(max) if range.contains(&(max + 1)) => max + 1,
        Some(_) => overflow.start,
        None => initial,
    }
}

/// The ids a rack continues with once its first range is used up: 2^32 of
/// them per rack, above every initial id.
pub fn overflow_node_ids(rack_index: usize) -> std::ops::Range<u64> {
    let start = (rack_index as u64 + 1) << 32;
    start..start + (1 << 32)
}

/// The member currently standing for `pod` (newest one not removed).
fn current_member<'a>(members: &'a [Member], pod: &str) -> Option<&'a Member> {
    members
        .iter()
        .rev()
        .find(|m| m.pod == pod && m.lifecycle != Lifecycle::Removed)
}

/// Where a pod sits: rack index and ordinal, from its name.
fn locate(cluster: &KVCluster, pod: &str) -> Option<(usize, u32)> {
    let name = kube::ResourceExt::name_any(cluster);
    cluster.spec.racks.iter().enumerate().find_map(|(i, rack)| {
        let prefix = format!("{name}-{}-", rack.name);
        let ordinal = pod.strip_prefix(&prefix)?.parse().ok()?;
        Some((i, ordinal))
    })
}

struct Context<'a> {
    cluster: &'a KVCluster,
    observed: &'a Observed,
    now: Timestamp,
    targets: Vec<u32>,
    current: Vec<u32>,
}

impl Context<'_> {
    fn view(&self) -> Option<&ClusterView> {
        self.observed.cluster.as_ref()
    }

    fn pod(&self, rack: usize, ordinal: u32) -> Option<&PodView> {
        self.observed.racks.get(rack)?.pod(ordinal)
    }

    fn healthy(&self) -> bool {
        self.view()
            .is_some_and(|v| v.under_replicated == 0 && v.leaderless == 0)
    }
}

/// Decides what to do for `cluster` given what was `observed`, at `now`.
pub fn decide(cluster: &KVCluster, observed: &Observed, now: Timestamp) -> Decision {
    let spec = &cluster.spec;
    let status = cluster.status.clone().unwrap_or_default();
    let targets: Vec<u32> = rack_shares(spec.nodes, &spec.racks)
        .iter()
        .map(|s| s.nodes)
        .collect();
    let current: Vec<u32> = (0..spec.racks.len())
        .map(|i| {
            observed
                .racks
                .get(i)
                .and_then(|r| r.replicas)
                .unwrap_or(targets[i])
        })
        .collect();
    let cx = Context {
        cluster,
        observed,
        now,
        targets,
        current,
    };
    let name = kube::ResourceExt::name_any(cluster);

    // Identities: every pod the StatefulSets will run has a member record,
    // written before the identity ConfigMap and the StatefulSet grow.
    let mut members = status.members.clone();
    for (i, rack) in spec.racks.iter().enumerate() {
        for ordinal in 0..cx.targets[i].max(cx.current[i]) {
            let pod = pod_name(&name, rack, ordinal);
            if current_member(&members, &pod).is_none() {
                let node_id = allocate_node_id(&members, i, ordinal);
                members.push(Member {
                    node_id,
                    pod,
                    rack: rack.name.clone(),
                    lifecycle: Lifecycle::Pending,
                    replicas: 0,
                    leaders: 0,
                });
            }
        }
    }
    refresh_lifecycles(&cx, &mut members);

    let mut decision = Decision {
        replicas: Some(
            cx.current
                .iter()
                .zip(&cx.targets)
                .map(|(c, t)| (*c).max(*t))
                .collect(),
        ),
        members,
        operation: status.operation.clone(),
        cluster_id: status.cluster_id.clone().or_else(|| {
            cx.view()
                .map(|v| v.cluster_id.clone())
                .filter(|id| !id.is_empty())
        }),
        action: Action::None,
        conditions: Vec::new(),
        phase: Phase::Running,
        ready_nodes: 0,
        shard_health: cx.view().map(|v| ShardHealth {
            total: v.shards,
            under_replicated: v.under_replicated,
            leaderless: v.leaderless,
        }),
        events: Vec::new(),
        requeue: Duration::from_secs(30),
    };
    decision.ready_nodes = ready_nodes(&cx, &decision.members);

    if spec.paused {
        decision.replicas = None;
        decision.phase = Phase::Paused;
        decision.conditions.push(condition(
            ConditionType::Paused,
            true,
            "SpecPaused",
            "spec.paused is set: no scaling, replacement or upgrade happens until it is cleared",
        ));
        finish_conditions(&cx, &mut decision);
        return decision;
    }
    decision.conditions.push(condition(
        ConditionType::Paused,
        false,
        "NotPaused",
        "the operator acts on this cluster",
    ));

    if decision.operation.is_none() {
        decision.operation = start_operation(&cx, &status, &decision.members, &mut decision.events);
        if decision.operation.is_some() {
            // Recorded first; the next reconcile takes its first step.
            decision.requeue = Duration::ZERO;
        }
    } else if let Some(op) = decision.operation.clone() {
        continue_operation(&cx, &op, &mut decision);
        track_progress(&cx, &mut decision);
    }
    if decision.operation.is_some() && decision.requeue > Duration::from_secs(2) {
        decision.requeue = Duration::from_secs(2);
    }
    // A cluster still settling (replicas being added, leaders being elected,
    // nodes joining) is looked at again soon, so its status follows it; the
    // cluster's own progress wakes no watch.
    let settling = !cx.healthy()
        || decision.members.iter().any(|m| {
            matches!(
                m.lifecycle,
                Lifecycle::Pending | Lifecycle::Joining | Lifecycle::Draining
            )
        });
    if settling && decision.requeue > SETTLING_REQUEUE {
        decision.requeue = SETTLING_REQUEUE;
    }
    if decision.cluster_id.is_none() {
        decision.requeue = Duration::from_secs(2);
    }
    finish_conditions(&cx, &mut decision);
    decision
}

/// Records when the operation in progress last moved forward and sets
/// `Stalled` when that was longer than `spec.stallTimeout` ago.
///
/// Progress is any change in what the operation waits on: a member's
/// lifecycle or replica count, rebalance moves done, the pod it deletes,
/// the Ready pods. An operation whose cluster does not answer makes none.
fn track_progress(cx: &Context<'_>, decision: &mut Decision) {
    let mark = progress_mark(cx, decision);
    let Some(op) = decision.operation.as_mut() else {
        return;
    };
    if mark.is_some() && op.progress_mark != mark {
        op.progress_mark = mark;
        op.progressed_at = Some(Time(cx.now));
    }
    let since = op.progressed_at.as_ref().unwrap_or(&op.started_at).0;
    let spec = &cx.cluster.spec;
    let stall = parse_duration(&spec.stall_timeout).unwrap_or(Duration::from_secs(600));
    if elapsed(since, cx.now) > stall {
        let node = op
            .node_id
            .map(|id| format!(" of node {id}"))
            .unwrap_or_default();
        let message = format!(
            "{:?}{node} has made no progress since {since} (stallTimeout {})",
            op.kind, spec.stall_timeout
        );
        decision.conditions.push(condition(
            ConditionType::Stalled,
            true,
            "OperationStalled",
            &message,
        ));
    }
}

/// A fingerprint of what an operation waits on; `None` while the cluster
/// does not answer (nothing can be said to move then).
fn progress_mark(cx: &Context<'_>, decision: &Decision) -> Option<String> {
    use std::fmt::Write as _;
    let view = cx.view()?;
    let mut text = format!("moves={} ready={}", view.moves_done, decision.ready_nodes);
    for m in decision
        .members
        .iter()
        .filter(|m| m.lifecycle != Lifecycle::Removed)
    {
        let _ = write!(text, " {}:{:?}:{}", m.node_id, m.lifecycle, m.replicas);
    }
    if let Some(uid) = decision
        .operation
        .as_ref()
        .and_then(|op| op.pod_uid.as_ref())
    {
        let _ = write!(text, " pod={uid}");
    }
    // xxh3, as for the pod-spec hash: stable across operator builds, so an
    // upgraded operator does not see progress where there was none.
    Some(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    ))
}

fn condition(kind: ConditionType, status: bool, reason: &str, message: &str) -> ConditionUpdate {
    ConditionUpdate {
        kind,
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

fn ready_nodes(cx: &Context<'_>, members: &[Member]) -> u32 {
    let name = kube::ResourceExt::name_any(cx.cluster);
    let mut ready = 0;
    for (i, rack) in cx.cluster.spec.racks.iter().enumerate() {
        for ordinal in 0..cx.current[i] {
            let pod = pod_name(&name, rack, ordinal);
            let serving = current_member(members, &pod)
                .is_some_and(|m| matches!(m.lifecycle, Lifecycle::Serving | Lifecycle::Draining));
            if serving && cx.pod(i, ordinal).is_some_and(|p| p.ready) {
                ready += 1;
            }
        }
    }
    ready
}

/// Brings each member's lifecycle and counts in line with the cluster.
fn refresh_lifecycles(cx: &Context<'_>, members: &mut [Member]) {
    let Some(view) = cx.view() else {
        return;
    };
    for m in members.iter_mut() {
        if m.lifecycle == Lifecycle::Removed {
            continue;
        }
        match view.node(m.node_id) {
            Some(node) => {
                m.replicas = node.replicas;
                m.leaders = node.leaders;
                m.lifecycle = match node.state {
                    NodeState::Active => Lifecycle::Serving,
                    NodeState::Draining if node.replicas == 0 => Lifecycle::Drained,
                    NodeState::Draining => Lifecycle::Draining,
                    NodeState::Removed => Lifecycle::Removed,
                    NodeState::Dead => Lifecycle::Replacing,
                };
            }
            None if m.lifecycle == Lifecycle::Pending || m.lifecycle == Lifecycle::Joining => {
                let running = locate(cx.cluster, &m.pod)
                    .and_then(|(i, o)| cx.pod(i, o))
                    .is_some_and(|p| p.ready);
                m.lifecycle = if running {
                    Lifecycle::Joining
                } else {
                    Lifecycle::Pending
                };
            }
            None => {}
        }
    }
}

fn operation(kind: OperationKind, node_id: Option<u64>, now: Timestamp) -> Operation {
    Operation {
        kind,
        node_id,
        started_at: Time(now),
        pod_uid: None,
        progressed_at: None,
        progress_mark: None,
    }
}

/// The replaced identity stays on record as `Replacing`; the pod gets a new one.
fn mark_replacing(cx: &Context<'_>, members: &mut Vec<Member>, op: &Operation) {
    let Some(old) = op.node_id else {
        return;
    };
    let Some(index) = members.iter().position(|m| m.node_id == old) else {
        return;
    };
    let pod = members[index].pod.clone();
    let rack = members[index].rack.clone();
    members[index].lifecycle = Lifecycle::Replacing;
    if let Some((rack_index, ordinal)) = locate(cx.cluster, &pod) {
        let node_id = allocate_node_id(members, rack_index, ordinal);
        members.push(Member {
            node_id,
            pod,
            rack,
            lifecycle: Lifecycle::Pending,
            replicas: 0,
            leaders: 0,
        });
    }
}

fn progressing(decision: &mut Decision, reason: &str, message: String) {
    decision.conditions.push(ConditionUpdate {
        kind: ConditionType::Progressing,
        status: true,
        reason: reason.to_owned(),
        message,
    });
}

fn done(decision: &mut Decision, reason: &str, note: String) {
    decision.operation = None;
    decision.events.push((reason.to_owned(), note));
    decision.requeue = Duration::ZERO;
}

/// Takes the next step of an operation in progress, or ends it.
fn continue_operation(cx: &Context<'_>, op: &Operation, decision: &mut Decision) {
    let Some(view) = cx.view() else {
        progressing(
            decision,
            "WaitingForCluster",
            "no node's admin API answers; waiting".into(),
        );
        return;
    };
    let spec = &cx.cluster.spec;
    let member = op
        .node_id
        .and_then(|id| decision.members.iter().find(|m| m.node_id == id).cloned());
    let located = member.as_ref().and_then(|m| locate(cx.cluster, &m.pod));
    match op.kind {
        OperationKind::Bootstrap => done(decision, "Bootstrapped", "cluster formed".into()),
        OperationKind::ScaleOut => {
            let joined = decision
                .members
                .iter()
                .filter(|m| {
                    m.lifecycle != Lifecycle::Removed && m.lifecycle != Lifecycle::Replacing
                })
                .all(|m| m.lifecycle == Lifecycle::Serving);
            // A shard without a leader reports no placement: its moves are
            // unknown, not zero.
            if joined && view.moves_remaining == 0 && view.leaderless == 0 {
                done(
                    decision,
                    "ScaleOutDone",
                    format!("{} nodes serving, replicas balanced", spec.nodes),
                );
            } else if joined {
                progressing(
                    decision,
                    "Rebalancing",
                    format!(
                        "rebalancing: {}/{} replica moves done",
                        view.moves_done, view.moves_total
                    ),
                );
            } else {
                progressing(
                    decision,
                    "NodesJoining",
                    "new nodes are starting and joining".into(),
                );
            }
        }
        OperationKind::ScaleIn => scale_in_step(cx, view, member, located, decision),
        OperationKind::Replace => replace_step(cx, view, op, member, located, decision),
        OperationKind::Upgrade => upgrade_step(cx, view, op, member, located, decision),
    }
}

/// Fills in the conditions not set by the operation and the phase.
fn finish_conditions(cx: &Context<'_>, decision: &mut Decision) {
    let has = |d: &Decision, kind: ConditionType| d.conditions.iter().any(|c| c.kind == kind);
    let view = cx.view();
    if !has(decision, ConditionType::Progressing) {
        decision.conditions.push(condition(
            ConditionType::Progressing,
            false,
            "Idle",
            "no operation in progress",
        ));
    }
    if !has(decision, ConditionType::Stalled) {
        decision.conditions.push(condition(
            ConditionType::Stalled,
            false,
            "NotStalled",
            "operations advance",
        ));
    }
    if !has(decision, ConditionType::Degraded) {
        let (status, reason, message) = match view {
            Some(v) if v.under_replicated > 0 || v.leaderless > 0 => (
                true,
                "ShardsUnhealthy",
                format!(
                    "{} shards under-replicated, {} without a leader",
                    v.under_replicated, v.leaderless
                ),
            ),
            Some(_) => (
                false,
                "ShardsHealthy",
                "every shard has a leader and all its replicas".to_owned(),
            ),
            None => (
                true,
                "ClusterUnreachable",
                "no node's admin API answers".to_owned(),
            ),
        };
        decision.conditions.push(ConditionUpdate {
            kind: ConditionType::Degraded,
            status,
            reason: reason.to_owned(),
            message,
        });
    }
    let surplus = cx.current.iter().zip(&cx.targets).any(|(c, t)| c > t);
    let draining = decision.operation.as_ref().is_some_and(|op| {
        op.kind == OperationKind::ScaleIn
            && op
                .node_id
                .and_then(|id| view.and_then(|v| v.node(id)))
                .is_some_and(|n| n.state != NodeState::Active)
    });
    if !surplus || draining {
        decision.conditions.push(condition(
            ConditionType::ScaleBlocked,
            false,
            "NotBlocked",
            "no scale-in is refused",
        ));
    }
    let available = view.is_some_and(|v| v.leaderless == 0) && decision.ready_nodes > 0;
    decision.conditions.push(condition(
        ConditionType::Available,
        available,
        if available { "Serving" } else { "NotServing" },
        &format!(
            "{} of {} nodes ready",
            decision.ready_nodes, cx.cluster.spec.nodes
        ),
    ));
    let degraded = decision
        .conditions
        .iter()
        .any(|c| c.kind == ConditionType::Degraded && c.status);
    decision.phase = if cx.cluster.spec.paused {
        Phase::Paused
    } else if decision.cluster_id.is_none() {
        Phase::Creating
    } else {
        match decision.operation.as_ref().map(|o| o.kind) {
            Some(OperationKind::Upgrade) => Phase::Upgrading,
            Some(OperationKind::ScaleIn | OperationKind::ScaleOut) => Phase::Scaling,
            _ if degraded => Phase::Degraded,
            _ => Phase::Running,
        }
    };
}
