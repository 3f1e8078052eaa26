//! The two Services of a cluster: a headless one for peers (stable per-pod
//! DNS names, used for `--advertise-addr` and `--join`) and a client one.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::metadata::{cluster_selector, owned_meta, peer_service_name};
use super::{BuildError, GRPC_PORT, HTTP_PORT, METRICS_PORT};
use crate::crd::KVCluster;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// `<name>-peers`: headless, and publishing pods before they are Ready,
/// because a node must be reachable by its peers to become Ready at all
/// (joining, catching up).
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_peer_service(cluster: &KVCluster) -> Result<Service, BuildError> {
    Ok(Service {
        metadata: owned_meta(cluster, peer_service_name(cluster), None)?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster_selector(cluster)),
            // `metrics`: what a ServiceMonitor scrapes (spec.monitoring),
            // reaching every pod, Ready or not.
            ports: Some(vec![port("grpc", GRPC_PORT), port("metrics", METRICS_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// `<name>`: what clients connect to, gRPC and HTTP, Ready pods only.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_client_service(cluster: &KVCluster) -> Result<Service, BuildError> {
    Ok(Service {
        metadata: owned_meta(cluster, cluster.name_any(), None)?,
        spec: Some(ServiceSpec {
            selector: Some(cluster_selector(cluster)),
            ports: Some(vec![port("grpc", GRPC_PORT), port("http", HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
