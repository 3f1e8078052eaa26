//! Runs kubesim's API server alone, for pointing kubectl or helm at it by
//! hand: `cargo run -p cairn-kubesim --example apiserver` prints a
//! kubeconfig path; `KUBECONFIG=<path> kubectl -v=8 get pods` shows every
//! request. Stops on Ctrl-C.

use cairn_kubesim::apiserver::{ApiServer, kubeconfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let api = ApiServer::start().await?;
    let path = std::env::temp_dir().join(format!("kubesim-{}.kubeconfig", api.port()));
    std::fs::write(&path, kubeconfig(&api.url(), "default"))?;
    println!(
        "kubesim API server at {}; KUBECONFIG={}",
        api.url(),
        path.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
