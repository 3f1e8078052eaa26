//! A node's lifecycle in a cluster of real processes: drained under load
//! (every replica and leadership moves off, no acknowledged write is lost),
//! removed, and fenced when it comes back; a lost node replaced from the
//! surviving replicas; unsafe requests are refused and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_proto::admin::v1 as apb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster, admin};
use cairn_testkit::process::NodeProcess;
use common::history::{History, check_history, spawn_writers};

/// Replicas and leaderships node `id` holds, from the cluster status.
fn held_by(status: &apb::ClusterStatusResponse, id: u64) -> (usize, usize) {
    let replicas = status
        .shards
        .iter()
        .filter(|s| s.replicas.iter().any(|r| r.node_id == id))
        .count();
    let leads = status.shards.iter().filter(|s| s.leader_id == id).count();
    (replicas, leads)
}

fn state_of(status: &apb::ClusterStatusResponse, id: u64) -> i32 {
    status
        .nodes
        .iter()
        .find(|n| n.id == id)
        .map_or(-1, |n| n.state)
}

/// Waits (up to 60 s) for `node` to end by itself; returns how it ended
/// and what it wrote to stderr since `log_from` (bytes).
async fn wait_exit(
    node: &mut NodeProcess,
    log_from: usize,
    what: &str,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = node.exited() {
            return (status, node.stderr().get(log_from..).unwrap_or("").into());
        }
        if Instant::now() > deadline {
            let log = node.stderr();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{what} kept running; its log ends with:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `args` without `--join ADDR`.
fn without_join(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--join" {
            it.next();
        } else {
            out.push(a.clone());
        }
    }
    out
}

