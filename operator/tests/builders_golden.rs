//! The objects built for representative KVClusters: key properties asserted
//! directly, and the full objects compared with reviewed YAML files under
//! `tests/golden/` (`UPDATE_GOLDEN=1 cargo test -p cairn-operator` rewrites them).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_operator::builders::statefulset::{POD_SPEC_HASH_ANNOTATION, pod_spec_hash};
use cairn_operator::{KVCluster, OwnedObjects, build_owned_objects};
use kube::ResourceExt;

const ONE_RACK: &str = r#"
apiVersion: cairn.dev/v1alpha1
kind: KVCluster
metadata: {name: demo, namespace: db, uid: 0a1b2c3d-0000-4000-8000-000000000001}
spec:
  nodes: 3
  image: ghcr.io/cairn/cairn-node
  version: 0.1.0
  storage: {size: 10Gi}
"#;

const THREE_RACKS: &str = r#"
apiVersion: cairn.dev/v1alpha1
kind: KVCluster
metadata: {name: prod, namespace: db, uid: 0a1b2c3d-0000-4000-8000-000000000002}
spec:
  nodes: 5
  racks:
  - {name: a, zone: eu-west-1a}
  - {name: b, nodeSelector: {disk: nvme}}
  - {name: c}
  shards: 256
  replicationFactor: 3
  image: ghcr.io/cairn/cairn-node
  version: 0.2.0
  resources:
    requests: {cpu: "2", memory: 4Gi}
  storage: {storageClassName: fast, size: 100Gi, retainOnScaleIn: true}
  config: {block-cache-bytes: "1073741824", sync: fsync}
status:
  clusterId: c-1234
"#;

fn cluster(yaml: &str) -> anyhow::Result<KVCluster> {
    Ok(serde_yaml::from_str(yaml)?)
}

fn to_yaml(objects: &OwnedObjects) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    for sts in &objects.statefulsets {
        docs.push(serde_yaml::to_string(sts)?);
    }
    for svc in &objects.services {
        docs.push(serde_yaml::to_string(svc)?);
    }
    docs.push(serde_yaml::to_string(&objects.disruption_budget)?);
    docs.push(serde_yaml::to_string(&objects.identity)?);
    Ok(docs.join("---\n"))
}

fn check_golden(name: &str, yaml: &str) -> anyhow::Result<()> {
    let cluster = cluster(yaml)?;
    let built = to_yaml(&build_owned_objects(&cluster)?)?;
    let path = format!("{}/tests/golden/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &built)?;
    }
    let golden = std::fs::read_to_string(&path)?;
    assert!(
        golden == built,
        "objects built for {name} differ from {path}; review the change, then \
         regenerate with UPDATE_GOLDEN=1 cargo test -p cairn-operator --test builders_golden"
    );
    Ok(())
}

#[test]
fn one_rack_matches_golden() -> anyhow::Result<()> {
    check_golden("one_rack_three_nodes", ONE_RACK)
}

#[test]
fn three_racks_match_golden() -> anyhow::Result<()> {
    check_golden("three_racks_five_nodes", THREE_RACKS)
}

#[test]
fn nodes_spread_over_racks_earlier_racks_take_the_remainder() -> anyhow::Result<()> {
    let objects = build_owned_objects(&cluster(THREE_RACKS)?)?;
    let split: Vec<(String, i32)> = objects
        .statefulsets
        .iter()
        .map(|s| {
            (
                s.name_any(),
                s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            ("prod-a".to_owned(), 2),
            ("prod-b".to_owned(), 2),
            ("prod-c".to_owned(), 1)
        ]
    );
    Ok(())
}

#[test]
fn every_object_is_owned_by_the_cluster_and_labelled() -> anyhow::Result<()> {
    let cluster = cluster(THREE_RACKS)?;
    let objects = build_owned_objects(&cluster)?;
    let mut metas = Vec::new();
    metas.extend(objects.statefulsets.iter().map(|o| &o.metadata));
    metas.extend(objects.services.iter().map(|o| &o.metadata));
    metas.push(&objects.disruption_budget.metadata);
    metas.push(&objects.identity.metadata);
    assert_eq!(metas.len(), 7);
    for meta in metas {
        let owners = meta.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{meta:?}");
        assert_eq!(owners[0].kind, "KVCluster");
        assert_eq!(owners[0].name, "prod");
        assert_eq!(owners[0].uid, "0a1b2c3d-0000-4000-8000-000000000002");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("db"));
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(labels["app.kubernetes.io/name"], "cairn");
        assert_eq!(labels["app.kubernetes.io/instance"], "prod");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "cairn-operator");
    }
    for (sts, rack) in objects.statefulsets.iter().zip(["a", "b", "c"]) {
        assert_eq!(sts.labels()["cairn.dev/rack"], rack);
    }
    Ok(())
}

