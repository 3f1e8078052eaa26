//! One shard's Raft group across three replicas, each with its own RocksDB
//! and its own gRPC server on loopback, talking through the real transport:
//! it elects a leader, replicates a committed write to every replica's data,
//! and when the leader dies the survivors elect a new one and keep accepting
//! writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_node::apply::{Command, CommandOp};
use cairn_node::raft::ShardRequest;
use cairn_node::raft::log_store::ShardLogStore;
use cairn_node::raft::log_writer::LogWriter;
use cairn_node::raft::network::{
    Peers, RaftTransportService, ShardGroups, ShardNetworkFactory, ShardRaftHandle,
};
use cairn_node::raft::state_machine::ShardStateMachine;
use cairn_node::raft::types::EncodedOutput;
use cairn_node::storage::keys::data_key;
use cairn_node::storage::record::Record;
use cairn_node::storage::{CF_DATA, Engine, EngineOptions, SyncMode};
use cairn_proto::kv::v1 as pb;
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::{BasicNode, Raft};

const SHARD: u32 = 9;

struct Replica {
    id: u64,
    addr: String,
    engine: Engine,
    raft: ShardRaftHandle,
    groups: ShardGroups,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// Serves the transport on `listener` until [`Replica::cut`].
    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let groups = self.groups.clone();
        let id = self.id;
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RaftTransportService::new(groups).into_server(id))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
        });
        self.stop = Some(stop);
    }

    /// Stops the transport: the replica keeps running but nobody reaches it.
    fn cut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Serves the transport again on the same address.
    async fn reconnect(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(&self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

fn raft_config() -> openraft::Config {
    openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    }
}

async fn start_replica(id: u64) -> Replica {
    start_replica_with(id, raft_config()).await
}

async fn start_replica_with(id: u64, config: openraft::Config) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&EngineOptions {
        data_dir: dir.path().to_path_buf(),
        block_cache_bytes: 8 << 20,
        row_cache_bytes: 0,
        sync: SyncMode::Fsync,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = config.validate().unwrap();
    let raft = Raft::new(
        id,
        Arc::new(config),
        ShardNetworkFactory::new(SHARD, Peers::default()),
        ShardLogStore::new(
            engine.clone(),
            LogWriter::start(engine.clone()).unwrap(),
            SHARD,
        ),
        ShardStateMachine::new(engine.clone(), SHARD),
    )
    .await
    .unwrap();
    let groups = ShardGroups::default();
    groups.insert(SHARD, raft.clone());
    let mut replica = Replica {
        id,
        addr,
        engine,
        raft,
        groups,
        stop: None,
        _dir: dir,
    };
    replica.serve(listener);
    replica
}

fn put(key: &str, value: &str) -> ShardRequest {
    ShardRequest::from_command(&Command {
        shard: SHARD,
        now_ms: 1_700_000_000_000,
        op: CommandOp::Batch(vec![pb::WriteOp {
            op: Some(pb::write_op::Op::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        }]),
        request_id: Default::default(),
    })
}

fn stored(engine: &Engine, key: &str) -> Option<Vec<u8>> {
    let cf = engine.cf(CF_DATA).unwrap();
    engine
        .db()
        .get_cf(cf, data_key(SHARD, key.as_bytes()))
        .unwrap()
        .map(|b| Record::decode(&b).unwrap().value)
}

async fn wait_for_leader(replicas: &[&Replica], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        for r in replicas {
            leaders.push(r.raft.current_leader().await);
        }
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
            && replicas.iter().any(|r| r.id == *l)
        {
            return *l;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {within:?}: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_stored(replicas: &[&Replica], key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for r in replicas {
        while stored(&r.engine, key).as_deref() != Some(value.as_bytes()) {
            assert!(
                Instant::now() < deadline,
                "replica {} never applied {key}",
                r.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_group_replicates_and_survives_leader_loss() {
    let mut replicas = vec![
        start_replica(1).await,
        start_replica(2).await,
        start_replica(3).await,
    ];
    let members: BTreeMap<u64, BasicNode> = replicas
        .iter()
        .map(|r| (r.id, BasicNode::new(&r.addr)))
        .collect();
    replicas[0].raft.initialize(members).await.unwrap();

    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = wait_for_leader(&all, Duration::from_secs(20)).await;
    let lead = replicas.iter().find(|r| r.id == leader).unwrap();
    let resp = lead.raft.client_write(put("{t}/a", "one")).await.unwrap();
    let out = resp.data.outcome.clone().unwrap().unwrap();
    assert!(matches!(out, EncodedOutput::Batch(_)));
    assert_eq!(resp.data.revision, 1);
    wait_stored(&all, "{t}/a", "one").await;

    // Kill the leader: stop its transport and its Raft instance.
    let idx = replicas.iter().position(|r| r.id == leader).unwrap();
    let mut dead = replicas.remove(idx);
    dead.cut();
    dead.raft.shutdown().await.unwrap();
    let lost_at = Instant::now();

    let survivors: Vec<&Replica> = replicas.iter().collect();
    let new_leader = wait_for_leader(&survivors, Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);
    eprintln!(
        "new leader {new_leader} elected {:?} after the old one stopped",
        lost_at.elapsed()
    );
    let lead = replicas.iter().find(|r| r.id == new_leader).unwrap();
    let resp = lead.raft.client_write(put("{t}/b", "two")).await.unwrap();
    assert_eq!(
        resp.data.revision, 2,
        "revisions continue across the leader change"
    );
    wait_stored(&survivors, "{t}/b", "two").await;
    // The first write is still there on the survivors.
    for r in &survivors {
        assert_eq!(stored(&r.engine, "{t}/a").as_deref(), Some(&b"one"[..]));
    }
    for r in replicas {
        r.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_catches_up_by_snapshot_after_logs_are_purged() {
    let config = || openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..raft_config()
    };
    let mut replicas = Vec::new();
    for id in 1..=3 {
        replicas.push(start_replica_with(id, config()).await);
    }
    let members: BTreeMap<u64, BasicNode> = replicas
        .iter()
        .map(|r| (r.id, BasicNode::new(&r.addr)))
        .collect();
    replicas[0].raft.initialize(members).await.unwrap();
    let leader = wait_for_leader(
        &replicas.iter().collect::<Vec<_>>(),
        Duration::from_secs(20),
    )
    .await;

    // Cut off a follower, then write enough for the others to snapshot and purge.
    let lagging = replicas.iter().position(|r| r.id != leader).unwrap();
    replicas[lagging].cut();
    let lead = replicas.iter().find(|r| r.id == leader).unwrap();
    for i in 0..120 {
        lead.raft
            .client_write(put(&format!("{{t}}/k{i:03}"), &format!("v{i}")))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = lead.raft.metrics().borrow_watched().clone();
        if m.purged.is_some_and(|p| p.index() > 10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader never purged its log: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back on the network, it can only catch up by snapshot.
    replicas[lagging].reconnect().await;
    let caught_up: Vec<&Replica> = vec![&replicas[lagging]];
    wait_stored(&caught_up, "{t}/k119", "v119").await;
    let r = &replicas[lagging];
    let lead = replicas.iter().find(|r| r.id == leader).unwrap();
    for i in 0..120 {
        let k = format!("{{t}}/k{i:03}");
        assert_eq!(
            stored(&r.engine, &k),
            stored(&lead.engine, &k),
            "{k} differs after catch-up"
        );
    }
    let snap = r.raft.metrics().borrow_watched().snapshot;
    assert!(
        snap.is_some(),
        "the replica caught up without installing a snapshot"
    );
    for r in replicas {
        r.raft.shutdown().await.unwrap();
    }
}
