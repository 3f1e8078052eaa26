//! Shared set-up for the node's integration tests.
#![allow(dead_code)]

pub mod history;

use cairn_testkit::process::{NodeProcess, NodeSpec};

/// A node process on a fresh temporary data directory (removed on drop).
pub struct TestNode {
    pub node: NodeProcess,
    pub dir: tempfile::TempDir,
}

/// Starts `cairn-node` with `args` on a new data directory.
pub fn start_node(args: &[&str]) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(NodeSpec {
        binary: env!("CARGO_BIN_EXE_cairn-node").into(),
        data_dir: dir.path().join("data"),
        args: args.iter().map(|s| s.to_string()).collect(),
    })
    .expect("start cairn-node");
    TestNode { node, dir }
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) to `addr` over TLS
/// with `tls`'s client settings and returns the whole answer as text.
pub async fn https_exchange(
    addr: std::net::SocketAddr,
    tls: &cairn_tls::TlsContext,
    request: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut config = (*tls.client_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name"),
            tcp,
        )
        .await
        .expect("TLS handshake");
    stream.write_all(request).await.expect("write request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}
