//! One reconciliation of one StatefulSet: read its pods and claims from the
//! API, create what is missing, delete what is surplus or outdated, and write
//! the set's status. Every pass starts from a fresh list, so a pass that
//! fails part way is simply repeated.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::{debug, info};

use super::StatefulSetError;
use super::identity::{
    REVISION_LABEL, build_claim, build_pod, claim_templates, ordinal_of, pod_name, revision,
    set_owner_ref,
};
use crate::workload::{self, delete_pod, running_and_ready, terminating};

/// Reconciles `set` once.
///
/// # Errors
///
/// Any API call that fails (other than a create that finds the object
/// already there, or a delete that finds it already gone).
pub async fn reconcile(client: &Client, set: &StatefulSet) -> Result<(), StatefulSetError> {
    if set.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the pods through their owner references.
        return Ok(());
    }
    let (Some(namespace), Some(name), Some(uid)) = (
        set.metadata.namespace.as_deref(),
        set.metadata.name.as_deref(),
        set.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.and_then(|o| o.start).unwrap_or(0).max(0);
    let wanted = start..start + replicas;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let retention = spec
        .persistent_volume_claim_retention_policy
        .unwrap_or_default();
    let delete_claims_when_scaled = retention.when_scaled.as_deref() == Some("Delete");
    let claims_owned_by_set = retention.when_deleted.as_deref() == Some("Delete");
    let update_revision = revision(set);

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);

    // The set's pods by ordinal: named like the set's pods and controlled by it.
    let mut pods: BTreeMap<i32, Pod> = BTreeMap::new();
    for pod in pods_api.list(&ListParams::default()).await?.items {
        let controlled = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == uid);
        let ordinal = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| ordinal_of(name, n));
        if let (true, Some(ordinal)) = (controlled, ordinal) {
            pods.insert(ordinal, pod);
        }
    }
    let claims: BTreeMap<String, PersistentVolumeClaim> = claims_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name.clone().map(|n| (n, c)))
        .collect();

    // Claims of wanted ordinals: created before their pod, bound, owned per policy.
    for ordinal in wanted.clone() {
        let pod = pod_name(name, ordinal);
        for template in claim_templates(set) {
            let desired = build_claim(set, template, &pod, claims_owned_by_set);
            let Some(claim) = desired.metadata.name.clone() else {
                continue;
            };
            match claims.get(&claim) {
                None => {
                    create(&claims_api, &desired).await?;
                    bind(&claims_api, &claim).await?;
                }
                Some(existing) => {
                    if existing.metadata.deletion_timestamp.is_none() {
                        ensure_bound(&claims_api, existing).await?;
                        ensure_set_ownership(&claims_api, set, existing, claims_owned_by_set)
                            .await?;
                    }
                }
            }
        }
    }

    // Pods to create.
    for ordinal in wanted.clone() {
        match pods.get(&ordinal) {
            None => {
                let pod = build_pod(set, ordinal, &update_revision);
                info!(namespace, set = name, ordinal, "creating pod");
                create(&pods_api, &pod).await?;
                if !parallel {
                    break;
                }
            }
            Some(pod) if !parallel && (!running_and_ready(pod) || terminating(pod)) => break,
            Some(_) => {}
        }
    }

    // Pods to delete: those outside the wanted ordinals.
    let condemned: Vec<&Pod> = pods
        .iter()
        .filter(|(o, _)| !wanted.contains(o))
        .rev()
        .map(|(_, p)| p)
        .collect();
    if parallel {
        for pod in condemned.iter().filter(|p| !terminating(p)) {
            delete_pod(&pods_api, pod).await?;
        }
    } else {
        let all_wanted_healthy = wanted.clone().all(|o| {
            pods.get(&o)
                .is_some_and(|p| running_and_ready(p) && !terminating(p))
        });
        let any_terminating = pods.values().any(terminating);
        if all_wanted_healthy
            && !any_terminating
            && let Some(highest) = condemned.first()
        {
            delete_pod(&pods_api, highest).await?;
        }
    }

    // Claims of condemned ordinals whose pods are gone.
    if delete_claims_when_scaled {
        for template in claim_templates(set) {
            let Some(template_name) = template.metadata.name.as_deref() else {
                continue;
            };
            let prefix = format!("{template_name}-{name}");
            for (claim, object) in &claims {
                let Some(ordinal) = ordinal_of(&prefix, claim) else {
                    continue;
                };
                if !wanted.contains(&ordinal)
                    && !pods.contains_key(&ordinal)
                    && object.metadata.deletion_timestamp.is_none()
                {
                    info!(
                        namespace,
                        set = name,
                        claim,
                        "deleting claim of a scaled-down ordinal"
                    );
                    ignore_not_found(claims_api.delete(claim, &DeleteParams::default()).await)?;
                }
            }
        }
    }

    // Rolling update: one outdated pod at a time, highest ordinal first,
    // only when every wanted pod is there and ready.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling {
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let all_ready = wanted.clone().all(|o| {
            pods.get(&o)
                .is_some_and(|p| running_and_ready(p) && !terminating(p))
        });
        if all_ready && condemned.is_empty() {
            let outdated = wanted
                .clone()
                .rev()
                .filter(|o| *o >= partition)
                .filter_map(|o| pods.get(&o))
                .find(|p| pod_revision(p) != Some(update_revision.as_str()));
            if let Some(pod) = outdated {
                delete_pod(&pods_api, pod).await?;
            }
        }
    }

    write_status(client, set, &pods, &update_revision).await
}

