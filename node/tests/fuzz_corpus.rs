//! Replays every committed fuzz input — `fuzz/corpus/<target>/` (the seeds)
//! and `fuzz/regressions/<target>/` (inputs that once crashed) — through
//! the fuzz targets' property functions in `cairn_node::fuzzing`, on the
//! stable toolchain without libFuzzer.
//!
//! The seeds themselves are built here from real encodings;
//! `CAIRN_WRITE_FUZZ_SEEDS=1 cargo nextest run -p cairn-node --test fuzz_corpus`
//! (re)writes them into `fuzz/corpus/`, and without it the test checks that
//! every seed is committed unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cairn_node::apply::dedup::{DedupRecord, EncodedOutput};
use cairn_node::apply::{ApplyError, Command, CommandOp, DueKey, ShardState};
use cairn_node::fuzzing::{HTTP_METHODS, TARGETS};
use cairn_node::raft::log_store::encode;
use cairn_node::raft::snapshot::{DATA_SST, DEDUP_SST, Manifest, SnapshotFile, TTL_SST};
use cairn_node::raft::{ShardRaft, ShardRequest};
use cairn_node::storage::record::{Record, RecordMeta};
use cairn_proto::kv::v1 as pb;
use cairn_proto::raft::v1 as rpb;
use openraft::alias::{EntryOf, SnapshotMetaOf, StoredMembershipOf, VoteOf};
use openraft::entry::EntryPayload;
use openraft::testing::{blank_ent, log_id, membership_ent};
use prost::Message as _;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_holds_its_properties() {
    for (name, property) in TARGETS {
        let mut replayed = 0;
        for sub in ["corpus", "regressions"] {
            for file in files_in(&fuzz_dir().join(sub).join(name)) {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| property(&data));
                assert!(outcome.is_ok(), "{} fails {name}", file.display());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "target {name} has no committed corpus");
    }
}

#[test]
fn seed_corpora_are_committed() {
    let write = std::env::var_os("CAIRN_WRITE_FUZZ_SEEDS").is_some();
    for (target, seeds) in seeds() {
        assert!(
            TARGETS.iter().any(|(n, _)| *n == target),
            "seeds for unknown target {target}"
        );
        let dir = fuzz_dir().join("corpus").join(target);
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else {
                let committed = std::fs::read(&path).unwrap_or_default();
                assert!(
                    committed == bytes,
                    "{} is missing or stale: run with CAIRN_WRITE_FUZZ_SEEDS=1",
                    path.display()
                );
            }
        }
    }
}

