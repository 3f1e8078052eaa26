//! One standalone `cairn-node` process on a fresh data directory, with
//! direct-access helpers that bypass the code under test: what the tests of
//! the client library and of `cairnctl` run against.

use crate::process::{NodeProcess, NodeSpec, workspace_bin};
use cairn_proto::kv::v1 as pb;

/// A running node on a fresh data directory, stopped and removed on drop.
pub struct Node {
    /// `http://127.0.0.1:PORT` of its gRPC endpoint.
    pub addr: String,
    /// The process.
    pub process: NodeProcess,
    _dir: tempfile::TempDir,
}

/// Starts a real `cairn-node` (built in the same target directory).
pub async fn spawn() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = std::env::var_os("CAIRN_NODE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| workspace_bin("cairn-node"));
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build --workspace) before these tests",
        binary.display()
    );
    let data_dir = dir.path().join("data");
    let process = tokio::task::spawn_blocking(move || {
        NodeProcess::start(NodeSpec {
            binary,
            data_dir,
            args: vec![],
        })
    })
    .await
    .expect("start task")
    .expect("start cairn-node");
    Node {
        addr: process.grpc_url(),
        process,
        _dir: dir,
    }
}

/// An endpoint on loopback where nothing listens.
pub async fn dead_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

impl Node {
    async fn raw(&self) -> pb::kv_client::KvClient<tonic::transport::Channel> {
        pb::kv_client::KvClient::connect(self.addr.clone())
            .await
            .expect("connect")
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
    }

    /// Writes `key` directly (not through the code under test).
    pub async fn insert(&self, key: &[u8], value: &[u8]) {
        self.raw()
            .await
            .put(pb::PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })
            .await
            .expect("seed put");
    }

    /// Reads `key` directly.
    pub async fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.raw()
            .await
            .get(pb::GetRequest {
                key: key.to_vec(),
                read: None,
            })
            .await
            .expect("get")
            .into_inner()
            .kv
            .map(|kv| kv.value)
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.process.metrics);
        let out = tokio::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .await
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
