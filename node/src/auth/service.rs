//! The `cairn.auth.v1.Auth` gRPC service: login, who-am-I, and the
//! management of users, roles, API tokens and signing keys.
//!
//! Changes are read-modify-write on the meta group: read after a ReadIndex
//! barrier (so the latest committed record is seen), then a meta
//! transaction conditional on the records' mod revisions.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_auth::model::{
    self, AdminPermission, KeyPermission, KeyRange, ROOT_ROLE, Role, Rule, User,
};
use cairn_auth::policy::{Credential, Principal};
use cairn_auth::{AuthRpc, Call, password, token};
use cairn_proto::ErrorCode;
use cairn_proto::auth::v1 as authpb;
use tonic::{Request, Response, Status};

use super::gate::{AccessError, AccessGate, Credentials};
use super::records::{self, AuthRecords, Change};
use crate::cluster::Cluster;
use crate::cluster::meta::{self, META_SHARD};

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenTimes {
    /// Lifetime of a session token when the login asks for none.
    pub default_ttl: Duration,
    /// Longest lifetime a login may ask for.
    pub max_ttl: Duration,
}

/// The Auth service of one cluster node.
#[derive(Clone)]
pub struct AuthGrpc {
    cluster: Arc<Cluster>,
    gate: AccessGate,
    times: TokenTimes,
}

fn err(code: ErrorCode, m: impl Into<String>) -> Status {
    AccessError::new(code, m).status()
}

fn bad(m: impl Into<String>) -> Status {
    err(ErrorCode::BadAccessRule, m)
}

fn cluster_status(e: crate::cluster::ClusterError) -> Status {
    err(
        ErrorCode::Unavailable,
        format!("the meta group cannot answer now: {e}"),
    )
}

/// A PHC hash no password matches in practice: checked against when the
/// user does not exist, so a login costs the same either way.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash("decoy password, never used").unwrap_or_default())
}

impl AuthGrpc {
    /// The service over `cluster`, checking calls through `gate`.
    pub fn new(cluster: Arc<Cluster>, gate: AccessGate, times: TokenTimes) -> Self {
        Self {
            cluster,
            gate,
            times,
        }
    }

    /// The tonic service.
    pub fn into_server(self) -> authpb::auth_server::AuthServer<Self> {
        authpb::auth_server::AuthServer::new(self)
    }

    /// Checks `rpc` for the caller of `req`; refuses management calls while
    /// authentication is off (anyone could make them then).
    fn admit<T>(&self, req: &Request<T>, rpc: AuthRpc) -> Result<Option<Principal>, Status> {
        let p = self
            .gate
            .check("grpc", &Credentials::of_grpc(req), &Call::Auth(rpc))
            .map_err(|e| e.status())?;
        if rpc != AuthRpc::WhoAmI && !self.gate.enabled().map_err(|e| e.status())? {
            return Err(err(
                ErrorCode::AuthDisabled,
                "authentication is not set up on this cluster: start a node with --auth-root-password-file FILE (it creates the root user and turns authentication on)",
            ));
        }
        Ok(p)
    }

    /// The records as of a ReadIndex barrier on the meta group.
    async fn fresh(&self) -> Result<Arc<AuthRecords>, Status> {
        self.cluster
            .read_barrier(META_SHARD)
            .await
            .map_err(cluster_status)?;
        self.gate.records().map_err(|e| e.status())
    }

    /// Stores `value` at `key` if the record is still at mod revision `rev`
    /// (0: absent).
    async fn replace<T: serde::Serialize>(
        &self,
        key: Vec<u8>,
        rev: u64,
        value: &T,
    ) -> Result<(), Status> {
        let change =
            Change::put(key.clone(), value).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        self.commit(&[(key, rev)], vec![change]).await
    }

    /// Commits `changes` if every `expect` (key, mod revision) still holds.
    async fn commit(&self, expect: &[(Vec<u8>, u64)], changes: Vec<Change>) -> Result<(), Status> {
        let now = self.gate.clock().now_ms();
        let req = records::conditional(expect, changes, now);
        let resp = self
            .cluster
            .propose(META_SHARD, req, 0)
            .await
            .map_err(cluster_status)?;
        if !meta::txn_succeeded(&resp) {
            return Err(err(
                ErrorCode::Unavailable,
                "the access-control records changed while this change was being made; nothing was applied, retry",
            ));
        }
        Ok(())
    }
}

