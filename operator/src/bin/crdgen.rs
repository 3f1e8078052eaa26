//! Prints the `KVCluster` CustomResourceDefinition as YAML; its output is
//! committed as `crds/kvcluster.yaml` (a test checks they agree).

use kube::CustomResourceExt;

fn main() -> anyhow::Result<()> {
    print!(
        "{}",
        serde_yaml::to_string(&cairn_operator::KVCluster::crd())?
    );
    Ok(())
}
