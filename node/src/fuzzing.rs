//! Property checks of every decoder that outside input or the disk reaches,
//! one function per fuzz target (`fuzz/fuzz_targets/<name>.rs`). The fuzz
//! targets call them under libFuzzer; `tests/fuzz_corpus.rs` replays every
//! committed corpus and regression input through the same functions on the
//! stable toolchain. Each function panics (an `assert!`) when a property
//! fails; on any other input it returns quietly, whatever the decoder
//! answered — a decoder must give an error, never panic.
//!
//! Not part of the node's API: hidden from the docs, kept public only for
//! the fuzz project and the replay test.

use cairn_proto::kv::v1 as pb;
use cairn_proto::raft::v1 as rpb;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::EntryPayload;
use prost::Message as _;

use crate::api::http::{GatewayRequest, decode_request, store_key};
use crate::apply::dedup::DedupRecord;
use crate::apply::{Command, CommandOp, ShardState};
use crate::kv::Limits;
use crate::kv::command::{Proposal, batch_command, single_command, txn_command};
use crate::partition::ShardCount;
use crate::raft::ShardRaft;
use crate::raft::log_store::{decode, encode};
use crate::raft::snapshot::{Header, Step, StreamCheck};
use crate::raft::types::ShardRequest;
use crate::server::config::Config;
use crate::storage::record::{HEADER_LEN, RECORD_FORMAT_V1, Record, decode_meta};

/// A target's property check: panics when the input breaks a property.
pub type Property = fn(&[u8]);

/// The fuzz targets, by name: each one's corpus is `fuzz/corpus/<name>/`,
/// its crash inputs `fuzz/regressions/<name>/`.
pub const TARGETS: &[(&str, Property)] = &[
    ("http_gateway", http_gateway),
    ("kv_command", kv_command),
    ("raft_entry", raft_entry),
    ("record_header", record_header),
    ("snapshot_stream", snapshot_stream),
    ("config_toml", config_toml),
];

/// HTTP methods the `http_gateway` input's first byte picks from.
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "PUT", "DELETE", "PATCH", "UPDATE", "POST"];

/// The gateway's request decoding (`api::http::decode_request`): path
/// percent-decoding, the query, `If-Match`/`If-None-Match`/`Idempotency-Key`
/// and the `PUT /store` JSON body.
///
/// Input: `flags:u8 ‖ path-and-query ‖ '\n' ‖ If-Match value ‖ '\n' ‖ body`;
/// `flags` picks the method (low 3 bits, [`HTTP_METHODS`]) and sends
/// `If-None-Match: *` (bit 3) and an `Idempotency-Key` (bit 4).
///
/// Properties: decoding errors are client errors (4xx); a `/store/{key}`
/// key is the percent-decoded path, re-encoding it gives the same request;
/// a decoded JSON put re-sent as base64 JSON decodes to the same put.
pub fn http_gateway(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let (Some(target), if_match, body) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let body = body.unwrap_or_default();
    let Ok(method) = http::Method::from_bytes(
        HTTP_METHODS[usize::from(flags & 7) % HTTP_METHODS.len()].as_bytes(),
    ) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    if let Some(v) = if_match.filter(|v| !v.is_empty())
        && let Ok(v) = http::HeaderValue::from_bytes(v)
    {
        headers.insert(http::header::IF_MATCH, v);
    }
    if flags & 8 != 0 {
        headers.insert(
            http::header::IF_NONE_MATCH,
            http::HeaderValue::from_static("*"),
        );
    }
    if flags & 16 != 0 {
        headers.insert(
            "idempotency-key",
            http::HeaderValue::from_static("fuzz-retry-1"),
        );
    }
    let decoded = match decode_request(&method, &uri, &headers, body) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                e.status().is_client_error(),
                "a request the gateway cannot decode is the client's error, got {} ({:?})",
                e.status(),
                e.error()
            );
            return;
        }
    };
    let path = uri.path();
    if let Some(raw) = path.strip_prefix("/store/") {
        let key = store_key(raw);
        let got = match &decoded {
            GatewayRequest::Put { req, .. } => &req.key,
            GatewayRequest::Update(r) => &r.key,
            GatewayRequest::Delete(r) => &r.key,
            GatewayRequest::Get { req, .. } => &req.key,
            GatewayRequest::Scan { .. } => panic!("a keyed path decoded as a scan"),
        };
        assert_eq!(got, &key, "the key is the percent-decoded path");
        // Any byte string survives percent-encoding and decoding.
        let encoded =
            percent_encoding::percent_encode(&key, percent_encoding::NON_ALPHANUMERIC).to_string();
        assert_eq!(store_key(&encoded), key);
        let again = match uri.query() {
            Some(q) => format!("/store/{encoded}?{q}"),
            None => format!("/store/{encoded}"),
        };
        if let Ok(uri2) = http::Uri::try_from(again) {
            match decode_request(&method, &uri2, &headers, body) {
                Ok(d) => assert_eq!(d, decoded, "a re-encoded path decodes the same"),
                Err(e) => panic!("a re-encoded path was refused: {:?}", e.error()),
            }
        }
    }
    if path == "/store"
        && let GatewayRequest::Put { req, .. } = &decoded
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let json = serde_json::json!({
            "key": b64.encode(&req.key),
            "value": b64.encode(&req.value),
            "encoding": "base64",
            "ttl_seconds": req.ttl_ms / 1000,
            "if_absent": req.if_absent,
            "if_revision": req.if_mod_revision,
        });
        let body2 = json.to_string();
        match decode_request(&method, &uri, &headers, body2.as_bytes()) {
            Ok(GatewayRequest::Put { req: req2, .. }) => {
                assert_eq!(&req2, req, "a put re-sent as base64 JSON decodes the same");
            }
            Ok(other) => panic!("a JSON put re-sent decoded as {other:?}"),
            Err(e) => panic!("a JSON put re-sent was refused: {:?}", e.error()),
        }
    }
}

