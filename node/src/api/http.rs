//! The HTTP/JSON gateway: the key-value API for curl and simple clients.
//!
//! Routes (keys are percent-decoded path bytes, so `/` and any byte work):
//! - `PUT /store` — JSON `{"key", "value", "ttl_seconds", "if_absent", "if_revision", "encoding"}`,
//!   `?return_previous=`
//! - `PUT /store/{key}` — raw body; `?ttl_seconds=&if_absent=&if_revision=&keep_ttl=&return_previous=`,
//!   `If-None-Match: *`, `If-Match: "<mod_revision>"`
//! - `GET|HEAD /store/{key}` — raw body, revision headers and an `ETag`
//! - `DELETE /store/{key}` — 204, or 404 if absent; `?if_revision=`, and
//!   `?return_previous=true` answers 200 with the deleted value as JSON
//! - `UPDATE|PATCH /store/{key}` — raw body, only if the key exists (else 404);
//!   `?ttl_seconds=&keep_ttl=&if_revision=&return_previous=`
//!
//! `return_previous=true` adds `"previous"` (the value replaced or deleted,
//! in the listing's JSON form) to a write's answer; the full reference is
//! `docs/API.md`.
//! - `GET /store?prefix=&start=&end=&limit=&page_token=&keys_only=&encoding=` — JSON page
//!
//! Reads take `?consistency=serializable` and `?min_revision=N`. Errors are
//! JSON `{"error": "...", "code": "..."}` with the status from [`super::status`].

use cairn_proto::ErrorCode;
use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cairn_proto::kv::v1 as pb;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::status::http_status;
use crate::apply::ApplyError;
use crate::auth::{AccessGate, CALLER, Caller, Credentials};
use crate::kv::{KvError, KvStore};
use crate::metrics::Metrics;
use cairn_auth::KvCall;
use cairn_auth::policy::Principal;

/// Shared state of the gateway.
#[derive(Clone)]
struct Gateway {
    store: KvStore,
    metrics: Metrics,
    gate: AccessGate,
}

/// The gateway's routes, as `(method, path)`: what the authorization matrix
/// walks (every route is classified by [`GatewayRequest::call`]).
pub const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/store"),
    ("GET", "/store"),
    ("HEAD", "/store"),
    ("PUT", "/store/{key}"),
    ("GET", "/store/{key}"),
    ("HEAD", "/store/{key}"),
    ("DELETE", "/store/{key}"),
    ("PATCH", "/store/{key}"),
    ("UPDATE", "/store/{key}"),
];

/// What the gateway knows of a connection: its client certificate and
/// address (TLS), or its address.
#[derive(Debug, Clone)]
pub struct HttpPeer(pub cairn_tls::ConnInfo);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for HttpPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(cairn_tls::ConnInfo {
            remote: Some(*stream.remote_addr()),
            identity: None,
        })
    }
}

/// Builds the gateway router; requests pass `gate`.
pub fn router(store: KvStore, metrics: Metrics, gate: AccessGate) -> Router {
    Router::new().fallback(dispatch).with_state(Gateway {
        store,
        metrics,
        gate,
    })
}

async fn dispatch(State(gw): State<Gateway>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let span = tracing::debug_span!(
        "http",
        otel.name = %format_args!("HTTP {method}"),
        otel.kind = "server",
        http.request.method = %method,
    );
    crate::telemetry::continue_remote_http(&span, req.headers());
    let (route, result) = gw.route(req).instrument(span).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let label = format!("{method} {route}");
    gw.metrics
        .observe("http", &label, resp.status().as_str(), started.elapsed());
    resp
}

/// A gateway error: a service error, optionally with its HTTP status overridden.
#[derive(Debug)]
pub struct HttpError(KvError, Option<StatusCode>);

impl HttpError {
    /// The HTTP status the gateway answers with.
    pub fn status(&self) -> StatusCode {
        self.1.unwrap_or_else(|| http_status(&self.0))
    }

    /// The service error.
    pub fn error(&self) -> &KvError {
        &self.0
    }
}

impl From<KvError> for HttpError {
    fn from(e: KvError) -> Self {
        Self(e, None)
    }
}

