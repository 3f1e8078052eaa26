//! The KVCluster schema refuses bad specs.
//!
//! No apiserver runs here, so two kinds of checks:
//! - the structural part of the generated OpenAPI schema (types, required,
//!   minimum/maximum, patterns, enums) validates sample objects with the
//!   `jsonschema` crate, as the apiserver would;
//! - the CEL rules (`x-kubernetes-validations`) are checked for presence and
//!   content only. Evaluating them needs an apiserver, and the transition
//!   rules (`self == oldSelf` on `shards` and `replicationFactor`, racks
//!   append-only) only run on an update, comparing with the stored object.
//!   The same holds for the power-of-two rule on `shards`, the rule
//!   `replicationFactor <= nodes`, the `config` key rules and the name length.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use kube::CustomResourceExt;
use serde_json::Value;

fn openapi_schema() -> anyhow::Result<Value> {
    let crd = cairn_operator::KVCluster::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| anyhow::anyhow!("CRD has no openAPIV3Schema"))?;
    Ok(serde_json::to_value(schema)?)
}

fn validator() -> anyhow::Result<jsonschema::Validator> {
    jsonschema::validator_for(&openapi_schema()?).map_err(|e| anyhow::anyhow!("{e}"))
}

fn sample(yaml: &str) -> anyhow::Result<Value> {
    Ok(serde_yaml::from_str(yaml)?)
}

const MINIMAL: &str = r#"
apiVersion: cairn.dev/v1alpha1
kind: KVCluster
metadata: {name: demo, namespace: db}
spec:
  nodes: 3
  image: ghcr.io/cairn/cairn-node
  version: 0.1.0
  storage: {size: 10Gi}
"#;

const FULL: &str = r#"
apiVersion: cairn.dev/v1alpha1
kind: KVCluster
metadata: {name: prod, namespace: db}
spec:
  nodes: 5
  racks:
  - {name: rack-a, zone: eu-west-1a}
  - {name: rack-b, nodeSelector: {disk: nvme}}
  - {name: rack-c}
  shards: 256
  replicationFactor: 3
  image: ghcr.io/cairn/cairn-node
  version: 0.2.0
  resources:
    requests: {cpu: "2", memory: 4Gi}
    limits: {memory: 4Gi}
  storage: {storageClassName: fast, size: 100Gi, retainOnScaleIn: true}
  config: {block-cache-bytes: "1073741824", sync: fsync}
  failover: {downTimeout: 10m, autoReplace: false}
  paused: false
status:
  phase: Running
  readyNodes: 5
  members:
  - {nodeId: 1, pod: prod-rack-a-0, rack: rack-a, lifecycle: Serving, replicas: 154, leaders: 51}
  shardHealth: {total: 256, underReplicated: 0, leaderless: 0}
  operation: {kind: ScaleOut, nodeId: 1002, startedAt: "2026-11-02T10:00:00Z"}
"#;

#[test]
fn good_samples_are_accepted() -> anyhow::Result<()> {
    let validator = validator()?;
    for yaml in [MINIMAL, FULL] {
        let object = sample(yaml)?;
        let errors: Vec<String> = validator
            .iter_errors(&object)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "sample refused: {errors:?}\n{yaml}");
    }
    Ok(())
}

/// Applies `edit` to the minimal sample and asserts the schema refuses it.
fn assert_refused(what: &str, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    let mut object = sample(MINIMAL)?;
    edit(&mut object);
    assert!(
        !validator()?.is_valid(&object),
        "schema accepted a spec with {what}: {object}"
    );
    Ok(())
}

#[test]
fn bad_samples_are_refused() -> anyhow::Result<()> {
    assert_refused("no nodes", |o| {
        o["spec"].as_object_mut().map(|s| s.remove("nodes"));
    })?;
    assert_refused("no storage", |o| {
        o["spec"].as_object_mut().map(|s| s.remove("storage"));
    })?;
    assert_refused("nodes as a string", |o| o["spec"]["nodes"] = "three".into())?;
    assert_refused("zero nodes", |o| o["spec"]["nodes"] = 0.into())?;
    assert_refused("1000 nodes (node ids allow 999 per rack)", |o| {
        o["spec"]["nodes"] = 1000.into()
    })?;
    assert_refused("replication factor 9", |o| {
        o["spec"]["replicationFactor"] = 9.into()
    })?;
    assert_refused("replication factor 0", |o| {
        o["spec"]["replicationFactor"] = 0.into()
    })?;
    assert_refused("8192 shards", |o| o["spec"]["shards"] = 8192.into())?;
    assert_refused("no racks", |o| o["spec"]["racks"] = serde_json::json!([]))?;
    assert_refused("a rack name that is not a DNS label", |o| {
        o["spec"]["racks"] = serde_json::json!([{"name": "Rack_A"}])
    })?;
    assert_refused("a storage size that is not a quantity", |o| {
        o["spec"]["storage"]["size"] = "ten gigs".into()
    })?;
    assert_refused("a malformed down timeout", |o| {
        o["spec"]["failover"] = serde_json::json!({"downTimeout": "5 minutes"})
    })?;
    assert_refused("an unknown lifecycle", |o| {
        o["status"] = serde_json::json!({"members": [
            {"nodeId": 1, "pod": "demo-default-0", "rack": "default", "lifecycle": "Sleeping"}
        ]})
    })?;
    Ok(())
}

/// Every CEL rule with the path of the schema node it sits on.
fn cel_rules(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            out.push((
                path.to_owned(),
                rule["rule"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, sub) in props {
            cel_rules(sub, &format!("{path}.{name}"), out);
        }
    }
}

#[test]
fn cel_rules_are_in_the_schema() -> anyhow::Result<()> {
    let mut rules = Vec::new();
    cel_rules(&openapi_schema()?, "", &mut rules);
    let has = |path: &str, rule: &str| rules.iter().any(|(p, r)| p == path && r == rule);
    assert!(has(".spec.shards", "self == oldSelf"), "{rules:#?}");
    assert!(has(
        ".spec.shards",
        "self in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]"
    ));
    assert!(has(".spec.replicationFactor", "self == oldSelf"));
    assert!(has(".spec", "self.replicationFactor <= self.nodes"));
    assert!(has(
        ".spec.racks",
        "self.all(r, self.exists_one(s, s.name == r.name))"
    ));
    assert!(
        rules
            .iter()
            .any(|(p, r)| p == ".spec.racks" && r.starts_with("oldSelf.all("))
    );
    assert!(has("", "size(self.metadata.name) <= 26"));
    // Every flag the operator sets is refused in spec.config.
    let config_rule = rules
        .iter()
        .find(|(p, r)| p == ".spec.config" && r.starts_with("!self.exists"))
        .map(|(_, r)| r.clone())
        .ok_or_else(|| anyhow::anyhow!("no config rule in {rules:#?}"))?;
    for flag in cairn_operator::crd::OPERATOR_OWNED_FLAGS {
        assert!(
            config_rule.contains(&format!("'{flag}'")),
            "{flag} missing from {config_rule}"
        );
    }
    Ok(())
}

#[test]
fn scale_and_status_subresources_and_columns() -> anyhow::Result<()> {
    let crd = cairn_operator::KVCluster::crd();
    let version = &crd.spec.versions[0];
    let scale = version
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .ok_or_else(|| anyhow::anyhow!("no scale subresource"))?;
    assert_eq!(scale.spec_replicas_path, ".spec.nodes");
    assert_eq!(scale.status_replicas_path, ".status.readyNodes");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
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
    assert_eq!(crd.spec.names.short_names, Some(vec!["kvc".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    Ok(())
}