/// Client write requests (protobuf bytes) → state-machine commands
/// (`kv::command`) → the Raft log's `ShardCommand` and back.
///
/// Input: `kind:u8 ‖ shape:u8 ‖ protobuf`; `kind` picks Put, Update,
/// Delete, Batch or Txn, `shape` the shard count (2^(shape & 7)) and, with
/// bit 3, tight limits (so that limit refusals are reached).
///
/// Properties: protobuf decode → encode → decode is stable; an accepted
/// request's keys all map to the proposal's shard, within the limits; its
/// command survives the log encoding unchanged.
pub fn kv_command(data: &[u8]) {
    let [kind, shape, bytes @ ..] = data else {
        return;
    };
    let Ok(shards) = ShardCount::new(1 << (shape & 7)) else {
        return;
    };
    let limits = if shape & 8 != 0 {
        Limits {
            max_key_bytes: 8,
            max_value_bytes: 16,
            max_batch_ops: 4,
            max_batch_bytes: 48,
            max_ttl_ms: 10_000,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    fn stable<M: prost::Message + Default + PartialEq + std::fmt::Debug>(
        bytes: &[u8],
    ) -> Option<M> {
        let m = M::decode(bytes).ok()?;
        let again = M::decode(m.encode_to_vec().as_slice());
        assert!(
            again.as_ref() == Ok(&m),
            "protobuf re-encoding changed {m:?} into {again:?}"
        );
        Some(m)
    }
    use pb::write_op::Op;
    let result = match kind % 5 {
        0 => stable::<pb::PutRequest>(bytes).map(|r| single_command(&limits, shards, Op::Put(r))),
        1 => stable::<pb::UpdateRequest>(bytes)
            .map(|r| single_command(&limits, shards, Op::Update(r))),
        2 => stable::<pb::DeleteRequest>(bytes)
            .map(|r| single_command(&limits, shards, Op::Delete(r))),
        3 => stable::<pb::BatchRequest>(bytes).map(|r| batch_command(&limits, shards, r)),
        _ => stable::<pb::TxnRequest>(bytes).map(|r| txn_command(&limits, shards, r)),
    };
    let Some(result) = result else { return };
    let p: Proposal = match result {
        Ok(p) => p,
        Err(e) => {
            assert!(
                !e.code().as_str().is_empty(),
                "a refusal carries a code: {e}"
            );
            return;
        }
    };
    let keys = command_keys(&p.op);
    assert!(!keys.is_empty(), "an accepted command names keys");
    assert!(keys.len() <= limits.max_batch_ops, "ops within the limit");
    for k in &keys {
        assert!(!k.is_empty() && k.len() <= limits.max_key_bytes);
        assert_eq!(shards.shard_for_key(k), p.shard, "every key in the shard");
    }
    assert!(p.request_id.len() <= crate::apply::dedup::MAX_REQUEST_ID_BYTES);
    let cmd = Command {
        shard: p.shard,
        now_ms: u64::from(*shape) << 40,
        op: p.op,
        request_id: p.request_id,
    };
    shard_command_round_trip(&cmd);
}

/// The keys a command touches, compares and reads included.
fn command_keys(op: &CommandOp) -> Vec<&[u8]> {
    use pb::write_op::Op as W;
    fn write_key(op: &W) -> &[u8] {
        match op {
            W::Put(p) => &p.key,
            W::Update(u) => &u.key,
            W::Delete(d) => &d.key,
        }
    }
    match op {
        CommandOp::Batch(ops) => ops
            .iter()
            .filter_map(|o| o.op.as_ref().map(write_key))
            .collect(),
        CommandOp::Txn(t) => {
            use pb::txn_op::Op as T;
            let ops = t.success.iter().chain(&t.failure).filter_map(|o| {
                Some(match o.op.as_ref()? {
                    T::Put(p) => p.key.as_slice(),
                    T::Update(u) => u.key.as_slice(),
                    T::Delete(d) => d.key.as_slice(),
                    T::Get(g) => g.key.as_slice(),
                })
            });
            t.compares
                .iter()
                .map(|c| c.key.as_slice())
                .chain(ops)
                .collect()
        }
        CommandOp::Expire(keys) => keys.iter().map(|k| k.key.as_slice()).collect(),
    }
}

/// A command encoded for the log decodes to itself.
fn shard_command_round_trip(cmd: &Command) {
    let logged = ShardRequest::from_command(cmd);
    match logged.to_command(cmd.shard) {
        Ok(back) => assert_eq!(&back, cmd, "the log encoding changed the command"),
        Err(e) => panic!("a command's own log encoding was refused: {e}"),
    }
}

/// The Raft records on disk (`raft::log_store::decode`: log entries, the
/// vote, log ids) and the `ShardCommand` inside a log entry
/// (`ShardRequest::to_command`).
///
/// Input: the stored record bytes (`0x01 ‖ postcard(..)`); the same bytes
/// are also read as a bare `ShardCommand`.
///
/// Properties: decode → encode → decode gives the same value; a decoded
/// command re-encoded for the log decodes to the same command.
pub fn raft_entry(data: &[u8]) {
    fn stable<T>(data: &[u8]) -> Option<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let v: T = decode(data).ok()?;
        let bytes = match encode(&v) {
            Ok(b) => b,
            Err(e) => panic!("a decoded record does not encode: {e}"),
        };
        match decode::<T>(&bytes) {
            Ok(again) => assert_eq!(again, v, "raft record round trip"),
            Err(e) => panic!("a re-encoded record does not decode: {e}"),
        }
        Some(v)
    }
    if let Some(entry) = stable::<EntryOf<ShardRaft>>(data)
        && let EntryPayload::Normal(req) = &entry.payload
    {
        shard_command(&req.command);
    }
    stable::<VoteOf<ShardRaft>>(data);
    stable::<Option<LogIdOf<ShardRaft>>>(data);
    shard_command(data);
}

fn shard_command(bytes: &[u8]) {
    let req = ShardRequest {
        command: bytes.to_vec(),
    };
    if let Ok(cmd) = req.to_command(3) {
        shard_command_round_trip(&cmd);
    }
}

/// The storage record decoders (`storage::record`: the value record and
/// its header; the shard state and exactly-once records).
///
/// Properties: the header decoder and the record decoder agree, and accept
/// exactly the inputs of at least [`HEADER_LEN`] bytes with format
/// [`RECORD_FORMAT_V1`]; encode of a decoded record reproduces the input
/// (but for the reserved flags byte, written as 0); the shard state and
/// dedup records round-trip.
pub fn record_header(data: &[u8]) {
    let well_formed = data.len() >= HEADER_LEN && data[0] == RECORD_FORMAT_V1;
    match (decode_meta(data), Record::decode(data)) {
        (Ok(meta), Ok(record)) => {
            assert!(well_formed, "accepted a malformed record header");
            assert_eq!(record.meta, meta);
            assert_eq!(record.value, &data[HEADER_LEN..]);
            let mut expected = data.to_vec();
            expected[1] = 0;
            let encoded = record.encode();
            assert_eq!(encoded, expected, "record encode(decode(x)) == x");
            match Record::decode(&encoded) {
                Ok(again) => assert_eq!(again, record),
                Err(e) => panic!("a re-encoded record does not decode: {e}"),
            }
        }
        (Err(_), Err(_)) => assert!(!well_formed, "refused a well-formed record header"),
        (m, r) => panic!("header and record decoders disagree: {m:?} vs {r:?}"),
    }
    if let Ok(state) = ShardState::decode(data) {
        assert_eq!(state.encode(), data, "shard state encode(decode(x)) == x");
    }
    if let Ok(rec) = DedupRecord::decode(data) {
        let bytes = match rec.encode() {
            Ok(b) => b,
            Err(e) => panic!("a decoded dedup record does not encode: {e}"),
        };
        assert_eq!(bytes[..25], data[..25], "dedup record fixed fields");
        match DedupRecord::decode(&bytes) {
            Ok(again) => assert_eq!(again, rec, "dedup record round trip"),
            Err(e) => panic!("a re-encoded dedup record does not decode: {e}"),
        }
    }
}

/// The snapshot stream receiver (`raft::snapshot::StreamCheck`): the header
/// chunk (postcard vote, meta and manifest) and the pieces after it.
///
/// Input: `SnapshotChunk` protobufs, each length-delimited, as a peer sends
/// them (the header first).
///
/// Properties: an accepted header re-encodes to itself and its manifest
/// passes its check; every accepted piece continues its file where it
/// ended; the stream is accepted as complete exactly when every file
/// reassembled from the accepted pieces has its announced length and xxh3.
pub fn snapshot_stream(data: &[u8]) {
    let mut buf = data;
    let mut next = || rpb::SnapshotChunk::decode_length_delimited(&mut buf).ok();
    let Some(first) = next() else { return };
    let Ok((vote, meta, mut check)) = StreamCheck::start(&first) else {
        return;
    };
    let manifest = check.manifest().clone();
    assert!(manifest.check(first.shard).is_ok());
    let header: Header = (vote, meta, manifest.clone());
    let bytes = match encode(&header) {
        Ok(b) => b,
        Err(e) => panic!("an accepted header does not encode: {e}"),
    };
    match decode::<Header>(&bytes) {
        Ok(again) => assert_eq!(again, header, "snapshot header round trip"),
        Err(e) => panic!("a re-encoded header does not decode: {e}"),
    }
    let mut files: std::collections::HashMap<String, Vec<u8>> = manifest
        .files
        .iter()
        .map(|f| (f.name.clone(), Vec::new()))
        .collect();
    while let Some(chunk) = next() {
        match check.accept(&chunk) {
            Ok(Step::Write(piece)) => {
                let Some(file) = files.get_mut(&piece.name) else {
                    panic!("accepted a piece of unknown file {:?}", piece.name);
                };
                assert_eq!(piece.offset, file.len() as u64, "pieces are contiguous");
                file.extend_from_slice(&piece.data);
            }
            Ok(Step::Done) => {
                let whole = manifest.files.iter().all(|f| {
                    files.get(&f.name).is_some_and(|b| {
                        b.len() as u64 == f.len && xxhash_rust::xxh3::xxh3_64(b) == f.xxh3
                    })
                });
                assert_eq!(
                    check.finish().is_ok(),
                    whole,
                    "a stream is complete exactly when every file is whole"
                );
                return;
            }
            Err(_) => return,
        }
    }
}

/// The config file parser (`Config::from_toml`) and its range check.
///
/// Properties: a parsed config serialises back to TOML that parses to the
/// same config; `validate` answers without panicking.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    let _ = config.validate();
    let back = match toml::to_string(&config) {
        Ok(t) => t,
        Err(e) => panic!("a parsed config does not serialise: {e}"),
    };
    match Config::from_toml(&back) {
        Ok(again) => assert_eq!(again, config, "config TOML round trip"),
        Err(e) => panic!("a serialised config does not parse: {e}\n{back}"),
    }
}