type Seeds = Vec<(&'static str, Vec<(String, Vec<u8>)>)>;

fn seeds() -> Seeds {
    vec![
        ("http_gateway", http_seeds()),
        ("kv_command", kv_seeds()),
        ("raft_entry", raft_seeds()),
        ("record_header", record_seeds()),
        ("snapshot_stream", snapshot_seeds()),
        ("config_toml", config_seeds()),
    ]
}

fn http_seed(method: &str, flags: u8, target: &str, if_match: &str, body: &str) -> Vec<u8> {
    let m = HTTP_METHODS.iter().position(|x| *x == method).unwrap() as u8;
    let mut v = vec![m | flags];
    v.extend_from_slice(target.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(if_match.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body.as_bytes());
    v
}

fn http_seeds() -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, &str, u8, &str, &str, &str)] = &[
        ("get", "GET", 0, "/store/hello", "", ""),
        (
            "get-encoded",
            "GET",
            0,
            "/store/a%2Fb%00%FF%20c?consistency=serializable&min_revision=5",
            "",
            "",
        ),
        ("head", "HEAD", 0, "/store/user%2F42", "", ""),
        (
            "put-raw",
            "PUT",
            16,
            "/store/k?ttl_seconds=60&if_absent=true",
            "",
            "value bytes",
        ),
        ("put-if-none-match", "PUT", 8, "/store/k", "", "v"),
        (
            "put-if-match",
            "PUT",
            0,
            "/store/k?keep_ttl=1",
            "\"7\"",
            "v2",
        ),
        ("patch", "PATCH", 0, "/store/k?keep_ttl=true", "", "new"),
        (
            "update",
            "UPDATE",
            0,
            "/store/k?ttl_seconds=5&if_revision=3",
            "",
            "x",
        ),
        ("delete", "DELETE", 0, "/store/k?if_revision=3", "", ""),
        (
            "delete-return-previous",
            "DELETE",
            0,
            "/store/k?return_previous=true",
            "",
            "",
        ),
        (
            "delete-if-match",
            "DELETE",
            16,
            "/store/%7Buser42%7D%2Fa",
            "\"12\"",
            "",
        ),
        ("scan", "GET", 0, "/store?prefix=user/&limit=10", "", ""),
        (
            "scan-b64",
            "GET",
            0,
            "/store?encoding=base64&start=YQ==&end=eg==&keys_only=true&consistency=linearizable",
            "",
            "",
        ),
        (
            "scan-token",
            "HEAD",
            0,
            "/store?page_token=AAECAw&limit=1000",
            "",
            "",
        ),
        (
            "put-json",
            "PUT",
            0,
            "/store",
            "",
            r#"{"key":"greeting","value":"hello","ttl_seconds":30}"#,
        ),
        (
            "put-json-b64",
            "PUT",
            16,
            "/store",
            "",
            r#"{"key":"AP8=","value":"aGVsbG8=","encoding":"base64","if_absent":true}"#,
        ),
        (
            "put-json-rev",
            "PUT",
            0,
            "/store",
            "",
            r#"{"key":"k","value":"v","if_revision":9,"encoding":"utf8"}"#,
        ),
        (
            "put-json-bad",
            "PUT",
            0,
            "/store",
            "",
            r#"{"key":"k","valu":"v"}"#,
        ),
        ("post", "POST", 0, "/store", "", ""),
        ("other", "GET", 0, "/healthz", "", ""),
        (
            "bad-flag",
            "GET",
            0,
            "/store/k?consistency=eventual",
            "",
            "",
        ),
        ("bad-number", "PUT", 0, "/store/k?ttl_seconds=-1", "", "v"),
        (
            "huge-ttl",
            "PUT",
            0,
            "/store/k?ttl_seconds=18446744073709551615",
            "",
            "v",
        ),
    ];
    cases
        .iter()
        .map(|(name, m, f, t, im, b)| (name.to_string(), http_seed(m, *f, t, im, b)))
        .collect()
}

fn put(key: &[u8], value: &[u8], ttl_ms: u64) -> pb::PutRequest {
    pb::PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ttl_ms,
        ..Default::default()
    }
}

fn sample_batch() -> pb::BatchRequest {
    use pb::write_op::Op;
    pb::BatchRequest {
        ops: vec![
            pb::WriteOp {
                op: Some(Op::Put(put(b"{user42}/a", b"1", 0))),
            },
            pb::WriteOp {
                op: Some(Op::Update(pb::UpdateRequest {
                    key: b"{user42}/b".to_vec(),
                    value: b"2".to_vec(),
                    keep_ttl: true,
                    if_mod_revision: Some(4),
                    ..Default::default()
                })),
            },
            pb::WriteOp {
                op: Some(Op::Delete(pb::DeleteRequest {
                    key: b"{user42}/c".to_vec(),
                    return_previous: true,
                    ..Default::default()
                })),
            },
        ],
        request_id: b"batch-1".to_vec(),
    }
}

fn sample_txn() -> pb::TxnRequest {
    use pb::txn_op::Op;
    pb::TxnRequest {
        compares: vec![pb::Compare {
            key: b"{acct}/balance".to_vec(),
            target: pb::compare::Target::Value as i32,
            op: pb::compare::Op::Equal as i32,
            value: b"10".to_vec(),
            ..Default::default()
        }],
        success: vec![
            pb::TxnOp {
                op: Some(Op::Put(put(b"{acct}/balance", b"5", 0))),
            },
            pb::TxnOp {
                op: Some(Op::Get(pb::GetRequest {
                    key: b"{acct}/log".to_vec(),
                    read: None,
                })),
            },
        ],
        failure: vec![pb::TxnOp {
            op: Some(Op::Delete(pb::DeleteRequest {
                key: b"{acct}/lock".to_vec(),
                ..Default::default()
            })),
        }],
        request_id: b"txn-7".to_vec(),
    }
}