fn error_code(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("cairn-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_under_load_is_removed_and_fenced() {
    let mut cluster = LocalCluster::start(ClusterSpec::new(4, 16)).await.unwrap();
    let before = cluster.status().await.unwrap();
    assert!(
        held_by(&before, 4).0 > 0,
        "node 4 should start with replicas"
    );

    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    let acked: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(client.clone(), "drain", 6, stop.clone(), acked.clone());

    let mut a = admin(&cluster.nodes[0]).await.unwrap().into_stub();
    let r = a
        .drain_node(apb::NodeRequest {
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("drain accepted")
        .into_inner();
    assert_eq!(r.state, apb::NodeState::Draining as i32);

    // Every replica and leadership leaves node 4 while writes go on.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cluster.status().await.unwrap();
        let all_led = s.shards.iter().all(|sh| sh.leader_id != 0);
        if held_by(&s, 4) == (0, 0) && all_led {
            for sh in &s.shards {
                assert_eq!(
                    sh.replicas.len(),
                    3,
                    "shard {} lost a replica: {sh:?}",
                    sh.shard
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drain did not finish: node 4 still holds {:?}",
            held_by(&s, 4)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let n = w.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "a writer made no progress");
    }
    check_history(&client, &acked).await;

    let removed = a
        .remove_node(apb::NodeRequest {
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("remove accepted")
        .into_inner();
    assert_eq!(removed.state, apb::NodeState::Removed as i32);
    let s = cluster.status().await.unwrap();
    assert_eq!(state_of(&s, 4), apb::NodeState::Removed as i32);
    let meta = s.meta.expect("meta group");
    assert!(
        meta.replicas.iter().all(|r| r.node_id != 4),
        "node 4 is still in the meta group: {meta:?}"
    );

    // The removed node, still running, learns of its removal from its meta
    // replica and stops by itself.
    let node = &mut cluster.nodes[3];
    let (exit, log) = wait_exit(node, 0, "the removed node").await;
    assert!(!exit.success(), "a fenced node must exit with an error");
    assert!(log.contains("node 4 was removed from the cluster"), "{log}");

    // It comes back (same id, same data), as it was started (with --join)
    // and without --join (its data directory says it is a member): either
    // way it refuses to start, before it serves anything.
    for args in [node.args().to_vec(), without_join(node.args())] {
        node.set_args(args);
        let from = node.stderr().len();
        node.spawn_again().unwrap();
        let (exit, log) = wait_exit(node, from, "the restarted removed node").await;
        assert!(!exit.success(), "a fenced node must exit with an error");
        assert!(log.contains("node 4 was removed from the cluster"), "{log}");
        assert!(log.contains("new --node-id"), "{log}");
        assert!(
            !node.became_ready(),
            "a removed node reported ready ({:?}): {log}",
            node.args()
        );
    }

    // Its id cannot join again from anywhere either.
    let refused = a
        .join(apb::JoinRequest {
            node_id: 4,
            addr: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("a removed id must not join");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_code(&refused), "node_removed");
    check_history(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_replaced_from_the_surviving_replicas() {
    let mut cluster = LocalCluster::start(ClusterSpec::new(4, 16)).await.unwrap();
    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    let acked: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(client.clone(), "replace", 6, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Node 4 is lost.
    cluster.nodes[3].kill();
    let mut a = admin(&cluster.nodes[0]).await.unwrap().into_stub();
    let r = a
        .replace_node(apb::NodeRequest {
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("replace accepted")
        .into_inner();
    assert_eq!(r.state, apb::NodeState::Dead as i32);

    // It comes back on its old data without --join (its data directory
    // says it is an active member): the cluster refuses it and it stops by
    // itself.
    let node = &mut cluster.nodes[3];
    let args = node.args().to_vec();
    node.set_args(without_join(&args));
    let from = node.stderr().len();
    node.spawn_again().unwrap();
    let (exit, log) = wait_exit(node, from, "the replaced node").await;
    assert!(!exit.success(), "a fenced node must exit with an error");
    assert!(log.contains("node 4 was declared dead"), "{log}");
    node.set_args(args);

    // Its disk is gone for good.
    std::fs::remove_dir_all(cluster.nodes[3].data_dir()).unwrap();

    // Every shard gets back to 3 replicas, none on node 4, all led.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cluster.status().await.unwrap();
        let done = s.shards.iter().all(|sh| {
            sh.leader_id != 0
                && sh.replicas.len() == 3
                && sh.replicas.iter().all(|r| r.node_id != 4 && r.voter)
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shards did not return to 3 replicas: {:?}",
            s.shards
                .iter()
                .map(|sh| (
                    sh.shard,
                    sh.leader_id,
                    sh.replicas.iter().map(|r| r.node_id).collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let n = w.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "a writer made no progress");
    }
    check_history(&client, &acked).await;

    let removed = a
        .remove_node(apb::NodeRequest {
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect("a replaced node holding nothing can be removed")
        .into_inner();
    assert_eq!(removed.state, apb::NodeState::Removed as i32);

    // Its id stays fenced even on a fresh disk.
    cluster.nodes[3].start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.nodes[3].exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "the replaced node's id was accepted again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuated_leaderships_stay_away_until_restored() {
    let cluster = LocalCluster::start(ClusterSpec::new(3, 16)).await.unwrap();
    let mut a = admin(&cluster.nodes[2]).await.unwrap().into_stub();
    let wait_for = |want: fn(usize) -> bool, what: &'static str| {
        let cluster = &cluster;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = cluster.status().await.unwrap();
                let (held, led) = held_by(&s, 1);
                if want(led) && s.shards.iter().all(|sh| sh.leader_id != 0) {
                    return held;
                }
                assert!(Instant::now() < deadline, "{what}: node 1 leads {led}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(|led| led > 0, "before").await;
    a.evacuate_leaders(apb::NodeRequest {
        node_id: 1,
        ..Default::default()
    })
    .await
    .expect("evacuate accepted");
    let held = wait_for(|led| led == 0, "evacuating").await;
    assert_eq!(held, 16, "node 1 keeps its replicas");
    // The reconcilers' leader balancing must not bring them back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = cluster.status().await.unwrap();
    assert_eq!(held_by(&s, 1).1, 0, "leaderships came back while evacuated");
    assert!(s.nodes.iter().any(|n| n.id == 1 && n.evacuating_leaders));

    a.restore_leaders(apb::NodeRequest {
        node_id: 1,
        ..Default::default()
    })
    .await
    .expect("restore accepted");
    wait_for(|led| led > 0, "restored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_status_shows_progress_and_a_stall_with_its_cause() {
    let mut cluster = LocalCluster::start(ClusterSpec::new(4, 16)).await.unwrap();
    let mut a = admin(&cluster.nodes[0]).await.unwrap().into_stub();
    let status = |stall_after_seconds| apb::RebalanceStatusRequest {
        stall_after_seconds,
    };
    let poll = async |a: &mut cairn_client::AdminStub,
                      what: &str,
                      done: &dyn Fn(&apb::RebalanceStatusResponse) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let r = a.rebalance_status(status(3)).await.unwrap().into_inner();
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "{what}: {r:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    poll(&mut a, "settled", &|r| r.moves_remaining == 0 && !r.stalled).await;

    // Node 3 dies (but stays a placement target) while node 4 drains: the
    // moves that need a replica on node 3 cannot finish.
    cluster.nodes[2].kill();
    a.drain_node(apb::NodeRequest {
        node_id: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let stalled = poll(&mut a, "stall", &|r| r.stalled).await;
    assert!(stalled.moves_remaining > 0);
    assert!(stalled.moves_total >= stalled.moves_remaining);
    assert!(
        stalled.stalled_reason.contains("shard"),
        "{}",
        stalled.stalled_reason
    );

    // Node 3 comes back: the drain completes.
    cluster.nodes[2].start_again().unwrap();
    let done = poll(&mut a, "finish", &|r| r.moves_remaining == 0).await;
    assert!(!done.stalled);
    let s = cluster.status().await.unwrap();
    assert_eq!(held_by(&s, 4), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_resumes_after_the_meta_leader_dies_mid_way() {
    let mut cluster = LocalCluster::start(ClusterSpec::new(5, 32)).await.unwrap();
    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    let acked: History = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(client.clone(), "resume", 4, stop.clone(), acked.clone());

    let meta_leader = cluster
        .status()
        .await
        .unwrap()
        .meta
        .expect("meta")
        .leader_id;
    let draining = if meta_leader == 5 { 4 } else { 5 };
    let mut a = admin(&cluster.nodes[(meta_leader - 1) as usize])
        .await
        .unwrap()
        .into_stub();
    a.drain_node(apb::NodeRequest {
        node_id: draining,
        ..Default::default()
    })
    .await
    .expect("drain accepted");
    // The meta leader dies right after recording the drain, and comes back
    // a little later; nothing tells the cluster to carry on.
    let victim = (meta_leader - 1) as usize;
    cluster.nodes[victim].kill();
    let mid = cluster.status().await.unwrap();
    assert!(
        held_by(&mid, draining).0 > 0,
        "the drain finished before the meta leader died; nothing was resumed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[victim].start_again().unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cluster.status().await.unwrap();
        let settled = s
            .shards
            .iter()
            .all(|sh| sh.leader_id != 0 && sh.replicas.len() == 3);
        if settled && held_by(&s, draining) == (0, 0) {
            assert_eq!(state_of(&s, draining), apb::NodeState::Draining as i32);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain did not finish: node {draining} holds {:?}",
            held_by(&s, draining)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let n = w.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "a writer made no progress");
    }
    check_history(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_lifecycle_requests_are_refused_and_change_nothing() {
    let cluster = LocalCluster::start(ClusterSpec::new(3, 8)).await.unwrap();
    let mut a = admin(&cluster.nodes[1]).await.unwrap().into_stub();
    let before = cluster.status().await.unwrap();

    // Draining would leave fewer nodes than RF 3.
    let e = a
        .drain_node(apb::NodeRequest {
            node_id: 3,
            ..Default::default()
        })
        .await
        .expect_err("too few nodes");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_code(&e), "too_few_nodes");
    assert!(
        e.message().contains("replication factor 3"),
        "{}",
        e.message()
    );

    // Removing a node that was never drained.
    let e = a
        .remove_node(apb::NodeRequest {
            node_id: 2,
            ..Default::default()
        })
        .await
        .expect_err("not drained");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_code(&e), "not_drained");

    // Replacing would leave fewer nodes than RF 3, too.
    let e = a
        .replace_node(apb::NodeRequest {
            node_id: 3,
            ..Default::default()
        })
        .await
        .expect_err("too few nodes");
    assert_eq!(error_code(&e), "too_few_nodes");

    // Unknown ids.
    let e = a
        .drain_node(apb::NodeRequest {
            node_id: 42,
            ..Default::default()
        })
        .await
        .expect_err("unknown node");
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Nothing changed: every node active, same replicas.
    let after = cluster.status().await.unwrap();
    for id in 1..=3 {
        assert_eq!(state_of(&after, id), apb::NodeState::Active as i32);
        assert_eq!(held_by(&after, id).0, held_by(&before, id).0);
    }
    assert_eq!(
        before.cluster.map(|c| c.placement_epoch),
        after.cluster.map(|c| c.placement_epoch),
        "a refused request wrote to the meta group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_can_be_paused_cancelled_and_resumed() {
    // Snapshots are throttled and logs compacted early, so copying a shard
    // to a new replica takes seconds and moves can be caught in flight.
    let mut spec = ClusterSpec::new(3, 16);
    spec.args.extend(
        [
            "--raft-snapshot-logs",
            "20",
            "--rebalance-rate-bytes",
            "262144",
        ]
        .map(String::from),
    );
    let mut cluster = LocalCluster::start(spec).await.unwrap();
    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    let value = vec![b'x'; 8 << 10];
    for i in 0..1600 {
        client
            .put(cairn_proto::kv::v1::PutRequest {
                key: format!("key-{i}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .expect("load");
    }
    let mut a = admin(&cluster.nodes[0]).await.unwrap().into_stub();
    let status = async |a: &mut cairn_client::AdminStub| {
        a.rebalance_status(apb::RebalanceStatusRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    let paused = a
        .pause_rebalance(apb::PauseRebalanceRequest { paused: true })
        .await
        .expect("pause")
        .into_inner();
    assert!(paused.paused);

    // Paused: a new node gets nothing, and the status says why.
    cluster.add_node().unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let s = cluster.status().await.unwrap();
        assert_eq!(held_by(&s, 4).0, 0, "a paused plan moved a replica");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = status(&mut a).await;
    assert!(r.paused && r.moves_remaining > 0, "{r:?}");

    // Resumed: moves start; cancelled while some are in flight, those
    // shards keep the replicas they had and the learners go away.
    a.pause_rebalance(apb::PauseRebalanceRequest { paused: false })
        .await
        .expect("resume");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = status(&mut a).await;
        if r.moves_in_flight > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no move started: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = a
        .cancel_rebalance(apb::CancelRebalanceRequest {})
        .await
        .expect("cancel")
        .into_inner();
    assert!(c.paused);
    let deadline = Instant::now() + Duration::from_secs(60);
    let kept = loop {
        let s = cluster.status().await.unwrap();
        let learners = s
            .shards
            .iter()
            .flat_map(|s| &s.replicas)
            .filter(|r| !r.voter)
            .count();
        if learners == 0 && s.shards.iter().all(|s| s.leader_id != 0) {
            break held_by(&s, 4).0;
        }
        assert!(Instant::now() < deadline, "learners stayed after a cancel");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        kept < 12,
        "the cancel came after the whole rebalance ({kept})"
    );
    let r = status(&mut a).await;
    assert!(r.paused && r.moves_in_flight == 0, "{r:?}");

    // Resumed again: the rebalance finishes and every node holds its share.
    a.pause_rebalance(apb::PauseRebalanceRequest { paused: false })
        .await
        .expect("resume");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = cluster.status().await.unwrap();
        let counts: Vec<usize> = (1..=4).map(|id| held_by(&s, id).0).collect();
        if counts.iter().all(|&c| c == 12) {
            break;
        }
        assert!(Instant::now() < deadline, "not balanced: {counts:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Leaderships settle last.
    let r = loop {
        let r = status(&mut a).await;
        if r.moves_remaining == 0 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "leaderships did not settle: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(!r.paused, "{r:?}");
    assert!(r.bytes_moved > 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_without_room_on_the_other_nodes_is_refused() {
    // Every node may hold 2 MB; each ends up with about 3 MiB.
    let mut spec = ClusterSpec::new(4, 8);
    spec.args
        .extend(["--capacity-bytes", "2000000"].map(String::from));
    let cluster = LocalCluster::start(spec).await.unwrap();
    let client = Client::connect(&cluster.endpoints()).await.unwrap();
    let value = vec![b'v'; 4 << 10];
    for i in 0..1000 {
        client
            .put(cairn_proto::kv::v1::PutRequest {
                key: format!("key-{i}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            })
            .await
            .expect("load");
    }
    let mut a = admin(&cluster.nodes[0]).await.unwrap().into_stub();
    let err = a
        .drain_node(apb::NodeRequest {
            node_id: 4,
            ..Default::default()
        })
        .await
        .expect_err("no room for node 4's data");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_code(&err), "not_enough_capacity", "{err:?}");
    assert!(err.message().contains("MiB"), "{}", err.message());
    let s = cluster.status().await.unwrap();
    assert_eq!(state_of(&s, 4), apb::NodeState::Active as i32);
}