/// Writes the set's status from the pods as listed at the start of the pass
/// (the next pass, triggered by the pod changes, corrects it).
async fn write_status(
    client: &Client,
    set: &StatefulSet,
    pods: &BTreeMap<i32, Pod>,
    update_revision: &str,
) -> Result<(), StatefulSetError> {
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let previous = set.status.clone().unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(pods.values().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let replicas = count(&|_| true);
    let ready = count(&|p| running_and_ready(p) && !terminating(p));
    let updated = count(&|p| pod_revision(p) == Some(update_revision));
    // The current revision moves to the update revision once every pod runs it.
    let current_revision = match previous.current_revision {
        Some(current) if updated < replicas => current,
        _ => update_revision.to_owned(),
    };
    let current = count(&|p| pod_revision(p) == Some(current_revision.as_str()));
    let status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_owned()),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
    };
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    debug!(namespace, set = name, ready, replicas, "writing set status");
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    workload::write_status(&api, name, &status).await?;
    Ok(())
}

/// The revision label of a pod.
fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
}

/// Creates `object`, treating "already exists" as success (another pass or
/// a stale cache got there first).
async fn create<K>(api: &Api<K>, object: &K) -> Result<(), StatefulSetError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Marks a claim Bound: no provisioner runs here, so every claim binds at once.
async fn bind(api: &Api<PersistentVolumeClaim>, claim: &str) -> Result<(), StatefulSetError> {
    let patch = json!({ "status": { "phase": "Bound" } });
    ignore_not_found(
        api.patch_status(claim, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ()),
    )
}

/// Binds an existing claim that is not yet Bound.
async fn ensure_bound(
    api: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
) -> Result<(), StatefulSetError> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    match (phase, claim.metadata.name.as_deref()) {
        (Some("Bound"), _) | (_, None) => Ok(()),
        (_, Some(name)) => bind(api, name).await,
    }
}

/// Adds or removes the claim's owner reference to the set so that it matches
/// the `whenDeleted` policy, as the real controller does when the policy
/// changes.
async fn ensure_set_ownership(
    api: &Api<PersistentVolumeClaim>,
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    owned: bool,
) -> Result<(), StatefulSetError> {
    let set_uid = set.metadata.uid.as_deref().unwrap_or_default();
    let refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let has = refs.iter().any(|r| r.uid == set_uid);
    if has == owned {
        return Ok(());
    }
    let Some(name) = claim.metadata.name.as_deref() else {
        return Ok(());
    };
    let mut refs: Vec<_> = refs.into_iter().filter(|r| r.uid != set_uid).collect();
    if owned {
        refs.push(set_owner_ref(set));
    }
    let patch = json!({ "metadata": { "ownerReferences": refs } });
    ignore_not_found(
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ()),
    )
}

/// Maps a 404 to success.
fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), StatefulSetError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
