//! The JSON formats of `cairnctl batch` and `cairnctl txn` files, and their
//! translation into protobuf requests.
//!
//! Parsing is strict: unknown fields, missing operands and contradictory
//! options are errors, because a silently ignored typo in a transaction is
//! far worse than a rejected file.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_client::pb;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `{"ops": [...]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchFile {
    ops: Vec<WriteOpSpec>,
}

/// `{"compare": [...], "success": [...], "failure": [...]}`; every part is
/// optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnFile {
    #[serde(default)]
    compare: Vec<CompareSpec>,
    #[serde(default)]
    success: Vec<TxnOpSpec>,
    #[serde(default)]
    failure: Vec<TxnOpSpec>,
}

/// A write in a batch: `{"put": {...}}`, `{"update": {...}}` or `{"delete": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum WriteOpSpec {
    Put(PutSpec),
    Update(UpdateSpec),
    Delete(DeleteSpec),
}

/// An operation in a txn branch: the batch writes plus `{"get": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TxnOpSpec {
    Put(PutSpec),
    Update(UpdateSpec),
    Delete(DeleteSpec),
    Get(GetSpec),
}

/// How `key` and `value` strings are to be turned into bytes.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    /// The UTF-8 bytes of the string.
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    /// Standard base64 (with padding), as printed by `--json` for binary data.
    Base64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSpec {
    key: String,
    value: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default, deserialize_with = "ttl")]
    ttl: Option<Duration>,
    #[serde(default)]
    keep_ttl: bool,
    #[serde(default)]
    if_absent: bool,
    #[serde(default)]
    if_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSpec {
    key: String,
    value: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default, deserialize_with = "ttl")]
    ttl: Option<Duration>,
    #[serde(default)]
    keep_ttl: bool,
    #[serde(default)]
    if_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSpec {
    key: String,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    if_revision: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetSpec {
    key: String,
    #[serde(default)]
    encoding: Encoding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareSpec {
    key: String,
    #[serde(default)]
    encoding: Encoding,
    target: TargetSpec,
    op: OpSpec,
    value: Option<String>,
    number: Option<u64>,
    exists: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TargetSpec {
    Value,
    Version,
    CreateRevision,
    ModRevision,
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum OpSpec {
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = "<")]
    Less,
}

/// Parses a batch file into a [`pb::BatchRequest`].
pub fn parse_batch(json: &[u8]) -> anyhow::Result<pb::BatchRequest> {
    let file: BatchFile = serde_json::from_slice(json)?;
    if file.ops.is_empty() {
        bail!("\"ops\" is empty: a batch needs at least one op");
    }
    let ops = file
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| write_op(op).with_context(|| format!("ops[{i}]")))
        .collect::<anyhow::Result<_>>()?;
    Ok(pb::BatchRequest {
        ops,
        request_id: Default::default(),
    })
}

/// Parses a txn file into a [`pb::TxnRequest`].
pub fn parse_txn(json: &[u8]) -> anyhow::Result<pb::TxnRequest> {
    let file: TxnFile = serde_json::from_slice(json)?;
    let compares = file
        .compare
        .into_iter()
        .enumerate()
        .map(|(i, c)| compare(c).with_context(|| format!("compare[{i}]")))
        .collect::<anyhow::Result<_>>()?;
    let branch = |name: &str, ops: Vec<TxnOpSpec>| {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| txn_op(op).with_context(|| format!("{name}[{i}]")))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok(pb::TxnRequest {
        compares,
        success: branch("success", file.success)?,
        failure: branch("failure", file.failure)?,
        request_id: Default::default(),
    })
}

fn write_op(spec: WriteOpSpec) -> anyhow::Result<pb::WriteOp> {
    let op = match spec {
        WriteOpSpec::Put(p) => pb::write_op::Op::Put(put(p).context("put")?),
        WriteOpSpec::Update(u) => pb::write_op::Op::Update(update(u).context("update")?),
        WriteOpSpec::Delete(d) => pb::write_op::Op::Delete(delete(d).context("delete")?),
    };
    Ok(pb::WriteOp { op: Some(op) })
}

fn txn_op(spec: TxnOpSpec) -> anyhow::Result<pb::TxnOp> {
    let op = match spec {
        TxnOpSpec::Put(p) => pb::txn_op::Op::Put(put(p).context("put")?),
        TxnOpSpec::Update(u) => pb::txn_op::Op::Update(update(u).context("update")?),
        TxnOpSpec::Delete(d) => pb::txn_op::Op::Delete(delete(d).context("delete")?),
        TxnOpSpec::Get(g) => pb::txn_op::Op::Get(pb::GetRequest {
            key: decode(g.encoding, g.key).context("key")?,
            read: None,
        }),
    };
    Ok(pb::TxnOp { op: Some(op) })
}

fn put(spec: PutSpec) -> anyhow::Result<pb::PutRequest> {
    Ok(pb::PutRequest {
        key: decode(spec.encoding, spec.key).context("key")?,
        value: decode(spec.encoding, spec.value).context("value")?,
        ttl_ms: ttl_ms(spec.ttl, spec.keep_ttl)?,
        keep_ttl: spec.keep_ttl,
        if_absent: spec.if_absent,
        if_mod_revision: spec.if_revision,
        return_previous: false,
        request_id: Default::default(),
    })
}

fn update(spec: UpdateSpec) -> anyhow::Result<pb::UpdateRequest> {
    Ok(pb::UpdateRequest {
        key: decode(spec.encoding, spec.key).context("key")?,
        value: decode(spec.encoding, spec.value).context("value")?,
        ttl_ms: ttl_ms(spec.ttl, spec.keep_ttl)?,
        keep_ttl: spec.keep_ttl,
        if_mod_revision: spec.if_revision,
        return_previous: false,
        request_id: Default::default(),
    })
}

fn delete(spec: DeleteSpec) -> anyhow::Result<pb::DeleteRequest> {
    Ok(pb::DeleteRequest {
        key: decode(spec.encoding, spec.key).context("key")?,
        if_mod_revision: spec.if_revision,
        return_previous: false,
        request_id: Default::default(),
    })
}

fn compare(spec: CompareSpec) -> anyhow::Result<pb::Compare> {
    use pb::compare::{Op, Target};

    let provided: Vec<&str> = [
        spec.value.as_ref().map(|_| "\"value\""),
        spec.number.map(|_| "\"number\""),
        spec.exists.map(|_| "\"exists\""),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (expected, target) = match spec.target {
        TargetSpec::Value => ("\"value\"", Target::Value),
        TargetSpec::Version => ("\"number\"", Target::Version),
        TargetSpec::CreateRevision => ("\"number\"", Target::CreateRevision),
        TargetSpec::ModRevision => ("\"number\"", Target::ModRevision),
        TargetSpec::Exists => ("\"exists\"", Target::Exists),
    };
    if provided != [expected] {
        bail!(
            "target {:?} takes exactly one operand, {expected}; got {}",
            target.as_str_name().to_ascii_lowercase(),
            if provided.is_empty() {
                "none".to_string()
            } else {
                provided.join(", ")
            }
        );
    }
    if spec.target == TargetSpec::Exists && !matches!(spec.op, OpSpec::Equal | OpSpec::NotEqual) {
        bail!("target \"exists\" only supports \"==\" and \"!=\"");
    }
    let op = match spec.op {
        OpSpec::Equal => Op::Equal,
        OpSpec::NotEqual => Op::NotEqual,
        OpSpec::Greater => Op::Greater,
        OpSpec::Less => Op::Less,
    };
    let value = match spec.value {
        Some(value) => decode(spec.encoding, value).context("value")?,
        None => Vec::new(),
    };
    let number = match spec.exists {
        Some(exists) => u64::from(exists),
        None => spec.number.unwrap_or(0),
    };
    Ok(pb::Compare {
        key: decode(spec.encoding, spec.key).context("key")?,
        target: target.into(),
        op: op.into(),
        value,
        number,
    })
}

/// The bytes a `key`/`value` string stands for.
fn decode(encoding: Encoding, text: String) -> anyhow::Result<Vec<u8>> {
    match encoding {
        Encoding::Utf8 => Ok(text.into_bytes()),
        Encoding::Base64 => BASE64
            .decode(text.as_bytes())
            .map_err(|e| anyhow!("invalid base64: {e}")),
    }
}

/// The `ttl_ms` field for an op.
fn ttl_ms(ttl: Option<Duration>, keep_ttl: bool) -> anyhow::Result<u64> {
    match ttl {
        None => Ok(0),
        Some(_) if keep_ttl => bail!("\"ttl\" and \"keep_ttl\" cannot be combined"),
        Some(ttl) => u64::try_from(ttl.as_millis()).context("\"ttl\" is too large"),
    }
}

/// Deserializes a TTL given as a duration string (`"30s"`) or a number of
/// seconds (`30`); zero is rejected because it would mean "never expires".
fn ttl<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    struct TtlVisitor;

    impl<'de> Visitor<'de> for TtlVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"30s\" or a number of seconds")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            let ttl = cairn_client::duration::parse(text).map_err(E::custom)?;
            positive(ttl)
        }

        fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Self::Value, E> {
            positive(Duration::from_secs(seconds))
        }

        fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Self::Value, E> {
            match u64::try_from(seconds) {
                Ok(seconds) => self.visit_u64(seconds),
                Err(_) => Err(E::custom("a TTL cannot be negative")),
            }
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    fn positive<E: de::Error>(ttl: Duration) -> Result<Option<Duration>, E> {
        if ttl.is_zero() {
            Err(E::custom(
                "a TTL must be greater than zero; omit it for no expiry",
            ))
        } else {
            Ok(Some(ttl))
        }
    }

    deserializer.deserialize_any(TtlVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::compare::{Op, Target};

    fn error_of<T: fmt::Debug>(result: anyhow::Result<T>) -> String {
        match result {
            Ok(value) => panic!("expected an error, got {value:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn batch_file_with_every_write_kind_becomes_a_batch_request() {
        let json = br#"{"ops": [
            {"put": {"key": "k", "value": "v", "ttl": "30s", "if_absent": true, "if_revision": 3}},
            {"update": {"key": "u", "value": "w", "keep_ttl": true}},
            {"delete": {"key": "d", "if_revision": 9}}
        ]}"#;
        let batch = parse_batch(json).expect("valid batch file");
        let expected = vec![
            pb::WriteOp {
                op: Some(pb::write_op::Op::Put(pb::PutRequest {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    ttl_ms: 30_000,
                    keep_ttl: false,
                    if_absent: true,
                    if_mod_revision: Some(3),
                    return_previous: false,
                    request_id: Default::default(),
                })),
            },
            pb::WriteOp {
                op: Some(pb::write_op::Op::Update(pb::UpdateRequest {
                    key: b"u".to_vec(),
                    value: b"w".to_vec(),
                    keep_ttl: true,
                    ..Default::default()
                })),
            },
            pb::WriteOp {
                op: Some(pb::write_op::Op::Delete(pb::DeleteRequest {
                    key: b"d".to_vec(),
                    if_mod_revision: Some(9),
                    return_previous: false,
                    request_id: Default::default(),
                })),
            },
        ];
        assert_eq!(batch.ops, expected);
    }

    #[test]
    fn numeric_ttl_means_seconds() {
        let batch = parse_batch(br#"{"ops": [{"put": {"key": "k", "value": "v", "ttl": 90}}]}"#);
        let ttl = batch
            .ok()
            .and_then(|b| match b.ops.first().and_then(|o| o.op.clone()) {
                Some(pb::write_op::Op::Put(p)) => Some(p.ttl_ms),
                _ => None,
            });
        assert_eq!(ttl, Some(90_000));
    }

    #[test]
    fn base64_encoding_decodes_key_and_value() {
        let batch = parse_batch(
            br#"{"ops": [{"put": {"key": "/wA=", "value": "AAEC", "encoding": "base64"}}]}"#,
        );
        let op = batch
            .ok()
            .and_then(|b| b.ops.into_iter().next())
            .and_then(|o| o.op);
        match op {
            Some(pb::write_op::Op::Put(p)) => {
                assert_eq!(p.key, vec![0xff, 0x00]);
                assert_eq!(p.value, vec![0, 1, 2]);
            }
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn batch_rejects_unknown_fields_in_ops() {
        let err = error_of(parse_batch(
            br#"{"ops": [{"put": {"key": "k", "value": "v", "tll": "5s"}}]}"#,
        ));
        assert!(err.contains("unknown field `tll`"), "{err}");
    }

    #[test]
    fn batch_rejects_unknown_top_level_fields() {
        let err = error_of(parse_batch(
            br#"{"ops": [{"delete": {"key": "k"}}], "atomic": true}"#,
        ));
        assert!(err.contains("unknown field `atomic`"), "{err}");
    }

    #[test]
    fn batch_rejects_unknown_op_kinds_including_get() {
        let err = error_of(parse_batch(br#"{"ops": [{"get": {"key": "k"}}]}"#));
        assert!(err.contains("unknown variant `get`"), "{err}");
    }

    #[test]
    fn batch_rejects_ops_with_two_kinds() {
        let json = br#"{"ops": [{"put": {"key": "k", "value": "v"}, "delete": {"key": "k"}}]}"#;
        assert!(parse_batch(json).is_err());
    }

    #[test]
    fn batch_rejects_missing_required_fields() {
        let err = error_of(parse_batch(br#"{"ops": [{"put": {"key": "k"}}]}"#));
        assert!(err.contains("missing field `value`"), "{err}");
        assert!(parse_batch(br#"{}"#).is_err());
    }

    #[test]
    fn batch_rejects_an_empty_op_list() {
        let err = error_of(parse_batch(br#"{"ops": []}"#));
        assert!(err.contains("at least one op"), "{err}");
    }

    #[test]
    fn batch_rejects_bad_ttls() {
        for ttl in [r#""5 parsecs""#, r#""0s""#, "0", "-5", "1.5", "true"] {
            let json =
                format!(r#"{{"ops": [{{"put": {{"key": "k", "value": "v", "ttl": {ttl}}}}}]}}"#);
            assert!(
                parse_batch(json.as_bytes()).is_err(),
                "ttl {ttl} should be rejected"
            );
        }
    }

    #[test]
    fn batch_rejects_ttl_combined_with_keep_ttl_and_names_the_op() {
        let json = br#"{"ops": [{"delete": {"key": "a"}}, {"update": {"key": "k", "value": "v", "ttl": "5s", "keep_ttl": true}}]}"#;
        let err = error_of(parse_batch(json));
        assert!(err.starts_with("ops[1]: update:"), "{err}");
        assert!(err.contains("keep_ttl"), "{err}");
    }

    #[test]
    fn batch_rejects_invalid_base64() {
        let json = br#"{"ops": [{"delete": {"key": "not base64!", "encoding": "base64"}}]}"#;
        let err = error_of(parse_batch(json));
        assert!(err.contains("ops[0]: delete: key: invalid base64"), "{err}");
    }

    #[test]
    fn batch_rejects_malformed_json() {
        assert!(parse_batch(b"{\"ops\": [").is_err());
        assert!(parse_batch(b"").is_err());
    }

    #[test]
    fn txn_file_with_compares_and_both_branches_becomes_a_txn_request() {
        let json = br#"{
            "compare": [
                {"key": "a", "target": "value", "op": "==", "value": "x"},
                {"key": "b", "target": "version", "op": ">", "number": 2},
                {"key": "c", "target": "create_revision", "op": "<", "number": 5},
                {"key": "d", "target": "mod_revision", "op": "!=", "number": 7},
                {"key": "e", "target": "exists", "op": "==", "exists": false}
            ],
            "success": [{"put": {"key": "a", "value": "y"}}, {"get": {"key": "b"}}],
            "failure": [{"get": {"key": "a"}}]
        }"#;
        let txn = parse_txn(json).expect("valid txn file");
        let compare = |key: &[u8], target: Target, op: Op, value: &[u8], number: u64| pb::Compare {
            key: key.to_vec(),
            target: target.into(),
            op: op.into(),
            value: value.to_vec(),
            number,
        };
        assert_eq!(
            txn.compares,
            vec![
                compare(b"a", Target::Value, Op::Equal, b"x", 0),
                compare(b"b", Target::Version, Op::Greater, b"", 2),
                compare(b"c", Target::CreateRevision, Op::Less, b"", 5),
                compare(b"d", Target::ModRevision, Op::NotEqual, b"", 7),
                compare(b"e", Target::Exists, Op::Equal, b"", 0),
            ]
        );
        assert_eq!(txn.success.len(), 2);
        assert!(matches!(&txn.success[1].op, Some(pb::txn_op::Op::Get(g)) if g.key == b"b"));
        assert!(matches!(&txn.failure[0].op, Some(pb::txn_op::Op::Get(g)) if g.key == b"a"));
    }

    #[test]
    fn exists_true_compares_against_one() {
        let json =
            br#"{"compare": [{"key": "e", "target": "exists", "op": "!=", "exists": true}]}"#;
        let txn = parse_txn(json).expect("valid txn file");
        assert_eq!(
            txn.compares.first().map(|c| (c.number, c.op())),
            Some((1, Op::NotEqual))
        );
    }

    #[test]
    fn txn_parts_are_all_optional() {
        assert_eq!(parse_txn(b"{}").ok(), Some(pb::TxnRequest::default()));
    }

    #[test]
    fn compare_rejects_operand_that_does_not_match_target() {
        let err = error_of(parse_txn(
            br#"{"compare": [{"key": "a", "target": "version", "op": "==", "value": "3"}]}"#,
        ));
        assert!(err.contains("compare[0]"), "{err}");
        assert!(err.contains("\"number\""), "{err}");
    }

    #[test]
    fn compare_rejects_missing_or_extra_operands() {
        for json in [
            r#"{"compare": [{"key": "a", "target": "value", "op": "=="}]}"#,
            r#"{"compare": [{"key": "a", "target": "version", "op": "==", "number": 1, "value": "1"}]}"#,
            r#"{"compare": [{"key": "a", "target": "exists", "op": "==", "number": 1}]}"#,
        ] {
            assert!(
                parse_txn(json.as_bytes()).is_err(),
                "{json} should be rejected"
            );
        }
    }

    #[test]
    fn compare_rejects_ordering_on_existence() {
        let err = error_of(parse_txn(
            br#"{"compare": [{"key": "a", "target": "exists", "op": ">", "exists": true}]}"#,
        ));
        assert!(err.contains("only supports"), "{err}");
    }

    #[test]
    fn compare_rejects_unknown_targets_and_ops() {
        let err = error_of(parse_txn(
            br#"{"compare": [{"key": "a", "target": "size", "op": "==", "number": 1}]}"#,
        ));
        assert!(err.contains("unknown variant `size`"), "{err}");
        let err = error_of(parse_txn(
            br#"{"compare": [{"key": "a", "target": "version", "op": ">=", "number": 1}]}"#,
        ));
        assert!(err.contains("unknown variant `>=`"), "{err}");
    }

    #[test]
    fn txn_rejects_unknown_fields_and_names_the_branch() {
        let err = error_of(parse_txn(br#"{"compares": []}"#));
        assert!(err.contains("unknown field `compares`"), "{err}");
        let err = error_of(parse_txn(
            br#"{"failure": [{"put": {"key": "k", "value": "v", "ttl": "5s", "keep_ttl": true}}]}"#,
        ));
        assert!(err.starts_with("failure[0]: put:"), "{err}");
    }
}
