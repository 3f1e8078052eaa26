//! The PodDisruptionBudget: voluntary evictions (node drains, cluster
//! upgrades) take at most one Cairn pod at a time, so a shard with
//! replication factor 3 keeps its majority.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::BuildError;
use super::metadata::{cluster_selector, owned_meta};
use crate::crd::KVCluster;

/// `<name>`: `maxUnavailable: 1` over all pods of the cluster.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_disruption_budget(cluster: &KVCluster) -> Result<PodDisruptionBudget, BuildError> {
    Ok(PodDisruptionBudget {
        metadata: owned_meta(cluster, cluster.name_any(), None)?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(cluster_selector(cluster)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