fn user_pb(u: &User) -> authpb::User {
    authpb::User {
        name: u.name.clone(),
        roles: u.roles.clone(),
        certificates: u.certificates.clone(),
        api_tokens: u.api_tokens.iter().map(|t| t.id.clone()).collect(),
        has_password: u.password.is_some(),
    }
}

fn role_pb(r: &Role, built_in: bool) -> authpb::Role {
    authpb::Role {
        name: r.name.clone(),
        rules: r
            .rules
            .iter()
            .map(|rule| authpb::KeyRule {
                prefix: Vec::new(),
                start: rule.range.start.clone(),
                end: rule.range.end.clone().unwrap_or_default(),
                permissions: rule
                    .permissions
                    .iter()
                    .map(|p| key_permission_pb(*p) as i32)
                    .collect(),
            })
            .collect(),
        admin: r
            .admin
            .iter()
            .map(|a| admin_permission_pb(*a) as i32)
            .collect(),
        built_in,
    }
}

fn key_permission_pb(p: KeyPermission) -> authpb::KeyPermission {
    match p {
        KeyPermission::Read => authpb::KeyPermission::Read,
        KeyPermission::Write => authpb::KeyPermission::Write,
        KeyPermission::Delete => authpb::KeyPermission::Delete,
        KeyPermission::Scan => authpb::KeyPermission::Scan,
    }
}

fn admin_permission_pb(p: AdminPermission) -> authpb::AdminPermission {
    match p {
        AdminPermission::ClusterRead => authpb::AdminPermission::ClusterRead,
        AdminPermission::NodeLifecycle => authpb::AdminPermission::NodeLifecycle,
        AdminPermission::Rebalance => authpb::AdminPermission::Rebalance,
        AdminPermission::Users => authpb::AdminPermission::Users,
    }
}

/// A role from its wire form, checked.
fn role_from_pb(r: authpb::Role) -> Result<Role, Status> {
    let mut rules = Vec::new();
    for (i, k) in r.rules.into_iter().enumerate() {
        let range = if k.prefix.is_empty() {
            KeyRange::between(&k.start, &k.end)
        } else if k.start.is_empty() && k.end.is_empty() {
            KeyRange::prefix(&k.prefix)
        } else {
            return Err(bad(format!(
                "rule {i} sets both a prefix and start/end; use one"
            )));
        };
        let mut permissions = BTreeSet::new();
        for p in k.permissions {
            permissions.insert(match authpb::KeyPermission::try_from(p) {
                Ok(authpb::KeyPermission::Read) => KeyPermission::Read,
                Ok(authpb::KeyPermission::Write) => KeyPermission::Write,
                Ok(authpb::KeyPermission::Delete) => KeyPermission::Delete,
                Ok(authpb::KeyPermission::Scan) => KeyPermission::Scan,
                _ => return Err(bad(format!("rule {i} has unknown key permission {p}"))),
            });
        }
        rules.push(Rule { range, permissions });
    }
    let mut admin = BTreeSet::new();
    for a in r.admin {
        admin.insert(match authpb::AdminPermission::try_from(a) {
            Ok(authpb::AdminPermission::ClusterRead) => AdminPermission::ClusterRead,
            Ok(authpb::AdminPermission::NodeLifecycle) => AdminPermission::NodeLifecycle,
            Ok(authpb::AdminPermission::Rebalance) => AdminPermission::Rebalance,
            Ok(authpb::AdminPermission::Users) => AdminPermission::Users,
            _ => return Err(bad(format!("unknown admin permission {a}"))),
        });
    }
    let role = Role {
        name: r.name,
        rules,
        admin,
    };
    if Role::built_in(&role.name).is_some() {
        return Err(err(
            ErrorCode::BuiltInRole,
            format!("role {:?} is built in and cannot be changed", role.name),
        ));
    }
    role.validate().map_err(bad)?;
    Ok(role)
}

/// Whether some user other than `except` holds the root role.
fn another_root(recs: &AuthRecords, except: &str) -> bool {
    recs.users
        .values()
        .any(|(u, _)| u.name != except && u.roles.iter().any(|r| r == ROOT_ROLE))
}