fn error_response(e: &HttpError) -> Response {
    let status = e.status();
    let body = json!({"error": e.0.to_string(), "code": e.0.code().as_str()});
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let KvError::InvalidArgument { message, .. } = &e.0
        && let Some(allow) = message.split("allowed: ").nth(1)
        && let Ok(v) = HeaderValue::from_str(allow)
    {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

type HttpResult = Result<Response, HttpError>;

fn bad(code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError(KvError::invalid(code, message), None)
}

fn not_allowed(method: &Method, allowed: &str) -> HttpError {
    HttpError(
        KvError::invalid(
            ErrorCode::MethodNotAllowed,
            format!("method {method} is not supported here; allowed: {allowed}"),
        ),
        Some(StatusCode::METHOD_NOT_ALLOWED),
    )
}

const KEY_METHODS: &str = "GET, HEAD, PUT, DELETE, PATCH, UPDATE";

/// What a gateway request asks of the store, decoded from its method, path,
/// query, headers and body before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayRequest {
    /// `PUT /store` (JSON) or `PUT /store/{key}` (raw body).
    Put {
        /// The write.
        req: pb::PutRequest,
        /// `If-None-Match: *` was sent: an existing key is a 412.
        if_none_match: bool,
    },
    /// `UPDATE|PATCH /store/{key}`.
    Update(pb::UpdateRequest),
    /// `DELETE /store/{key}`.
    Delete(pb::DeleteRequest),
    /// `GET|HEAD /store/{key}`.
    Get {
        /// The read.
        req: pb::GetRequest,
        /// `HEAD`: headers only.
        head: bool,
    },
    /// `GET|HEAD /store`: one page of a scan.
    Scan {
        /// The scan.
        req: pb::ScanRequest,
        /// `encoding=base64`: keys and values in the answer are base64.
        base64: bool,
    },
}

impl GatewayRequest {
    /// The request as the permission check classifies it.
    pub fn call(&self) -> KvCall<'_> {
        match self {
            GatewayRequest::Put { req, .. } => KvCall::Put(req),
            GatewayRequest::Update(req) => KvCall::Update(req),
            GatewayRequest::Delete(req) => KvCall::Delete(req),
            GatewayRequest::Get { req, .. } => KvCall::Get(req),
            GatewayRequest::Scan { req, .. } => KvCall::Scan(req),
        }
    }
}

/// Which route a path is: `/store`, `/store/{key}` (with the raw,
/// still percent-encoded key) or none.
enum Route<'p> {
    Root,
    Keyed(&'p str),
    Other,
}

fn route_of(path: &str) -> Route<'_> {
    if path == "/store" {
        return Route::Root;
    }
    match path.strip_prefix("/store/") {
        Some(raw) => Route::Keyed(raw),
        None => Route::Other,
    }
}

/// The key a `/store/{key}` path names: its percent-decoded bytes (any
/// byte, `/` included).
pub fn store_key(raw: &str) -> Vec<u8> {
    percent_decode_str(raw).collect()
}

