//! One reconcile of a `KVCluster`: observe, decide, record the decision in
//! status, apply the owned objects, then take the decided step.
//!
//! The order matters for crash safety: the status (operation in progress,
//! member identities) is written before anything acts on it, so an operator
//! that dies between two lines of this function finds its intent recorded
//! and every step it may have half-done is idempotent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::admin::AdminError;
use super::decide::{Action, ConditionUpdate, Decision, decide};
use super::observe::observe;
use super::{Context, ControllerError};
use crate::builders::build_owned_objects_with;
use crate::builders::metadata::MANAGER;
use crate::builders::monitoring::service_monitor_resource;
use crate::crd::{ConditionType, KVCluster, KVClusterStatus};

/// Merges condition updates into `existing`, keeping a condition's
/// transition time while its status stays the same.
pub fn merge_conditions(
    existing: &[Condition],
    updates: &[ConditionUpdate],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for update in updates {
        let status = if update.status { "True" } else { "False" };
        let fresh = Condition {
            type_: update.kind.as_str().to_owned(),
            status: status.to_owned(),
            reason: update.reason.clone(),
            message: update.message.clone(),
            observed_generation: generation,
            last_transition_time: Time(now),
        };
        match out.iter_mut().find(|c| c.type_ == fresh.type_) {
            Some(c) if c.status == fresh.status => {
                c.reason = fresh.reason;
                c.message = fresh.message;
                c.observed_generation = generation;
            }
            Some(c) => *c = fresh,
            None => out.push(fresh),
        }
    }
    out
}

/// The status a decision records.
fn status_of(cluster: &KVCluster, decision: &Decision, now: Timestamp) -> KVClusterStatus {
    let existing = cluster.status.clone().unwrap_or_default();
    KVClusterStatus {
        phase: Some(decision.phase),
        conditions: merge_conditions(
            &existing.conditions,
            &decision.conditions,
            cluster.metadata.generation,
            now,
        ),
        observed_generation: cluster.metadata.generation,
        ready_nodes: decision.ready_nodes,
        cluster_id: decision.cluster_id.clone(),
        members: decision.members.clone(),
        shard_health: decision.shard_health.clone().or(existing.shard_health),
        operation: decision.operation.clone(),
    }
}

/// A merge patch that sets `status` wholesale, including clearing the
/// operation (a merge patch keeps fields it does not mention).
fn status_patch(status: &KVClusterStatus) -> Result<Value, ControllerError> {
    let mut value = serde_json::to_value(status)?;
    if let Value::Object(map) = &mut value {
        for key in ["operation", "clusterId", "shardHealth"] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    Ok(json!({ "status": value }))
}

async fn write_status(
    api: &Api<KVCluster>,
    name: &str,
    status: &KVClusterStatus,
) -> Result<KVCluster, ControllerError> {
    Ok(api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(status_patch(status)?),
        )
        .await?)
}

async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), ControllerError>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?;
    Ok(())
}

/// Applies every owned object, identity ConfigMap before the StatefulSets
/// (a pod must find its identity file when it starts).
async fn apply_objects(
    ctx: &Context,
    cluster: &KVCluster,
    replicas: &[u32],
) -> Result<(), ControllerError> {
    let ns = cluster.namespace().unwrap_or_default();
    let objects = build_owned_objects_with(cluster, replicas)?;
    let client = &ctx.client;
    apply(&Api::namespaced(client.clone(), &ns), &objects.identity).await?;
    for service in &objects.services {
        apply(&Api::namespaced(client.clone(), &ns), service).await?;
    }
    apply(
        &Api::namespaced(client.clone(), &ns),
        &objects.disruption_budget,
    )
    .await?;
    for set in &objects.statefulsets {
        apply(&Api::namespaced(client.clone(), &ns), set).await?;
    }
    apply_service_monitor(ctx, cluster, objects.service_monitor.as_ref()).await
}

/// Applies the cluster's ServiceMonitor, or deletes it once
/// `spec.monitoring` is turned off. Without prometheus-operator's CRDs the
/// API answers 404: the cluster is still reconciled, and an event says why
/// nothing scrapes it.
async fn apply_service_monitor(
    ctx: &Context,
    cluster: &KVCluster,
    monitor: Option<&DynamicObject>,
) -> Result<(), ControllerError> {
    let ns = cluster.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", cluster.name_any());
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &service_monitor_resource());
    let absent = |known: bool| {
        let mut set = ctx
            .monitors_absent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known {
            set.insert(key.clone());
        } else {
            set.remove(&key);
        }
    };
    let Some(monitor) = monitor else {
        let known = ctx
            .monitors_absent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key);
        if !known {
            delete_ignoring_absent(&api, &cluster.name_any(), &DeleteParams::default()).await?;
            absent(true);
        }
        return Ok(());
    };
    absent(false);
    match apply(&api, monitor).await {
        Err(ControllerError::Kube(kube::Error::Api(e))) if e.code == 404 => {
            publish(
                ctx,
                cluster,
                EventType::Warning,
                "MonitoringUnavailable",
                "spec.monitoring.enabled is set but the API server has no monitoring.coreos.com/v1 ServiceMonitor (install prometheus-operator's CRDs)",
            )
            .await;
            Ok(())
        }
        other => other,
    }
}

