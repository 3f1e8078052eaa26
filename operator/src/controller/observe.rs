//! Reads what [`super::decide`] needs: each rack's StatefulSet and pods
//! from the API server, and the Cairn cluster from its admin API.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::ControllerError;
use super::admin::ClusterAdmin;
use super::view::{Observed, PodView, RackView};
use crate::builders::GRPC_PORT;
use crate::builders::metadata::INSTANCE_LABEL;
use crate::builders::statefulset::{DATA_VOLUME, POD_SPEC_HASH_ANNOTATION, pod_spec_hash};
use crate::crd::KVCluster;
use crate::topology::statefulset_name;

fn pod_view(pod: &Pod, ordinal: u32) -> PodView {
    let created_at = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let ready_condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    PodView {
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        ordinal,
        ready: ready_condition.is_some_and(|c| c.status == "True"),
        ready_changed_at: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(created_at, |t| t.0),
        created_at,
        spec_hash: pod.annotations().get(POD_SPEC_HASH_ANNOTATION).cloned(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty()),
    }
}

/// Observes `cluster`: its racks through `client`, the Cairn cluster
/// through `admin` at the running pods.
///
/// # Errors
/// [`ControllerError::Kube`] when the API server cannot be read.
pub async fn observe(
    client: &kube::Client,
    admin: &dyn ClusterAdmin,
    cluster: &KVCluster,
) -> Result<Observed, ControllerError> {
    let ns = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let all_pods = pods
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await?;
    let mut racks = Vec::with_capacity(cluster.spec.racks.len());
    for rack in &cluster.spec.racks {
        let set_name = statefulset_name(&name, rack);
        let set = statefulsets.get_opt(&set_name).await?;
        let prefix = format!("{set_name}-");
        let rack_pods = all_pods
            .items
            .iter()
            .filter_map(|p| {
                let ordinal = p.name_any().strip_prefix(&prefix)?.parse().ok()?;
                Some(pod_view(p, ordinal))
            })
            .collect();
        racks.push(RackView {
            replicas: set
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.replicas)
                .and_then(|r| u32::try_from(r).ok()),
            expected_hash: pod_spec_hash(cluster, rack),
            pods: rack_pods,
        });
    }
    // Ready pods first: they are the likeliest to answer.
    let mut running: Vec<&PodView> = racks
        .iter()
        .flat_map(|r| r.pods.iter())
        .filter(|p| p.ip.is_some() && !p.deleting)
        .collect();
    running.sort_by_key(|p| !p.ready);
    let endpoints: Vec<String> = running
        .iter()
        .filter_map(|p| p.ip.as_deref()?.parse::<std::net::IpAddr>().ok())
        .filter_map(|ip| {
            Some(std::net::SocketAddr::new(ip, u16::try_from(GRPC_PORT).ok()?).to_string())
        })
        .collect();
    let view = admin
        .observe(&endpoints, cluster.spec.replication_factor)
        .await;
    // A pod whose data claim is gone (or going) lost its volume.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let present: Vec<String> = claims
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await?
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    let lost_claims = racks
        .iter()
        .flat_map(|r| r.pods.iter())
        .filter(|p| !p.deleting)
        .map(|p| format!("{DATA_VOLUME}-{}", p.name))
        .filter(|claim| !present.contains(claim))
        .collect();
    let lost_nodes = lost_nodes(client, &all_pods.items).await;
    Ok(Observed {
        racks,
        cluster: view,
        endpoints,
        lost_claims,
        lost_nodes,
    })
}

/// The pods in `pods` bound to a Kubernetes Node that no longer exists or is
/// being deleted, each with that Node's name.
///
/// Conservative on purpose, since a wrong answer replaces a healthy node:
/// when Nodes cannot be listed (the operator's role may lack the
/// permission) the check is skipped with a warning, and when none of the
/// pods' Nodes exists the list is taken to be wrong rather than every
/// machine lost at once.
async fn lost_nodes(client: &kube::Client, pods: &[Pod]) -> Vec<(String, String)> {
    let bound: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            (!node.is_empty()).then(|| (p.name_any(), node))
        })
        .collect();
    if bound.is_empty() {
        return Vec::new();
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = match nodes.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            warn!(error = %e, "cannot list Kubernetes nodes; pods on lost nodes are not detected");
            return Vec::new();
        }
    };
    let live: Vec<String> = listed
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    let lost: Vec<(String, String)> = bound
        .into_iter()
        .filter(|(_, node)| !live.contains(node))
        .collect();
    let nodes_used = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_ref())
        .filter(|n| live.contains(n))
        .count();
    if nodes_used == 0 {
        if !lost.is_empty() {
            warn!(
                pods = lost.len(),
                "none of the cluster's pods is on a listed Kubernetes node; not treating them as lost"
            );
        }
        return Vec::new();
    }
    lost
}
