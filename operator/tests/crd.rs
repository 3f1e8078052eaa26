//! The generated CRD: `crds/kvcluster.yaml` is current, carries the rules
//! the apiserver enforces, and sample resources read with their defaults.
//!
//! CEL rules (`x-kubernetes-validations`) and transition rules (`oldSelf`)
//! are only evaluated by a real apiserver; here they are checked to be
//! present in the schema, on the right fields.

use cairn_operator::crd::{KVCluster, Lifecycle};
use serde_json::Value;

fn crd() -> Value {
    serde_yaml::from_str(&cairn_operator::crd_yaml().expect("crd")).expect("yaml")
}

fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["rule"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_committed_crd_is_current() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/kvcluster.yaml"
    ))
    .expect("crds/kvcluster.yaml");
    let generated = cairn_operator::crd_yaml().expect("crd");
    assert!(
        committed == generated,
        "crds/kvcluster.yaml is stale; run: cargo run -p cairn-operator --bin crdgen > crds/kvcluster.yaml"
    );
}

#[test]
fn immutable_and_ranged_fields_carry_their_rules() {
    let crd = crd();
    let spec = spec_schema(&crd);
    let props = &spec["properties"];
    assert!(rules(spec).contains(&"self.replicationFactor <= self.nodes".to_string()));
    let shards = rules(&props["shards"]);
    assert!(
        shards.contains(&"self == oldSelf".to_string()),
        "{shards:?}"
    );
    assert!(shards.iter().any(|r| r.contains("4096")), "{shards:?}");
    assert!(rules(&props["replicationFactor"]).contains(&"self == oldSelf".to_string()));
    assert_eq!(props["replicationFactor"]["maximum"], 7.0);
    assert_eq!(props["shards"]["maximum"], 4096.0);
    assert_eq!(props["nodes"]["minimum"], 1.0);
    let required: Vec<&str> = spec["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        required.contains(&"nodes") && required.contains(&"image"),
        "{required:?}"
    );
}

#[test]
fn the_crd_has_scale_status_and_printer_columns() {
    let crd = crd();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "kvc");
    assert_eq!(
        version["subresources"]["scale"]["specReplicasPath"],
        ".spec.nodes"
    );
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Nodes",
            "Ready",
            "Shards",
            "Under-replicated",
            "Phase",
            "Age"
        ]
    );
}

#[test]
fn a_minimal_resource_reads_with_the_documented_defaults() {
    let kvc: KVCluster = serde_yaml::from_str(
        "apiVersion: cairn.dev/v1alpha1
kind: KVCluster
metadata: {name: demo, namespace: db}
spec: {nodes: 3, image: 'cairn/cairn-node:0.1.0'}
",
    )
    .expect("parse");
    assert_eq!(kvc.spec.shards, 64);
    assert_eq!(kvc.spec.replication_factor, 3);
    assert_eq!(kvc.spec.racks.len(), 1);
    assert_eq!(kvc.spec.racks[0].name, "default");
    assert_eq!(kvc.spec.storage.size, "10Gi");
    assert!(!kvc.spec.storage.retain_on_scale_in);
    assert!(kvc.spec.failover.auto_replace);
    assert_eq!(kvc.spec.failover.down_timeout, "5m");
    assert!(!kvc.spec.paused);
    assert!(kvc.status.is_none());
    // Lifecycle names are what `kubectl get -o yaml` shows.
    assert_eq!(
        serde_json::to_value(Lifecycle::Draining).expect("json"),
        "Draining"
    );
}
