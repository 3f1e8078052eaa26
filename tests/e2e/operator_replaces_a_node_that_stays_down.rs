//! End to end: a node whose machine stays down longer than
//! `failover.downTimeout` is replaced by the operator — declared lost, its
//! pod and volume deleted, the pod re-created as a new node — and every
//! shard gets its third replica back, with a client writing throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_e2e as e2e;

use std::time::Duration;

use cairn_operator::crd::{Lifecycle, OperationKind};
use e2e::writer::{Writer, check_all_readable};
use e2e::{Env, NS, healthy};
use kube::ResourceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_past_its_timeout_is_replaced_by_a_new_identity() -> anyhow::Result<()> {
    let env = Env::start(2).await?;
    env.create_cluster("kv", 3, "10s").await?;
    env.wait_for("kv", "3 nodes formed", Duration::from_secs(180), |c| {
        healthy(c, 3)
    })
    .await?;
    let writer = Writer::start(&env.endpoints("kv").await?, "failover").await?;
    let old_uid = env.pods().get("kv-default-1").await?.uid();

    env.kubelet.stop_node(NS, "kv-default-1");
    env.wait_for(
        "kv",
        "replacement of node 2 started",
        Duration::from_secs(120),
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.operation
                    .as_ref()
                    .is_some_and(|o| o.kind == OperationKind::Replace && o.node_id == Some(2))
            })
        },
    )
    .await?;
    let replaced = env
        .wait_for(
            "kv",
            "node 2 replaced, 3 replicas everywhere",
            Duration::from_secs(300),
            |c| {
                healthy(c, 3)
                    && c.status.as_ref().is_some_and(|s| {
                        s.members
                            .iter()
                            .any(|m| m.node_id == 2 && m.lifecycle == Lifecycle::Removed)
                    })
            },
        )
        .await?;
    let members = replaced.status.clone().unwrap_or_default().members;
    let successor = members
        .iter()
        .find(|m| m.pod == "kv-default-1" && m.lifecycle == Lifecycle::Serving)
        .expect("a serving successor for the pod");
    assert_eq!(successor.node_id, 4, "a fresh id, never the replaced one");
    assert!(successor.replicas > 0, "the new node holds replicas");
    let new_uid = env.pods().get("kv-default-1").await?.uid();
    assert_ne!(old_uid, new_uid, "the pod was re-created");

    let client = writer.client();
    let (acked, failures, error) = writer.stop().await?;
    assert_eq!(failures, 0, "client saw failures beyond retries: {error:?}");
    check_all_readable(&client, &acked).await?;
    Ok(())
}
