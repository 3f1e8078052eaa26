//! The Cairn operator: runs Cairn clusters on Kubernetes from a `KVCluster`
//! resource. This first part holds the resource's types, from which the
//! CRD in `crds/` is generated.

pub mod crd;

/// The CRD of [`crd::KVCluster`] as YAML, as `crdgen` prints it and
/// `crds/kvcluster.yaml` holds it.
///
/// # Errors
/// The CRD could not be serialised.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt as _;
    serde_yaml::to_string(&crd::KVCluster::crd())
}
