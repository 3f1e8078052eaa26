//! [`HttpKv`]: the HTTP gateway (`/store`) as a [`KvApi`] front end, so the
//! conformance suite checks that curl users get the same store as gRPC
//! users — the same conditions, revisions, limits and stable error codes.
//!
//! Each call becomes the request a user would send (`PUT /store/{key}` with
//! `?if_revision=`, `Idempotency-Key`, …) and the answer is read back into
//! the gRPC response type: metadata from the JSON body or the `X-Cairn-*`
//! headers, errors from the `{"error", "code"}` body through the error-code
//! registry. Where HTTP differs by design the translation is the documented
//! one: a read or delete of a missing key is a 404 with `key_not_found`,
//! which gRPC reports as "not found" inside a successful answer.
//!
//! The gateway has no `BatchGet`, `Batch` or `Txn`; [`KvApi::surface`] says
//! so, and those calls answer `UNIMPLEMENTED` without sending anything.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cairn_proto::ErrorCode;
use cairn_proto::kv::v1 as pb;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status};

use crate::kv_api::{KvApi, Outcome, Surface};

/// Bytes escaped in a key's path segment: all but RFC 3986's unreserved
/// characters, so `/` and any byte travel inside one segment.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One node's HTTP gateway.
#[derive(Debug, Clone)]
pub struct HttpKv {
    client: reqwest::Client,
    base: String,
}

impl HttpKv {
    /// The gateway at `base` (`http://HOST:PORT`, as
    /// [`crate::process::NodeProcess::http_url`] gives it).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.into(),
        }
    }

    fn key_url(&self, key: &[u8]) -> String {
        format!("{}/store/{}", self.base, percent_encode(key, KEY_ESCAPE))
    }
}

/// The gateway's JSON form of a key-value (a listing item, a `previous`).
#[derive(Deserialize)]
struct JsonKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    encoding: String,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
    expires_at_ms: u64,
}

impl JsonKv {
    fn into_kv(self) -> Result<pb::KeyValue, Status> {
        let bytes = |s: String| -> Result<Vec<u8>, Status> {
            if self.encoding == "base64" {
                STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| Status::internal(format!("gateway sent bad base64: {e}")))
            } else {
                Ok(s.into_bytes())
            }
        };
        Ok(pb::KeyValue {
            key: bytes(self.key.clone())?,
            value: bytes(self.value.clone())?,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            expires_at_ms: self.expires_at_ms,
        })
    }
}

/// A write's JSON answer (`PUT`, `PATCH`, `DELETE ?return_previous=true`).
#[derive(Deserialize)]
struct JsonWritten {
    revision: u64,
    #[serde(default)]
    create_revision: u64,
    #[serde(default)]
    mod_revision: u64,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    expires_at_ms: u64,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    previous: Option<JsonKv>,
}

impl JsonWritten {
    /// The written key's metadata (the gateway, like gRPC, omits the value).
    fn kv(&self, key: &[u8]) -> pb::KeyValue {
        pb::KeyValue {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            expires_at_ms: self.expires_at_ms,
        }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            revision: self.revision,
            ..Default::default()
        })
    }

    fn previous(&mut self) -> Result<Option<pb::KeyValue>, Status> {
        self.previous.take().map(JsonKv::into_kv).transpose()
    }
}

/// A scan page's JSON answer.
#[derive(Deserialize)]
struct JsonPage {
    revision: u64,
    items: Vec<JsonKv>,
    next_page_token: Option<String>,
}

/// The gateway's error body.
#[derive(Deserialize)]
struct JsonError {
    error: String,
    code: String,
}

