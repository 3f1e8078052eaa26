//! End to end: changing `spec.version` restarts the pods one at a time on
//! the new template (leaders moved off first), while a client keeps
//! writing without a failure beyond its retries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_e2e as e2e;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_operator::builders::statefulset::POD_SPEC_HASH_ANNOTATION;
use cairn_operator::crd::Phase;
use e2e::writer::{Writer, check_all_readable};
use e2e::{Env, healthy};
use kube::ResourceExt;
use kube::api::ListParams;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_change_rolls_through_every_pod_one_at_a_time() -> anyhow::Result<()> {
    let env = Env::start(3).await?;
    env.create_cluster("kv", 3, "5m").await?;
    env.wait_for("kv", "3 nodes formed", Duration::from_secs(180), |c| {
        healthy(c, 3)
    })
    .await?;
    let before: BTreeMap<String, (String, Option<String>)> = env
        .pods()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|p| {
            (
                p.name_any(),
                (
                    p.uid().unwrap_or_default(),
                    p.annotations().get(POD_SPEC_HASH_ANNOTATION).cloned(),
                ),
            )
        })
        .collect();
    assert_eq!(before.len(), 3);
    let writer = Writer::start(&env.endpoints("kv").await?, "upgrade").await?;

    env.patch_spec("kv", serde_json::json!({"version": "2"}))
        .await?;
    // Watch the pods until every one runs the new template: never more than
    // one of them down at a time.
    let started = Instant::now();
    let mut most_down = 0;
    loop {
        let pods = env.pods().list(&ListParams::default()).await?.items;
        let down = 3 - pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        most_down = most_down.max(down);
        let renewed = pods.len() == 3
            && pods.iter().all(|p| {
                let (uid, hash) = &before[&p.name_any()];
                p.uid().as_ref() != Some(uid)
                    && p.annotations().get(POD_SPEC_HASH_ANNOTATION) != hash.as_ref()
            });
        let cluster = env.clusters().get("kv").await?;
        if renewed
            && healthy(&cluster, 3)
            && cluster.status.as_ref().and_then(|s| s.phase) == Some(Phase::Running)
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(420),
            "rolling restart unfinished after 420 s; status {:?}\n{}",
            cluster.status,
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "[e2e] rolling restart done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(most_down <= 1, "{most_down} pods were down at once");

    let client = writer.client();
    let (acked, failures, error) = writer.stop().await?;
    assert_eq!(failures, 0, "client saw failures beyond retries: {error:?}");
    check_all_readable(&client, &acked).await?;
    Ok(())
}
