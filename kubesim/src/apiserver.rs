//! An in-memory Kubernetes API server: enough of kube-apiserver's REST
//! protocol for kube-rs clients, reflectors and controllers — get, list,
//! watch with resourceVersions, create, replace, four patch types (Server-
//! Side Apply emulated as a merge), delete with finalizers, graceful pod
//! deletion and owner-reference garbage collection, the `status` and `scale`
//! subresources, and CustomResourceDefinitions registering new kinds.
//! The crate README lists what it does not emulate.

mod openapi;
mod path;
mod protobuf;
mod selector;
mod store;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use path::{ResourcePath, parse};
use selector::{FieldSelector, LabelSelector};
pub use store::ApiError;
use store::{Change, Store};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Binding the listener failed.
    #[error("binding the API server: {0}")]
    Bind(#[from] std::io::Error),
    /// The kube client could not be configured for the server's URL.
    #[error("configuring a client: {0}")]
    Client(String),
}

/// Settings of an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Changes kept for watches that resume from a resourceVersion; a watch
    /// from an older one is told `410 Expired` and re-lists.
    pub event_log_capacity: usize,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The address to listen on (any free port): loopback by default;
    /// `0.0.0.0` lets pods in their network namespaces reach the server
    /// through the kubelet's bridge (an operator running as a pod).
    pub listen: std::net::IpAddr,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            event_log_capacity: 20_000,
            bookmark_interval: Duration::from_secs(5),
            listen: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }
}

struct Shared {
    store: Mutex<Store>,
    options: Options,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running API server (on 127.0.0.1 unless [`Options::listen`] says otherwise); stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Starts a server with default [`Options`] on a free port.
    ///
    /// # Errors
    /// [`ApiServerError::Bind`] when no port can be bound.
    pub async fn start() -> Result<ApiServer, ApiServerError> {
        Self::start_with(Options::default()).await
    }

    /// Starts a server with `options` on a free port.
    ///
    /// # Errors
    /// [`ApiServerError::Bind`] when no port can be bound.
    pub async fn start_with(options: Options) -> Result<ApiServer, ApiServerError> {
        let listener = tokio::net::TcpListener::bind((options.listen, 0)).await?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.event_log_capacity)),
            options,
        });
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "kubesim API server stopped");
            }
        });
        Ok(ApiServer { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port the server listens on (on every address when
    /// [`Options::listen`] is unspecified).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kube client for this server (namespace `default`, no credentials).
    ///
    /// # Panics
    /// Never for the URL this server builds; a failure would be a bug here.
    pub fn client(&self) -> kube::Client {
        let uri = self
            .url()
            .parse()
            .unwrap_or_else(|e| panic!("own URL {}: {e}", self.url()));
        let config = kube::Config::new(uri);
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("kube client for {}: {e}", self.url()))
    }
}

/// A kubeconfig for an API server at `server` (plain HTTP, no credentials)
/// with `namespace` as the default: what kubectl, helm, kube-rs and pods
/// (through the kubelet) are given.
pub fn kubeconfig(server: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {server}\n\
         contexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: {namespace}\n\
         current-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\n"
    )
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    tracing::debug!(%method, uri = %uri, "request");
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        let store = shared.store();
        let kinds = store.kinds();
        let rest = rest.trim_matches('/');
        let doc = if rest.is_empty() {
            Some(openapi::root(&kinds, store.rv()))
        } else {
            openapi::group_version(&kinds, rest, &|group, plural| {
                store.crd_schema(group, plural)
            })
        };
        return match doc {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => error_response(&ApiError::not_found(&format!("OpenAPI document {path}"))),
        };
    }
    if let Some(discovery) = discovery(&shared, path) {
        return json_response(StatusCode::OK, &discovery);
    }
    let Some(target) = parse(path) else {
        return error_response(&ApiError::not_found(&format!("path {path}")));
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if method == Method::GET && watch {
        return match watch_stream(&shared, &target, &query) {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    // Protobuf bodies (client-go's typed clients) become JSON first.
    let (content_type, body) =
        if content_type.starts_with(protobuf::CONTENT_TYPE) && !body.is_empty() {
            match protobuf::decode(&body) {
                Ok(object) => (
                    "application/json".to_owned(),
                    Bytes::from(object.to_string()),
                ),
                Err(e) => return error_response(&e),
            }
        } else {
            (content_type, body)
        };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match serve(&shared, &method, &target, &query, &content_type, &body) {
        Ok((code, value))
            if method == Method::GET
                && target.subresource.is_none()
                && table::wants_table(accept) =>
        {
            match shared.store().kind(&target.resource) {
                Ok(kind) => json_response(
                    code,
                    &table::to_table(&kind, &value, jiff::Timestamp::now()),
                ),
                Err(e) => error_response(&e),
            }
        }
        Ok((code, value)) => json_response(code, &value),
        Err(e) => error_response(&e),
    }
}

fn parse_body(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if yaml => serde_yaml::from_slice(body).map_err(|y| {
            ApiError::new(
                400,
                "BadRequest",
                format!("body is neither JSON ({e}) nor YAML ({y})"),
            )
        }),
        Err(e) => Err(ApiError::new(
            400,
            "BadRequest",
            format!("body is not valid JSON: {e}"),
        )),
    }
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in fields {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = match query.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).ok_or_else(|| {
            ApiError::new(
                400,
                "BadRequest",
                format!("unable to parse labelSelector {s:?}"),
            )
        })?,
        None => LabelSelector::default(),
    };
    let fields = match query.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s).ok_or_else(|| {
            ApiError::new(
                400,
                "BadRequest",
                format!(
                    "field selector {s:?} not supported (metadata.name and metadata.namespace only)"
                ),
            )
        })?,
        None => FieldSelector::default(),
    };
    Ok((labels, fields))
}

