//! The access gate every front end passes a request through: who sent it
//! (authentication), whether their roles grant what it needs
//! (authorization, [`cairn_auth::policy`]), and the audit line.
//!
//! The gate reads the access-control records from this node's meta
//! replica, cached until the meta group's revision moves. Authentication is
//! on exactly when the records hold an auth configuration, so all nodes
//! switch together, whatever flags each was started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cairn_auth::Call;
use cairn_auth::model::{Role, User};
use cairn_auth::policy::{self, Credential, Principal, Subject};
use cairn_auth::token::{self, SessionClaims, TokenError};
use cairn_proto::ErrorCode;
use cairn_tls::CertIdentity;
use prometheus::IntCounterVec;

use super::audit::{AuditEvent, AuditLog, MAX_AUDITED_NEEDS, describe};
use super::records::{self, AuthRecords};
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::cluster::meta;

/// Metadata (and HTTP header) a forwarding node names the caller with.
/// Trusted only on a connection with a node certificate of this cluster.
pub const ON_BEHALF_OF: &str = "cairn-on-behalf-of";

/// Reasons `cairn_auth_denials_total` counts.
pub const DENIAL_REASONS: &[&str] = &[
    "no_credential",
    "bad_token",
    "expired_token",
    "changed_user",
    "unmapped_certificate",
    "bad_password",
    "permission",
];

/// A refused request: its stable code and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AccessError {
    /// `unauthenticated`, `token_expired`, `permission_denied`, …
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

impl AccessError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The gRPC status, with the code in metadata.
    pub fn status(&self) -> tonic::Status {
        let mut s = tonic::Status::new(self.code.grpc(), self.message.clone());
        s.metadata_mut().insert(
            cairn_proto::ERROR_CODE_METADATA,
            tonic::metadata::MetadataValue::from_static(self.code.as_str()),
        );
        s
    }
}

/// What a request carries to prove who sent it.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `authorization: Bearer …` (session or API token).
    pub bearer: Option<String>,
    /// The user a forwarding node names.
    pub on_behalf_of: Option<String>,
    /// The verified client certificate of the connection.
    pub cert: Option<CertIdentity>,
    /// The client's address.
    pub remote: Option<SocketAddr>,
}

fn bearer(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v);
    (!t.is_empty()).then(|| t.to_string())
}

impl Credentials {
    /// What a gRPC request carries.
    pub fn of_grpc<T>(req: &tonic::Request<T>) -> Self {
        Self::of(
            req.metadata().as_ref(),
            req.extensions().get::<cairn_tls::ConnInfo>(),
            req.remote_addr(),
        )
    }

    /// What a request carries, from its headers and its connection's
    /// extensions (as tower services see it).
    pub fn of_parts(headers: &http::HeaderMap, ext: &http::Extensions) -> Self {
        let tcp = ext
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|t| t.remote_addr());
        Self::of(headers, ext.get::<cairn_tls::ConnInfo>(), tcp)
    }

    /// What an HTTP request carries.
    pub fn of_http(headers: &http::HeaderMap, conn: Option<&cairn_tls::ConnInfo>) -> Self {
        Self::of(headers, conn, None)
    }

    /// The one reading of headers and connection: `tcp` is the peer
    /// address of a plaintext connection.
    fn of(
        headers: &http::HeaderMap,
        conn: Option<&cairn_tls::ConnInfo>,
        tcp: Option<SocketAddr>,
    ) -> Self {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            bearer: bearer(text(http::header::AUTHORIZATION.as_str())),
            on_behalf_of: text(ON_BEHALF_OF).map(str::to_string),
            cert: conn.and_then(|c| c.identity.clone()),
            remote: conn.and_then(|c| c.remote).or(tcp),
        }
    }
}

/// The caller of the request being served, as forwarded reads pass it on.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The bearer token the request came with.
    pub bearer: Option<String>,
    /// The authenticated user.
    pub user: Option<String>,
}

tokio::task_local! {
    /// The caller of the request this task serves (set by the front ends
    /// around each call; read by [`crate::kv::forward`]).
    pub static CALLER: Caller;
}

/// Names the caller of the request this task serves on `md`, for a request
/// forwarded to another node: their bearer token, and their user name
/// (trusted there only from a node certificate of this cluster).
pub fn stamp_caller(md: &mut tonic::metadata::MetadataMap) {
    let _ = CALLER.try_with(|caller| {
        if let Some(v) = caller
            .bearer
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            md.insert("authorization", v);
        }
        if let Some(v) = caller.user.as_ref().and_then(|u| u.parse().ok()) {
            md.insert(ON_BEHALF_OF, v);
        }
    });
}

/// Stamps the current caller on every request of a client (see
/// [`stamp_caller`]): the admin service's forwarding client.
#[derive(Debug, Clone, Copy, Default)]
pub struct StampCaller;

impl tonic::service::Interceptor for StampCaller {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        stamp_caller(req.metadata_mut());
        Ok(req)
    }
}

