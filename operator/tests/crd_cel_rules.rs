//! The CEL rules in the committed CRD (`x-kubernetes-validations`),
//! evaluated as an apiserver would on create and on update (`oldSelf`
//! transition rules included): the specs users may write are accepted, the
//! rest refused with the rule's message.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use serde_json::{Value, json};

fn schema() -> Value {
    let crd: Value =
        serde_yaml::from_str(include_str!("../../crds/kvcluster.yaml")).expect("CRD YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn cluster(name: &str, spec: Value) -> Value {
    let mut base = json!({
        "nodes": 3, "shards": 16, "replicationFactor": 3,
        "image": "cairn", "version": "1", "storage": {"size": "1Gi"},
        "racks": [{"name": "a"}, {"name": "b"}],
    });
    if let (Value::Object(b), Value::Object(s)) = (&mut base, spec) {
        b.extend(s);
    }
    json!({"apiVersion": "cairn.dev/v1alpha1", "kind": "KVCluster", "metadata": {"name": name}, "spec": base})
}

/// The messages of the rules `object` breaks (empty: accepted).
fn refusals(object: &Value, old: Option<&Value>) -> Vec<String> {
    match kube_cel::Validator::new().validate(&schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

fn refused_with(object: &Value, old: Option<&Value>, needle: &str) {
    let messages = refusals(object, old);
    assert!(
        messages.iter().any(|m| m.contains(needle)),
        "expected a refusal mentioning {needle:?}, got {messages:?} for {object}"
    );
}

#[test]
fn good_specs_are_accepted_on_create_and_update() {
    let created = cluster("kv", json!({}));
    assert_eq!(refusals(&created, None), Vec::<String>::new());
    let scaled = cluster(
        "kv",
        json!({"nodes": 5, "config": {"block-cache-bytes": "1048576"}}),
    );
    assert_eq!(refusals(&scaled, Some(&created)), Vec::<String>::new());
    let appended = cluster(
        "kv",
        json!({"racks": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
    );
    assert_eq!(refusals(&appended, Some(&created)), Vec::<String>::new());
}

#[test]
fn bad_specs_are_refused_on_create() {
    refused_with(
        &cluster("kv", json!({"replicationFactor": 5})),
        None,
        "must not exceed nodes",
    );
    refused_with(&cluster("kv", json!({"shards": 12})), None, "power of two");
    refused_with(
        &cluster("kv", json!({"config": {"node-id": "7"}})),
        None,
        "flags the operator owns",
    );
    refused_with(
        &cluster("kv", json!({"config": {"Block_Cache": "1"}})),
        None,
        "flag names",
    );
    refused_with(
        &cluster("kv", json!({"racks": [{"name": "a"}, {"name": "a"}]})),
        None,
        "unique",
    );
    refused_with(&cluster(&"k".repeat(27), json!({})), None, "at most 26");
}

#[test]
fn fixed_fields_cannot_change_and_racks_are_append_only() {
    let created = cluster("kv", json!({}));
    refused_with(
        &cluster("kv", json!({"shards": 32})),
        Some(&created),
        "shards is immutable",
    );
    refused_with(
        &cluster("kv", json!({"replicationFactor": 1})),
        Some(&created),
        "replicationFactor is immutable",
    );
    refused_with(
        &cluster("kv", json!({"racks": [{"name": "b"}, {"name": "a"}]})),
        Some(&created),
        "appended",
    );
    refused_with(
        &cluster("kv", json!({"racks": [{"name": "a"}]})),
        Some(&created),
        "appended",
    );
}
