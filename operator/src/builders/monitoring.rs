//! The prometheus-operator `ServiceMonitor` of a cluster
//! (`spec.monitoring.enabled`): Prometheus scrapes every node's `/metrics`
//! through the `metrics` port of the `<name>-peers` Service, which lists
//! pods before they are Ready, so a node that cannot become Ready is still
//! seen. The scrape's labels follow the rules and dashboards shipped in
//! `charts/cairn-operator/monitoring/`: `job="cairn-node"`, `kvcluster`
//! naming the cluster, `pod`.
//!
//! prometheus-operator's types are not in `k8s-openapi`, so the object is a
//! [`DynamicObject`] of [`service_monitor_resource`].

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::BuildError;
use super::metadata::{cluster_selector, owned_meta, peer_service_name};
use crate::crd::KVCluster;

/// `job` label of the nodes' series.
pub const NODE_JOB: &str = "cairn-node";

/// The ServiceMonitor kind (`monitoring.coreos.com/v1`, plural
/// `servicemonitors`).
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The cluster's ServiceMonitor, or `None` when `spec.monitoring` is off.
///
/// # Errors
/// [`BuildError`] when `cluster` has no namespace, name or uid.
pub fn build_service_monitor(cluster: &KVCluster) -> Result<Option<DynamicObject>, BuildError> {
    let monitoring = &cluster.spec.monitoring;
    if !monitoring.enabled {
        return Ok(None);
    }
    let mut meta = owned_meta(cluster, cluster.name_any(), None)?;
    if let Some(labels) = meta.labels.as_mut() {
        for (k, v) in &monitoring.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let namespace = meta.namespace.clone().unwrap_or_default();
    let mut object = DynamicObject::new(&cluster.name_any(), &service_monitor_resource());
    object.metadata = meta;
    object.data = json!({
        "spec": {
            "selector": { "matchLabels": cluster_selector(cluster) },
            "namespaceSelector": { "matchNames": [namespace] },
            "endpoints": [{
                "port": "metrics",
                "path": "/metrics",
                "interval": monitoring.interval,
                "relabelings": [
                    // The peers Service only (it lists every pod): a
                    // metrics port on another Service must not double-scrape.
                    { "sourceLabels": ["__meta_kubernetes_service_name"], "regex": peer_service_name(cluster), "action": "keep" },
                    { "targetLabel": "job", "replacement": NODE_JOB, "action": "replace" },
                    { "targetLabel": "kvcluster", "replacement": cluster.name_any(), "action": "replace" },
                    { "sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod", "action": "replace" },
                ],
            }],
        }
    });
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(monitoring: serde_json::Value) -> KVCluster {
        let mut c: KVCluster = serde_json::from_value(json!({
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "KVCluster",
            "metadata": { "name": "orders", "namespace": "db", "uid": "u-1" },
            "spec": {
                "nodes": 3, "image": "cairn", "version": "1",
                "storage": { "size": "1Gi" },
                "monitoring": monitoring,
            }
        }))
        .unwrap();
        c.metadata.uid = Some("u-1".into());
        c
    }

    #[test]
    fn off_by_default_and_when_disabled() {
        assert_eq!(build_service_monitor(&cluster(json!({}))).unwrap(), None);
        assert_eq!(
            build_service_monitor(&cluster(json!({"enabled": false}))).unwrap(),
            None
        );
    }

    #[test]
    fn selects_the_cluster_s_metrics_port_with_the_labels_the_rules_expect() {
        let sm = build_service_monitor(&cluster(json!({
            "enabled": true, "interval": "15s", "labels": { "release": "kube-prometheus" }
        })))
        .unwrap()
        .unwrap();
        assert_eq!(sm.types.as_ref().unwrap().kind, "ServiceMonitor");
        assert_eq!(sm.metadata.name.as_deref(), Some("orders"));
        assert_eq!(sm.labels()["release"], "kube-prometheus");
        assert_eq!(sm.labels()["app.kubernetes.io/instance"], "orders");
        assert_eq!(sm.owner_references()[0].name, "orders");
        let spec = &sm.data["spec"];
        assert_eq!(
            spec["selector"]["matchLabels"]["app.kubernetes.io/name"],
            "cairn"
        );
        assert_eq!(spec["namespaceSelector"]["matchNames"][0], "db");
        let endpoint = &spec["endpoints"][0];
        assert_eq!(endpoint["port"], "metrics");
        assert_eq!(endpoint["interval"], "15s");
        let relabel = endpoint["relabelings"].as_array().unwrap();
        assert!(
            relabel
                .iter()
                .any(|r| r["targetLabel"] == "job" && r["replacement"] == NODE_JOB)
        );
        assert!(
            relabel
                .iter()
                .any(|r| r["targetLabel"] == "kvcluster" && r["replacement"] == "orders")
        );
    }
}