/// An answered request: its status, headers and body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header_u64(&self, name: &str) -> u64 {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Status> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Status::internal(format!(
                "gateway answered {} with a body that is not the documented JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        })
    }

    /// The error code of an error answer, if its body names one.
    fn code(&self) -> Option<ErrorCode> {
        serde_json::from_slice::<JsonError>(&self.body)
            .ok()
            .and_then(|e| ErrorCode::parse(&e.code))
    }

    /// An error answer as the status gRPC would have returned: the
    /// registry's gRPC code for the body's stable code, with the code in
    /// the `cairn-error-code` metadata.
    fn into_status(self) -> Status {
        let Ok(e) = serde_json::from_slice::<JsonError>(&self.body) else {
            return Status::internal(format!(
                "gateway answered {} without the documented error body: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ));
        };
        let Some(code) = ErrorCode::parse(&e.code) else {
            return Status::unknown(format!("unknown error code {:?}: {}", e.code, e.error));
        };
        let mut status = Status::new(code.grpc(), e.error);
        status.metadata_mut().insert(
            cairn_proto::ERROR_CODE_METADATA,
            MetadataValue::from_static(code.as_str()),
        );
        status
    }
}

/// Sends `request`; a connection that fails is `UNAVAILABLE`, as gRPC says it.
async fn send(request: RequestBuilder) -> Result<Answer, Status> {
    let resp = request
        .send()
        .await
        .map_err(|e| Status::unavailable(format!("HTTP gateway: {e}")))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| Status::unavailable(format!("HTTP gateway body: {e}")))?
        .to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The query parameters of a read's options.
fn read_query(read: Option<&pb::ReadOptions>) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(r) = read {
        if r.consistency == pb::Consistency::Serializable as i32 {
            q.push(("consistency", "serializable".to_string()));
        }
        if r.min_revision != 0 {
            q.push(("min_revision", r.min_revision.to_string()));
        }
    }
    q
}

/// The gateway takes TTLs in whole seconds.
fn ttl_seconds(ttl_ms: u64) -> Result<Option<(&'static str, String)>, Status> {
    match ttl_ms {
        0 => Ok(None),
        ms if ms % 1000 == 0 => Ok(Some(("ttl_seconds", (ms / 1000).to_string()))),
        ms => Err(Status::unimplemented(format!(
            "the HTTP gateway takes ttl_seconds; {ms} ms is not a whole number of seconds"
        ))),
    }
}

/// The options of a keyed write, as query parameters and headers.
#[derive(Default)]
struct WriteOptions<'r> {
    ttl_ms: u64,
    keep_ttl: bool,
    if_absent: bool,
    if_mod_revision: Option<u64>,
    return_previous: bool,
    request_id: &'r [u8],
}

impl WriteOptions<'_> {
    fn apply(&self, mut request: RequestBuilder) -> Result<RequestBuilder, Status> {
        if let Some(ttl) = ttl_seconds(self.ttl_ms)? {
            request = request.query(&[ttl]);
        }
        for (set, name) in [
            (self.keep_ttl, "keep_ttl"),
            (self.if_absent, "if_absent"),
            (self.return_previous, "return_previous"),
        ] {
            if set {
                request = request.query(&[(name, "true")]);
            }
        }
        if let Some(rev) = self.if_mod_revision {
            request = request.query(&[("if_revision", rev.to_string())]);
        }
        if !self.request_id.is_empty() {
            let id = reqwest::header::HeaderValue::from_bytes(self.request_id).map_err(|_| {
                Status::unimplemented("the Idempotency-Key header carries visible ASCII only")
            })?;
            request = request.header("idempotency-key", id);
        }
        Ok(request)
    }
}

/// Sends a `PUT` or `PATCH` and reads its JSON answer.
async fn written(request: RequestBuilder) -> Result<JsonWritten, Status> {
    let a = send(request).await?;
    if !a.status.is_success() {
        return Err(a.into_status());
    }
    a.json()
}

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("the HTTP gateway has no {what}; use gRPC"))
}

impl KvApi for HttpKv {
    fn surface(&self) -> Surface {
        Surface {
            batch_get: false,
            batch: false,
            txn: false,
        }
    }

    async fn get(&mut self, r: pb::GetRequest) -> Outcome<pb::GetResponse> {
        let a = send(
            self.client
                .get(self.key_url(&r.key))
                .query(&read_query(r.read.as_ref())),
        )
        .await?;
        if a.status == StatusCode::NOT_FOUND && a.code() == Some(ErrorCode::KeyNotFound) {
            return Ok(Response::new(pb::GetResponse {
                header: None,
                kv: None,
            }));
        }
        if !a.status.is_success() {
            return Err(a.into_status());
        }
        let kv = pb::KeyValue {
            key: r.key,
            create_revision: a.header_u64("x-cairn-create-revision"),
            mod_revision: a.header_u64("x-cairn-mod-revision"),
            version: a.header_u64("x-cairn-version"),
            expires_at_ms: a.header_u64("x-cairn-expires-at-ms"),
            value: a.body.clone(),
        };
        Ok(Response::new(pb::GetResponse {
            header: Some(pb::ResponseHeader {
                revision: a.header_u64("x-cairn-revision"),
                ..Default::default()
            }),
            kv: Some(kv),
        }))
    }