fn scale_of(object: &Value, spec: &str, status: &str, api_version: &str) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"],
            "creationTimestamp": object["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer(spec).cloned().unwrap_or(json!(0))},
        "status": {"replicas": object.pointer(status).cloned().unwrap_or(json!(0)), "targetAPIVersion": api_version},
    })
}

fn serve(
    shared: &Shared,
    method: &Method,
    target: &ResourcePath,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let mut store = shared.store();
    let resource = &target.resource;
    let kind = store.kind(resource)?;
    let ns = if kind.namespaced {
        target.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let sub = target.subresource.as_deref();
    if let Some(s) = sub
        && !(s == "status" && kind.status || s == "scale" && kind.scale.is_some())
    {
        return Err(ApiError::not_found(&format!(
            "subresource {s} of {}",
            resource.plural
        )));
    }
    let Some(name) = target.name.as_deref() else {
        return match *method {
            Method::GET => {
                let (labels, fields) = selectors(query)?;
                let ns = if kind.namespaced {
                    target.namespace.as_deref()
                } else {
                    None
                };
                let items = store.list(resource, ns, &labels, &fields);
                Ok((
                    StatusCode::OK,
                    json!({
                        "apiVersion": resource.api_version(), "kind": format!("{}List", kind.kind),
                        "metadata": {"resourceVersion": store.rv().to_string()}, "items": items,
                    }),
                ))
            }
            Method::POST => {
                let object = parse_body(body, false)?;
                let created = store.create(resource, &ns, object)?;
                Ok((StatusCode::CREATED, created))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} on a collection"),
            )),
        };
    };
    match (method.clone(), sub) {
        (Method::GET, Some("scale")) => {
            let object = store.get(resource, &ns, name)?;
            let (spec, status) = kind.scale.clone().unwrap_or_default();
            Ok((
                StatusCode::OK,
                scale_of(&object, &spec, &status, &resource.api_version()),
            ))
        }
        (Method::GET, _) => Ok((StatusCode::OK, store.get(resource, &ns, name)?)),
        (Method::PUT | Method::PATCH, Some("scale")) => {
            let mut object = store.get(resource, &ns, name)?;
            let (spec, status) = kind.scale.clone().unwrap_or_default();
            let mut scale = scale_of(&object, &spec, &status, &resource.api_version());
            let input = parse_body(body, true)?;
            if *method == Method::PUT {
                scale = input;
            } else {
                merge(&mut scale, &input);
            }
            let replicas = scale["spec"]["replicas"].clone();
            if let Some(slot) = object.pointer_mut(&spec) {
                *slot = replicas;
            } else {
                let parent = spec.rsplit_once('/').map_or("", |(p, _)| p);
                let field = spec.rsplit('/').next().unwrap_or("replicas");
                if let Some(Value::Object(p)) = object.pointer_mut(parent) {
                    p.insert(field.to_owned(), replicas);
                }
            }
            let updated = store.update(resource, &ns, name, object, None, false)?;
            Ok((
                StatusCode::OK,
                scale_of(&updated, &spec, &status, &resource.api_version()),
            ))
        }
        (Method::PUT, _) => {
            let object = parse_body(body, false)?;
            Ok((
                StatusCode::OK,
                store.update(resource, &ns, name, object, sub, true)?,
            ))
        }
        (Method::PATCH, _) => {
            let apply = content_type.starts_with("application/apply-patch");
            let patch = parse_body(body, apply)?;
            let live = match store.get(resource, &ns, name) {
                Ok(live) => live,
                Err(e) if apply && e.code == 404 && sub.is_none() => {
                    let mut object = patch;
                    object["metadata"]["name"] = json!(name);
                    return Ok((StatusCode::CREATED, store.create(resource, &ns, object)?));
                }
                Err(e) => return Err(e),
            };
            let mut next = live.clone();
            if content_type.starts_with("application/json-patch") {
                let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
                    ApiError::new(400, "BadRequest", format!("not a JSON patch: {e}"))
                })?;
                json_patch::patch(&mut next, &ops).map_err(|e| {
                    ApiError::new(422, "Invalid", format!("JSON patch failed: {e}"))
                })?;
            } else {
                merge(&mut next, &patch);
            }
            // A patch never carries a stale resourceVersion check unless given.
            let check = patch_has_rv(body);
            Ok((
                StatusCode::OK,
                store.update(resource, &ns, name, next, sub, check)?,
            ))
        }
        (Method::DELETE, None) => {
            let options = parse_body(body, false).unwrap_or(Value::Null);
            let grace = query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
                .or_else(|| options["gracePeriodSeconds"].as_i64());
            let orphan = query.get("propagationPolicy").map(String::as_str) == Some("Orphan")
                || options["propagationPolicy"].as_str() == Some("Orphan");
            Ok((
                StatusCode::OK,
                store.delete(resource, &ns, name, grace, orphan)?,
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} on {}", resource.plural),
        )),
    }
}

