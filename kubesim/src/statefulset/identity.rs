//! What a StatefulSet's pods and claims are called and contain, as pure
//! functions of the set: the names per ordinal, the revision hash of the
//! template, and the pod and claim objects the controller creates. Kept free
//! of I/O so the reconciler's decisions and these builders can be read apart.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Label holding the pod's name, as the real controller sets it.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label holding the revision (template hash) a pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The name of the pod with `ordinal` in set `set`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The name of the claim from template `template` for pod `pod`.
pub fn claim_name(template: &str, pod: &str) -> String {
    format!("{template}-{pod}")
}

/// The ordinal of a pod or claim named `<prefix>-<ordinal>`, if the name has
/// that shape.
pub fn ordinal_of(prefix: &str, name: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Reject leading zeros ("web-01" is not ordinal 1 of "web").
    if rest.len() > 1 && rest.starts_with('0') {
        return None;
    }
    rest.parse().ok()
}

/// The revision of the set's current pod template
/// ([`crate::template_hash::template_hash`]). Pods carry it in
/// [`REVISION_LABEL`]; a pod whose label differs was made from an older template.
pub fn revision(set: &StatefulSet) -> String {
    crate::template_hash::template_hash(&set.spec.as_ref().map(|s| &s.template))
}

/// An owner reference to `set`, marked as the controller.
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The set's selector labels (`matchLabels`; expressions are not emulated).
pub fn selector_labels(set: &StatefulSet) -> BTreeMap<String, String> {
    set.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
}

/// The claim template list of the set (empty when it has none).
pub fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// The pod with `ordinal`, built from the set's current template: template
/// labels plus the identity labels, hostname and subdomain for the headless
/// service's DNS names, a controller reference to the set, and one volume per
/// claim template pointing at that pod's claim.
pub fn build_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let spec = set.spec.clone().unwrap_or_default();
    let template = spec.template;
    let template_meta = template.metadata.unwrap_or_default();

    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());

    let mut pod_spec: PodSpec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.filter(|s| !s.is_empty());
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim_template in claim_templates(set) {
        let Some(template_name) = claim_template.metadata.name.clone() else {
            continue;
        };
        volumes.retain(|v| v.name != template_name);
        volumes.push(Volume {
            name: template_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&template_name, &name),
                read_only: None,
            }),
            ..Volume::default()
        });
    }

    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The claim from `template` for pod `pod`: the template's labels plus the
/// set's selector labels, and, when `owned`, an owner reference to the set so
/// that garbage collection removes it with the set (`whenDeleted: Delete`).
pub fn build_claim(
    set: &StatefulSet,
    template: &PersistentVolumeClaim,
    pod: &str,
    owned: bool,
) -> PersistentVolumeClaim {
    let template_name = template.metadata.name.clone().unwrap_or_default();
    let mut labels = template.metadata.labels.clone().unwrap_or_default();
    labels.extend(selector_labels(set));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(&template_name, pod)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template.metadata.annotations.clone(),
            owner_references: owned.then(|| vec![set_owner_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// A non-controller owner reference to `set`, as the real controller puts on
/// claims under `whenDeleted: Delete`.
pub fn set_owner_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        controller: None,
        ..controller_ref(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::PodTemplateSpec;

    fn set() -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "web-hl",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "python:3"}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn ordinals_parse_only_exact_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-a-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn pod_carries_identity_and_claim_volume() {
        let s = set();
        let pod = build_pod(&s, 1, "abc");
        let labels = pod.metadata.labels.unwrap_or_default();
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        assert_eq!(labels[REVISION_LABEL], "abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-hl"));
        let volumes = spec.volumes.unwrap_or_default();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-web-1")
        );
        let owner = &pod.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.uid, "u1");
    }

    #[test]
    fn revision_follows_the_template_only() {
        let a = set();
        let mut b = set();
        b.spec = Some(StatefulSetSpec {
            replicas: Some(5),
            ..b.spec.unwrap_or_default()
        });
        assert_eq!(revision(&a), revision(&b));
        let mut c = set();
        if let Some(spec) = c.spec.as_mut() {
            spec.template = PodTemplateSpec::default();
        }
        assert_ne!(revision(&a), revision(&c));
    }
}