    async fn put(&mut self, r: pb::PutRequest) -> Outcome<pb::PutResponse> {
        let options = WriteOptions {
            ttl_ms: r.ttl_ms,
            keep_ttl: r.keep_ttl,
            if_absent: r.if_absent,
            if_mod_revision: r.if_mod_revision,
            return_previous: r.return_previous,
            request_id: &r.request_id,
        };
        let request = self.client.put(self.key_url(&r.key)).body(r.value.clone());
        let mut w = written(options.apply(request)?).await?;
        Ok(Response::new(pb::PutResponse {
            header: w.header(),
            kv: Some(w.kv(&r.key)),
            created: w.created,
            previous: w.previous()?,
        }))
    }

    async fn update(&mut self, r: pb::UpdateRequest) -> Outcome<pb::UpdateResponse> {
        let options = WriteOptions {
            ttl_ms: r.ttl_ms,
            keep_ttl: r.keep_ttl,
            if_mod_revision: r.if_mod_revision,
            return_previous: r.return_previous,
            request_id: &r.request_id,
            ..Default::default()
        };
        let request = self
            .client
            .patch(self.key_url(&r.key))
            .body(r.value.clone());
        let mut w = written(options.apply(request)?).await?;
        Ok(Response::new(pb::UpdateResponse {
            header: w.header(),
            kv: Some(w.kv(&r.key)),
            previous: w.previous()?,
        }))
    }

    async fn delete(&mut self, r: pb::DeleteRequest) -> Outcome<pb::DeleteResponse> {
        let options = WriteOptions {
            if_mod_revision: r.if_mod_revision,
            return_previous: r.return_previous,
            request_id: &r.request_id,
            ..Default::default()
        };
        let a = send(options.apply(self.client.delete(self.key_url(&r.key)))?).await?;
        let revision = pb::ResponseHeader {
            revision: a.header_u64("x-cairn-revision"),
            ..Default::default()
        };
        match a.status {
            StatusCode::NO_CONTENT => Ok(Response::new(pb::DeleteResponse {
                header: Some(revision),
                existed: true,
                previous: None,
            })),
            StatusCode::OK => {
                let mut w: JsonWritten = a.json()?;
                Ok(Response::new(pb::DeleteResponse {
                    header: w.header(),
                    existed: true,
                    previous: w.previous()?,
                }))
            }
            StatusCode::NOT_FOUND if a.code() == Some(ErrorCode::KeyNotFound) => {
                Ok(Response::new(pb::DeleteResponse {
                    header: None,
                    existed: false,
                    previous: None,
                }))
            }
            _ => Err(a.into_status()),
        }
    }

    async fn batch_get(&mut self, _: pb::BatchGetRequest) -> Outcome<pb::BatchGetResponse> {
        Err(unsupported("BatchGet"))
    }

    async fn batch(&mut self, _: pb::BatchRequest) -> Outcome<pb::BatchResponse> {
        Err(unsupported("Batch"))
    }

    async fn txn(&mut self, _: pb::TxnRequest) -> Outcome<pb::TxnResponse> {
        Err(unsupported("Txn"))
    }

    async fn scan(&mut self, r: pb::ScanRequest) -> Outcome<pb::ScanResponse> {
        if !r.shards.is_empty() {
            return Err(unsupported("scan of chosen shards"));
        }
        // base64 both ways, so any key or value bytes round-trip exactly.
        let mut q = vec![("encoding", "base64".to_string())];
        for (name, bytes) in [("prefix", &r.prefix), ("start", &r.start), ("end", &r.end)] {
            if !bytes.is_empty() {
                q.push((name, STANDARD.encode(bytes)));
            }
        }
        if r.limit != 0 {
            q.push(("limit", r.limit.to_string()));
        }
        if !r.page_token.is_empty() {
            q.push(("page_token", URL_SAFE_NO_PAD.encode(&r.page_token)));
        }
        if r.keys_only {
            q.push(("keys_only", "true".to_string()));
        }
        q.extend(read_query(r.read.as_ref()));
        let a = send(self.client.get(format!("{}/store", self.base)).query(&q)).await?;
        if !a.status.is_success() {
            return Err(a.into_status());
        }
        let page: JsonPage = a.json()?;
        let next_page_token = match page.next_page_token {
            Some(t) => URL_SAFE_NO_PAD
                .decode(t.as_bytes())
                .map_err(|e| Status::internal(format!("gateway sent a bad page token: {e}")))?,
            None => Vec::new(),
        };
        Ok(Response::new(pb::ScanResponse {
            header: Some(pb::ResponseHeader {
                revision: page.revision,
                ..Default::default()
            }),
            kvs: page
                .items
                .into_iter()
                .map(JsonKv::into_kv)
                .collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }
}
