//! The identity ConfigMap: one small `cairn-node` TOML file per pod with
//! what differs between pods of one StatefulSet (which share a template):
//! the node id, and whether the pod founds the cluster or joins it.
//!
//! A pod reads its own file through `--config
//! /etc/cairn/identity/$(POD_NAME).toml`; everything common to all pods is
//! passed as flags, which take precedence over the file.
//!
//! # Bootstrap
//! Only pod 0 of the first rack gets `bootstrap = true`, and only until the
//! controller records `status.clusterId`. From then on it joins like every
//! other pod, so a bootstrap pod that lost its volume cannot found a second
//! cluster. (The node does not found a new cluster on a data directory that
//! already belongs to one, it only finishes an interrupted bootstrap; on an
//! empty directory it would found a second cluster.)

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::metadata::{namespace, owned_meta, peer_service_name};
use super::{BuildError, GRPC_PORT};
use crate::crd::KVCluster;
use crate::topology::{assigned_node_id, pod_name, rack_shares};

/// Name of the identity ConfigMap: `<name>-identity`.
pub fn identity_config_map_name(cluster: &KVCluster) -> String {
    format!("{}-identity", cluster.name_any())
}

/// Key of a pod's file in the identity ConfigMap.
pub fn identity_file_name(pod: &str) -> String {
    format!("{pod}.toml")
}

/// Builds the identity ConfigMap with a file for every pod `spec.nodes` asks for.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_identity_config_map(cluster: &KVCluster) -> Result<ConfigMap, BuildError> {
    let pods: Vec<u32> = rack_shares(cluster.spec.nodes, &cluster.spec.racks)
        .iter()
        .map(|s| s.nodes)
        .collect();
    build_identity_config_map_for(cluster, &pods)
}

/// Builds the identity ConfigMap with a file for the first `pods[i]` pods of
/// rack `i`: during a scale-in the StatefulSets still run more pods than
/// `spec.nodes` asks for, and each of them must keep its identity.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_identity_config_map_for(
    cluster: &KVCluster,
    pods: &[u32],
) -> Result<ConfigMap, BuildError> {
    let name = cluster.name_any();
    let ns = namespace(cluster)?;
    let peers = format!("{}.{ns}.svc", peer_service_name(cluster));
    let formed = cluster
        .status
        .as_ref()
        .is_some_and(|s| s.cluster_id.is_some());
    let shares = rack_shares(cluster.spec.nodes, &cluster.spec.racks);
    let bootstrap_pod = shares
        .first()
        .filter(|_| !formed)
        .map(|share| pod_name(&name, share.rack, 0));
    let seeds = match shares.first() {
        Some(first) => vec![
            format!("{peers}:{GRPC_PORT}"),
            format!("{}.{peers}:{GRPC_PORT}", pod_name(&name, first.rack, 0)),
        ],
        None => vec![format!("{peers}:{GRPC_PORT}")],
    };

    let mut files = BTreeMap::new();
    for share in &shares {
        let count = pods.get(share.index).copied().unwrap_or(share.nodes);
        for ordinal in 0..count {
            let pod = pod_name(&name, share.rack, ordinal);
            let node_id = assigned_node_id(cluster, &pod, share.index, ordinal);
            let mut file = format!(
                "# Written by cairn-operator: identity of pod {pod}.\nnode-id = {node_id}\n"
            );
            if bootstrap_pod.as_deref() == Some(pod.as_str()) {
                file.push_str("bootstrap = true\n");
            } else {
                let list = seeds
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                // Writing to a String cannot fail.
                let _ = writeln!(file, "join = [{list}]");
            }
            files.insert(identity_file_name(&pod), file);
        }
    }
    Ok(ConfigMap {
        metadata: owned_meta(cluster, identity_config_map_name(cluster), None)?,
        data: Some(files),
        ..ConfigMap::default()
    })
}
