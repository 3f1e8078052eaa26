//! Prints the `KVCluster` CRD: `cargo run -p cairn-operator --bin crdgen > crds/kvcluster.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", cairn_operator::crd_yaml()?);
    Ok(())
}