/// Checks every request against the cluster's access-control records.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    cluster: Option<Arc<Cluster>>,
    node_id: u64,
    tls_cluster: Option<String>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    denials: IntCounterVec,
    records: Mutex<Option<(u64, Arc<AuthRecords>)>>,
    sessions: Mutex<HashMap<String, SessionClaims>>,
}

impl std::fmt::Debug for GateInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessGate")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Most verified session tokens remembered (so a token's signature is
/// checked once, not on every request).
const SESSION_CACHE: usize = 4096;

impl AccessGate {
    /// The gate of a node. `cluster`: `None` on a standalone node (no meta
    /// group: authentication stays off). `tls_cluster`: the cluster name
    /// node certificates carry, `None` without TLS.
    pub fn new(
        cluster: Option<Arc<Cluster>>,
        node_id: u64,
        tls_cluster: Option<String>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        denials: IntCounterVec,
    ) -> Self {
        Self {
            inner: Arc::new(GateInner {
                cluster,
                node_id,
                tls_cluster,
                clock,
                audit,
                denials,
                records: Mutex::new(None),
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The access-control records as this node's meta replica has them.
    ///
    /// # Errors
    /// Storage failure.
    pub fn records(&self) -> Result<Arc<AuthRecords>, AccessError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(Arc::default());
        };
        let storage = |e: crate::storage::StorageError| {
            AccessError::new(
                ErrorCode::StorageError,
                format!("reading access-control records: {e}"),
            )
        };
        let epoch = meta::epoch(cluster.engine()).map_err(storage)?;
        let mut cached = lock(&self.inner.records);
        if let Some((at, recs)) = cached.as_ref()
            && *at == epoch
        {
            return Ok(recs.clone());
        }
        let recs = Arc::new(records::read(cluster.engine()).map_err(storage)?);
        *cached = Some((epoch, recs.clone()));
        Ok(recs)
    }

    /// Whether authentication is on.
    ///
    /// # Errors
    /// Storage failure.
    pub fn enabled(&self) -> Result<bool, AccessError> {
        Ok(self.records()?.config.is_some())
    }

    /// Authenticates and authorizes `call`; records the audit line. `Ok(None)`:
    /// authentication is off and everything is allowed, or the call needs
    /// nothing and the request proves no one.
    ///
    /// # Errors
    /// `unauthenticated`/`token_expired` (no valid credential) or
    /// `permission_denied` (the roles do not grant a need).
    pub fn check(
        &self,
        api: &'static str,
        creds: &Credentials,
        call: &Call<'_>,
    ) -> Result<Option<Principal>, AccessError> {
        let recs = self.records()?;
        if recs.config.is_none() {
            return Ok(None);
        }
        let needs = call.needs();
        if needs.iter().all(|n| *n == cairn_auth::Need::Nothing) {
            // A call anyone may make (login, cluster discovery): whoever
            // the credentials prove, if anyone.
            return Ok(self.authenticate(&recs, creds).ok());
        }
        let principal = match self.authenticate(&recs, creds) {
            Ok(p) => p,
            Err((reason, e)) => {
                self.deny(reason);
                self.audit(api, creds, None, call, &needs, Some(&e.message));
                return Err(e);
            }
        };
        let roles;
        let subject = match &principal {
            Principal::Node(_) => Subject::Node,
            Principal::User { name, .. } => {
                roles = recs
                    .users
                    .get(name)
                    .map(|(u, _)| roles_of(&recs, u))
                    .unwrap_or_default();
                Subject::User(&roles)
            }
        };
        let peers_open = self.inner.tls_cluster.is_none();
        match policy::check(subject, &needs, peers_open) {
            Ok(()) => {
                if call.audited() {
                    self.audit(api, creds, Some(&principal), call, &needs, None);
                }
                Ok(Some(principal))
            }
            Err(d) => {
                self.deny("permission");
                let message = format!(
                    "{} may not call {}: {}",
                    principal.describe(),
                    call.name(),
                    d.message
                );
                self.audit(api, creds, Some(&principal), call, &needs, Some(&message));
                Err(AccessError::new(ErrorCode::PermissionDenied, message))
            }
        }
    }

    /// Counts a denial by reason.
    pub fn deny(&self, reason: &str) {
        self.inner.denials.with_label_values(&[reason]).inc();
    }

    /// Writes the audit line of `call`.
    pub fn audit(
        &self,
        api: &str,
        creds: &Credentials,
        principal: Option<&Principal>,
        call: &Call<'_>,
        needs: &[cairn_auth::Need],
        denied: Option<&str>,
    ) {
        let who = principal.map(Principal::describe).unwrap_or_default();
        let credential = match principal {
            Some(Principal::User { credential, .. }) => credential.as_str(),
            Some(Principal::Node(_)) => "node_certificate",
            None => "none",
        };
        self.inner.audit.record(&AuditEvent {
            ts_ms: self.inner.clock.now_ms(),
            node: self.inner.node_id,
            principal: &who,
            credential,
            call: call.name(),
            api,
            remote: creds.remote.map(|r| r.to_string()),
            needs: needs.iter().take(MAX_AUDITED_NEEDS).map(describe).collect(),
            result: if denied.is_some() {
                "denied"
            } else {
                "allowed"
            },
            reason: denied,
        });
    }

    /// Who `creds` prove the caller is. The error carries the denial reason.
    fn authenticate(
        &self,
        recs: &AuthRecords,
        creds: &Credentials,
    ) -> Result<Principal, (&'static str, AccessError)> {
        let unauth = |reason, m: String| (reason, AccessError::new(ErrorCode::Unauthenticated, m));
        if let Some(t) = &creds.bearer {
            return self.authenticate_token(recs, t);
        }
        let node = creds.cert.as_ref().and_then(|c| c.node()).filter(|n| {
            self.inner
                .tls_cluster
                .as_deref()
                .is_some_and(|cl| *n.cluster == *cl)
        });
        if let Some(name) = &creds.on_behalf_of {
            if node.is_none() {
                return Err(unauth(
                    "no_credential",
                    format!(
                        "{ON_BEHALF_OF} is accepted only from nodes of this cluster (node certificates)"
                    ),
                ));
            }
            return match recs.users.get(name) {
                Some(_) => Ok(Principal::User {
                    name: name.clone(),
                    credential: Credential::Forwarded,
                }),
                None => Err(unauth(
                    "changed_user",
                    format!("user {name:?} (named by the forwarding node) does not exist"),
                )),
            };
        }
        if let Some(n) = node {
            return Ok(Principal::Node(n.node_id));
        }
        if let Some(cert) = &creds.cert {
            let mapped = recs.users.values().find(|(u, _)| {
                u.certificates
                    .iter()
                    .any(|c| cert.uris.contains(c) || cert.dns.contains(c))
            });
            return match mapped {
                Some((u, _)) => Ok(Principal::User {
                    name: u.name.clone(),
                    credential: Credential::Certificate,
                }),
                None => Err(unauth(
                    "unmapped_certificate",
                    format!(
                        "the client certificate ({}) maps to no user; map one of its SANs to a user (cairnctl user add NAME --certificate SAN) or send a token",
                        cert.describe()
                    ),
                )),
            };
        }
        Err(unauth(
            "no_credential",
            "authentication is on: send `authorization: Bearer <token>` (a session token from `cairnctl login`, or an API token) or a client certificate mapped to a user".into(),
        ))
    }

    fn authenticate_token(
        &self,
        recs: &AuthRecords,
        t: &str,
    ) -> Result<Principal, (&'static str, AccessError)> {
        let unauth = |reason, m: String| (reason, AccessError::new(ErrorCode::Unauthenticated, m));
        if let Some((id, secret)) = token::parse_api_token(t) {
            let user = recs
                .api_tokens
                .get(id)
                .and_then(|name| recs.users.get(name))
                .map(|(u, _)| u);
            let record = user.and_then(|u| u.api_tokens.iter().find(|r| r.id == id));
            return match (user, record) {
                (Some(u), Some(r)) if token::api_secret_matches(r, secret) => Ok(Principal::User {
                    name: u.name.clone(),
                    credential: Credential::ApiToken,
                }),
                _ => Err(unauth(
                    "bad_token",
                    format!("API token {id} is unknown, revoked or wrong"),
                )),
            };
        }
        let Some((config, _)) = &recs.config else {
            return Err(unauth("bad_token", "authentication is off".into()));
        };
        let now = self.inner.clock.now_ms();
        let cached = lock(&self.inner.sessions).get(t).cloned();
        let claims = match cached {
            Some(c) if now < c.exp_ms => c,
            Some(c) => {
                lock(&self.inner.sessions).remove(t);
                return Err((
                    "expired_token",
                    AccessError::new(
                        ErrorCode::TokenExpired,
                        TokenError::Expired { at_ms: c.exp_ms }.to_string(),
                    ),
                ));
            }
            None => match config.ring.verify(t, now) {
                Ok(c) => {
                    let mut s = lock(&self.inner.sessions);
                    if s.len() >= SESSION_CACHE {
                        s.clear();
                    }
                    s.insert(t.to_string(), c.clone());
                    c
                }
                Err(e @ TokenError::Expired { .. }) => {
                    return Err((
                        "expired_token",
                        AccessError::new(ErrorCode::TokenExpired, e.to_string()),
                    ));
                }
                Err(e) => return Err(unauth("bad_token", e.to_string())),
            },
        };
        match recs.users.get(&claims.sub) {
            Some((u, _)) if u.epoch == claims.ep => Ok(Principal::User {
                name: u.name.clone(),
                credential: Credential::SessionToken,
            }),
            Some(_) => Err(unauth(
                "changed_user",
                format!(
                    "user {:?} changed (password, roles or sessions revoked) after this token was issued; log in again",
                    claims.sub
                ),
            )),
            None => Err(unauth(
                "changed_user",
                format!("user {:?} no longer exists", claims.sub),
            )),
        }
    }
}

/// The roles `user` holds (built-in or stored; unknown names, e.g. of a
/// role removed since, are skipped).
pub fn roles_of(recs: &AuthRecords, user: &User) -> Vec<Role> {
    user.roles
        .iter()
        .filter_map(|r| {
            Role::built_in(r).or_else(|| recs.roles.get(r).map(|(role, _)| role.clone()))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
