//! The Deployment controller: keeps `replicas` pods of each apps/v1
//! Deployment's current template running, replaces pods of an older template
//! by the Deployment's strategy, and reports the Deployment's status — what
//! `helm install`/`helm upgrade` of the operator's chart and `kubectl
//! rollout status` rely on.
//!
//! Unlike kube-controller-manager there are no ReplicaSets: pods are owned
//! by the Deployment directly and carry `pod-template-hash`, the template's
//! hash, as their revision. What is and is not emulated is listed in the
//! crate README (`## Deployment controller`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::controller_task::ControllerTask;

use crate::template_hash::template_hash;
use crate::workload::{delete_pod, running_and_ready, write_status};

/// The label carrying a pod's template revision, as on real ReplicaSet pods.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// How often each Deployment is reconciled even when nothing it watches changes.
const RESYNC: Duration = Duration::from_secs(5);
/// How soon a failed reconciliation is retried.
const RETRY: Duration = Duration::from_secs(1);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// A call to the API server failed.
    #[error("kubesim:deployment:api: {0}")]
    Api(#[from] kube::Error),
}

/// Runs the controller until the watch streams end (they normally do not).
///
/// # Errors
///
/// None today; reconciliation errors are logged and retried.
pub async fn run(client: Client) -> Result<(), DeploymentError> {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    info!("deployment controller starting");
    Controller::new(deployments, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile_one, on_error, Arc::new(client))
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "deployment controller stream error");
            }
        })
        .await;
    Ok(())
}

async fn reconcile_one(
    deployment: Arc<Deployment>,
    client: Arc<Client>,
) -> Result<Action, DeploymentError> {
    reconcile(&client, &deployment).await?;
    Ok(Action::requeue(RESYNC))
}

fn on_error(deployment: Arc<Deployment>, error: &DeploymentError, _client: Arc<Client>) -> Action {
    warn!(
        deployment = deployment.metadata.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(RETRY)
}

/// The controller running on the current Tokio runtime; dropping the handle
/// stops it (tests start one per API server and forget about it).
#[derive(Debug)]
pub struct DeploymentController {
    /// Held for its Drop, which stops the loop.
    _task: ControllerTask,
}

impl DeploymentController {
    /// Spawns [`run`] on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn(client: Client) -> Self {
        Self {
            _task: ControllerTask::spawn("deployment", run(client)),
        }
    }
}

/// The revision of a pod template.
pub fn revision(template: &PodTemplateSpec) -> String {
    template_hash(template)
}

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
        .map(String::as_str)
}

fn build_pod(deployment: &Deployment, name: &str, uid: &str, revision: &str) -> Pod {
    let template = deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.take().unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.into(), revision.to_owned());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-{revision}-")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.take(),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: name.to_owned(),
                uid: uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Reconciles `deployment` once: one step towards `replicas` ready pods of
/// the current template, then the status.
///
/// # Errors
///
/// Any API call that fails.
pub async fn reconcile(client: &Client, deployment: &Deployment) -> Result<(), DeploymentError> {
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(()); // garbage collection removes the pods
    }
    let (Some(ns), Some(name), Some(uid)) = (
        deployment.metadata.namespace.as_deref(),
        deployment.metadata.name.as_deref(),
        deployment.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let current = revision(&spec.template);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| owned_by(p, uid))
        .collect();
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let (new, old): (Vec<&Pod>, Vec<&Pod>) = live
        .iter()
        .partition(|p| pod_revision(p) == Some(current.as_str()));
    let terminating = pods.len() - live.len();
    let new_ready = new.iter().filter(|p| running_and_ready(p)).count();

    if recreate && !old.is_empty() {
        // Recreate: every old pod goes, and nothing new starts until they are gone.
        for pod in &old {
            delete_pod(&pods_api, pod).await?;
        }
    } else if recreate && terminating > 0 {
        // Wait for the old pods to finish terminating.
    } else if new.len() < replicas {
        // RollingUpdate with maxSurge 1: one new pod at a time.
        info!(deployment = name, revision = %current, "creating pod");
        pods_api
            .create(
                &PostParams::default(),
                &build_pod(deployment, name, uid, &current),
            )
            .await?;
    } else if new.len() > replicas {
        // Scale down: the newest surplus pods first.
        let mut surplus = new.clone();
        surplus.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
        for pod in surplus.iter().take(new.len() - replicas) {
            delete_pod(&pods_api, pod).await?;
        }
    } else if new_ready == replicas {
        // maxUnavailable 0: old pods go once the new ones are all ready.
        for pod in &old {
            delete_pod(&pods_api, pod).await?;
        }
    }

    let ready = live.iter().filter(|p| running_and_ready(p)).count();
    let done = new.len() == replicas && new_ready == replicas && old.is_empty();
    let now = Time(jiff::Timestamp::now());
    let condition = |type_: &str, ok: bool, reason: &str, message: String| DeploymentCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.clone()),
        last_update_time: Some(now.clone()),
    };
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(to_i32(live.len())),
        updated_replicas: Some(to_i32(new.len())),
        ready_replicas: Some(to_i32(ready)),
        available_replicas: Some(to_i32(ready)),
        unavailable_replicas: Some(to_i32(replicas.saturating_sub(ready))),
        conditions: Some(vec![
            condition(
                "Available",
                ready >= replicas,
                if ready >= replicas {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
                format!("{ready} of {replicas} pods ready"),
            ),
            condition(
                "Progressing",
                true,
                if done {
                    "NewReplicaSetAvailable"
                } else {
                    "ReplicaSetUpdated"
                },
                format!("revision {current}: {} of {replicas} updated", new.len()),
            ),
        ]),
        ..DeploymentStatus::default()
    };
    let unchanged = deployment.status.as_ref().is_some_and(|s| {
        s.observed_generation == status.observed_generation
            && s.replicas == status.replicas
            && s.updated_replicas == status.updated_replicas
            && s.ready_replicas == status.ready_replicas
            && s.available_replicas == status.available_replicas
            && s.conditions.as_ref().map(|c| {
                c.iter()
                    .map(|c| (&c.type_, &c.status, &c.reason))
                    .collect::<Vec<_>>()
            }) == status.conditions.as_ref().map(|c| {
                c.iter()
                    .map(|c| (&c.type_, &c.status, &c.reason))
                    .collect::<Vec<_>>()
            })
    });
    if !unchanged {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        write_status(&api, name, &status).await?;
    }
    Ok(())
}
