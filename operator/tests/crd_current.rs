//! The committed `crds/kvcluster.yaml` is exactly what the code generates.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use kube::CustomResourceExt;

#[test]
fn committed_crd_matches_generated() -> anyhow::Result<()> {
    let generated = serde_yaml::to_string(&cairn_operator::KVCluster::crd())?;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/kvcluster.yaml");
    let committed = std::fs::read_to_string(path)?;
    assert!(
        committed == generated,
        "crds/kvcluster.yaml is out of date with operator/src/crd.rs; regenerate it with:\n  \
         cargo run -p cairn-operator --bin crdgen > crds/kvcluster.yaml"
    );
    Ok(())
}
