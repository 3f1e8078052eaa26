//! One StatefulSet per rack, `<name>-<rack>`, running `cairn-node`.
//!
//! - `updateStrategy: OnDelete`: Kubernetes never restarts a node by itself;
//!   the operator replaces pods one at a time after moving leaders away.
//! - `podManagementPolicy: Parallel`: nodes start together (joiners retry
//!   until the cluster admits them); order is the operator's job.
//! - The pod template carries [`POD_SPEC_HASH_ANNOTATION`], a hash of only
//!   the user's fields (image, version, resources, config, the rack's
//!   placement), so the controller can tell which pods run an outdated spec,
//!   and an operator upgrade that changes the template in other ways does
//!   not make every pod look outdated.
//! - Volume claims are kept when the `KVCluster` is deleted, and on scale-in
//!   only if `storage.retainOnScaleIn`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::Serialize;

use super::identity::identity_config_map_name;
use super::metadata::{
    cluster_selector, labels, namespace, owned_meta, peer_service_name, rack_selector,
};
use super::{BuildError, GRPC_PORT, HTTP_PORT, METRICS_PORT};
use crate::crd::{KVCluster, Rack};
use crate::topology::{RackShare, rack_shares, statefulset_name};

/// Pod-template annotation: hash of the user-controlled fields the pods run with.
pub const POD_SPEC_HASH_ANNOTATION: &str = "cairn.dev/pod-spec-hash";
/// Where the data volume is mounted (`--data-dir`).
pub const DATA_DIR: &str = "/var/lib/cairn";
/// The uid and gid node containers run as: the image's `cairn` user.
pub const NODE_UID: i64 = 65532;
/// Where the identity ConfigMap is mounted.
pub const IDENTITY_DIR: &str = "/etc/cairn/identity";
/// Name of the data volume claim template.
pub const DATA_VOLUME: &str = "data";
/// Name of the node container.
pub const NODE_CONTAINER: &str = "cairn-node";
/// Node label the rack's `zone` pins pods to.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Builds the StatefulSets of all racks, in `spec.racks` order.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_statefulsets(cluster: &KVCluster) -> Result<Vec<StatefulSet>, BuildError> {
    rack_shares(cluster.spec.nodes, &cluster.spec.racks)
        .into_iter()
        .map(|share| build_statefulset(cluster, share))
        .collect()
}