/// Decodes a gateway request (the body already read, empty for methods
/// that take none) into what it asks of the store. Pure: the HTTP front
/// end, its tests and the fuzz target share it.
///
/// # Errors
/// The [`HttpError`] the gateway answers with: an unknown route or method,
/// a malformed query, header or JSON body, bad base64, out-of-range numbers.
pub fn decode_request(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<GatewayRequest, HttpError> {
    let path = uri.path();
    match route_of(path) {
        Route::Root => {
            let q = query(uri)?;
            match *method {
                Method::GET | Method::HEAD => scan_request(&q),
                Method::PUT => {
                    let mut req = put_from_json(body, headers)?;
                    req.return_previous = flag(&q, "return_previous")?;
                    Ok(GatewayRequest::Put {
                        req,
                        if_none_match: false,
                    })
                }
                ref m => Err(not_allowed(m, "GET, HEAD, PUT")),
            }
        }
        Route::Keyed(raw) => {
            let key = store_key(raw);
            let q = query(uri)?;
            match method.as_str() {
                "GET" | "HEAD" => Ok(GatewayRequest::Get {
                    req: pb::GetRequest {
                        key,
                        read: Some(read_options(&q)?),
                    },
                    head: *method == Method::HEAD,
                }),
                "PUT" => {
                    let if_none_match = header_is(headers, header::IF_NONE_MATCH, "*");
                    Ok(GatewayRequest::Put {
                        req: pb::PutRequest {
                            key,
                            value: body.to_vec(),
                            ttl_ms: ttl_ms(&q)?,
                            keep_ttl: flag(&q, "keep_ttl")?,
                            if_absent: flag(&q, "if_absent")? || if_none_match,
                            if_mod_revision: if_revision(&q, headers)?,
                            return_previous: flag(&q, "return_previous")?,
                            request_id: idempotency_key(headers),
                        },
                        if_none_match,
                    })
                }
                "UPDATE" | "PATCH" => Ok(GatewayRequest::Update(pb::UpdateRequest {
                    key,
                    value: body.to_vec(),
                    ttl_ms: ttl_ms(&q)?,
                    keep_ttl: flag(&q, "keep_ttl")?,
                    if_mod_revision: if_revision(&q, headers)?,
                    return_previous: flag(&q, "return_previous")?,
                    request_id: idempotency_key(headers),
                })),
                "DELETE" => Ok(GatewayRequest::Delete(pb::DeleteRequest {
                    key,
                    if_mod_revision: if_revision(&q, headers)?,
                    return_previous: flag(&q, "return_previous")?,
                    request_id: idempotency_key(headers),
                })),
                _ => Err(not_allowed(method, KEY_METHODS)),
            }
        }
        Route::Other => Err(HttpError(
            KvError::invalid(
                ErrorCode::NoRoute,
                format!("no route for {path}; the API lives under /store"),
            ),
            Some(StatusCode::NOT_FOUND),
        )),
    }
}

impl Gateway {
    async fn route(&self, req: Request) -> (&'static str, HttpResult) {
        let label = match route_of(req.uri().path()) {
            Route::Root => "/store",
            Route::Keyed(_) => "/store/{key}",
            Route::Other => "other",
        };
        (label, self.serve(req).await)
    }

    async fn serve(&self, req: Request) -> HttpResult {
        let (parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<HttpPeer>>()
            .map(|c| c.0.0.clone());
        let creds = Credentials::of_http(&parts.headers, peer.as_ref());
        let m = parts.method.as_str();
        let limits = self.store.limits();
        let body_limit = match route_of(parts.uri.path()) {
            Route::Root if m == "PUT" => Some((
                (limits.max_value_bytes + limits.max_key_bytes) / 3 * 4 + (64 << 10),
                "max-value-bytes, base64-encoded",
            )),
            Route::Keyed(_) if matches!(m, "PUT" | "UPDATE" | "PATCH") => {
                Some((limits.max_value_bytes, "max-value-bytes"))
            }
            _ => None,
        };
        let body = match body_limit {
            Some((limit, name)) => {
                // A malformed query is refused before the body is read.
                query(&parts.uri)?;
                read_body(&parts.headers, body, limit, name).await?
            }
            None => Bytes::new(),
        };
        let request = decode_request(&parts.method, &parts.uri, &parts.headers, &body)?;
        let principal = self
            .gate
            .check("http", &creds, &cairn_auth::Call::Kv(request.call()))
            .map_err(KvError::from)?;
        let caller = Caller {
            bearer: creds.bearer,
            user: match principal {
                Some(Principal::User { name, .. }) => Some(name),
                _ => None,
            },
        };
        CALLER.scope(caller, self.answer(request)).await
    }

    async fn answer(&self, request: GatewayRequest) -> HttpResult {
        match request {
            GatewayRequest::Put { req, if_none_match } => match self.store.put(req).await {
                Ok(r) => Ok(put_response(&r)),
                Err(e @ KvError::Refused(ApplyError::KeyExists { .. })) if if_none_match => {
                    Err(HttpError(e, Some(StatusCode::PRECONDITION_FAILED)))
                }
                Err(e) => Err(e.into()),
            },
            GatewayRequest::Update(req) => {
                let r = self.store.update(req).await?;
                Ok(write_response(
                    StatusCode::OK,
                    r.header.as_ref(),
                    r.kv.as_ref(),
                    None,
                    r.previous.as_ref(),
                ))
            }
            GatewayRequest::Delete(req) => {
                let key = req.key.clone();
                let r = self.store.delete(req).await?;
                if let (true, Some(previous)) = (r.existed, r.previous.as_ref()) {
                    let body = json!({
                        "revision": r.header.as_ref().map_or(0, |h| h.revision),
                        "previous": kv_json(previous, false),
                    });
                    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
                    add_revision(&mut resp, r.header.as_ref());
                    Ok(resp)
                } else if r.existed {
                    let mut resp = StatusCode::NO_CONTENT.into_response();
                    add_revision(&mut resp, r.header.as_ref());
                    Ok(resp)
                } else {
                    Err(HttpError(
                        KvError::Refused(ApplyError::NotFound { op_index: 0, key }),
                        None,
                    ))
                }
            }
            GatewayRequest::Get { req, head } => self.get(&req, head).await,
            GatewayRequest::Scan { req, base64 } => self.list(req, base64).await,
        }
    }

    async fn get(&self, req: &pb::GetRequest, head: bool) -> HttpResult {
        let r = self.store.get(req).await?;
        let Some(kv) = r.kv else {
            return Err(HttpError(
                KvError::Refused(ApplyError::NotFound {
                    op_index: 0,
                    key: req.key.clone(),
                }),
                None,
            ));
        };
        let body = if head {
            Body::empty()
        } else {
            Body::from(kv.value.clone())
        };
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(kv.value.len()));
        insert_meta_headers(h, &kv);
        add_revision(&mut resp, r.header.as_ref());
        Ok(resp)
    }

    async fn list(&self, req: pb::ScanRequest, b64: bool) -> HttpResult {
        let r = self.store.scan(req).await?;
        let items: Vec<Value> = r.kvs.iter().map(|kv| kv_json(kv, b64)).collect();
        let body = json!({
            "revision": r.header.as_ref().map_or(0, |h| h.revision),
            "items": items,
            "next_page_token": (!r.next_page_token.is_empty()).then(|| URL_SAFE_NO_PAD.encode(&r.next_page_token)),
        });
        Ok((StatusCode::OK, axum::Json(body)).into_response())
    }
}

/// The `PUT /store` JSON body as a put.
fn put_from_json(body: &[u8], headers: &HeaderMap) -> Result<pb::PutRequest, HttpError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PutBody {
        key: String,
        value: String,
        #[serde(default)]
        ttl_seconds: u64,
        #[serde(default)]
        if_absent: bool,
        #[serde(default)]
        if_revision: Option<u64>,
        #[serde(default)]
        encoding: Option<String>,
    }
    let b: PutBody = serde_json::from_slice(body).map_err(|e| {
        bad(
            ErrorCode::BadJson,
            format!("request body is not a valid put: {e}"),
        )
    })?;
    let b64 = is_base64(b.encoding.as_deref())?;
    let decode = |field: &str, s: String| -> Result<Vec<u8>, HttpError> {
        if b64 {
            STANDARD.decode(s.as_bytes()).map_err(|e| {
                bad(
                    ErrorCode::BadBase64,
                    format!("{field} is not valid base64: {e}"),
                )
            })
        } else {
            Ok(s.into_bytes())
        }
    };
    Ok(pb::PutRequest {
        key: decode("key", b.key)?,
        value: decode("value", b.value)?,
        ttl_ms: ttl_seconds_to_ms(b.ttl_seconds)?,
        keep_ttl: false,
        if_absent: b.if_absent,
        if_mod_revision: b.if_revision,
        return_previous: false,
        request_id: idempotency_key(headers),
    })
}

