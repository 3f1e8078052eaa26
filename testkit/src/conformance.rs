//! The KV API conformance suite: every method of `cairn.kv.v1.KV` and every
//! documented error, checked through any front end that implements
//! [`KvApi`] — the raw gRPC stub against any node of any topology, or the
//! smart client. Each check uses keys under its own random prefix, so runs
//! can share a server.

use std::time::{Duration, Instant};

use cairn_proto::kv::v1 as pb;
use pb::kv_client::KvClient;
use tonic::Code;
use tonic::transport::Channel;

pub use crate::kv_api::KvApi;
use crate::unique_prefix;

/// The raw gRPC stub, the suite's reference front end.
pub type Kv = KvClient<Channel>;

/// Connects to `endpoint` (`http://HOST:PORT`).
pub async fn connect(endpoint: &str) -> Kv {
    let ch = Channel::from_shared(endpoint.to_string())
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {endpoint}: {e}"));
    KvClient::new(ch)
        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
}

/// Runs every check of the suite against the gRPC endpoint `endpoint`.
pub async fn run_all(endpoint: &str) {
    let left_out = run_all_with(connect(endpoint).await).await;
    assert!(left_out.is_empty(), "gRPC offers every call: {left_out:?}");
}

/// Runs every check of the suite through `kv`, any front end of the API,
/// and returns the names of the checks left out because the front end's
/// [`KvApi::surface`] lacks the call they are about (none for gRPC). Checks
/// that only touch a missing call in passing run without that part.
pub async fn run_all_with<K: KvApi>(kv: K) -> Vec<&'static str> {
    let surface = kv.surface();
    let mut left_out = Vec::new();
    put_get_and_revisions(kv.clone()).await;
    conditional_puts(kv.clone()).await;
    update_only_if_present(kv.clone()).await;
    delete_reports_existence(kv.clone()).await;
    if surface.batch_get {
        batch_get_in_request_order(kv.clone()).await;
    } else {
        left_out.push("batch_get_in_request_order");
    }
    if surface.batch {
        batch_is_atomic(kv.clone()).await;
    } else {
        left_out.push("batch_is_atomic");
    }
    if surface.txn {
        txn_branches(kv.clone()).await;
    } else {
        left_out.push("txn_branches");
    }
    scan_prefix_range_and_pages(kv.clone()).await;
    ttl_hides_expired_keys(kv.clone()).await;
    read_your_writes_token(kv.clone()).await;
    retried_writes_apply_once(kv.clone()).await;
    limits_and_bad_input(kv).await;
    left_out
}

/// `Put`
pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

/// `Get` with default (linearizable) consistency.
pub fn get(key: impl Into<Vec<u8>>) -> pb::GetRequest {
    pb::GetRequest {
        key: key.into(),
        read: None,
    }
}

/// Reads `key`'s current value, if any.
pub async fn value_of<K: KvApi>(kv: &mut K, key: &[u8]) -> Option<pb::KeyValue> {
    kv.get(get(key.to_vec()))
        .await
        .expect("get")
        .into_inner()
        .kv
}

fn expect_code<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) -> tonic::Status {
    match r {
        Ok(v) => panic!("expected {code:?} ({needle}), got success {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert!(
                s.message().contains(needle),
                "message {:?} should mention {needle:?}",
                s.message()
            );
            s
        }
    }
}

/// Put creates with version 1 and create = mod revision; overwrite keeps
/// create_revision, raises version and mod_revision; Get returns exactly that.
pub async fn put_get_and_revisions<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("put"));
    let r1 = kv.put(put(k.clone(), "v1")).await.unwrap().into_inner();
    let m1 = r1.kv.clone().unwrap();
    assert!(r1.created);
    assert_eq!(m1.version, 1);
    assert_eq!(m1.create_revision, m1.mod_revision);
    assert_eq!(r1.header.as_ref().unwrap().revision, m1.mod_revision);
    let got = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(got.value, b"v1");
    assert_eq!(got.mod_revision, m1.mod_revision);

    let mut p2 = put(k.clone(), "v2");
    p2.return_previous = true;
    let r2 = kv.put(p2).await.unwrap().into_inner();
    let m2 = r2.kv.clone().unwrap();
    assert!(!r2.created);
    assert_eq!(m2.version, 2);
    assert_eq!(m2.create_revision, m1.create_revision);
    assert!(m2.mod_revision > m1.mod_revision);
    assert_eq!(r2.previous.unwrap().value, b"v1");
    let got = kv.get(get(k.clone())).await.unwrap().into_inner();
    assert_eq!(got.kv.as_ref().unwrap().value, b"v2");
    assert!(got.header.unwrap().revision >= m2.mod_revision);

    // Binary keys and empty values are fine.
    let bin = vec![0u8, 255, 10, b'/', 0];
    kv.put(put(bin.clone(), Vec::new())).await.unwrap();
    let got = value_of(&mut kv, &bin).await.unwrap();
    assert_eq!(got.value, b"");
    assert!(
        value_of(&mut kv, format!("{k}-missing").as_bytes())
            .await
            .is_none()
    );
}

