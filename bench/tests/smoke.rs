//! Smoke test: `cairn-bench` against a real `cairn-node`, checking the shape
//! of its JSON report. Not a performance assertion.
//!
//! The node binary is `$CAIRN_NODE_BIN` if set, else `cairn-node` next to
//! this test's target directory (built by `cargo build --workspace`, as CI
//! does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use cairn_testkit::process::{NodeProcess, NodeSpec, workspace_bin};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_cairn-bench");

fn node_binary() -> PathBuf {
    let bin = match std::env::var_os("CAIRN_NODE_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_bin("cairn-node"),
    };
    assert!(
        bin.is_file(),
        "cairn-node not found at {}: build the workspace first (`cargo build --workspace`), \
         or point CAIRN_NODE_BIN at a cairn-node binary",
        bin.display()
    );
    bin
}

/// A node on free loopback ports with its own data directory; stopped
/// (SIGKILL) when dropped, also when the test fails.
struct Node {
    process: NodeProcess,
    _dir: tempfile::TempDir,
}

fn start_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let process = NodeProcess::start(NodeSpec {
        binary: node_binary(),
        data_dir: dir.path().join("data"),
        args: Vec::new(),
    })
    .expect("start cairn-node");
    Node { process, _dir: dir }
}

/// Runs cairn-bench with `args` plus `--json`; returns the parsed report.
fn bench_json(node: &Node, args: &[&str]) -> Value {
    let out = Command::new(BENCH)
        .args(args)
        .arg("--json")
        .output()
        .expect("run cairn-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cairn-bench {args:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nnode stderr:\n{}",
        out.status,
        node.process.stderr()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{stdout}"))
}

fn check_latency(what: &str, l: &Value) {
    let get = |f: &str| {
        l.get(f)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{what}: latency_us.{f} missing in {l}"))
    };
    let (p50, p90, p99, p999, max) = (get("p50"), get("p90"), get("p99"), get("p99_9"), get("max"));
    assert!(p50 > 0, "{what}: p50 is 0 in {l}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{what}: percentiles out of order in {l}"
    );
}

/// Checks the report and returns its `run.operations` object.
fn check_report(report: &Value, target: &str, workload: &str) -> serde_json::Map<String, Value> {
    assert_eq!(report["target"], target);
    assert_eq!(report["workload"], workload);
    let run = &report["run"];
    let throughput = run["throughput"].as_f64().expect("run.throughput");
    assert!(throughput > 0.0, "throughput {throughput}");
    assert!(run["ops"].as_u64().unwrap() > 0);
    assert_eq!(run["errors"], 0, "errors in {run}");
    check_latency("all", &run["latency_us"]);
    let ops = run["operations"]
        .as_object()
        .expect("run.operations")
        .clone();
    for (name, op) in &ops {
        assert!(op["ops"].as_u64().unwrap() > 0, "{name}: no ops");
        assert!(
            op["throughput"].as_f64().unwrap() > 0.0,
            "{name}: no throughput"
        );
        check_latency(name, &op["latency_us"]);
    }
    ops
}

#[test]
fn workload_a_over_grpc_reports_reads_and_updates() {
    let node = start_node();
    let grpc = node.process.grpc.to_string();
    let report = bench_json(
        &node,
        &[
            "--target",
            "cairn",
            "--endpoints",
            &grpc,
            "--workload",
            "a",
            "--records",
            "200",
            "--value-size",
            "64",
            "--clients",
            "8",
            "--duration",
            "2s",
        ],
    );
    let ops = check_report(&report, "cairn", "a");
    let mut names: Vec<&str> = ops.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["read", "update"]);
    assert_eq!(report["load"]["records"], 200);
    // Every key read was loaded first.
    assert_eq!(ops["read"]["not_found"], 0);
    let secs = report["run"]["elapsed_s"].as_f64().unwrap();
    assert!(
        (1.9..10.0).contains(&secs),
        "measured {secs} s for --duration 2s"
    );
}

#[test]
fn workload_e_over_http_scans_and_inserts() {
    let node = start_node();
    let http = node.process.http.to_string();
    let report = bench_json(
        &node,
        &[
            "--target",
            "cairn-http",
            "--endpoints",
            &http,
            "--workload",
            "e",
            "--records",
            "300",
            "--value-size",
            "32",
            "--clients",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    );
    let ops = check_report(&report, "cairn-http", "e");
    assert!(ops.contains_key("scan"), "{ops:?}");
    assert!(ops.keys().all(|k| k == "scan" || k == "insert"), "{ops:?}");
}

#[test]
fn usage_errors_exit_2_and_connection_failures_exit_1() {
    let usage = Command::new(BENCH)
        .args(["--target", "cairn", "--clients", "0"])
        .output()
        .unwrap();
    assert_eq!(
        usage.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    let usage = Command::new(BENCH)
        .args(["--target", "nope"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    // Nothing listens on port 1 of loopback.
    let down = Command::new(BENCH)
        .args([
            "--target",
            "cairn-http",
            "--endpoints",
            "127.0.0.1:1",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(
        down.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
