//! Names, labels and owner references shared by every owned object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::BuildError;
use crate::crd::{KVCluster, Rack};

/// Label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the `KVCluster`.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the manager.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming a pod's rack.
pub const RACK_LABEL: &str = "cairn.dev/rack";
/// Field manager and `managed-by` value of the operator.
pub const MANAGER: &str = "cairn-operator";

/// Labels selecting every pod of `cluster` (Services, PodDisruptionBudget).
pub fn cluster_selector(cluster: &KVCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), "cairn".to_owned()),
        (INSTANCE_LABEL.to_owned(), cluster.name_any()),
    ])
}

/// Labels selecting the pods of one rack (a StatefulSet's selector).
pub fn rack_selector(cluster: &KVCluster, rack: &Rack) -> BTreeMap<String, String> {
    let mut labels = cluster_selector(cluster);
    labels.insert(RACK_LABEL.to_owned(), rack.name.clone());
    labels
}

/// Labels of an owned object: the selector labels plus `managed-by`, and
/// the rack for rack-scoped objects.
pub fn labels(cluster: &KVCluster, rack: Option<&Rack>) -> BTreeMap<String, String> {
    let mut labels = match rack {
        Some(rack) => rack_selector(cluster, rack),
        None => cluster_selector(cluster),
    };
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    labels
}

/// Namespace of `cluster`.
///
/// # Errors
/// [`BuildError::NoNamespace`] when it has none.
pub fn namespace(cluster: &KVCluster) -> Result<String, BuildError> {
    cluster
        .namespace()
        .ok_or_else(|| BuildError::NoNamespace(cluster.name_any()))
}

/// Metadata of an object named `name` owned (as controller) by `cluster`.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn owned_meta(
    cluster: &KVCluster,
    name: String,
    rack: Option<&Rack>,
) -> Result<ObjectMeta, BuildError> {
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(BuildError::NotPersisted)?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(cluster)?),
        labels: Some(labels(cluster, rack)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// Name of the headless Service that gives each pod a stable DNS name.
pub fn peer_service_name(cluster: &KVCluster) -> String {
    format!("{}-peers", cluster.name_any())
}