fn patch_has_rv(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(str::to_owned))
        .is_some_and(|rv| !rv.is_empty())
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_stream(
    shared: &Arc<Shared>,
    target: &ResourcePath,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let store = shared.store();
    let kind = store.kind(&target.resource)?;
    let (labels, fields) = selectors(query)?;
    let ns = if kind.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    let resource = (
        target.resource.group.clone(),
        target.resource.plural.clone(),
    );
    let matches = {
        let ns = ns.clone();
        move |object: &Value| {
            ns.as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
                && labels.matches(object)
                && fields.matches(object)
        }
    };
    let mut live = store.changes.subscribe();
    let since = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
        .filter(|rv| *rv > 0);
    let mut first: Vec<Bytes> = Vec::new();
    let mut last = store.rv();
    // A watch-list request (`sendInitialEvents=true`, client-go's
    // WatchListClient, used by Helm's waits) gets the current objects as
    // ADDED whatever its version, then a bookmark saying they are over.
    let watch_list = query.get("sendInitialEvents").map(String::as_str) == Some("true");
    match since.filter(|_| !watch_list) {
        Some(rv) => match store.changes_since(rv) {
            Some(changes) => {
                for c in changes
                    .iter()
                    .filter(|c| c.resource == resource && matches(&c.object))
                {
                    first.push(event_line(c.kind, &c.object));
                }
            }
            None => {
                let expired = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", store.rv()),
                );
                first.push(event_line("ERROR", &expired.to_status()));
                last = u64::MAX;
            }
        },
        None => {
            for object in store.list(
                &target.resource,
                ns.as_deref(),
                &LabelSelector::default(),
                &FieldSelector::default(),
            ) {
                if matches(&object) {
                    first.push(event_line("ADDED", &object));
                }
            }
        }
    }
    if watch_list {
        let mark = json!({"apiVersion": target.resource.api_version(), "kind": kind.kind,
            "metadata": {"resourceVersion": last.to_string(),
                         "annotations": {"k8s.io/initial-events-end": "true"}}});
        first.push(event_line("BOOKMARK", &mark));
    }
    drop(store);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let interval = shared.options.bookmark_interval;
    let api_version = target.resource.api_version();
    let kind_name = kind.kind.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if last == u64::MAX {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let mark = json!({"apiVersion": api_version, "kind": kind_name,
                        "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(event_line("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                }
                change = live.recv() => {
                    let change: Change = match change {
                        Ok(c) => c,
                        // Too slow: end the stream; the client resumes from its last version.
                        Err(_) => return,
                    };
                    if change.rv <= last {
                        continue;
                    }
                    last = change.rv;
                    if change.resource == resource && matches(&change.object)
                        && tx.send(event_line(change.kind, &change.object)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let stream =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Discovery documents; `None` for non-discovery paths.
fn discovery(shared: &Shared, path: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    match path {
        "/version" => Some(
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kubesim", "platform": "linux/amd64"}),
        ),
        "/api" => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        "/apis" => {
            let store = shared.store();
            let mut groups: Vec<(String, String)> = store
                .kinds()
                .into_iter()
                .map(|((g, _), k)| (g, k.version))
                .filter(|(g, _)| !g.is_empty())
                .collect();
            groups.sort();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    json!({"name": g, "versions": [{"groupVersion": format!("{g}/{v}"), "version": v}],
                        "preferredVersion": {"groupVersion": format!("{g}/{v}"), "version": v}})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (group, version) = match parts.as_slice() {
                ["api", v] => ("", *v),
                ["apis", g, v] => (*g, *v),
                _ => return None,
            };
            let store = shared.store();
            let mut resources = Vec::new();
            for ((g, plural), kind) in store.kinds() {
                if g != group {
                    continue;
                }
                let mut entry = json!({"name": plural, "singularName": kind.singular, "namespaced": kind.namespaced, "kind": kind.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
                if !kind.short_names.is_empty() {
                    entry["shortNames"] = json!(kind.short_names);
                }
                if !kind.categories.is_empty() {
                    entry["categories"] = json!(kind.categories);
                }
                resources.push(entry);
                if kind.status {
                    resources.push(json!({"name": format!("{plural}/status"), "singularName": "", "namespaced": kind.namespaced, "kind": kind.kind, "verbs": ["get", "patch", "update"]}));
                }
                if kind.scale.is_some() {
                    resources.push(json!({"name": format!("{plural}/scale"), "singularName": "", "namespaced": kind.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
                }
            }
            let group_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            Some(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
            )
        }
    }
}