/// Writes the root user and the auth configuration (with a fresh signing
/// key) unless the cluster has an auth configuration already: how
/// authentication is turned on. Returns whether this call turned it on.
///
/// # Errors
/// The meta group cannot answer; hashing failed.
pub async fn bootstrap_root(
    cluster: &Cluster,
    gate: &AccessGate,
    root_password: &str,
) -> Result<bool, String> {
    cluster
        .read_barrier(META_SHARD)
        .await
        .map_err(|e| e.to_string())?;
    let recs = gate.records().map_err(|e| e.to_string())?;
    if recs.config.is_some() {
        return Ok(false);
    }
    let now = gate.clock().now_ms();
    let hash = password::hash(root_password)?;
    let config = records::AuthConfig {
        ring: token::KeyRing::new(now).map_err(|e| e.to_string())?,
    };
    let root = User {
        name: model::ROOT_USER.into(),
        password: Some(hash),
        roles: vec![ROOT_ROLE.into()],
        epoch: 1,
        certificates: Vec::new(),
        api_tokens: Vec::new(),
    };
    let user_rev = recs.users.get(model::ROOT_USER).map_or(0, |(_, r)| *r);
    let changes = vec![
        Change::put(records::CONFIG_KEY.to_vec(), &config).map_err(|e| e.to_string())?,
        Change::put(records::user_key(model::ROOT_USER), &root).map_err(|e| e.to_string())?,
    ];
    let req = records::conditional(
        &[
            (records::CONFIG_KEY.to_vec(), 0),
            (records::user_key(model::ROOT_USER), user_rev),
        ],
        changes,
        now,
    );
    let resp = cluster
        .propose(META_SHARD, req, 0)
        .await
        .map_err(|e| e.to_string())?;
    Ok(meta::txn_succeeded(&resp))
}

#[tonic::async_trait]
impl authpb::auth_server::Auth for AuthGrpc {
    async fn login(
        &self,
        req: Request<authpb::LoginRequest>,
    ) -> Result<Response<authpb::LoginResponse>, Status> {
        self.admit(&req, AuthRpc::Login)?;
        let creds = Credentials::of_grpc(&req);
        let r = req.into_inner();
        let recs = self.fresh().await?;
        let user = recs.users.get(&r.user).map(|(u, _)| u.clone());
        let phc = user
            .as_ref()
            .and_then(|u| u.password.clone())
            .unwrap_or_else(|| decoy_hash().to_string());
        let given = r.password.clone();
        let matches = tokio::task::spawn_blocking(move || password::verify(&given, &phc))
            .await
            .map_err(|e| err(ErrorCode::Internal, format!("password check task: {e}")))?;
        let Some(user) = user.filter(|u| matches && u.password.is_some()) else {
            self.gate.deny("bad_password");
            let message = format!(
                "login as {:?} refused: no such user or wrong password",
                r.user
            );
            self.gate.audit(
                "grpc",
                &creds,
                None,
                &Call::Auth(AuthRpc::Login),
                &[],
                Some(&message),
            );
            return Err(err(ErrorCode::BadCredentials, message));
        };
        let ttl = if r.ttl_ms == 0 {
            self.times.default_ttl
        } else {
            Duration::from_millis(r.ttl_ms).min(self.times.max_ttl)
        };
        let Some((config, _)) = &recs.config else {
            return Err(err(ErrorCode::AuthDisabled, "authentication is off"));
        };
        let now = self.gate.clock().now_ms();
        let (token, expires_at_ms) = config
            .ring
            .issue(&user.name, user.epoch, now, ttl.as_millis() as u64)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        self.gate.audit(
            "grpc",
            &creds,
            Some(&Principal::User {
                name: user.name.clone(),
                credential: Credential::SessionToken,
            }),
            &Call::Auth(AuthRpc::Login),
            &[],
            None,
        );
        Ok(Response::new(authpb::LoginResponse {
            token,
            expires_at_ms,
        }))
    }

    async fn who_am_i(
        &self,
        req: Request<authpb::WhoAmIRequest>,
    ) -> Result<Response<authpb::WhoAmIResponse>, Status> {
        let p = self.admit(&req, AuthRpc::WhoAmI)?;
        let recs = self.gate.records().map_err(|e| e.status())?;
        Ok(Response::new(match p {
            None => authpb::WhoAmIResponse {
                credential: "none".into(),
                ..Default::default()
            },
            Some(Principal::Node(id)) => authpb::WhoAmIResponse {
                user: format!("node {id}"),
                credential: "node_certificate".into(),
                auth_enabled: true,
                ..Default::default()
            },
            Some(Principal::User { name, credential }) => authpb::WhoAmIResponse {
                roles: recs
                    .users
                    .get(&name)
                    .map(|(u, _)| u.roles.clone())
                    .unwrap_or_default(),
                user: name,
                credential: credential.as_str().into(),
                auth_enabled: true,
            },
        }))
    }

