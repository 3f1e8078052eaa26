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