/// `GET /store`'s query as a scan.
fn scan_request(q: &HashMap<String, String>) -> Result<GatewayRequest, HttpError> {
    let b64 = is_base64(q.get("encoding").map(String::as_str))?;
    let field = |name: &str| -> Result<Vec<u8>, HttpError> {
        let Some(s) = q.get(name) else {
            return Ok(Vec::new());
        };
        if b64 {
            STANDARD.decode(s.as_bytes()).map_err(|e| {
                bad(
                    ErrorCode::BadBase64,
                    format!("{name} is not valid base64: {e}"),
                )
            })
        } else {
            Ok(s.clone().into_bytes())
        }
    };
    let page_token = match q.get("page_token") {
        Some(t) => URL_SAFE_NO_PAD.decode(t.as_bytes()).map_err(|_| {
            bad(
                ErrorCode::BadPageToken,
                "page_token is not one this server issued; pass next_page_token unchanged",
            )
        })?,
        None => Vec::new(),
    };
    let req = pb::ScanRequest {
        prefix: field("prefix")?,
        start: field("start")?,
        end: field("end")?,
        limit: number(q, "limit")?.map_or(Ok(0), |n| {
            u32::try_from(n).map_err(|_| {
                bad(
                    ErrorCode::LimitTooLarge,
                    format!("limit {n} is out of range"),
                )
            })
        })?,
        page_token,
        keys_only: flag(q, "keys_only")?,
        read: Some(read_options(q)?),
        shards: Vec::new(),
    };
    Ok(GatewayRequest::Scan { req, base64: b64 })
}

