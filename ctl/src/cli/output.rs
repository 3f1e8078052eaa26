//! What `cairnctl` prints: the `--json` objects and the human-readable lines.
//!
//! JSON carries keys and values as UTF-8 strings when they are valid UTF-8;
//! otherwise the object gets `"encoding": "base64"` and both are base64
//! (standard alphabet, padded), so binary data round-trips exactly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_client::pb;
use serde::Serialize;

/// A key-value in `--json` output.
#[derive(Debug, Serialize)]
pub struct KvJson {
    key: String,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
    expires_at_ms: u64,
}

/// `put` in `--json` output.
#[derive(Debug, Serialize)]
pub struct PutJson {
    revision: u64,
    created: bool,
    version: u64,
    create_revision: u64,
    mod_revision: u64,
}

/// `update` in `--json` output: like `put`, without `created`.
#[derive(Debug, Serialize)]
pub struct UpdateJson {
    revision: u64,
    version: u64,
    create_revision: u64,
    mod_revision: u64,
}

/// `delete` in `--json` output (only printed when the key existed).
#[derive(Debug, Serialize)]
pub struct DeleteJson {
    revision: u64,
    deleted: bool,
}

/// `scan` in `--json` output.
#[derive(Debug, Serialize)]
pub struct ScanJson {
    kvs: Vec<KvJson>,
    revision: u64,
}

/// `batch` in `--json` output.
#[derive(Debug, Serialize)]
pub struct BatchJson {
    revision: u64,
    results: Vec<OpResultJson>,
}

/// `txn` in `--json` output.
#[derive(Debug, Serialize)]
pub struct TxnJson {
    succeeded: bool,
    revision: u64,
    results: Vec<OpResultJson>,
}

/// The result of one op of a batch or txn, tagged by `"op"`.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpResultJson {
    /// A put; `key` is the key the op named.
    Put {
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
        created: bool,
        version: u64,
        create_revision: u64,
        mod_revision: u64,
    },
    /// An update.
    Update {
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
        version: u64,
        create_revision: u64,
        mod_revision: u64,
    },
    /// A delete.
    Delete {
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
        existed: bool,
    },
    /// A get (txn only); `kv` is absent when the key was not found.
    Get {
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
        found: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        kv: Option<KvJson>,
    },
}

/// The `--json` form of a key-value.
pub fn kv_json(kv: &pb::KeyValue) -> KvJson {
    let (key, value, encoding) =
        match (std::str::from_utf8(&kv.key), std::str::from_utf8(&kv.value)) {
            (Ok(key), Ok(value)) => (key.to_string(), value.to_string(), None),
            _ => (
                BASE64.encode(&kv.key),
                BASE64.encode(&kv.value),
                Some("base64"),
            ),
        };
    KvJson {
        key,
        value,
        encoding,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        expires_at_ms: kv.expires_at_ms,
    }
}

/// A lone key as a JSON string, base64 (with the encoding name) if binary.
fn key_json(key: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(key) {
        Ok(key) => (key.to_string(), None),
        Err(_) => (BASE64.encode(key), Some("base64")),
    }
}

/// The revision a response reflects (0 if the server sent no header).
pub fn revision(header: Option<&pb::ResponseHeader>) -> u64 {
    header.map_or(0, |h| h.revision)
}