/// `if_absent` and `if_mod_revision` refuse with FAILED_PRECONDITION and
/// change nothing; matching conditions write.
pub async fn conditional_puts<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("cond"));
    let mut p = put(k.clone(), "first");
    p.if_absent = true;
    let r = kv.put(p.clone()).await.unwrap().into_inner();
    let rev = r.kv.unwrap().mod_revision;
    p.value = b"second".to_vec();
    expect_code(kv.put(p).await, Code::FailedPrecondition, "already exists");
    let mut p = put(k.clone(), "third");
    p.if_mod_revision = Some(rev + 1000);
    expect_code(
        kv.put(p.clone()).await,
        Code::FailedPrecondition,
        "mod_revision",
    );
    let now = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(
        (now.value.as_slice(), now.mod_revision),
        (&b"first"[..], rev)
    );
    p.if_mod_revision = Some(rev);
    kv.put(p).await.unwrap();
    assert_eq!(
        value_of(&mut kv, k.as_bytes()).await.unwrap().value,
        b"third"
    );
    // if_mod_revision = 0 means "must not exist".
    let mut p = put(format!("{k}-new"), "x");
    p.if_mod_revision = Some(0);
    kv.put(p.clone()).await.unwrap();
    expect_code(kv.put(p).await, Code::FailedPrecondition, "mod_revision");
}

/// `Update` is NOT_FOUND for a missing key and replaces an existing one.
pub async fn update_only_if_present<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("update"));
    let up = |v: &str| pb::UpdateRequest {
        key: k.clone().into_bytes(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    };
    expect_code(kv.update(up("x")).await, Code::NotFound, "not found");
    assert!(
        value_of(&mut kv, k.as_bytes()).await.is_none(),
        "failed update must not create"
    );
    kv.put(put(k.clone(), "a")).await.unwrap();
    let r = kv.update(up("b")).await.unwrap().into_inner();
    assert_eq!(r.kv.unwrap().version, 2);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"b");
}