/// JSON form of a key-value; UTF-8 strings when possible, else base64 with
/// `"encoding": "base64"`.
fn kv_json(kv: &pb::KeyValue, force_b64: bool) -> Value {
    let utf8 = (!force_b64)
        .then(|| {
            Some((
                std::str::from_utf8(&kv.key).ok()?,
                std::str::from_utf8(&kv.value).ok()?,
            ))
        })
        .flatten();
    let (key, value, encoding) = match utf8 {
        Some((k, v)) => (k.to_string(), v.to_string(), "utf8"),
        None => (
            STANDARD.encode(&kv.key),
            STANDARD.encode(&kv.value),
            "base64",
        ),
    };
    json!({
        "key": key,
        "value": value,
        "encoding": encoding,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "expires_at_ms": kv.expires_at_ms,
    })
}

/// Whether an `encoding` parameter asks for base64 (`utf8` is the default).
fn is_base64(encoding: Option<&str>) -> Result<bool, HttpError> {
    match encoding {
        None | Some("utf8" | "utf-8") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(bad(
            ErrorCode::BadEncoding,
            format!("unknown encoding {other:?}; use utf8 or base64"),
        )),
    }
}

/// 201 for a created key, 200 for a replaced one.
fn put_response(r: &pb::PutResponse) -> Response {
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(
        status,
        r.header.as_ref(),
        r.kv.as_ref(),
        Some(r.created),
        r.previous.as_ref(),
    )
}

/// A write's JSON answer: the revision, the written key's metadata,
/// `created` for a put, `previous` when `return_previous` asked for it.
fn write_response(
    status: StatusCode,
    h: Option<&pb::ResponseHeader>,
    kv: Option<&pb::KeyValue>,
    created: Option<bool>,
    previous: Option<&pb::KeyValue>,
) -> Response {
    let kv = kv.cloned().unwrap_or_default();
    let mut body = json!({
        "revision": h.map_or(0, |h| h.revision),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "expires_at_ms": kv.expires_at_ms,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(c) = created {
            obj.insert("created".into(), Value::Bool(c));
        }
        if let Some(p) = previous {
            obj.insert("previous".into(), kv_json(p, false));
        }
    }
    let mut resp = (status, axum::Json(body)).into_response();
    insert_meta_headers(resp.headers_mut(), &kv);
    add_revision(&mut resp, h);
    resp
}

fn insert_meta_headers(h: &mut HeaderMap, kv: &pb::KeyValue) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", kv.mod_revision)) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "x-cairn-create-revision",
        HeaderValue::from(kv.create_revision),
    );
    h.insert("x-cairn-mod-revision", HeaderValue::from(kv.mod_revision));
    h.insert("x-cairn-version", HeaderValue::from(kv.version));
    if kv.expires_at_ms != 0 {
        h.insert("x-cairn-expires-at-ms", HeaderValue::from(kv.expires_at_ms));
    }
}