/// The `--json` form of a put.
pub fn put_json(response: &pb::PutResponse) -> PutJson {
    let kv = response.kv.clone().unwrap_or_default();
    PutJson {
        revision: revision(response.header.as_ref()),
        created: response.created,
        version: kv.version,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

/// The `--json` form of an update.
pub fn update_json(response: &pb::UpdateResponse) -> UpdateJson {
    let kv = response.kv.clone().unwrap_or_default();
    UpdateJson {
        revision: revision(response.header.as_ref()),
        version: kv.version,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

/// The `--json` form of a successful delete.
pub fn delete_json(response: &pb::DeleteResponse) -> DeleteJson {
    DeleteJson {
        revision: revision(response.header.as_ref()),
        deleted: response.existed,
    }
}

/// The `--json` form of a (possibly multi-page) scan.
pub fn scan_json(kvs: &[pb::KeyValue], revision: u64) -> ScanJson {
    ScanJson {
        kvs: kvs.iter().map(kv_json).collect(),
        revision,
    }
}

/// `OK revision=R version=V`, the human output of `put` and `update`.
pub fn write_human(revision: u64, kv: Option<&pb::KeyValue>) -> String {
    format!(
        "OK revision={revision} version={}\n",
        kv.map_or(0, |kv| kv.version)
    )
}

/// One `key<TAB>value` line of `scan` (just the key with `keys_only`),
/// lossily decoded as UTF-8.
pub fn scan_line(kv: &pb::KeyValue, keys_only: bool) -> String {
    let key = String::from_utf8_lossy(&kv.key);
    if keys_only {
        format!("{key}\n")
    } else {
        format!("{key}\t{}\n", String::from_utf8_lossy(&kv.value))
    }
}

/// The outcome of one op, whichever oneof it came from.
enum Outcome<'a> {
    Put(&'a pb::PutResponse),
    Update(&'a pb::UpdateResponse),
    Delete(&'a pb::DeleteResponse),
    Get(&'a pb::GetResponse),
    /// The server sent a result without a value.
    Empty,
}

fn write_outcome(result: &pb::WriteResult) -> Outcome<'_> {
    use pb::write_result::Result as R;
    match &result.result {
        Some(R::Put(r)) => Outcome::Put(r),
        Some(R::Update(r)) => Outcome::Update(r),
        Some(R::Delete(r)) => Outcome::Delete(r),
        None => Outcome::Empty,
    }
}

fn txn_outcome(result: &pb::TxnOpResult) -> Outcome<'_> {
    use pb::txn_op_result::Result as R;
    match &result.result {
        Some(R::Put(r)) => Outcome::Put(r),
        Some(R::Update(r)) => Outcome::Update(r),
        Some(R::Delete(r)) => Outcome::Delete(r),
        Some(R::Get(r)) => Outcome::Get(r),
        None => Outcome::Empty,
    }
}

fn write_op_key(op: &pb::WriteOp) -> &[u8] {
    use pb::write_op::Op;
    match &op.op {
        Some(Op::Put(p)) => &p.key,
        Some(Op::Update(u)) => &u.key,
        Some(Op::Delete(d)) => &d.key,
        None => &[],
    }
}

fn txn_op_key(op: &pb::TxnOp) -> &[u8] {
    use pb::txn_op::Op;
    match &op.op {
        Some(Op::Put(p)) => &p.key,
        Some(Op::Update(u)) => &u.key,
        Some(Op::Delete(d)) => &d.key,
        Some(Op::Get(g)) => &g.key,
        None => &[],
    }
}

fn outcome_json(key: &[u8], outcome: Outcome<'_>) -> Option<OpResultJson> {
    let (key, encoding) = key_json(key);
    let meta = |kv: Option<&pb::KeyValue>| {
        let kv = kv.cloned().unwrap_or_default();
        (kv.version, kv.create_revision, kv.mod_revision)
    };
    Some(match outcome {
        Outcome::Put(r) => {
            let (version, create_revision, mod_revision) = meta(r.kv.as_ref());
            OpResultJson::Put {
                key,
                encoding,
                created: r.created,
                version,
                create_revision,
                mod_revision,
            }
        }
        Outcome::Update(r) => {
            let (version, create_revision, mod_revision) = meta(r.kv.as_ref());
            OpResultJson::Update {
                key,
                encoding,
                version,
                create_revision,
                mod_revision,
            }
        }
        Outcome::Delete(r) => OpResultJson::Delete {
            key,
            encoding,
            existed: r.existed,
        },
        Outcome::Get(r) => OpResultJson::Get {
            key,
            encoding,
            found: r.kv.is_some(),
            kv: r.kv.as_ref().map(kv_json),
        },
        Outcome::Empty => return None,
    })
}

fn outcome_human(key: &[u8], outcome: Outcome<'_>) -> Option<String> {
    let key = String::from_utf8_lossy(key);
    let version = |kv: Option<&pb::KeyValue>| kv.map_or(0, |kv| kv.version);
    Some(match outcome {
        Outcome::Put(r) => {
            format!(
                "put {key} created={} version={}\n",
                r.created,
                version(r.kv.as_ref())
            )
        }
        Outcome::Update(r) => format!("update {key} version={}\n", version(r.kv.as_ref())),
        Outcome::Delete(r) => format!("delete {key} existed={}\n", r.existed),
        Outcome::Get(r) => match &r.kv {
            Some(kv) => format!(
                "get {key} found=true value={}\n",
                String::from_utf8_lossy(&kv.value)
            ),
            None => format!("get {key} found=false\n"),
        },
        Outcome::Empty => return None,
    })
}

/// The `--json` form of a batch, pairing each result with its op's key.
pub fn batch_json(request: &pb::BatchRequest, response: &pb::BatchResponse) -> BatchJson {
    let results = request
        .ops
        .iter()
        .zip(&response.results)
        .filter_map(|(op, result)| outcome_json(write_op_key(op), write_outcome(result)))
        .collect();
    BatchJson {
        revision: revision(response.header.as_ref()),
        results,
    }
}

/// `OK revision=R ops=N`, the human output of `batch`.
pub fn batch_human(response: &pb::BatchResponse) -> String {
    format!(
        "OK revision={} ops={}\n",
        revision(response.header.as_ref()),
        response.results.len()
    )
}

/// The ops of the branch a txn ran.
fn txn_branch<'a>(request: &'a pb::TxnRequest, response: &pb::TxnResponse) -> &'a [pb::TxnOp] {
    if response.succeeded {
        &request.success
    } else {
        &request.failure
    }
}

/// The `--json` form of a txn, pairing results with the ops of the branch
/// that ran.
pub fn txn_json(request: &pb::TxnRequest, response: &pb::TxnResponse) -> TxnJson {
    let results = txn_branch(request, response)
        .iter()
        .zip(&response.results)
        .filter_map(|(op, result)| outcome_json(txn_op_key(op), txn_outcome(result)))
        .collect();
    TxnJson {
        succeeded: response.succeeded,
        revision: revision(response.header.as_ref()),
        results,
    }
}

/// `succeeded=BOOL revision=R` followed by one line per op of the branch
/// that ran, the human output of `txn`.
pub fn txn_human(request: &pb::TxnRequest, response: &pb::TxnResponse) -> String {
    let mut text = format!(
        "succeeded={} revision={}\n",
        response.succeeded,
        revision(response.header.as_ref())
    );
    for (op, result) in txn_branch(request, response).iter().zip(&response.results) {
        if let Some(line) = outcome_human(txn_op_key(op), txn_outcome(result)) {
            text.push_str(&line);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(key: &[u8], value: &[u8]) -> pb::KeyValue {
        pb::KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            expires_at_ms: 1_700_000_000_000,
        }
    }

    fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_default()
    }

    #[test]
    fn utf8_key_value_is_printed_as_plain_strings() {
        assert_eq!(
            to_value(&kv_json(&kv("clé".as_bytes(), b"hello"))),
            json!({
                "key": "clé",
                "value": "hello",
                "create_revision": 3,
                "mod_revision": 7,
                "version": 2,
                "expires_at_ms": 1_700_000_000_000u64,
            })
        );
    }

    #[test]
    fn binary_value_base64_encodes_key_and_value() {
        assert_eq!(
            to_value(&kv_json(&kv(b"k", &[0xff, 0x00, 0x01]))),
            json!({
                "key": "aw==",
                "value": "/wAB",
                "encoding": "base64",
                "create_revision": 3,
                "mod_revision": 7,
                "version": 2,
                "expires_at_ms": 1_700_000_000_000u64,
            })
        );
    }

    #[test]
    fn binary_key_base64_encodes_key_and_value() {
        let shown = to_value(&kv_json(&kv(&[0xc3, 0x28], b"v")));
        assert_eq!(shown["key"], "wyg=");
        assert_eq!(shown["value"], "dg==");
        assert_eq!(shown["encoding"], "base64");
    }

    #[test]
    fn kv_json_fields_come_in_documented_order() {
        let text = serde_json::to_string(&kv_json(&kv(b"k", b"v"))).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"key":"k","value":"v","create_revision":3,"mod_revision":7,"version":2,"expires_at_ms":1700000000000}"#
        );
    }

    #[test]
    fn put_json_reports_revision_creation_and_metadata() {
        let response = pb::PutResponse {
            header: Some(pb::ResponseHeader {
                revision: 7,
                shard: 1,
                node_id: 1,
                leader_id: 1,
            }),
            kv: Some(kv(b"k", b"")),
            created: true,
            previous: None,
        };
        assert_eq!(
            to_value(&put_json(&response)),
            json!({"revision": 7, "created": true, "version": 2, "create_revision": 3, "mod_revision": 7})
        );
    }

    #[test]
    fn missing_header_and_kv_default_to_zero_instead_of_failing() {
        let shown = to_value(&put_json(&pb::PutResponse::default()));
        assert_eq!(shown["revision"], 0);
        assert_eq!(write_human(0, None), "OK revision=0 version=0\n");
    }

    #[test]
    fn scan_json_wraps_kvs_and_revision() {
        assert_eq!(
            to_value(&scan_json(&[kv(b"a", b"1")], 9))["revision"],
            json!(9)
        );
    }

    #[test]
    fn scan_lines_are_tab_separated_and_lossy() {
        assert_eq!(scan_line(&kv(b"a", b"1"), false), "a\t1\n");
        assert_eq!(scan_line(&kv(b"a", b"1"), true), "a\n");
        assert_eq!(scan_line(&kv(b"a", &[0xff]), false), "a\t\u{fffd}\n");
    }

    #[test]
    fn txn_results_are_paired_with_the_branch_that_ran() {
        let request = pb::TxnRequest {
            compares: vec![],
            success: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Delete(pb::DeleteRequest {
                    key: b"s".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Get(pb::GetRequest {
                    key: b"f".to_vec(),
                    read: None,
                })),
            }],
            request_id: Default::default(),
        };
        let response = pb::TxnResponse {
            header: Some(pb::ResponseHeader {
                revision: 4,
                ..Default::default()
            }),
            succeeded: false,
            results: vec![pb::TxnOpResult {
                result: Some(pb::txn_op_result::Result::Get(pb::GetResponse {
                    header: None,
                    kv: Some(kv(b"f", b"x")),
                })),
            }],
        };
        let shown = to_value(&txn_json(&request, &response));
        assert_eq!(shown["succeeded"], false);
        assert_eq!(shown["results"][0]["op"], "get");
        assert_eq!(shown["results"][0]["key"], "f");
        assert_eq!(shown["results"][0]["kv"]["value"], "x");
        assert_eq!(
            txn_human(&request, &response),
            "succeeded=false revision=4\nget f found=true value=x\n"
        );
    }

    #[test]
    fn batch_results_carry_op_keys() {
        let request = pb::BatchRequest {
            ops: vec![pb::WriteOp {
                op: Some(pb::write_op::Op::Delete(pb::DeleteRequest {
                    key: vec![0xff],
                    ..Default::default()
                })),
            }],
            request_id: Default::default(),
        };
        let response = pb::BatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 5,
                ..Default::default()
            }),
            results: vec![pb::WriteResult {
                result: Some(pb::write_result::Result::Delete(pb::DeleteResponse {
                    existed: true,
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(
            to_value(&batch_json(&request, &response)),
            json!({"revision": 5, "results": [{"op": "delete", "key": "/w==", "encoding": "base64", "existed": true}]})
        );
        assert_eq!(batch_human(&response), "OK revision=5 ops=1\n");
    }
}