#[test]
fn statefulsets_update_on_delete_in_parallel_behind_the_headless_service() -> anyhow::Result<()> {
    let objects = build_owned_objects(&cluster(ONE_RACK)?)?;
    let spec = objects.statefulsets[0]
        .spec
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no spec"))?;
    assert_eq!(
        spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
    let peers = &objects.services[0];
    assert_eq!(peers.name_any(), "demo-peers");
    let peers_spec = peers.spec.clone().unwrap_or_default();
    assert_eq!(peers_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(peers_spec.publish_not_ready_addresses, Some(true));
    Ok(())
}

#[test]
fn only_the_first_pod_bootstraps_and_only_before_the_cluster_exists() -> anyhow::Result<()> {
    let mut demo = cluster(ONE_RACK)?;
    let files = build_owned_objects(&demo)?
        .identity
        .data
        .unwrap_or_default();
    assert_eq!(files.len(), 3);
    assert!(files["demo-default-0.toml"].contains("node-id = 1\nbootstrap = true"));
    assert!(files["demo-default-1.toml"].contains("node-id = 2\njoin = ["));
    assert!(files["demo-default-2.toml"].contains("node-id = 3\njoin = ["));

    demo.status = Some(cairn_operator::KVClusterStatus {
        cluster_id: Some("c-1".into()),
        ..Default::default()
    });
    let files = build_owned_objects(&demo)?
        .identity
        .data
        .unwrap_or_default();
    assert!(
        files
            .values()
            .all(|f| f.contains("join = [") && !f.contains("bootstrap"))
    );
    Ok(())
}

#[test]
fn node_ids_are_rack_offset_plus_ordinal() -> anyhow::Result<()> {
    let files = build_owned_objects(&cluster(THREE_RACKS)?)?
        .identity
        .data
        .unwrap_or_default();
    let ids: Vec<(&str, &str)> = files
        .iter()
        .map(|(file, body)| {
            let id = body
                .lines()
                .find_map(|l| l.strip_prefix("node-id = "))
                .unwrap_or("?");
            (file.as_str(), id)
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("prod-a-0.toml", "1"),
            ("prod-a-1.toml", "2"),
            ("prod-b-0.toml", "1001"),
            ("prod-b-1.toml", "1002"),
            ("prod-c-0.toml", "2001"),
        ]
    );
    Ok(())
}

#[test]
fn pod_spec_hash_follows_only_user_fields() -> anyhow::Result<()> {
    let base = cluster(THREE_RACKS)?;
    let rack = base.spec.racks[0].clone();
    let hash = pod_spec_hash(&base, &rack);

    let mut more_nodes = base.clone();
    more_nodes.spec.nodes = 7;
    more_nodes.status = None;
    assert_eq!(
        pod_spec_hash(&more_nodes, &rack),
        hash,
        "scaling is not a pod change"
    );

    let mut upgraded = base.clone();
    upgraded.spec.version = "0.3.0".into();
    assert_ne!(pod_spec_hash(&upgraded, &rack), hash);

    let mut reconfigured = base.clone();
    reconfigured
        .spec
        .config
        .insert("row-cache-bytes".into(), "0".into());
    assert_ne!(pod_spec_hash(&reconfigured, &rack), hash);

    let objects = build_owned_objects(&base)?;
    let annotations = objects.statefulsets[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(annotations[POD_SPEC_HASH_ANNOTATION], hash);
    Ok(())
}

#[test]
fn a_cluster_not_read_from_the_api_cannot_own_objects() -> anyhow::Result<()> {
    let mut demo = cluster(ONE_RACK)?;
    demo.metadata.uid = None;
    assert_eq!(
        build_owned_objects(&demo),
        Err(cairn_operator::BuildError::NotPersisted)
    );
    Ok(())
}