fn kv_seeds() -> Vec<(String, Vec<u8>)> {
    let seed = |kind: u8, shape: u8, msg: Vec<u8>| {
        let mut v = vec![kind, shape];
        v.extend(msg);
        v
    };
    let mut out = vec![
        ("put".into(), seed(0, 6, put(b"k", b"v", 0).encode_to_vec())),
        (
            "put-ttl".into(),
            seed(0, 3, {
                let mut p = put(b"session/9", b"token", 60_000);
                p.if_absent = true;
                p.request_id = b"req-1".to_vec();
                p.encode_to_vec()
            }),
        ),
        (
            "put-conflict".into(),
            seed(0, 0, {
                let mut p = put(b"k", b"v", 0);
                p.if_absent = true;
                p.if_mod_revision = Some(3);
                p.encode_to_vec()
            }),
        ),
        (
            "update".into(),
            seed(
                1,
                2,
                pb::UpdateRequest {
                    key: b"k".to_vec(),
                    value: b"new".to_vec(),
                    if_mod_revision: Some(1),
                    return_previous: true,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ),
        (
            "delete".into(),
            seed(
                2,
                4,
                pb::DeleteRequest {
                    key: b"gone".to_vec(),
                    if_mod_revision: Some(0),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ),
        ("batch".into(), seed(3, 6, sample_batch().encode_to_vec())),
        (
            "batch-tight".into(),
            seed(3, 14, sample_batch().encode_to_vec()),
        ),
        (
            "batch-cross-shard".into(),
            seed(3, 6, {
                let mut b = sample_batch();
                b.ops.push(pb::WriteOp {
                    op: Some(pb::write_op::Op::Put(put(b"elsewhere", b"x", 0))),
                });
                b.encode_to_vec()
            }),
        ),
        ("txn".into(), seed(4, 5, sample_txn().encode_to_vec())),
        ("txn-tight".into(), seed(4, 9, sample_txn().encode_to_vec())),
        (
            "txn-bad-compare".into(),
            seed(4, 1, {
                let mut t = sample_txn();
                t.compares[0].op = 99;
                t.encode_to_vec()
            }),
        ),
        ("empty-batch".into(), seed(3, 0, Vec::new())),
    ];
    out.push((
        "huge-ttl".into(),
        seed(0, 0, put(b"k", b"v", u64::MAX).encode_to_vec()),
    ));
    out
}

fn commands() -> Vec<(&'static str, Command)> {
    vec![
        (
            "batch",
            Command {
                shard: 3,
                now_ms: 1_700_000_000_000,
                op: CommandOp::Batch(sample_batch().ops),
                request_id: b"batch-1".to_vec(),
            },
        ),
        (
            "txn",
            Command {
                shard: 3,
                now_ms: 1_700_000_000_500,
                op: CommandOp::Txn(sample_txn()),
                request_id: Vec::new(),
            },
        ),
        (
            "expire",
            Command {
                shard: 3,
                now_ms: 1_700_000_001_000,
                op: CommandOp::Expire(vec![
                    DueKey {
                        key: b"session/1".to_vec(),
                        expires_at_ms: 1_700_000_000_999,
                    },
                    DueKey {
                        key: b"session/2".to_vec(),
                        expires_at_ms: 1_700_000_001_000,
                    },
                ]),
                request_id: Vec::new(),
            },
        ),
    ]
}

fn raft_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    out.push((
        "entry-blank".into(),
        encode(&blank_ent::<ShardRaft>(1, 1, 1)).unwrap(),
    ));
    out.push((
        "entry-membership".into(),
        encode(&membership_ent::<ShardRaft>(
            2,
            1,
            2,
            vec![BTreeSet::from([1, 2, 3])],
        ))
        .unwrap(),
    ));
    for (i, (name, cmd)) in commands().into_iter().enumerate() {
        let req = ShardRequest::from_command(&cmd);
        out.push((format!("command-{name}"), req.command.clone()));
        let entry = EntryOf::<ShardRaft> {
            log_id: log_id::<ShardRaft>(2, 1, 10 + i as u64),
            payload: EntryPayload::Normal(req),
        };
        out.push((format!("entry-{name}"), encode(&entry).unwrap()));
    }
    out.push((
        "vote".into(),
        encode(&VoteOf::<ShardRaft>::new_committed(2, 1)).unwrap(),
    ));
    out.push((
        "vote-uncommitted".into(),
        encode(&VoteOf::<ShardRaft>::new(5, 3)).unwrap(),
    ));
    out.push((
        "committed".into(),
        encode(&Some(log_id::<ShardRaft>(2, 1, 42))).unwrap(),
    ));
    out.push(("committed-none".into(), encode(&None::<u8>).unwrap()));
    out.push(("format-2".into(), vec![2, 0, 0]));
    out
}

fn record_seeds() -> Vec<(String, Vec<u8>)> {
    let rec = |c, m, v, e, value: &[u8]| {
        Record {
            meta: RecordMeta {
                create_revision: c,
                mod_revision: m,
                version: v,
                expires_at_ms: e,
            },
            value: value.to_vec(),
        }
        .encode()
    };
    let mut flagged = rec(1, 1, 1, 0, b"x");
    flagged[1] = 0x80;
    let dedup = |result| {
        DedupRecord {
            applied_at_ms: 1_700_000_000_000,
            fingerprint: 0x1234_5678_9abc_def0,
            revision: 77,
            result,
        }
        .encode()
        .unwrap()
    };
    vec![
        ("record-empty-value".into(), rec(1, 1, 1, 0, b"")),
        ("record".into(), rec(5, 7, 2, 0, b"abc")),
        (
            "record-ttl".into(),
            rec(9, 12, 4, 1_700_000_060_000, b"session"),
        ),
        (
            "record-max".into(),
            rec(u64::MAX, u64::MAX, u64::MAX, u64::MAX, &[0xff; 16]),
        ),
        ("record-flags".into(), flagged),
        ("record-short".into(), rec(1, 1, 1, 0, b"")[..20].to_vec()),
        ("record-format-9".into(), {
            let mut r = rec(1, 1, 1, 0, b"v");
            r[0] = 9;
            r
        }),
        (
            "shard-state".into(),
            ShardState {
                revision: 100,
                clock_ms: 1_700_000_000_000,
                applied_index: 250,
            }
            .encode(),
        ),
        (
            "dedup-refused".into(),
            dedup(Err(ApplyError::NotFound {
                op_index: 0,
                key: b"k".to_vec(),
            })),
        ),
        ("dedup-expired".into(), dedup(Ok(EncodedOutput::Expired(3)))),
    ]
}

fn snapshot_seeds() -> Vec<(String, Vec<u8>)> {
    use rpb::snapshot_chunk::Body;
    const SHARD: u32 = 5;
    let data_sst = b"data file bytes: keys and values of shard 5".repeat(3);
    let ttl_sst = b"ttl index".to_vec();
    let dedup_sst = b"exactly-once records".to_vec();
    let file = |name: &str, bytes: &[u8]| SnapshotFile {
        name: name.to_string(),
        len: bytes.len() as u64,
        xxh3: xxhash_rust::xxh3::xxh3_64(bytes),
    };
    let manifest = |files: Vec<SnapshotFile>| Manifest {
        shard: SHARD,
        shard_state: Some(
            ShardState {
                revision: 12,
                clock_ms: 1_700_000_000_000,
                applied_index: 40,
            }
            .encode(),
        ),
        files,
    };
    let meta = SnapshotMetaOf::<ShardRaft> {
        last_log_id: Some(log_id::<ShardRaft>(2, 1, 40)),
        last_membership: StoredMembershipOf::<ShardRaft>::default(),
    };
    let vote = VoteOf::<ShardRaft>::new_committed(2, 1);
    let header = |m: &Manifest| rpb::SnapshotChunk {
        shard: SHARD,
        body: Some(Body::Header(encode(&(&vote, &meta, m)).unwrap())),
    };
    let piece = |name: &str, offset: u64, data: &[u8]| rpb::SnapshotChunk {
        shard: SHARD,
        body: Some(Body::Piece(rpb::FilePiece {
            name: name.to_string(),
            offset,
            data: data.to_vec(),
        })),
    };
    let done = rpb::SnapshotChunk {
        shard: SHARD,
        body: Some(Body::Done(rpb::SnapshotDone {})),
    };
    let stream = |chunks: &[rpb::SnapshotChunk]| {
        let mut out = Vec::new();
        for c in chunks {
            c.encode_length_delimited(&mut out).unwrap();
        }
        out
    };
    let full = manifest(vec![
        file(DATA_SST, &data_sst),
        file(TTL_SST, &ttl_sst),
        file(DEDUP_SST, &dedup_sst),
    ]);
    let (a, b) = data_sst.split_at(50);
    vec![
        (
            "complete".into(),
            stream(&[
                header(&full),
                piece(DATA_SST, 0, a),
                piece(DATA_SST, 50, b),
                piece(TTL_SST, 0, &ttl_sst),
                piece(DEDUP_SST, 0, &dedup_sst),
                done.clone(),
            ]),
        ),
        (
            "empty-shard".into(),
            stream(&[header(&manifest(Vec::new())), done.clone()]),
        ),
        (
            "short".into(),
            stream(&[header(&full), piece(DATA_SST, 0, a), done.clone()]),
        ),
        (
            "bad-checksum".into(),
            stream(&[
                header(&manifest(vec![file(TTL_SST, b"other")])),
                piece(TTL_SST, 0, b"xxxxx"),
                done.clone(),
            ]),
        ),
        (
            "bad-offset".into(),
            stream(&[header(&full), piece(DATA_SST, 7, a), done.clone()]),
        ),
        (
            "unknown-file".into(),
            stream(&[
                header(&manifest(vec![file("passwd", b"root")])),
                done.clone(),
            ]),
        ),
        (
            "second-header".into(),
            stream(&[header(&full), header(&full)]),
        ),
        (
            "other-shard".into(),
            stream(&[header(&full), {
                let mut p = piece(TTL_SST, 0, &ttl_sst);
                p.shard = 6;
                p
            }]),
        ),
    ]
}

fn config_seeds() -> Vec<(String, Vec<u8>)> {
    let docs = std::fs::read_to_string(fuzz_dir().join("../docs/OPERATIONS.md")).unwrap();
    let example = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap()
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let cases: Vec<(&str, String)> = vec![
        ("operations-example", example),
        ("empty", String::new()),
        (
            "test-file",
            "node-id = 7\nshards = 16\n[limits]\nmax-value-bytes = 1024\n".into(),
        ),
        (
            "cluster-member",
            r#"node-id = 2
data-dir = "/var/lib/cairn"
grpc-addr = "[::]:7000"
http-addr = "0.0.0.0:7001"
metrics-addr = "127.0.0.1:7002"
advertise-addr = "cairn-1.cairn.default.svc:7000"
join = ["cairn-0.cairn.default.svc:7000", "10.0.0.3:7000"]
rack = "zone-a"
weight = 2
capacity-bytes = 107374182400
replication-factor = 3
sync = "buffered"
row-cache-bytes = 0
ttl-reap-interval-ms = 500
shutdown-grace-ms = 10000
log-format = "json"

[raft]
heartbeat-interval-ms = 100
election-timeout-ms = 300
snapshot-logs = 500

[rebalance]
max-moves = 4
rate-bytes-per-sec = 67108864
"#
            .into(),
        ),
        (
            "limits",
            "[limits]\nmax-key-bytes = 512\nmax-value-bytes = 1048576\nmax-batch-ops = 100\nmax-batch-bytes = 4194304\nmax-scan-limit = 500\ndefault-scan-limit = 50\nmax-scan-page-bytes = 65536\nmax-ttl-ms = 86400000\n".into(),
        ),
        ("bootstrap", "bootstrap = true\nshards = 8\nreplication-factor = 1\n".into()),
        ("unknown-key", "nodeid = 7\n".into()),
        ("bad-shards", "shards = 3\n".into()),
        ("bad-addr", "grpc-addr = \"localhost\"\n".into()),
        (
            "extreme",
            "node-id = 9223372036854775807\n[raft]\nheartbeat-interval-ms = 9223372036854775807\nelection-timeout-ms = 9223372036854775807\n".into(),
        ),
    ];
    cases
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.into_bytes()))
        .collect()
}
