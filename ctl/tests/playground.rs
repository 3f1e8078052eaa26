//! `cairnctl playground`, the command `make run` starts: it must come up
//! with every shard led and replicated, serve reads and writes, stop
//! cleanly on SIGTERM, and resume the same data when run again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A base port whose 3 nodes' ports (BASE..BASE+22) are all free now, below
/// the kernel's ephemeral range so other tests' connections do not take them.
fn free_base_port() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + 30 * (rand_u16() % 300);
        let free = (0..3u16).all(|i| {
            (0..3u16).all(|k| TcpListener::bind(("127.0.0.1", base + 10 * i + k)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free base port found for the playground");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}

/// Starts the playground and waits (up to 4 minutes) for its ready line.
async fn start(data_dir: &Path, base: u16) -> Child {
    start_with(data_dir, base, &[]).await
}

async fn start_with(data_dir: &Path, base: u16, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(["playground", "--nodes", "3", "--shards", "8", "--base-port"])
        .arg(base.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cairnctl playground");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("cairn playground ready: 3 nodes, 8 shards") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the playground did not report ready");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn cairnctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .await
        .expect("run cairnctl")
}

/// SIGTERM, then the exit status (within 90 s).
async fn stop(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("playground pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the playground stops within 90 s of SIGTERM")
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_serves_stops_cleanly_and_resumes_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("playground");
    let base = free_base_port();
    let endpoint = format!("127.0.0.1:{base}");

    let first = start(&data, base).await;
    let put = cairnctl(&endpoint, &["put", "greeting", "hello"]).await;
    assert!(put.status.success(), "{put:?}");
    let status = cairnctl(
        &format!("127.0.0.1:{}", base + 20),
        &["--json", "cluster", "status"],
    )
    .await;
    assert!(status.status.success(), "{status:?}");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3), "{v}");
    let exit = stop(first).await;
    assert!(
        exit.success(),
        "the playground exits 0 after SIGTERM: {exit:?}"
    );
    for node in 1..=3 {
        assert!(
            data.join(format!("node{node}")).is_dir(),
            "node {node} keeps its data"
        );
    }

    let second = start(&data, base).await;
    let got = cairnctl(&endpoint, &["get", "greeting"]).await;
    assert!(got.status.success(), "{got:?}");
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim_end(), "hello");
    let exit = stop(second).await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_playground_serves_only_tls_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("playground");
    let base = free_base_port();
    let endpoint = format!("127.0.0.1:{base}");
    let child = start_with(&data, base, &["--secure"]).await;
    let tls = data.join("tls");
    let f = |name: &str| tls.join(name).display().to_string();
    let (ca, cert, key) = (f("ca.pem"), f("admin.pem"), f("admin.key"));
    let flags = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let mut put = flags.to_vec();
    put.extend(["put", "greeting", "hello"]);
    let out = cairnctl(&endpoint, &put).await;
    assert!(out.status.success(), "{out:?}");
    let mut get = flags.to_vec();
    get.extend(["get", "greeting"]);
    let out = cairnctl(&endpoint, &get).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "hello");
    // Without TLS settings the same command fails.
    let out = cairnctl(&endpoint, &["get", "greeting"]).await;
    assert!(
        !out.status.success(),
        "a plaintext client was served: {out:?}"
    );
    let exit = stop(child).await;
    assert!(exit.success(), "{exit:?}");
}
