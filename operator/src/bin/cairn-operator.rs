//! The operator binary. The reconcile loop is not written yet: it parses
//! its flags and exits with an error saying so, rather than pretending to
//! manage clusters.

use clap::Parser;

/// Command line of `cairn-operator`.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-operator",
    version,
    about = "Kubernetes operator for Cairn"
)]
struct Cli {
    /// Namespace to watch (default: all namespaces).
    #[arg(long, env = "CAIRN_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "the cairn-operator controller is not implemented yet (namespace: {}); \
         this build only provides the KVCluster CRD (crds/kvcluster.yaml) and the object builders",
        cli.namespace.as_deref().unwrap_or("all")
    )
}