    async fn put_user(
        &self,
        req: Request<authpb::PutUserRequest>,
    ) -> Result<Response<authpb::PutUserResponse>, Status> {
        self.admit(&req, AuthRpc::PutUser)?;
        let r = req.into_inner();
        model::check_name("user", &r.name).map_err(bad)?;
        if !r.password.is_empty() {
            password::check_strength(&r.password).map_err(bad)?;
        }
        let recs = self.fresh().await?;
        for role in &r.roles {
            if Role::built_in(role).is_none() && !recs.roles.contains_key(role) {
                return Err(err(
                    ErrorCode::RoleNotFound,
                    format!("role {role:?} does not exist; create it first (cairnctl role add)"),
                ));
            }
        }
        let existing = recs.users.get(&r.name);
        if r.create_only && existing.is_some() {
            return Err(err(
                ErrorCode::UserExists,
                format!("user {:?} exists", r.name),
            ));
        }
        let rev = existing.map_or(0, |(_, rev)| *rev);
        let old = existing.map(|(u, _)| u.clone());
        if old
            .as_ref()
            .is_some_and(|u| u.roles.iter().any(|x| x == ROOT_ROLE))
            && !r.roles.iter().any(|x| x == ROOT_ROLE)
            && !another_root(&recs, &r.name)
        {
            return Err(err(
                ErrorCode::RoleInUse,
                format!(
                    "user {:?} is the last one holding role root; give root to another user first",
                    r.name
                ),
            ));
        }
        let password = if r.password.is_empty() {
            old.as_ref().and_then(|u| u.password.clone())
        } else {
            let p = r.password.clone();
            Some(
                tokio::task::spawn_blocking(move || password::hash(&p))
                    .await
                    .map_err(|e| err(ErrorCode::Internal, format!("hashing task: {e}")))?
                    .map_err(|e| err(ErrorCode::Internal, e))?,
            )
        };
        let user = User {
            name: r.name.clone(),
            password,
            roles: r.roles,
            epoch: old.as_ref().map_or(0, |u| u.epoch) + 1,
            certificates: r.certificates,
            api_tokens: old.map(|u| u.api_tokens).unwrap_or_default(),
        };
        user.validate().map_err(bad)?;
        self.replace(records::user_key(&user.name), rev, &user)
            .await?;
        Ok(Response::new(authpb::PutUserResponse {
            user: Some(user_pb(&user)),
            created: rev == 0,
        }))
    }

    async fn delete_user(
        &self,
        req: Request<authpb::DeleteUserRequest>,
    ) -> Result<Response<authpb::DeleteUserResponse>, Status> {
        self.admit(&req, AuthRpc::DeleteUser)?;
        let name = req.into_inner().name;
        let recs = self.fresh().await?;
        let Some((u, rev)) = recs.users.get(&name) else {
            return Ok(Response::new(authpb::DeleteUserResponse { existed: false }));
        };
        if u.roles.iter().any(|r| r == ROOT_ROLE) && !another_root(&recs, &name) {
            return Err(err(
                ErrorCode::RoleInUse,
                format!(
                    "user {name:?} is the last one holding role root; give root to another user first"
                ),
            ));
        }
        let key = records::user_key(&name);
        self.commit(&[(key.clone(), *rev)], vec![Change::Delete(key)])
            .await?;
        Ok(Response::new(authpb::DeleteUserResponse { existed: true }))
    }

    async fn list_users(
        &self,
        req: Request<authpb::ListUsersRequest>,
    ) -> Result<Response<authpb::ListUsersResponse>, Status> {
        self.admit(&req, AuthRpc::ListUsers)?;
        let recs = self.fresh().await?;
        Ok(Response::new(authpb::ListUsersResponse {
            users: recs.users.values().map(|(u, _)| user_pb(u)).collect(),
        }))
    }

    async fn put_role(
        &self,
        req: Request<authpb::PutRoleRequest>,
    ) -> Result<Response<authpb::PutRoleResponse>, Status> {
        self.admit(&req, AuthRpc::PutRole)?;
        let role = role_from_pb(
            req.into_inner()
                .role
                .ok_or_else(|| bad("the request names no role"))?,
        )?;
        let recs = self.fresh().await?;
        let rev = recs.roles.get(&role.name).map_or(0, |(_, r)| *r);
        self.replace(records::role_key(&role.name), rev, &role)
            .await?;
        Ok(Response::new(authpb::PutRoleResponse {
            role: Some(role_pb(&role, false)),
            created: rev == 0,
        }))
    }

