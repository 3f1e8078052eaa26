//! Request bodies in Kubernetes' protobuf encoding
//! (`application/vnd.kubernetes.protobuf`), for the one kind real clients
//! send that way here: Helm keeps its releases in Secrets and client-go's
//! typed clients write built-in kinds (and DELETE bodies) as protobuf. The body is the magic
//! `k8s\0` followed by a `runtime.Unknown` wrapping the object; it is
//! decoded to the JSON form the store keeps. Answers stay JSON, which
//! clients accept (they list it after protobuf in `Accept`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use prost::Message;
use serde_json::Value;

use super::store::ApiError;

/// The media type of protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, Message)]
struct PbOwnerReference {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    uid: String,
    #[prost(string, tag = "5")]
    api_version: String,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct PbObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    generate_name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<PbOwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct PbSecret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<PbObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    type_: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct PbDeleteOptions {
    #[prost(int64, optional, tag = "1")]
    grace_period_seconds: Option<i64>,
    #[prost(bool, optional, tag = "3")]
    orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    propagation_policy: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn metadata(m: PbObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: non_empty(m.name),
        generate_name: non_empty(m.generate_name),
        namespace: non_empty(m.namespace),
        resource_version: non_empty(m.resource_version),
        labels: (!m.labels.is_empty()).then_some(m.labels),
        annotations: (!m.annotations.is_empty()).then_some(m.annotations),
        owner_references: (!m.owner_references.is_empty()).then(|| {
            m.owner_references
                .into_iter()
                .map(|r| OwnerReference {
                    api_version: r.api_version,
                    kind: r.kind,
                    name: r.name,
                    uid: r.uid,
                    controller: r.controller,
                    block_owner_deletion: r.block_owner_deletion,
                })
                .collect()
        }),
        finalizers: (!m.finalizers.is_empty()).then_some(m.finalizers),
        ..ObjectMeta::default()
    }
}

/// Decodes a protobuf body to the object's JSON form.
///
/// # Errors
///
/// `400 BadRequest` for a body that is not the Kubernetes protobuf envelope,
/// and `415 UnsupportedMediaType` for a kind other than Secret (name the kind).
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("protobuf body without the k8s\\0 prefix"))?;
    let unknown = Unknown::decode(inner).map_err(|e| bad(format!("protobuf envelope: {e}")))?;
    let kind = unknown
        .type_meta
        .map(|t| (t.api_version, t.kind))
        .unwrap_or_default();
    if kind.1 == "DeleteOptions" {
        // The body of a DELETE (Helm's uninstall sends one).
        let o = PbDeleteOptions::decode(unknown.raw.as_slice())
            .map_err(|e| bad(format!("protobuf DeleteOptions: {e}")))?;
        let mut v = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(g) = o.grace_period_seconds {
            v["gracePeriodSeconds"] = g.into();
        }
        if let Some(p) = o.propagation_policy {
            v["propagationPolicy"] = p.into();
        } else if o.orphan_dependents == Some(true) {
            v["propagationPolicy"] = "Orphan".into();
        }
        return Ok(v);
    }
    if kind != ("v1".to_owned(), "Secret".to_owned()) {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "kubesim decodes protobuf bodies of v1 Secrets and DeleteOptions only, not {}/{}; send JSON",
                kind.0, kind.1
            ),
        ));
    }
    let pb = PbSecret::decode(unknown.raw.as_slice())
        .map_err(|e| bad(format!("protobuf Secret: {e}")))?;
    let secret = Secret {
        metadata: pb.metadata.map(metadata).unwrap_or_default(),
        data: (!pb.data.is_empty()).then(|| {
            pb.data
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect()
        }),
        string_data: (!pb.string_data.is_empty()).then_some(pb.string_data),
        type_: pb.type_,
        immutable: pb.immutable,
    };
    let mut value = serde_json::to_value(&secret).map_err(|e| bad(format!("Secret: {e}")))?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "v1".into(),
                kind: kind.into(),
            }),
            raw,
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn a_helm_release_secret_decodes_to_json() {
        let secret = PbSecret {
            metadata: Some(PbObjectMeta {
                name: "sh.helm.release.v1.cairn.v1".into(),
                labels: BTreeMap::from([("owner".into(), "helm".into())]),
                ..PbObjectMeta::default()
            }),
            data: BTreeMap::from([("release".into(), b"H4sI".to_vec())]),
            type_: Some("helm.sh/release.v1".into()),
            ..PbSecret::default()
        };
        let v = decode(&envelope("Secret", secret.encode_to_vec())).expect("decodes");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "sh.helm.release.v1.cairn.v1");
        assert_eq!(v["metadata"]["labels"]["owner"], "helm");
        assert_eq!(v["data"]["release"], "SDRzSQ==", "data is base64 in JSON");
        assert_eq!(v["type"], "helm.sh/release.v1");
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        let err = decode(&envelope("ConfigMap", Vec::new())).expect_err("refused");
        assert_eq!(err.code, 415);
        assert!(err.message.contains("ConfigMap"), "{}", err.message);
        assert_eq!(decode(b"{}").expect_err("no magic").code, 400);
        let options = PbDeleteOptions {
            propagation_policy: Some("Background".into()),
            ..PbDeleteOptions::default()
        };
        let v =
            decode(&envelope("DeleteOptions", options.encode_to_vec())).expect("delete options");
        assert_eq!(v["propagationPolicy"], "Background");
        assert_eq!(
            decode(b"k8s\0\xff\xff").expect_err("bad envelope").code,
            400
        );
    }
}
