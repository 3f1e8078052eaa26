//! End to end: a KVCluster is created, scaled out and scaled in by the real
//! operator binary against the stand-in Kubernetes, with real `cairn-node`
//! processes and a client writing throughout; the operator is killed in the
//! middle of the scale-in and must finish it after its restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_e2e as e2e;

use std::time::Duration;

use cairn_operator::crd::{Lifecycle, OperationKind, Phase};
use e2e::writer::{Writer, check_all_readable};
use e2e::{Env, healthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_scale_out_and_scale_in_across_an_operator_restart() -> anyhow::Result<()> {
    let mut env = Env::start(1).await?;
    env.create_cluster("kv", 3, "5m").await?;
    let formed = env
        .wait_for("kv", "3 nodes formed", Duration::from_secs(180), |c| {
            healthy(c, 3)
        })
        .await?;
    let status = formed.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(Phase::Running));
    let ids: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(
        status
            .members
            .iter()
            .all(|m| m.lifecycle == Lifecycle::Serving)
    );
    assert_eq!(status.shard_health.as_ref().map(|h| h.total), Some(16));

    // Nodes listen on every interface of their pod, so what `kubectl
    // port-forward` reaches (the pod's own localhost) is the node: a write
    // through one pod's localhost is read back through another's.
    let put = env.curl_in_pod(
        "kv-default-0",
        &[
            "-X",
            "PUT",
            "--data-binary",
            "forwarded",
            "http://127.0.0.1:7001/store/pf",
        ],
    )?;
    assert!(put.contains("revision"), "PUT through localhost: {put}");
    let got = env.curl_in_pod("kv-default-2", &["http://127.0.0.1:7001/store/pf"])?;
    assert_eq!(got, "forwarded");

    let writer = Writer::start(&env.endpoints("kv").await?, "scale").await?;

    // Scale out to 5: two pods join, replicas spread over them.
    env.patch_spec("kv", serde_json::json!({"nodes": 5}))
        .await?;
    let grown = env
        .wait_for(
            "kv",
            "5 nodes serving and balanced",
            Duration::from_secs(300),
            |c| healthy(c, 5),
        )
        .await?;
    let members = grown.status.clone().unwrap_or_default().members;
    let serving: Vec<_> = members
        .iter()
        .filter(|m| m.lifecycle == Lifecycle::Serving)
        .collect();
    assert_eq!(serving.len(), 5);
    for m in &serving {
        // 16 shards × 3 replicas over 5 nodes: 9 or 10 each.
        assert!(
            (9..=10).contains(&m.replicas),
            "node {} holds {} replicas",
            m.node_id,
            m.replicas
        );
    }

    // Scale in to 3; kill the operator as soon as the first drain is under way.
    env.patch_spec("kv", serde_json::json!({"nodes": 3}))
        .await?;
    env.wait_for(
        "kv",
        "drain of node 5 under way",
        Duration::from_secs(120),
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.operation
                    .as_ref()
                    .is_some_and(|o| o.kind == OperationKind::ScaleIn && o.node_id == Some(5))
                    && s.members.iter().any(|m| {
                        m.node_id == 5
                            && matches!(m.lifecycle, Lifecycle::Draining | Lifecycle::Drained)
                    })
            })
        },
    )
    .await?;
    env.kill_operator();
    env.start_operator()?;
    let shrunk = env
        .wait_for("kv", "back to 3 nodes", Duration::from_secs(300), |c| {
            healthy(c, 3)
                && c.status.as_ref().is_some_and(|s| {
                    s.members
                        .iter()
                        .filter(|m| m.lifecycle == Lifecycle::Removed)
                        .count()
                        == 2
                })
        })
        .await?;
    let members = shrunk.status.clone().unwrap_or_default().members;
    for id in [4, 5] {
        let m = members.iter().find(|m| m.node_id == id).expect("member");
        assert_eq!(m.lifecycle, Lifecycle::Removed, "node {id}");
    }
    // Pods and their volume claims (retainOnScaleIn false) are gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = env.pod_names("kv").await?;
        let claims: Vec<String> = env
            .claims()
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(kube::ResourceExt::name_any)
            .collect();
        let gone = pods == ["kv-default-0", "kv-default-1", "kv-default-2"]
            && !claims
                .iter()
                .any(|c| c.ends_with("-3") || c.ends_with("-4"));
        if gone {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "pods {pods:?} and claims {claims:?} remain after the scale-in"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every lifecycle step was an Event, and the restarted operator counts its own.
    let reasons = env.event_reasons().await?;
    for reason in [
        "ScaleOutStarted",
        "ScaleOutDone",
        "ScaleInStarted",
        "ScaleInDone",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event among {reasons:?}"
        );
    }
    let metrics = env.operator_metrics().await?;
    assert!(
        metrics.contains("cairn_operator_reconciles_total{result=\"ok\"}")
            && metrics.contains("cairn_operator_lifecycle_events_total{reason=\"ScaleInDone\"}"),
        "operator metrics:\n{metrics}"
    );

    let client = writer.client();
    let (acked, failures, error) = writer.stop().await?;
    assert_eq!(failures, 0, "client saw failures beyond retries: {error:?}");
    assert!(
        acked.len() > 50,
        "the writer made progress ({} writes)",
        acked.len()
    );
    check_all_readable(&client, &acked).await?;
    Ok(())
}
