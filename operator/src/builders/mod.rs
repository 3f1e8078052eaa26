//! Pure functions from a [`KVCluster`] to the Kubernetes objects the operator
//! applies for it with Server-Side Apply. Nothing here talks to an API
//! server: the same input always gives the same objects, which the golden
//! tests pin down.
//!
//! Every object carries a controller owner reference to the `KVCluster`
//! (deleting the cluster deletes them, except volumes: see
//! [`statefulset`]) and the common labels of [`metadata`].

pub mod disruption_budget;
pub mod identity;
pub mod metadata;
pub mod monitoring;
pub mod services;
pub mod statefulset;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::crd::KVCluster;

/// gRPC port of a node (KV API, admin API, Raft transport).
pub const GRPC_PORT: i32 = 7000;
/// HTTP gateway port of a node.
pub const HTTP_PORT: i32 = 7001;
/// `/metrics`, `/healthz` and `/readyz` port of a node.
pub const METRICS_PORT: i32 = 7002;

/// Why objects could not be built for a `KVCluster`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The object has no namespace (a `KVCluster` read from the API always has one).
    #[error("KVCluster {0} has no namespace")]
    NoNamespace(String),
    /// The object has no name or uid, so nothing can be owned by it (it was
    /// not read back from the API server).
    #[error(
        "KVCluster has no name or uid: read it from the API server before building its objects"
    )]
    NotPersisted,
}

/// Everything the operator applies for one `KVCluster`.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedObjects {
    /// One per rack, in `spec.racks` order.
    pub statefulsets: Vec<StatefulSet>,
    /// The headless peer Service and the client Service.
    pub services: Vec<Service>,
    /// At most one pod of the cluster down by choice at a time.
    pub disruption_budget: PodDisruptionBudget,
    /// The per-pod identity files (node id, bootstrap or join).
    pub identity: ConfigMap,
    /// The prometheus-operator ServiceMonitor, when `spec.monitoring` asks
    /// for one.
    pub service_monitor: Option<kube::api::DynamicObject>,
}

/// Builds every object the operator owns for `cluster`, with the replica
/// counts `spec.nodes` asks for.
///
/// # Errors
/// [`BuildError`] when `cluster` lacks a namespace, name or uid.
pub fn build_owned_objects(cluster: &KVCluster) -> Result<OwnedObjects, BuildError> {
    let replicas: Vec<u32> = crate::topology::rack_shares(cluster.spec.nodes, &cluster.spec.racks)
        .iter()
        .map(|s| s.nodes)
        .collect();
    build_owned_objects_with(cluster, &replicas)
}

/// Builds every object the operator owns for `cluster`, with `replicas[i]`
/// pods in rack `i` (the controller holds a rack above its share while a
/// node drains).
///
/// # Errors
/// [`BuildError`] when `cluster` lacks a namespace, name or uid.
pub fn build_owned_objects_with(
    cluster: &KVCluster,
    replicas: &[u32],
) -> Result<OwnedObjects, BuildError> {
    let statefulsets = crate::topology::rack_shares(cluster.spec.nodes, &cluster.spec.racks)
        .into_iter()
        .map(|mut share| {
            share.nodes = replicas.get(share.index).copied().unwrap_or(share.nodes);
            statefulset::build_statefulset(cluster, share)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OwnedObjects {
        statefulsets,
        services: vec![
            services::build_peer_service(cluster)?,
            services::build_client_service(cluster)?,
        ],
        disruption_budget: disruption_budget::build_disruption_budget(cluster)?,
        identity: identity::build_identity_config_map_for(cluster, replicas)?,
        service_monitor: monitoring::build_service_monitor(cluster)?,
    })
}
