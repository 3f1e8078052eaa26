//! What the two workload controllers (StatefulSet, Deployment) share about
//! the pods they own and the status they report: whether a pod counts as
//! ready, graceful deletion, and the status write.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

/// Whether the pod is being deleted.
pub(crate) fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the pod's phase is Running and its Ready condition True.
pub(crate) fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Deletes a pod gracefully (its own grace period), unless it is already
/// going or gone.
pub(crate) async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if terminating(pod) {
        return Ok(());
    }
    let Some(name) = pod.metadata.name.as_deref() else {
        return Ok(());
    };
    info!(pod = name, "deleting pod");
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `status` through the object's `/status` subresource (a merge patch).
pub(crate) async fn write_status<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(|_| ())
}