    async fn delete_role(
        &self,
        req: Request<authpb::DeleteRoleRequest>,
    ) -> Result<Response<authpb::DeleteRoleResponse>, Status> {
        self.admit(&req, AuthRpc::DeleteRole)?;
        let name = req.into_inner().name;
        if Role::built_in(&name).is_some() {
            return Err(err(
                ErrorCode::BuiltInRole,
                format!("role {name:?} is built in and cannot be removed"),
            ));
        }
        let recs = self.fresh().await?;
        let Some((_, rev)) = recs.roles.get(&name) else {
            return Ok(Response::new(authpb::DeleteRoleResponse { existed: false }));
        };
        let holders: Vec<&str> = recs
            .users
            .values()
            .filter(|(u, _)| u.roles.contains(&name))
            .map(|(u, _)| u.name.as_str())
            .collect();
        if !holders.is_empty() {
            return Err(err(
                ErrorCode::RoleInUse,
                format!(
                    "role {name:?} is held by {}; take it from them first",
                    holders.join(", ")
                ),
            ));
        }
        let key = records::role_key(&name);
        self.commit(&[(key.clone(), *rev)], vec![Change::Delete(key)])
            .await?;
        Ok(Response::new(authpb::DeleteRoleResponse { existed: true }))
    }

    async fn list_roles(
        &self,
        req: Request<authpb::ListRolesRequest>,
    ) -> Result<Response<authpb::ListRolesResponse>, Status> {
        self.admit(&req, AuthRpc::ListRoles)?;
        let recs = self.fresh().await?;
        let mut roles: Vec<authpb::Role> = [model::ROOT_ROLE, model::READONLY_ROLE]
            .iter()
            .filter_map(|n| Role::built_in(n))
            .map(|r| role_pb(&r, true))
            .collect();
        roles.extend(recs.roles.values().map(|(r, _)| role_pb(r, false)));
        Ok(Response::new(authpb::ListRolesResponse { roles }))
    }

    async fn create_api_token(
        &self,
        req: Request<authpb::CreateApiTokenRequest>,
    ) -> Result<Response<authpb::CreateApiTokenResponse>, Status> {
        self.admit(&req, AuthRpc::CreateApiToken)?;
        let r = req.into_inner();
        let recs = self.fresh().await?;
        let Some((user, rev)) = recs.users.get(&r.user) else {
            return Err(err(
                ErrorCode::UserNotFound,
                format!("user {:?} does not exist", r.user),
            ));
        };
        let (text, record) = token::new_api_token(self.gate.clock().now_ms(), &r.description)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        let id = record.id.clone();
        let mut user = user.clone();
        user.api_tokens.push(record);
        self.replace(records::user_key(&user.name), *rev, &user)
            .await?;
        Ok(Response::new(authpb::CreateApiTokenResponse {
            id,
            token: text,
        }))
    }

    async fn revoke_api_token(
        &self,
        req: Request<authpb::RevokeApiTokenRequest>,
    ) -> Result<Response<authpb::RevokeApiTokenResponse>, Status> {
        self.admit(&req, AuthRpc::RevokeApiToken)?;
        let id = req.into_inner().id;
        let recs = self.fresh().await?;
        let Some((user, rev)) = recs
            .api_tokens
            .get(&id)
            .and_then(|name| recs.users.get(name))
        else {
            return Ok(Response::new(authpb::RevokeApiTokenResponse {
                existed: false,
            }));
        };
        let mut user = user.clone();
        user.api_tokens.retain(|t| t.id != id);
        self.replace(records::user_key(&user.name), *rev, &user)
            .await?;
        Ok(Response::new(authpb::RevokeApiTokenResponse {
            existed: true,
        }))
    }

    async fn rotate_signing_key(
        &self,
        req: Request<authpb::RotateSigningKeyRequest>,
    ) -> Result<Response<authpb::RotateSigningKeyResponse>, Status> {
        self.admit(&req, AuthRpc::RotateSigningKey)?;
        let recs = self.fresh().await?;
        let Some((config, rev)) = &recs.config else {
            return Err(err(ErrorCode::AuthDisabled, "authentication is off"));
        };
        let mut config = config.clone();
        let key_id = config
            .ring
            .rotate(
                self.gate.clock().now_ms(),
                self.times.max_ttl.as_millis() as u64,
            )
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        self.replace(records::CONFIG_KEY.to_vec(), *rev, &config)
            .await?;
        Ok(Response::new(authpb::RotateSigningKeyResponse {
            key_id,
            verifying_key_ids: config.ring.key_ids(),
        }))
    }
}
