//! `cairnctl`'s command-line contract (output formats and exit codes),
//! run as a real process against a real `cairn-node`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::process::{Output, Stdio};

use cairn_testkit::single;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// Runs cairnctl with `args` (and `stdin`), against `endpoints`.
async fn cairnctl_with(endpoints: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(args)
        .env("CAIRN_ENDPOINTS", endpoints)
        .env_remove("CAIRN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairnctl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("cairnctl output")
}

async fn cairnctl(node: &single::Node, args: &[&str]) -> Output {
    cairnctl_with(&node.addr, args, b"").await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[tokio::test]
async fn put_then_get_round_trips_exact_bytes() {
    let node = single::spawn().await;
    let put = cairnctl(&node, &["put", "greeting", "hello"]).await;
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(stdout(&put), "OK revision=1 version=1\n");

    let get = cairnctl(&node, &["get", "greeting"]).await;
    assert_eq!(get.status.code(), Some(0));
    // Not a terminal: no trailing newline.
    assert_eq!(get.stdout, b"hello");
}

#[tokio::test]
async fn get_of_missing_key_exits_1() {
    let node = single::spawn().await;
    let get = cairnctl(&node, &["get", "nope"]).await;
    assert_eq!(get.status.code(), Some(1));
    assert_eq!(stderr(&get), "error: key not found\n");
    assert!(get.stdout.is_empty());
}

#[tokio::test]
async fn failed_condition_exits_1_with_server_message() {
    let node = single::spawn().await;
    node.insert(b"k", b"v").await;
    let put = cairnctl(&node, &["put", "k", "w", "--if-absent"]).await;
    assert_eq!(put.status.code(), Some(1));
    assert!(
        stderr(&put).starts_with("error: precondition failed: key \"k\" already exists"),
        "{}",
        stderr(&put)
    );
    let update = cairnctl(&node, &["update", "k", "w", "--if-revision", "99"]).await;
    assert_eq!(update.status.code(), Some(1));
    assert!(
        stderr(&update).starts_with("error: precondition failed: "),
        "{}",
        stderr(&update)
    );
}

#[tokio::test]
async fn update_of_missing_key_exits_1() {
    let node = single::spawn().await;
    let update = cairnctl(&node, &["update", "nope", "v"]).await;
    assert_eq!(update.status.code(), Some(1));
    assert_eq!(stderr(&update), "error: key not found\n");
}

#[tokio::test]
async fn delete_reports_whether_the_key_existed() {
    let node = single::spawn().await;
    node.insert(b"k", b"v").await;
    let first = cairnctl(&node, &["delete", "k"]).await;
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(stdout(&first), "deleted\n");
    let second = cairnctl(&node, &["delete", "k"]).await;
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(stderr(&second), "error: key not found\n");
}

#[tokio::test]
async fn values_come_from_files_and_stdin() {
    let node = single::spawn().await;
    let path = std::env::temp_dir().join(format!("cairnctl-e2e-value-{}", std::process::id()));
    std::fs::write(&path, b"\x00from file\xff").expect("write temp file");
    let at_path = format!("@{}", path.display());
    let put = cairnctl(&node, &["put", "f", &at_path]).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(node.value(b"f").await, Some(b"\x00from file\xff".to_vec()));

    let put = cairnctl_with(&node.addr, &["put", "s", "-"], b"from stdin\n").await;
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    assert_eq!(node.value(b"s").await, Some(b"from stdin\n".to_vec()));
}

#[tokio::test]
async fn json_output_of_get_and_put() {
    let node = single::spawn().await;
    let put = cairnctl(&node, &["--json", "put", "k", "v", "--ttl", "30s"]).await;
    assert_eq!(
        json(&put),
        serde_json::json!({"revision": 1, "created": true, "version": 1, "create_revision": 1, "mod_revision": 1})
    );
    let get = cairnctl(&node, &["get", "k", "--json"]).await;
    let shown = json(&get);
    assert_eq!(shown["key"], "k");
    assert_eq!(shown["value"], "v");
    assert_eq!(shown["version"], 1);
    assert!(shown.get("encoding").is_none());
    assert!(shown["expires_at_ms"].as_u64() > Some(0));
}

#[tokio::test]
async fn json_output_base64_encodes_binary_values() {
    let node = single::spawn().await;
    node.insert(b"bin", &[0xff, 0x00]).await;
    let get = cairnctl(&node, &["--json", "get", "bin"]).await;
    let shown = json(&get);
    assert_eq!(shown["encoding"], "base64");
    assert_eq!(shown["key"], "Ymlu");
    assert_eq!(shown["value"], "/wA=");
}

#[tokio::test]
async fn scan_prints_tab_separated_lines_across_pages_and_honours_limit() {
    let node = single::spawn().await;
    for key in ["a/1", "a/2", "a/3", "b/1"] {
        node.insert(key.as_bytes(), key.to_uppercase().as_bytes())
            .await;
    }
    let all = cairnctl(&node, &["scan", "--prefix", "a/"]).await;
    assert_eq!(stdout(&all), "a/1\tA/1\na/2\tA/2\na/3\tA/3\n");
    let keys = cairnctl(
        &node,
        &["scan", "--start", "a/2", "--end", "b/1", "--keys-only"],
    )
    .await;
    assert_eq!(stdout(&keys), "a/2\na/3\n");
    let limited = cairnctl(&node, &["scan", "--limit", "3", "--json"]).await;
    let shown = json(&limited);
    assert_eq!(shown["kvs"].as_array().map(Vec::len), Some(3));
    // Revisions are per shard: the page reports the highest shard revision read.
    assert!(shown["revision"].as_u64() >= Some(1), "{shown}");
}

#[tokio::test]
async fn batch_from_stdin_applies_all_ops() {
    let node = single::spawn().await;
    // A batch stays in one shard: the keys share the hash tag {t}.
    node.insert(b"{t}gone", b"x").await;
    let file =
        br#"{"ops": [{"put": {"key": "{t}a", "value": "1"}}, {"delete": {"key": "{t}gone"}}]}"#;
    let batch = cairnctl_with(&node.addr, &["batch", "-"], file).await;
    assert_eq!(batch.status.code(), Some(0), "{}", stderr(&batch));
    assert_eq!(stdout(&batch), "OK revision=2 ops=2\n");
    assert_eq!(node.value(b"{t}a").await, Some(b"1".to_vec()));
    assert_eq!(node.value(b"{t}gone").await, None);
    // Keys of different shards are refused with the server's explanation.
    let spread = br#"{"ops": [{"put": {"key": "a", "value": "1"}}, {"put": {"key": "gone", "value": "2"}}]}"#;
    let refused = cairnctl_with(&node.addr, &["batch", "-"], spread).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("hash tag"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn txn_runs_the_branch_chosen_by_the_compares() {
    let node = single::spawn().await;
    node.insert(b"k", b"old").await;
    let file = br#"{
        "compare": [{"key": "k", "target": "value", "op": "==", "value": "old"}],
        "success": [{"put": {"key": "k", "value": "new"}}, {"get": {"key": "k"}}],
        "failure": []
    }"#;
    let txn = cairnctl_with(&node.addr, &["--json", "txn", "-"], file).await;
    assert_eq!(txn.status.code(), Some(0), "{}", stderr(&txn));
    let shown = json(&txn);
    assert_eq!(shown["succeeded"], true);
    assert_eq!(shown["results"][1]["kv"]["value"], "new");

    let again = cairnctl_with(&node.addr, &["txn", "-"], file).await;
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(stdout(&again), "succeeded=false revision=2\n");
}

#[tokio::test]
async fn unreachable_cluster_exits_1() {
    let dead = single::dead_addr().await;
    let get = cairnctl_with(&dead, &["get", "k"], b"").await;
    assert_eq!(get.status.code(), Some(1));
    assert!(
        stderr(&get).starts_with("error: could not connect to any of "),
        "{}",
        stderr(&get)
    );
}

#[tokio::test]
async fn usage_errors_exit_2_without_contacting_a_server() {
    let dead = single::dead_addr().await;
    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["--tls-ca", "ca.pem", "get", "k"],
            b"",
            "error: TLS: reading ca.pem",
        ),
        (
            &["put", "k", "v", "--ttl", "5 parsecs"],
            b"",
            "invalid value '5 parsecs'",
        ),
        (&["put", "k", "v", "--ttl", "0"], b"", "greater than zero"),
        (&["frobnicate"], b"", "unrecognized subcommand"),
        (
            &["put", "k", "@/nonexistent/cairn-value"],
            b"",
            "cannot read /nonexistent/cairn-value",
        ),
        (
            &["batch", "-"],
            br#"{"ops": [{"put": {"key": "k"}}]}"#,
            "error: stdin: missing field `value` at line 1",
        ),
        (
            &["txn", "-"],
            br#"{"compare": [{"key": "k", "target": "size", "op": "=="}]}"#,
            "unknown variant `size`",
        ),
        (
            &["--endpoints", "no-port", "get", "k"],
            b"",
            "invalid endpoint",
        ),
    ];
    for (args, stdin, expected) in cases {
        let output = cairnctl_with(&dead, args, stdin).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// `cairnctl --json shards` prints the shape scripts rely on, and a node
/// can be drained (following it to the end), removed, and seen as removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_lifecycle_and_shard_map_through_cairnctl() {
    use cairn_testkit::cluster::{ClusterSpec, LocalCluster};
    let cluster = LocalCluster::start(ClusterSpec::new(4, 8))
        .await
        .expect("cluster");
    let endpoints = cluster.endpoints().join(",");
    let shard_map = |out: &Output| -> Vec<(u64, u64, Vec<u64>)> {
        let v = json(out);
        let shards = v.as_array().expect("a JSON array of shards");
        shards
            .iter()
            .map(|s| {
                let replicas = s["replicas"]
                    .as_array()
                    .expect("replicas is a list")
                    .iter()
                    .map(|r| r.as_u64().expect("replica is a node id"))
                    .collect();
                (
                    s["shard"].as_u64().expect("shard"),
                    s["leader"].as_u64().expect("leader"),
                    replicas,
                )
            })
            .collect()
    };
    let out = cairnctl_with(&endpoints, &["--json", "shards"], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let map = shard_map(&out);
    assert_eq!(map.len(), 8);
    assert!(
        map.iter()
            .all(|(_, leader, r)| r.len() == 3 && r.contains(leader))
    );
    assert!(map.iter().any(|(_, _, r)| r.contains(&4)));

    let out = cairnctl_with(&endpoints, &["node", "drain", "4", "--wait"], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("drain: node 4 is drained: no replicas or leaderships left\n"),
        "{}",
        stdout(&out)
    );
    let map = shard_map(&cairnctl_with(&endpoints, &["--json", "shards"], b"").await);
    assert!(
        map.iter()
            .all(|(_, leader, r)| *leader != 4 && !r.contains(&4)),
        "after the drain node 4 still appears: {map:?}"
    );

    let out = cairnctl_with(&endpoints, &["node", "remove", "4"], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "remove: node 4 is removed\n");
    let out = cairnctl_with(&endpoints, &["node", "cancel-drain", "4"], b"").await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a removed node cannot come back"
    );
    assert!(stderr(&out).contains("fenced"), "{}", stderr(&out));
    let out = cairnctl_with(&endpoints, &["--json", "cluster", "status"], b"").await;
    let v = json(&out);
    let node4 = v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == 4))
        .cloned()
        .expect("node 4 listed");
    assert_eq!(node4["state"], "removed");
}
