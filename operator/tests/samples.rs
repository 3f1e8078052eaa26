//! The sample `KVCluster`s users copy (`config/samples/*.yaml`) are valid:
//! accepted by the CRD's structural schema and its CEL rules as an apiserver
//! would check them on create, and readable by the operator. The Helm
//! chart's copy of the CRD is the committed one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn crd() -> Value {
    let text =
        std::fs::read_to_string(repo().join("crds/kvcluster.yaml")).expect("crds/kvcluster.yaml");
    serde_yaml::from_str(&text).expect("CRD YAML")
}

fn samples() -> Vec<(PathBuf, Value)> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join("config/samples"))
        .expect("config/samples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("sample");
            let v: Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

#[test]
fn there_are_minimal_three_rack_and_production_samples() {
    let names: Vec<String> = samples()
        .iter()
        .filter_map(|(p, _)| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for wanted in ["minimal", "three-racks", "production"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "config/samples/{wanted}.yaml missing: {names:?}"
        );
    }
}

#[test]
fn every_sample_passes_the_crd_schema_and_its_cel_rules() {
    let schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let structural = jsonschema::validator_for(&schema).expect("schema compiles");
    for (path, object) in samples() {
        let errors: Vec<String> = structural
            .iter_errors(&object)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        if let Err(errors) = kube_cel::Validator::new().validate(&schema, &object, None) {
            let messages: Vec<String> = errors.into_vec().into_iter().map(|e| e.message).collect();
            panic!("{}: refused by the CEL rules: {messages:?}", path.display());
        }
        let cluster: cairn_operator::KVCluster = serde_json::from_value(object.clone())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: not a KVCluster the operator can read: {e}",
                    path.display()
                )
            });
        assert!(
            cluster.spec.replication_factor <= cluster.spec.nodes,
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_broken_sample_would_be_caught() {
    // The check above must be able to fail: the minimal sample with shards
    // not a power of two and a replication factor above the node count.
    let schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let (_, mut object) = samples()
        .into_iter()
        .find(|(p, _)| p.ends_with("minimal.yaml"))
        .expect("minimal sample");
    object["spec"]["shards"] = 12.into();
    object["spec"]["replicationFactor"] = 5.into();
    let errors = kube_cel::Validator::new()
        .validate(&schema, &object, None)
        .expect_err("refused");
    let messages: Vec<String> = errors.into_vec().into_iter().map(|e| e.message).collect();
    assert!(
        messages.iter().any(|m| m.contains("power of two")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("replicationFactor")),
        "{messages:?}"
    );
}

#[test]
fn the_chart_ships_the_committed_crd() {
    let committed = std::fs::read_to_string(repo().join("crds/kvcluster.yaml")).expect("crds/");
    let charted = std::fs::read_to_string(repo().join("charts/cairn-operator/crds/kvcluster.yaml"))
        .expect("chart crds/");
    assert!(
        committed == charted,
        "charts/cairn-operator/crds/kvcluster.yaml differs from crds/kvcluster.yaml; copy it:\n  \
         cp crds/kvcluster.yaml charts/cairn-operator/crds/"
    );
}