async fn delete_ignoring_absent<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), ControllerError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn publish(ctx: &Context, cluster: &KVCluster, type_: EventType, reason: &str, note: &str) {
    ctx.metrics.lifecycle_event(reason);
    tracing::info!(cluster = %cluster.name_any(), reason, note, "lifecycle step");
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}

/// Reconciles one `KVCluster`.
///
/// # Errors
/// [`ControllerError`] when the API server or the cluster's admin API fails;
/// the controller retries with backoff.
pub async fn reconcile(
    cluster: Arc<KVCluster>,
    ctx: Arc<Context>,
) -> Result<Requeue, ControllerError> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics
        .reconciled(result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(cluster: &KVCluster, ctx: &Context) -> Result<Requeue, ControllerError> {
    let ns = cluster.namespace().ok_or(ControllerError::NoNamespace)?;
    let name = cluster.name_any();
    let key = format!("{ns}/{name}");
    if cluster.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget(&key);
        return Ok(Requeue::await_change());
    }
    let api: Api<KVCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let observed = observe(&ctx.client, ctx.admin.as_ref(), cluster).await?;
    let now = Timestamp::now();
    let decision = decide(cluster, &observed, now);
    let status = status_of(cluster, &decision, now);
    let stalled = status
        .conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Stalled.as_str() && c.status == "True");
    ctx.metrics
        .operation(&key, decision.operation.as_ref().map(|o| o.kind), stalled);
    // 1. Record intent (operation, identities) before acting on it.
    let recorded = write_status(&api, &name, &status).await?;
    for (reason, note) in &decision.events {
        publish(ctx, cluster, EventType::Normal, reason, note).await;
    }
    let Some(replicas) = &decision.replicas else {
        return Ok(Requeue::requeue(
            decision.requeue.max(Duration::from_secs(5)),
        ));
    };
    // 2. Objects, built from the recorded status (identities).
    apply_objects(ctx, &recorded, replicas).await?;
    // 3. The step.
    match &decision.action {
        Action::None => {}
        Action::Admin(call) => match ctx.admin.call(&observed.endpoints, *call).await {
            Ok(()) => tracing::info!(cluster = %key, ?call, "admin call done"),
            Err(AdminError::Refused(reason)) => {
                let blocked = ConditionUpdate {
                    kind: ConditionType::ScaleBlocked,
                    status: true,
                    reason: "RefusedByCluster".into(),
                    message: format!("{call:?} refused: {reason}"),
                };
                let mut status = status_of(&recorded, &decision, Timestamp::now());
                status.conditions = merge_conditions(
                    &status.conditions,
                    std::slice::from_ref(&blocked),
                    cluster.metadata.generation,
                    Timestamp::now(),
                );
                // A refused step ends its operation; it is tried again later.
                status.operation = None;
                write_status(&api, &name, &status).await?;
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "ScaleBlocked",
                    &blocked.message,
                )
                .await;
                return Ok(Requeue::requeue(Duration::from_secs(15)));
            }
            Err(e) => return Err(e.into()),
        },
        Action::DeletePod(pod) => {
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
            delete_ignoring_absent(&pods, pod, &DeleteParams::default()).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "PodDeleted",
                &format!("deleted pod {pod}"),
            )
            .await;
        }
        Action::DeletePodAndClaim { pod, claim } => {
            delete_ignoring_absent(
                &Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns),
                claim,
                &DeleteParams::default(),
            )
            .await?;
            // Forced: the pod's machine has been down for downTimeout, and a
            // pod on a dead machine never finishes a graceful deletion.
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
            delete_ignoring_absent(&pods, pod, &DeleteParams::default().grace_period(0)).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "PodReplaced",
                &format!(
                    "deleted pod {pod} and its volume claim {claim}: it starts again as a new node"
                ),
            )
            .await;
        }
    }
    Ok(Requeue::requeue(
        decision.requeue.max(Duration::from_millis(200)),
    ))
}
