//! Property test: random sequences of put / update / delete / batch / txn /
//! TTL (driven by a manual clock) against a real node over gRPC, compared
//! step by step with a simple in-memory model built on a `BTreeMap`.
//!
//! The model restates the documented semantics independently: per-shard
//! revisions bumped once per command that changes a key, etcd-style
//! create/mod revisions and versions, expiry at `now + ttl`, all-or-nothing
//! batches and transactions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cairn_node::clock::ManualClock;
use cairn_node::partition::ShardCount;
use cairn_node::server::{self, Config};
use cairn_proto::kv::v1 as pb;
use cairn_testkit::conformance::{Kv, connect};
use proptest::prelude::*;
use tonic::Code;

const SHARDS: u32 = 4;
const GROUP_KEYS: [&str; 3] = ["{g}/a", "{g}/b", "{g}/c"];
const SOLO_KEYS: [&str; 3] = ["x", "y", "z"];

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: Vec<u8>,
    create: u64,
    modr: u64,
    version: u64,
    exp: u64,
}

#[derive(Debug, Default)]
struct Model {
    revs: HashMap<u32, u64>,
    data: BTreeMap<Vec<u8>, Entry>,
    now: u64,
}

impl Model {
    fn live<'a>(data: &'a BTreeMap<Vec<u8>, Entry>, k: &[u8], now: u64) -> Option<&'a Entry> {
        data.get(k).filter(|e| e.exp == 0 || e.exp > now)
    }

    fn kv(k: &[u8], e: &Entry, with_value: bool) -> pb::KeyValue {
        pb::KeyValue {
            key: k.to_vec(),
            value: if with_value { e.value.clone() } else { vec![] },
            create_revision: e.create,
            mod_revision: e.modr,
            version: e.version,
            expires_at_ms: e.exp,
        }
    }

    /// Applies one command's ops on shard `shard`; returns per-op results as
    /// (meta-kv, created/existed flag, get result) or the refusal code.
    fn command(
        &mut self,
        shard: u32,
        ops: &[pb::txn_op::Op],
    ) -> Result<Vec<(Option<pb::KeyValue>, bool)>, Code> {
        use pb::txn_op::Op;
        let rev = self.revs.get(&shard).copied().unwrap_or(0) + 1;
        let now = self.now;
        let mut data = self.data.clone();
        let mut wrote = false;
        let mut out = vec![];
        for op in ops {
            match op {
                Op::Put(p) => {
                    let live = Self::live(&data, &p.key, now).cloned();
                    if p.if_absent && live.is_some() {
                        return Err(Code::FailedPrecondition);
                    }
                    if let Some(want) = p.if_mod_revision
                        && live.as_ref().map_or(0, |e| e.modr) != want
                    {
                        return Err(Code::FailedPrecondition);
                    }
                    let e = write_entry(live.as_ref(), &p.value, p.ttl_ms, p.keep_ttl, rev, now);
                    out.push((Some(Self::kv(&p.key, &e, false)), live.is_none()));
                    data.insert(p.key.clone(), e);
                    wrote = true;
                }
                Op::Update(u) => {
                    let Some(live) = Self::live(&data, &u.key, now).cloned() else {
                        return Err(Code::NotFound);
                    };
                    if let Some(want) = u.if_mod_revision
                        && live.modr != want
                    {
                        return Err(Code::FailedPrecondition);
                    }
                    let e = write_entry(Some(&live), &u.value, u.ttl_ms, u.keep_ttl, rev, now);
                    out.push((Some(Self::kv(&u.key, &e, false)), false));
                    data.insert(u.key.clone(), e);
                    wrote = true;
                }
                Op::Delete(d) => {
                    let live = Self::live(&data, &d.key, now).cloned();
                    if let Some(want) = d.if_mod_revision
                        && live.as_ref().map_or(0, |e| e.modr) != want
                    {
                        return Err(Code::FailedPrecondition);
                    }
                    data.remove(&d.key);
                    wrote |= live.is_some();
                    out.push((None, live.is_some()));
                }
                Op::Get(g) => {
                    let live = Self::live(&data, &g.key, now).map(|e| Self::kv(&g.key, e, true));
                    out.push((live, false));
                }
            }
        }
        self.data = data;
        if wrote {
            self.revs.insert(shard, rev);
        }
        Ok(out)
    }
}