/// The StatefulSet of one rack with `share.nodes` replicas.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_statefulset(
    cluster: &KVCluster,
    share: RackShare<'_>,
) -> Result<StatefulSet, BuildError> {
    let rack = share.rack;
    let name = statefulset_name(&cluster.name_any(), rack);
    let storage = &cluster.spec.storage;
    let scale_in_policy = if storage.retain_on_scale_in {
        "Retain"
    } else {
        "Delete"
    };
    Ok(StatefulSet {
        metadata: owned_meta(cluster, name, Some(rack))?,
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(share.nodes).unwrap_or(i32::MAX)),
            service_name: Some(peer_service_name(cluster)),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(rack_selector(cluster, rack)),
                match_expressions: None,
            },
            template: pod_template(cluster, rack)?,
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.to_owned()),
                    labels: Some(labels(cluster, Some(rack))),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(storage.size.clone()),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some(scale_in_policy.to_owned()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn pod_template(cluster: &KVCluster, rack: &Rack) -> Result<PodTemplateSpec, BuildError> {
    let mut node_selector = rack.node_selector.clone();
    if let Some(zone) = &rack.zone {
        node_selector.insert(ZONE_LABEL.to_owned(), zone.clone());
    }
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(cluster, Some(rack))),
            annotations: Some(BTreeMap::from([(
                POD_SPEC_HASH_ANNOTATION.to_owned(),
                pod_spec_hash(cluster, rack),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![node_container(cluster, rack)?],
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            affinity: Some(spread_over_hosts(cluster)),
            // The node waits up to 30 s (shutdown-grace-ms) for requests in flight.
            termination_grace_period_seconds: Some(60),
            security_context: Some(node_pod_security()),
            volumes: Some(vec![Volume {
                name: "identity".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: identity_config_map_name(cluster),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    })
}

/// The image's user (uid and gid 65532, see the `Dockerfile`), not root; the
/// data volume is group-owned by it (`fsGroup`) so the node can write it.
/// `OnRootMismatch` skips the recursive re-chown of a large volume on every
/// start once the ownership is right.
fn node_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NODE_UID),
        run_as_group: Some(NODE_UID),
        fs_group: Some(NODE_UID),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Prefer one Cairn pod per Kubernetes node, so losing a machine costs one
/// replica of a shard, not two.
fn spread_over_hosts(cluster: &KVCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(cluster_selector(cluster)),
                            match_expressions: None,
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

fn node_container(cluster: &KVCluster, rack: &Rack) -> Result<Container, BuildError> {
    let spec = &cluster.spec;
    let ns = namespace(cluster)?;
    let peers = peer_service_name(cluster);
    let mut args = vec![
        "--config".to_owned(),
        format!("{IDENTITY_DIR}/$(POD_NAME).toml"),
        "--data-dir".to_owned(),
        DATA_DIR.to_owned(),
        // Every interface of the pod, IPv6 and IPv4: the pod IP for peers,
        // probes and Services, localhost for `kubectl port-forward`.
        "--grpc-addr".to_owned(),
        format!("[::]:{GRPC_PORT}"),
        "--http-addr".to_owned(),
        format!("[::]:{HTTP_PORT}"),
        "--metrics-addr".to_owned(),
        format!("[::]:{METRICS_PORT}"),
        "--advertise-addr".to_owned(),
        format!("$(POD_NAME).{peers}.{ns}.svc:{GRPC_PORT}"),
        "--rack".to_owned(),
        rack.name.clone(),
        "--shards".to_owned(),
        spec.shards.to_string(),
        "--replication-factor".to_owned(),
        spec.replication_factor.to_string(),
    ];
    for (flag, value) in &spec.config {
        args.push(format!("--{flag}"));
        args.push(value.clone());
    }
    Ok(Container {
        name: NODE_CONTAINER.to_owned(),
        image: Some(format!("{}:{}", spec.image, spec.version)),
        args: Some(args),
        env: Some(vec![field_env("POD_NAME", "metadata.name")]),
        ports: Some(vec![
            container_port("grpc", GRPC_PORT),
            container_port("http", HTTP_PORT),
            container_port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        // Generous: a node replaying a large log must not be killed for it.
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.to_owned(),
                mount_path: DATA_DIR.to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "identity".to_owned(),
                mount_path: IDENTITY_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    })
}

/// An environment variable from the downward API.
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    }
}

fn container_port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The user-controlled fields a rack's pods run with; nothing the operator
/// decides on its own belongs here.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecInputs<'a> {
    image: &'a str,
    version: &'a str,
    resources: Option<&'a ResourceRequirements>,
    config: &'a BTreeMap<String, String>,
    node_selector: &'a BTreeMap<String, String>,
    zone: Option<&'a str>,
}

/// Hex xxh3 of `PodSpecInputs` for `rack`: equal hashes mean a pod runs
/// what the user currently asks for.
pub fn pod_spec_hash(cluster: &KVCluster, rack: &Rack) -> String {
    let spec = &cluster.spec;
    let inputs = PodSpecInputs {
        image: &spec.image,
        version: &spec.version,
        resources: spec.resources.as_ref(),
        config: &spec.config,
        node_selector: &rack.node_selector,
        zone: rack.zone.as_deref(),
    };
    // Plain strings, maps and k8s types: serializing to JSON cannot fail,
    // and an empty input would still hash deterministically.
    let bytes = serde_json::to_vec(&inputs).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}
