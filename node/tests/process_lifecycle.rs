//! Process-level behaviour operators rely on: one process per data
//! directory, clean exit on SIGTERM with in-flight requests finished, health
//! and readiness endpoints, metrics, gRPC health and reflection.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::process::Command;
use std::time::Duration;

use cairn_testkit::conformance::{connect, put, value_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_same_data_dir_fails_fast() {
    let t = common::start_node(&[]);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking({
            let dir = t.dir.path().join("data");
            move || {
                Command::new(env!("CARGO_BIN_EXE_cairn-node"))
                    .arg("--data-dir")
                    .arg(dir)
                    .args([
                        "--grpc-addr",
                        "127.0.0.1:0",
                        "--http-addr",
                        "127.0.0.1:0",
                        "--metrics-addr",
                        "127.0.0.1:0",
                    ])
                    .output()
                    .unwrap()
            }
        }),
    )
    .await
    .expect("second process must fail fast, not hang")
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another cairn-node"), "{err}");
    assert!(
        err.contains(&format!("pid {}", t.node.pid().unwrap())),
        "{err}"
    );
    // The first node is unharmed.
    let mut kv = connect(&t.node.grpc_url()).await;
    kv.put(put("still", "works")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_writes_and_exits_zero() {
    let mut t = common::start_node(&[]);
    let endpoint = t.node.grpc_url();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = connect(&endpoint).await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let key = format!("term/{w}/{i}");
                match kv.put(put(key.clone(), "v")).await {
                    Ok(_) => acked.push(key),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::block_in_place(|| t.node.terminate(Duration::from_secs(60))).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {}", t.node.stderr());
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    assert!(!acked.is_empty());
    t.node.restart().unwrap();
    let mut kv = connect(&t.node.grpc_url()).await;
    for k in &acked {
        assert!(
            value_of(&mut kv, k.as_bytes()).await.is_some(),
            "acknowledged {k} lost across SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_grpc_services() {
    let t = common::start_node(&[]);
    let mut kv = connect(&t.node.grpc_url()).await;
    kv.put(put("m", "v")).await.unwrap();
    let _ = kv.get(cairn_testkit::conformance::get(Vec::new())).await;
    let base = format!("http://{}", t.node.metrics);
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"cairn_requests_total{api="grpc",code="ok",method="Put"} 1"#,
        r#"cairn_requests_total{api="grpc",code="empty_key",method="Get"} 1"#,
        "cairn_request_duration_seconds_bucket",
        "cairn_commit_group_commands_count",
        "cairn_commit_write_duration_seconds_count",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }

    // gRPC health checking protocol reports the KV service as serving.
    let ch = tonic::transport::Channel::from_shared(t.node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cairn.kv.v1.KV".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Server reflection lists the KV service, so grpcurl and friends work without .proto files.
    use tonic_reflection::pb::v1 as refl;
    let ch = tonic::transport::Channel::from_shared(t.node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = refl::server_reflection_client::ServerReflectionClient::new(ch);
    let request = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"cairn.kv.v1.KV".to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    // The same through v1alpha, the only version Google's Python
    // grpcio-reflection and other common tools speak.
    use tonic_reflection::pb::v1alpha as alpha;
    let ch = tonic::transport::Channel::from_shared(t.node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = alpha::server_reflection_client::ServerReflectionClient::new(ch);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected v1alpha reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"cairn.kv.v1.KV".to_string()), "{names:?}");
}