fn write_entry(
    old: Option<&Entry>,
    value: &[u8],
    ttl_ms: u64,
    keep_ttl: bool,
    rev: u64,
    now: u64,
) -> Entry {
    Entry {
        value: value.to_vec(),
        create: old.map_or(rev, |e| e.create),
        modr: rev,
        version: old.map_or(1, |e| e.version + 1),
        exp: if keep_ttl {
            old.map_or(0, |e| e.exp)
        } else if ttl_ms > 0 {
            now + ttl_ms
        } else {
            0
        },
    }
}

/// How a generated op picks its revision condition.
#[derive(Debug, Clone)]
enum RevCond {
    None,
    Current,
    Zero,
    Stale,
}

#[derive(Debug, Clone)]
enum Step {
    Put {
        key: usize,
        value: u8,
        ttl: u64,
        keep_ttl: bool,
        if_absent: bool,
        cond: RevCond,
    },
    Update {
        key: usize,
        value: u8,
        ttl: u64,
        cond: RevCond,
    },
    Delete {
        key: usize,
        cond: RevCond,
    },
    Get {
        key: usize,
    },
    Batch(Vec<(u8, usize, u8)>),
    Txn {
        key: usize,
        target: i32,
        number: u64,
        success: Vec<(u8, usize, u8)>,
        failure: Vec<(u8, usize, u8)>,
    },
    Advance(u64),
    Scan,
}

fn cond() -> impl Strategy<Value = RevCond> {
    prop_oneof![4 => Just(RevCond::None), 2 => Just(RevCond::Current), 1 => Just(RevCond::Zero), 1 => Just(RevCond::Stale)]
}

fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 1 => 1u64..3000]
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..6usize;
    let group_op = (0u8..4, 0..3usize, any::<u8>());
    prop_oneof![
        5 => (key.clone(), any::<u8>(), ttl(), any::<bool>(), prop::bool::weighted(0.2), cond())
            .prop_map(|(key, value, ttl, keep_ttl, if_absent, cond)| Step::Put { key, value, ttl, keep_ttl, if_absent, cond }),
        2 => (key.clone(), any::<u8>(), ttl(), cond()).prop_map(|(key, value, ttl, cond)| Step::Update { key, value, ttl, cond }),
        2 => (key.clone(), cond()).prop_map(|(key, cond)| Step::Delete { key, cond }),
        2 => key.clone().prop_map(|key| Step::Get { key }),
        2 => prop::collection::vec(group_op.clone(), 1..5).prop_map(Step::Batch),
        2 => (0..3usize, 0i32..5, 0u64..4, prop::collection::vec(group_op.clone(), 0..4), prop::collection::vec(group_op, 0..3))
            .prop_map(|(key, target, number, success, failure)| Step::Txn { key, target, number, success, failure }),
        2 => (1u64..2500).prop_map(Step::Advance),
        1 => Just(Step::Scan),
    ]
}

fn key_bytes(i: usize) -> Vec<u8> {
    if i < 3 {
        GROUP_KEYS[i].as_bytes().to_vec()
    } else {
        SOLO_KEYS[i - 3].as_bytes().to_vec()
    }
}

fn rev_for(model: &Model, key: &[u8], c: &RevCond) -> Option<u64> {
    let cur = Model::live(&model.data, key, model.now).map_or(0, |e| e.modr);
    match c {
        RevCond::None => None,
        RevCond::Current => Some(cur),
        RevCond::Zero => Some(0),
        RevCond::Stale => Some(cur + 7),
    }
}

fn group_op(model: &Model, (kind, key, value): (u8, usize, u8)) -> pb::txn_op::Op {
    use pb::txn_op::Op;
    let k = GROUP_KEYS[key].as_bytes().to_vec();
    match kind {
        0 => Op::Put(pb::PutRequest {
            key: k,
            value: vec![value; 3],
            ..Default::default()
        }),
        1 => Op::Update(pb::UpdateRequest {
            key: k,
            value: vec![value; 2],
            ..Default::default()
        }),
        2 => Op::Delete(pb::DeleteRequest {
            if_mod_revision: rev_for(model, &k, &RevCond::None),
            key: k,
            return_previous: false,
            request_id: Default::default(),
        }),
        _ => Op::Get(pb::GetRequest { key: k, read: None }),
    }
}

fn compare_write(label: &str, got_kv: Option<&pb::KeyValue>, want: &pb::KeyValue) {
    let got = got_kv.unwrap_or_else(|| panic!("{label}: no kv in response"));
    assert_eq!(
        (
            got.create_revision,
            got.mod_revision,
            got.version,
            got.expires_at_ms
        ),
        (
            want.create_revision,
            want.mod_revision,
            want.version,
            want.expires_at_ms
        ),
        "{label}"
    );
}