/// `Delete` reports whether the key existed; conditions are honoured.
pub async fn delete_reports_existence<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("delete"));
    let del = |rev: Option<u64>| pb::DeleteRequest {
        key: k.clone().into_bytes(),
        if_mod_revision: rev,
        return_previous: true,
        request_id: Default::default(),
    };
    let r = kv.delete(del(None)).await.unwrap().into_inner();
    assert!(!r.existed);
    let rev = kv
        .put(put(k.clone(), "v"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap()
        .mod_revision;
    expect_code(
        kv.delete(del(Some(rev + 1))).await,
        Code::FailedPrecondition,
        "mod_revision",
    );
    assert!(value_of(&mut kv, k.as_bytes()).await.is_some());
    let r = kv.delete(del(Some(rev))).await.unwrap().into_inner();
    assert!(r.existed);
    assert_eq!(r.previous.unwrap().value, b"v");
    assert!(value_of(&mut kv, k.as_bytes()).await.is_none());
    // Re-creating starts a new life: version 1, new create_revision.
    let again = kv
        .put(put(k.clone(), "w"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();
    assert_eq!(again.version, 1);
    assert!(again.create_revision > rev);
}

/// `BatchGet` answers in request order, with misses marked.
pub async fn batch_get_in_request_order<K: KvApi>(mut kv: K) {
    let p = unique_prefix("bget");
    for i in 0..5 {
        kv.put(put(format!("{p}/{i}"), format!("v{i}")))
            .await
            .unwrap();
    }
    let keys: Vec<Vec<u8>> = [3, 9, 0, 4, 3]
        .iter()
        .map(|i| format!("{p}/{i}").into_bytes())
        .collect();
    let r = kv
        .batch_get(pb::BatchGetRequest { keys, read: None })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<Option<Vec<u8>>> = r
        .results
        .iter()
        .map(|x| x.found.then(|| x.kv.clone().unwrap().value))
        .collect();
    assert_eq!(
        got,
        vec![
            Some(b"v3".to_vec()),
            None,
            Some(b"v0".to_vec()),
            Some(b"v4".to_vec()),
            Some(b"v3".to_vec())
        ]
    );
}

fn op_put(key: &str, value: &str) -> pb::WriteOp {
    pb::WriteOp {
        op: Some(pb::write_op::Op::Put(put(key, value))),
    }
}

/// `Batch` applies all ops with one revision, or none when any op's
/// condition fails; a batch spanning shards is refused.
pub async fn batch_is_atomic<K: KvApi>(mut kv: K) {
    let tag = unique_prefix("batch");
    let a = format!("{{{tag}}}/a");
    let b = format!("{{{tag}}}/b");
    let c = format!("{{{tag}}}/c");
    let r = kv
        .batch(pb::BatchRequest {
            ops: vec![op_put(&a, "1"), op_put(&b, "2")],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 2);
    let rev = r.header.unwrap().revision;
    for k in [&a, &b] {
        assert_eq!(
            value_of(&mut kv, k.as_bytes()).await.unwrap().mod_revision,
            rev
        );
    }
    // Op 2 fails (update of a missing key): op 0 and 1 must not apply.
    let failing = pb::BatchRequest {
        ops: vec![
            op_put(&a, "changed"),
            pb::WriteOp {
                op: Some(pb::write_op::Op::Delete(pb::DeleteRequest {
                    key: b.clone().into_bytes(),
                    ..Default::default()
                })),
            },
            pb::WriteOp {
                op: Some(pb::write_op::Op::Update(pb::UpdateRequest {
                    key: c.clone().into_bytes(),
                    value: b"x".to_vec(),
                    ..Default::default()
                })),
            },
        ],
        request_id: Default::default(),
    };
    let s = expect_code(kv.batch(failing).await, Code::NotFound, "op 2");
    assert!(s.message().contains("not found"));
    assert_eq!(value_of(&mut kv, a.as_bytes()).await.unwrap().value, b"1");
    assert!(value_of(&mut kv, b.as_bytes()).await.is_some());
    // Keys in different shards (no shared hash tag) are refused.
    let spread: Vec<pb::WriteOp> = (0..64)
        .map(|i| op_put(&format!("{tag}-x{i}"), "v"))
        .collect();
    expect_code(
        kv.batch(pb::BatchRequest {
            ops: spread,
            request_id: Default::default(),
        })
        .await,
        Code::InvalidArgument,
        "hash tag",
    );
    expect_code(
        kv.batch(pb::BatchRequest {
            ops: vec![],
            request_id: Default::default(),
        })
        .await,
        Code::InvalidArgument,
        "no ops",
    );
}

/// `Txn` runs the success branch when all compares hold and the failure
/// branch otherwise; gets inside see the branch's own writes.
pub async fn txn_branches<K: KvApi>(mut kv: K) {
    use pb::compare::{Op, Target};
    let tag = unique_prefix("txn");
    let k = format!("{{{tag}}}/counter");
    let lock = format!("{{{tag}}}/lock");
    let cmp = |target: Target, op: Op, number: u64, value: &[u8]| pb::Compare {
        key: k.clone().into_bytes(),
        target: target as i32,
        op: op as i32,
        value: value.to_vec(),
        number,
    };
    let txn_op_put = |key: &str, v: &str| pb::TxnOp {
        op: Some(pb::txn_op::Op::Put(put(key, v))),
    };
    let txn_get = |key: &str| pb::TxnOp {
        op: Some(pb::txn_op::Op::Get(get(key))),
    };
    // Create only if absent.
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![cmp(Target::Exists, Op::Equal, 0, b"")],
            success: vec![txn_op_put(&k, "1"), txn_op_put(&lock, "held"), txn_get(&k)],
            failure: vec![txn_get(&k)],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    match &r.results[2].result {
        Some(pb::txn_op_result::Result::Get(g)) => assert_eq!(g.kv.as_ref().unwrap().value, b"1"),
        other => panic!("expected get result, got {other:?}"),
    }
    // Same txn again: the key exists now, so the failure branch runs.
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![cmp(Target::Exists, Op::Equal, 0, b"")],
            success: vec![txn_op_put(&k, "WRONG")],
            failure: vec![txn_get(&k)],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeeded);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"1");
    // Value, version and revision compares.
    let cur = value_of(&mut kv, k.as_bytes()).await.unwrap();
    let r = kv
        .txn(pb::TxnRequest {
            compares: vec![
                cmp(Target::Value, Op::Equal, 0, b"1"),
                cmp(Target::Version, Op::Less, 2, b""),
                cmp(Target::ModRevision, Op::Equal, cur.mod_revision, b""),
                cmp(Target::CreateRevision, Op::Greater, 0, b""),
            ],
            success: vec![txn_op_put(&k, "2")],
            failure: vec![],
            request_id: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"2");
    // Cross-shard txns are refused.
    let other = format!("{tag}-elsewhere-{}", rand::random::<u64>());
    let mut spread = vec![];
    for i in 0..64 {
        spread.push(txn_op_put(&format!("{other}{i}"), "v"));
    }
    expect_code(
        kv.txn(pb::TxnRequest {
            compares: vec![],
            success: spread,
            failure: vec![],
            request_id: Default::default(),
        })
        .await,
        Code::InvalidArgument,
        "shard",
    );
}

/// `Scan` returns keys in order by prefix or range, honours limits and
/// keys-only, and pages through everything exactly once.
pub async fn scan_prefix_range_and_pages<K: KvApi>(mut kv: K) {
    let p = unique_prefix("scan");
    let mut expected = Vec::new();
    for i in 0..57 {
        let k = format!("{p}/{i:03}");
        kv.put(put(k.clone(), format!("v{i}"))).await.unwrap();
        expected.push(k);
    }
    // A neighbour that must not appear in the prefix scan.
    kv.put(put(format!("{p}0"), "outside")).await.unwrap();
    let mut seen = Vec::new();
    let mut token = Vec::new();
    let mut pages = 0;
    loop {
        let r = kv
            .scan(pb::ScanRequest {
                prefix: format!("{p}/").into_bytes(),
                limit: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(r.kvs.len() <= 10);
        for kv in &r.kvs {
            let k = String::from_utf8(kv.key.clone()).unwrap();
            let i: usize = k.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(kv.value, format!("v{i}").into_bytes());
            seen.push(k);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
        assert!(pages < 20, "scan does not terminate");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 6);
    // Range [010, 020), keys only.
    let r = kv
        .scan(pb::ScanRequest {
            start: format!("{p}/010").into_bytes(),
            end: format!("{p}/020").into_bytes(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> = r
        .kvs
        .iter()
        .map(|k| String::from_utf8(k.key.clone()).unwrap())
        .collect();
    assert_eq!(keys, expected[10..20].to_vec());
    assert!(r.kvs.iter().all(|k| k.value.is_empty()));
    assert!(r.next_page_token.is_empty());
    expect_code(
        kv.scan(pb::ScanRequest {
            prefix: b"a".to_vec(),
            start: b"b".to_vec(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "prefix",
    );
    expect_code(
        kv.scan(pb::ScanRequest {
            page_token: b"garbage".to_vec(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
}

/// A key with a TTL is readable until it expires and then invisible to
/// every read path; `keep_ttl` keeps the expiry across an overwrite.
pub async fn ttl_hides_expired_keys<K: KvApi>(mut kv: K) {
    let p = unique_prefix("ttl");
    let k = format!("{p}/k");
    let mut req = put(k.clone(), "short-lived");
    // Whole seconds: the HTTP gateway takes ttl_seconds.
    req.ttl_ms = 2000;
    let r = kv.put(req).await.unwrap().into_inner();
    let exp = r.kv.unwrap().expires_at_ms;
    assert!(exp > 0);
    let got = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(got.expires_at_ms, exp);
    let mut keep = put(k.clone(), "still-short-lived");
    keep.keep_ttl = true;
    let r = kv.put(keep).await.unwrap().into_inner();
    assert_eq!(r.kv.unwrap().expires_at_ms, exp);
    let deadline = Instant::now() + Duration::from_secs(30);
    while value_of(&mut kv, k.as_bytes()).await.is_some() {
        assert!(Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scan = kv
        .scan(pb::ScanRequest {
            prefix: p.clone().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(scan.kvs.is_empty(), "expired key visible to scan");
    if kv.surface().batch_get {
        let bg = kv
            .batch_get(pb::BatchGetRequest {
                keys: vec![k.clone().into_bytes()],
                read: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!bg.results[0].found);
    }
    let mut upd = pb::UpdateRequest {
        key: k.clone().into_bytes(),
        value: b"x".to_vec(),
        ..Default::default()
    };
    expect_code(kv.update(upd.clone()).await, Code::NotFound, "not found");
    // An expired key is absent: a new put creates it afresh.
    let created = kv.put(put(k.clone(), "again")).await.unwrap().into_inner();
    assert!(created.created);
    assert_eq!(created.kv.unwrap().version, 1);
    upd.value = b"y".to_vec();
    kv.update(upd).await.unwrap();
}

/// A `min_revision` read succeeds at once for a revision already reached
/// and times out for one far in the future.
pub async fn read_your_writes_token<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("ryw"));
    let rev = kv
        .put(put(k.clone(), "v"))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let r = kv
        .get(pb::GetRequest {
            key: k.clone().into_bytes(),
            read: Some(pb::ReadOptions {
                consistency: pb::Consistency::Serializable as i32,
                min_revision: rev,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.header.unwrap().revision >= rev);
    assert_eq!(r.kv.unwrap().value, b"v");
    let far = kv
        .get(pb::GetRequest {
            key: k.clone().into_bytes(),
            read: Some(pb::ReadOptions {
                consistency: 0,
                min_revision: rev + 1_000_000_000,
            }),
        })
        .await;
    expect_code(far, Code::DeadlineExceeded, "min_revision");
    // A per-shard token cannot bound a read across shards: refused, not a hang.
    let token = Some(pb::ReadOptions {
        consistency: 0,
        min_revision: rev,
    });
    let scan = kv
        .scan(pb::ScanRequest {
            read: token,
            ..Default::default()
        })
        .await;
    expect_code(scan, Code::InvalidArgument, "per-shard");
    if kv.surface().batch_get {
        let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("{k}-{i}").into_bytes()).collect();
        let bg = kv
            .batch_get(pb::BatchGetRequest { keys, read: token })
            .await;
        expect_code(bg, Code::InvalidArgument, "per-shard");
    }
}

/// Every limit is enforced with INVALID_ARGUMENT naming the limit, and a
/// refused request changes nothing.
pub async fn limits_and_bad_input<K: KvApi>(mut kv: K) {
    let p = unique_prefix("limits");
    let sentinel = format!("{p}/sentinel");
    let before = kv
        .put(put(sentinel.clone(), "keep"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();

    expect_code(
        kv.put(put(Vec::new(), "v")).await,
        Code::InvalidArgument,
        "empty",
    );
    expect_code(
        kv.get(get(Vec::new())).await,
        Code::InvalidArgument,
        "empty",
    );
    expect_code(
        kv.put(put(vec![b'k'; 4097], "v")).await,
        Code::InvalidArgument,
        "4096",
    );
    kv.put(put(vec![b'k'; 4096], "v"))
        .await
        .expect("a 4096-byte key is allowed");
    expect_code(
        kv.put(put(sentinel.clone(), vec![0u8; 8 * 1024 * 1024 + 1]))
            .await,
        Code::InvalidArgument,
        "8388608",
    );
    if kv.surface().batch {
        let ops: Vec<pb::WriteOp> = (0..1001)
            .map(|i| op_put(&format!("{{{p}}}/{i}"), "v"))
            .collect();
        expect_code(
            kv.batch(pb::BatchRequest {
                ops,
                request_id: Default::default(),
            })
            .await,
            Code::InvalidArgument,
            "1000",
        );
        let big = vec![0u8; 4 * 1024 * 1024];
        let ops: Vec<pb::WriteOp> = (0..5)
            .map(|i| pb::WriteOp {
                op: Some(pb::write_op::Op::Put(put(
                    format!("{{{p}}}/big{i}"),
                    big.clone(),
                ))),
            })
            .collect();
        expect_code(
            kv.batch(pb::BatchRequest {
                ops,
                request_id: Default::default(),
            })
            .await,
            Code::InvalidArgument,
            "16777216",
        );
        expect_code(
            kv.batch(pb::BatchRequest {
                ops: vec![op_put(&sentinel, "x"), pb::WriteOp { op: None }],
                request_id: Default::default(),
            })
            .await,
            Code::InvalidArgument,
            "op 1",
        );
    }
    expect_code(
        kv.scan(pb::ScanRequest {
            limit: 10_001,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "10000",
    );
    if kv.surface().batch_get {
        let keys: Vec<Vec<u8>> = (0..1001).map(|i| format!("{p}/{i}").into_bytes()).collect();
        let too_many = kv
            .batch_get(pb::BatchGetRequest {
                keys: keys.clone(),
                read: None,
            })
            .await;
        match too_many {
            // A front end that splits BatchGet by shard leader sends parts that
            // are each within the limit: then every key must be answered, in
            // request order (none of them exists).
            Ok(r) if kv.splits_batch_get() => {
                let r = r.into_inner();
                assert_eq!(r.results.len(), keys.len());
                assert!(r.results.iter().all(|x| !x.found && x.kv.is_none()));
            }
            other => {
                expect_code(other, Code::InvalidArgument, "1000");
            }
        }
    }
    let mut both = put(sentinel.clone(), "x");
    both.if_absent = true;
    both.if_mod_revision = Some(5);
    expect_code(kv.put(both).await, Code::InvalidArgument, "if_absent");

    let after = value_of(&mut kv, sentinel.as_bytes()).await.unwrap();
    assert_eq!(after.value, b"keep");
    assert_eq!(after.mod_revision, before.mod_revision);
    assert!(
        value_of(&mut kv, format!("{{{p}}}/0").as_bytes())
            .await
            .is_none()
    );
}

/// A write retried with the same `request_id` returns its original result
/// and applies nothing (revision and version prove it), refusals included;
/// the same id on a different request is refused.
pub async fn retried_writes_apply_once<K: KvApi>(mut kv: K) {
    let tag = unique_prefix("once");
    let k = format!("{{{tag}}}/k");
    let id = |s: &str| format!("{tag}-{s}").into_bytes();

    let mut first = put(k.clone(), "v1");
    first.request_id = id("a");
    let r1 = kv.put(first.clone()).await.unwrap().into_inner();
    let r2 = kv.put(first.clone()).await.unwrap().into_inner();
    assert_eq!(r1.kv, r2.kv, "a retry must return the original result");
    assert!(r2.created);
    let now = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(
        (now.version, now.mod_revision),
        (1, r1.kv.as_ref().unwrap().mod_revision)
    );

    let mut reused = put(k.clone(), "different");
    reused.request_id = id("a");
    expect_code(kv.put(reused).await, Code::AlreadyExists, "already used");

    // A refusal is remembered too: the retry gets the same answer even after
    // the state changed.
    let mut refused = put(k.clone(), "x");
    refused.if_absent = true;
    refused.request_id = id("b");
    expect_code(
        kv.put(refused.clone()).await,
        Code::FailedPrecondition,
        "already exists",
    );
    kv.delete(pb::DeleteRequest {
        key: k.clone().into_bytes(),
        ..Default::default()
    })
    .await
    .unwrap();
    expect_code(
        kv.put(refused).await,
        Code::FailedPrecondition,
        "already exists",
    );
    assert!(value_of(&mut kv, k.as_bytes()).await.is_none());

    // Batches and transactions.
    if kv.surface().batch {
        let batch = pb::BatchRequest {
            ops: vec![op_put(&k, "b1"), op_put(&format!("{{{tag}}}/other"), "b2")],
            request_id: id("c"),
        };
        let b1 = kv.batch(batch.clone()).await.unwrap().into_inner();
        let b2 = kv.batch(batch).await.unwrap().into_inner();
        assert_eq!(
            b1.header.as_ref().unwrap().revision,
            b2.header.as_ref().unwrap().revision
        );
        assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().version, 1);
    } else {
        // The state the batch leaves, for the transaction below.
        kv.put(put(k.clone(), "b1")).await.unwrap();
    }
    if kv.surface().txn {
        let txn = pb::TxnRequest {
            compares: vec![pb::Compare {
                key: k.clone().into_bytes(),
                target: pb::compare::Target::Value as i32,
                op: pb::compare::Op::Equal as i32,
                value: b"b1".to_vec(),
                number: 0,
            }],
            success: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Put(put(k.clone(), "t1"))),
            }],
            failure: vec![],
            request_id: id("d"),
        };
        assert!(kv.txn(txn.clone()).await.unwrap().into_inner().succeeded);
        // Without the id this retry would now take the failure branch.
        assert!(kv.txn(txn).await.unwrap().into_inner().succeeded);
        let after = value_of(&mut kv, k.as_bytes()).await.unwrap();
        assert_eq!((after.value.as_slice(), after.version), (&b"t1"[..], 2));
    }

    let mut long = put(k.clone(), "v");
    long.request_id = vec![b'i'; 65];
    expect_code(kv.put(long).await, Code::InvalidArgument, "64");
}