fn add_revision(resp: &mut Response, h: Option<&pb::ResponseHeader>) {
    if let Some(h) = h {
        resp.headers_mut()
            .insert("x-cairn-revision", HeaderValue::from(h.revision));
    }
}

fn query(uri: &http::Uri) -> Result<HashMap<String, String>, HttpError> {
    match uri.query() {
        None => Ok(HashMap::new()),
        Some(q) => axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
            .map(|axum::extract::Query(m)| m)
            .map_err(|e| {
                bad(
                    ErrorCode::BadQuery,
                    format!("query string {q:?} is malformed: {e}"),
                )
            }),
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> Result<bool, HttpError> {
    match q.get(name).map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(other) => Err(bad(
            ErrorCode::BadQuery,
            format!("{name}={other:?} is not a boolean (true/false)"),
        )),
    }
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, HttpError> {
    q.get(name)
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                bad(
                    ErrorCode::BadQuery,
                    format!("{name}={s:?} is not a non-negative integer"),
                )
            })
        })
        .transpose()
}

fn ttl_seconds_to_ms(s: u64) -> Result<u64, HttpError> {
    s.checked_mul(1000).ok_or_else(|| {
        bad(
            ErrorCode::TtlTooLong,
            format!("ttl_seconds {s} is too large"),
        )
    })
}

fn ttl_ms(q: &HashMap<String, String>) -> Result<u64, HttpError> {
    ttl_seconds_to_ms(number(q, "ttl_seconds")?.unwrap_or(0))
}

fn if_revision(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    if let Some(v) = headers.get(header::IF_MATCH) {
        let s = v.to_str().unwrap_or_default().trim().trim_matches('"');
        return s.parse::<u64>().map(Some).map_err(|_| {
            bad(
                ErrorCode::BadHeader,
                "If-Match must be an ETag of the form \"<mod_revision>\"",
            )
        });
    }
    number(q, "if_revision")
}

/// The `Idempotency-Key` header: makes a retried write exactly-once.
fn idempotency_key(headers: &HeaderMap) -> Vec<u8> {
    headers
        .get("idempotency-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == want)
}

fn read_options(q: &HashMap<String, String>) -> Result<pb::ReadOptions, HttpError> {
    let consistency = match q.get("consistency").map(String::as_str) {
        None | Some("linearizable") => pb::Consistency::Linearizable,
        Some("serializable") => pb::Consistency::Serializable,
        Some(other) => {
            return Err(bad(
                ErrorCode::BadQuery,
                format!("consistency={other:?}; use linearizable or serializable"),
            ));
        }
    };
    Ok(pb::ReadOptions {
        consistency: consistency as i32,
        min_revision: number(q, "min_revision")?.unwrap_or(0),
    })
}

/// A refused body is still read and discarded up to this many bytes, so a
/// client that sends it whole (without `Expect: 100-continue`) receives the
/// 413 instead of a reset connection. Larger bodies get the connection closed.
const DRAIN_LIMIT: usize = 64 << 20;
/// Time allowed for that draining.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    limit_name: &str,
) -> Result<Bytes, HttpError> {
    use futures::StreamExt as _;
    let too_large = |len: Option<u64>| {
        let what = len.map_or_else(
            || "request body exceeds".to_string(),
            |l| format!("request body is {l} bytes;"),
        );
        HttpError(
            KvError::too_large(
                ErrorCode::BodyTooLarge,
                format!("{what} the limit is {limit} bytes ({limit_name})"),
            ),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|l| l > limit as u64) {
        if declared.is_some_and(|l| l <= DRAIN_LIMIT as u64) {
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
        return Err(too_large(declared));
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |l| l as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            bad(
                ErrorCode::BadBody,
                format!("reading the request body failed: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            let mut drained = buf.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained <= DRAIN_LIMIT {
                    match stream.next().await {
                        Some(Ok(c)) => drained += c.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(too_large(None));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