fn check_single(
    label: &str,
    got: Result<(Option<pb::KeyValue>, bool), Code>,
    want: Result<Vec<(Option<pb::KeyValue>, bool)>, Code>,
) {
    match (got, want) {
        (Err(g), Err(w)) => assert_eq!(g, w, "{label}"),
        (Ok((kv, flag)), Ok(mut w)) => {
            let (wkv, wflag) = w.remove(0);
            assert_eq!(flag, wflag, "{label}: created/existed flag");
            if let Some(wkv) = wkv {
                compare_write(label, kv.as_ref(), &wkv);
            }
        }
        (g, w) => panic!("{label}: node {g:?}, model {w:?}"),
    }
}

async fn run_steps(kv: &mut Kv, clock: &ManualClock, steps: &[Step]) {
    use pb::txn_op::Op;
    let shards = ShardCount::new(SHARDS).unwrap();
    let mut model = Model {
        now: clock_now(clock),
        ..Default::default()
    };
    for (n, step) in steps.iter().enumerate() {
        let label = format!("step {n} {step:?}");
        match step {
            Step::Put {
                key,
                value,
                ttl,
                keep_ttl,
                if_absent,
                cond,
            } => {
                let k = key_bytes(*key);
                let req = pb::PutRequest {
                    if_mod_revision: if *if_absent {
                        None
                    } else {
                        rev_for(&model, &k, cond)
                    },
                    key: k.clone(),
                    value: vec![*value; 4],
                    ttl_ms: *ttl,
                    keep_ttl: *keep_ttl,
                    if_absent: *if_absent,
                    return_previous: false,
                    request_id: Default::default(),
                };
                let want = model.command(shards.shard_for_key(&k), &[Op::Put(req.clone())]);
                let got = kv
                    .put(req)
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        (r.kv, r.created)
                    })
                    .map_err(|s| s.code());
                check_single(&label, got, want);
            }
            Step::Update {
                key,
                value,
                ttl,
                cond,
            } => {
                let k = key_bytes(*key);
                let req = pb::UpdateRequest {
                    if_mod_revision: rev_for(&model, &k, cond),
                    key: k.clone(),
                    value: vec![*value; 5],
                    ttl_ms: *ttl,
                    keep_ttl: false,
                    return_previous: false,
                    request_id: Default::default(),
                };
                let want = model.command(shards.shard_for_key(&k), &[Op::Update(req.clone())]);
                let got = kv
                    .update(req)
                    .await
                    .map(|r| (r.into_inner().kv, false))
                    .map_err(|s| s.code());
                check_single(&label, got, want);
            }
            Step::Delete { key, cond } => {
                let k = key_bytes(*key);
                let req = pb::DeleteRequest {
                    if_mod_revision: rev_for(&model, &k, cond),
                    key: k.clone(),
                    return_previous: false,
                    request_id: Default::default(),
                };
                let want = model.command(shards.shard_for_key(&k), &[Op::Delete(req.clone())]);
                let got = kv
                    .delete(req)
                    .await
                    .map(|r| (None, r.into_inner().existed))
                    .map_err(|s| s.code());
                check_single(&label, got, want);
            }
            Step::Get { key } => {
                let k = key_bytes(*key);
                let got = kv
                    .get(pb::GetRequest {
                        key: k.clone(),
                        read: None,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let want = Model::live(&model.data, &k, model.now).map(|e| Model::kv(&k, e, true));
                assert_eq!(got.kv, want, "{label}");
                let shard_rev = model
                    .revs
                    .get(&shards.shard_for_key(&k))
                    .copied()
                    .unwrap_or(0);
                assert_eq!(
                    got.header.unwrap().revision,
                    shard_rev,
                    "{label}: header revision"
                );
            }
            Step::Batch(ops) => {
                let ops: Vec<Op> = ops
                    .iter()
                    .filter(|o| o.0 != 3)
                    .map(|o| group_op(&model, *o))
                    .collect();
                if ops.is_empty() {
                    continue;
                }
                let shard = shards.shard_for_key(GROUP_KEYS[0].as_bytes());
                let want = model.command(shard, &ops);
                let req = pb::BatchRequest {
                    ops: ops
                        .iter()
                        .map(|o| pb::WriteOp {
                            op: Some(match o.clone() {
                                Op::Put(p) => pb::write_op::Op::Put(p),
                                Op::Update(u) => pb::write_op::Op::Update(u),
                                Op::Delete(d) => pb::write_op::Op::Delete(d),
                                Op::Get(_) => unreachable!(),
                            }),
                        })
                        .collect(),
                    request_id: Default::default(),
                };
                match (kv.batch(req).await, want) {
                    (Err(g), Err(w)) => assert_eq!(g.code(), w, "{label}"),
                    (Ok(r), Ok(w)) => {
                        let r = r.into_inner();
                        assert_eq!(
                            r.header.unwrap().revision,
                            model.revs.get(&shard).copied().unwrap_or(0),
                            "{label}"
                        );
                        for (res, (wkv, wflag)) in r.results.iter().zip(w) {
                            match &res.result {
                                Some(pb::write_result::Result::Put(p)) => {
                                    assert_eq!(p.created, wflag, "{label}");
                                    compare_write(&label, p.kv.as_ref(), wkv.as_ref().unwrap());
                                }
                                Some(pb::write_result::Result::Update(u)) => {
                                    compare_write(&label, u.kv.as_ref(), wkv.as_ref().unwrap())
                                }
                                Some(pb::write_result::Result::Delete(d)) => {
                                    assert_eq!(d.existed, wflag, "{label}")
                                }
                                None => panic!("{label}: empty result"),
                            }
                        }
                    }
                    (g, w) => panic!("{label}: node {g:?}, model {w:?}"),
                }
            }
            Step::Txn {
                key,
                target,
                number,
                success,
                failure,
            } => {
                let k = GROUP_KEYS[*key].as_bytes().to_vec();
                let compare = pb::Compare {
                    key: k.clone(),
                    target: *target,
                    op: 0,
                    value: vec![number.to_le_bytes()[0]; 3],
                    number: *number,
                };
                let live = Model::live(&model.data, &k, model.now);
                let holds = match *target {
                    0 => live.map_or(&[][..], |e| &e.value) == compare.value.as_slice(),
                    1 => live.map_or(0, |e| e.version) == *number,
                    2 => live.map_or(0, |e| e.create) == *number,
                    3 => live.map_or(0, |e| e.modr) == *number,
                    _ => u64::from(live.is_some()) == u64::from(*number != 0),
                };
                let s: Vec<Op> = success.iter().map(|o| group_op(&model, *o)).collect();
                let f: Vec<Op> = failure.iter().map(|o| group_op(&model, *o)).collect();
                let branch = if holds { &s } else { &f };
                let shard = shards.shard_for_key(GROUP_KEYS[0].as_bytes());
                let want = model.command(shard, branch);
                let wrap = |ops: &[Op]| {
                    ops.iter()
                        .map(|o| pb::TxnOp {
                            op: Some(o.clone()),
                        })
                        .collect()
                };
                let req = pb::TxnRequest {
                    compares: vec![compare],
                    success: wrap(&s),
                    failure: wrap(&f),
                    request_id: Default::default(),
                };
                match (kv.txn(req).await, want) {
                    (Err(g), Err(w)) => assert_eq!(g.code(), w, "{label}"),
                    (Ok(r), Ok(w)) => {
                        let r = r.into_inner();
                        assert_eq!(r.succeeded, holds, "{label}");
                        for (res, (wkv, _)) in r.results.iter().zip(w) {
                            if let Some(pb::txn_op_result::Result::Get(g)) = &res.result {
                                assert_eq!(g.kv, wkv, "{label}: get inside txn");
                            }
                        }
                    }
                    (g, w) => panic!("{label}: node {g:?}, model {w:?}"),
                }
            }
            Step::Advance(ms) => {
                clock.advance(*ms);
                model.now = clock_now(clock);
            }
            Step::Scan => {
                let got = kv
                    .scan(pb::ScanRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                let want: Vec<pb::KeyValue> = model
                    .data
                    .iter()
                    .filter(|(_, e)| e.exp == 0 || e.exp > model.now)
                    .map(|(k, e)| Model::kv(k, e, true))
                    .collect();
                assert_eq!(got.kvs, want, "{label}");
            }
        }
    }
}

fn clock_now(c: &ManualClock) -> u64 {
    use cairn_node::clock::Clock;
    c.now_ms()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn node_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(1_700_000_000_000));
            let config = Config {
                data_dir: dir.path().join("data"),
                grpc_addr: "127.0.0.1:0".parse().unwrap(),
                http_addr: "127.0.0.1:0".parse().unwrap(),
                metrics_addr: "127.0.0.1:0".parse().unwrap(),
                shards: SHARDS,
                ttl_reap_interval_ms: 20,
                block_cache_bytes: 8 << 20,
                ..Config::default()
            };
            let node = server::start(config, clock.clone()).await.unwrap();
            let mut kv = connect(&format!("http://{}", node.grpc_addr)).await;
            run_steps(&mut kv, &clock, &steps).await;
            node.shutdown().await.unwrap();
        });
    }
}
