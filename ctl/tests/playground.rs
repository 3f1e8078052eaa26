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

    // Authentication is on: the admin certificate signs in as root, the
    // printed login line gives a session token, and a user made through
    // the CLI gets exactly its role's grant.
    let run = async |args: &[&str]| {
        let out = cairnctl(&endpoint, args).await;
        let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        (out, text)
    };
    let mut whoami = flags.to_vec();
    whoami.push("whoami");
    let (out, text) = run(&whoami).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("\"root\"") && text.contains("certificate"),
        "{text}"
    );
    let password = data.join("root-password").display().to_string();
    let ca_only = ["--tls-ca", ca.as_str()];
    let (out, token) = run(&[
        &ca_only[..],
        &["login", "--user", "root", "--password-file", &password],
    ]
    .concat())
    .await;
    assert!(out.status.success(), "{out:?}");
    let as_root = [&ca_only[..], &["--token", token.as_str()]].concat();
    let (out, _) = run(&[
        &as_root[..],
        &["role", "add", "app", "--rule", "prefix=app/:read,write"],
    ]
    .concat())
    .await;
    assert!(out.status.success(), "{out:?}");
    let app_pw = dir.path().join("app-password");
    std::fs::write(&app_pw, "app-password-1\n").expect("write password");
    let app_pw = app_pw.display().to_string();
    let (out, _) = run(&[
        &as_root[..],
        &[
            "user",
            "add",
            "alice",
            "--password-file",
            &app_pw,
            "--role",
            "app",
        ],
    ]
    .concat())
    .await;
    assert!(out.status.success(), "{out:?}");
    let (out, users) = run(&[&as_root[..], &["user", "list"]].concat()).await;
    assert!(
        out.status.success() && users.contains("alice\troles=app"),
        "{users}"
    );
    let (out, alice) = run(&[
        &ca_only[..],
        &["login", "--user", "alice", "--password-file", &app_pw],
    ]
    .concat())
    .await;
    assert!(out.status.success(), "{out:?}");
    let as_alice = [&ca_only[..], &["--token", alice.as_str()]].concat();
    let (out, _) = run(&[&as_alice[..], &["put", "app/x", "1"]].concat()).await;
    assert!(out.status.success(), "{out:?}");
    let (out, _) = run(&[&as_alice[..], &["put", "other", "1"]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("\"other\""),
        "{err}"
    );
    let (out, _) = run(&[&ca_only[..], &["put", "app/y", "1"]].concat()).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "no credential was served: {out:?}"
    );
    let exit = stop(child).await;
    assert!(exit.success(), "{exit:?}");
}
