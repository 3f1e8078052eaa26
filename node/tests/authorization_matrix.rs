//! The authorization matrix: every gRPC method (KV, admin, auth and the
//! peer API, read from the services' descriptors) and every HTTP route,
//! each under every kind of caller — no credential, a bad token, an expired
//! token, a user whose roles do not grant it, one whose roles do, and a node
//! certificate on the client API (a client certificate on the peer API) —
//! must answer exactly UNAUTHENTICATED/401, PERMISSION_DENIED/403 or pass
//! the gate. A method or route with no row fails the test. Then the shapes
//! that bypassed etcd's checks: a transaction whose failure branch writes
//! outside the grant, `return_previous` on a write-only key, a scan that
//! starts inside a grant and ends outside it, and forwarded requests. The
//! KV conformance suite runs as root with TLS and authentication on, and
//! the audit log and denial metrics show what happened.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Client, ClientOptions};
use cairn_proto::admin::v1 as apb;
use cairn_proto::auth::v1 as authpb;
use cairn_proto::kv::v1 as pb;
use cairn_proto::raft::v1 as rpb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster};
use cairn_tls::{TlsContext, TlsMetrics, TlsPaths};
use prost::Message as _;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// TLS with no client certificate, no token.
    NoCredential,
    /// A token no node issued.
    BadToken,
    /// A session token past its expiry.
    ExpiredToken,
    /// User `app`, whose role grants only `app/` and no admin permission.
    WrongRole,
    /// User `root`.
    RightRole,
    /// A node's certificate on the client API, or a client certificate on
    /// the peer API.
    OtherCertificate,
}

const CASES: [Case; 6] = [
    Case::NoCredential,
    Case::BadToken,
    Case::ExpiredToken,
    Case::WrongRole,
    Case::RightRole,
    Case::OtherCertificate,
];

/// What a method needs, as this test states it (independently of the
/// node's classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Anyone (login, cluster discovery).
    Nothing,
    /// Any user or node.
    Anyone,
    /// A node of this cluster (admin calls nodes make of each other).
    Node,
    /// A user with the right grant.
    Grant,
    /// The peer API: node certificates only (checked at the connection).
    PeerApi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unauthenticated,
    Denied,
    Passed,
}

fn expected(needs: Needs, case: Case) -> Outcome {
    use Case::*;
    use Outcome::*;
    match (needs, case) {
        (Needs::Nothing, _) => Passed,
        (Needs::PeerApi, OtherCertificate) => Denied,
        (Needs::PeerApi, _) => Unauthenticated,
        (_, NoCredential | BadToken | ExpiredToken) => Unauthenticated,
        (Needs::Anyone, _) => Passed,
        (Needs::Node, OtherCertificate) => Passed,
        (Needs::Node, _) => Denied,
        (Needs::Grant, RightRole) => Passed,
        (Needs::Grant, WrongRole | OtherCertificate) => Denied,
    }
}

fn outcome(r: &Result<(), tonic::Status>) -> Outcome {
    match r {
        Err(s) if s.code() == Code::Unauthenticated => Outcome::Unauthenticated,
        Err(s) if s.code() == Code::PermissionDenied => Outcome::Denied,
        _ => Outcome::Passed,
    }
}

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// One row: a method, what it needs, and how to call it harmlessly.
struct Row {
    service: &'static str,
    method: &'static str,
    needs: Needs,
    call: fn(Channel, Option<String>) -> Call,
}

fn req<T>(message: T, token: &Option<String>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r.set_timeout(Duration::from_secs(20));
    r
}

macro_rules! row {
    ($service:literal, $method:literal, $needs:expr, $client:path, $fn:ident, $msg:expr) => {
        Row {
            service: $service,
            method: $method,
            needs: $needs,
            call: |ch, token| {
                Box::pin(async move { <$client>::new(ch).$fn(req($msg, &token)).await.map(|_| ()) })
            },
        }
    };
}

type KvC = pb::kv_client::KvClient<Channel>;
type AdminC = apb::admin_client::AdminClient<Channel>;
type AuthC = authpb::auth_client::AuthClient<Channel>;
type RaftC = rpb::raft_transport_client::RaftTransportClient<Channel>;

fn key(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

fn put(k: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key(k),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn rows(node1: apb::JoinRequest, root_password: String) -> Vec<Row> {
    // Statics for the fn-pointer rows.
    JOIN.set(node1).ok();
    ROOT_PASSWORD.set(root_password).ok();
    vec![
        row!(
            "cairn.kv.v1.KV",
            "Get",
            Needs::Grant,
            KvC,
            get,
            pb::GetRequest {
                key: key("zz/k"),
                ..Default::default()
            }
        ),
        row!("cairn.kv.v1.KV", "Put", Needs::Grant, KvC, put, put("zz/k")),
        row!(
            "cairn.kv.v1.KV",
            "Update",
            Needs::Grant,
            KvC,
            update,
            pb::UpdateRequest {
                key: key("zz/k"),
                value: b"u".to_vec(),
                ..Default::default()
            }
        ),
        row!(
            "cairn.kv.v1.KV",
            "Delete",
            Needs::Grant,
            KvC,
            delete,
            pb::DeleteRequest {
                key: key("zz/gone"),
                ..Default::default()
            }
        ),
        row!(
            "cairn.kv.v1.KV",
            "BatchGet",
            Needs::Grant,
            KvC,
            batch_get,
            pb::BatchGetRequest {
                keys: vec![key("zz/a"), key("zz/b")],
                ..Default::default()
            }
        ),
        row!(
            "cairn.kv.v1.KV",
            "Batch",
            Needs::Grant,
            KvC,
            batch,
            pb::BatchRequest {
                ops: vec![pb::WriteOp {
                    op: Some(pb::write_op::Op::Put(put("{zz}/a")))
                }],
                ..Default::default()
            }
        ),
        row!(
            "cairn.kv.v1.KV",
            "Txn",
            Needs::Grant,
            KvC,
            txn,
            pb::TxnRequest {
                success: vec![pb::TxnOp {
                    op: Some(pb::txn_op::Op::Put(put("zz/t")))
                }],
                ..Default::default()
            }
        ),
        row!(
            "cairn.kv.v1.KV",
            "Scan",
            Needs::Grant,
            KvC,
            scan,
            pb::ScanRequest {
                prefix: key("zz/"),
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "GetCluster",
            Needs::Nothing,
            AdminC,
            get_cluster,
            apb::GetClusterRequest {}
        ),
        Row {
            service: "cairn.admin.v1.Admin",
            method: "Join",
            needs: Needs::Node,
            call: |ch, token| {
                Box::pin(async move {
                    AdminC::new(ch)
                        .join(req(JOIN.get().unwrap().clone(), &token))
                        .await
                        .map(|_| ())
                })
            },
        },
        row!(
            "cairn.admin.v1.Admin",
            "NodeReport",
            Needs::Node,
            AdminC,
            node_report,
            apb::NodeReportRequest {}
        ),
        row!(
            "cairn.admin.v1.Admin",
            "ClusterStatus",
            Needs::Grant,
            AdminC,
            cluster_status,
            apb::ClusterStatusRequest {}
        ),
        row!(
            "cairn.admin.v1.Admin",
            "ShardMap",
            Needs::Anyone,
            AdminC,
            shard_map,
            apb::ShardMapRequest {}
        ),
        row!(
            "cairn.admin.v1.Admin",
            "TransferLeader",
            Needs::Grant,
            AdminC,
            transfer_leader,
            apb::TransferLeaderRequest {
                shard: 0,
                to_node_id: 99
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "DrainNode",
            Needs::Grant,
            AdminC,
            drain_node,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "CancelDrain",
            Needs::Grant,
            AdminC,
            cancel_drain,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "RemoveNode",
            Needs::Grant,
            AdminC,
            remove_node,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "ReplaceNode",
            Needs::Grant,
            AdminC,
            replace_node,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "EvacuateLeaders",
            Needs::Grant,
            AdminC,
            evacuate_leaders,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "RestoreLeaders",
            Needs::Grant,
            AdminC,
            restore_leaders,
            apb::NodeRequest {
                node_id: 99,
                ..Default::default()
            }
        ),
        row!(
            "cairn.admin.v1.Admin",
            "RebalanceStatus",
            Needs::Grant,
            AdminC,
            rebalance_status,
            apb::RebalanceStatusRequest::default()
        ),
        row!(
            "cairn.admin.v1.Admin",
            "CancelRebalance",
            Needs::Grant,
            AdminC,
            cancel_rebalance,
            apb::CancelRebalanceRequest {}
        ),
        // After CancelRebalance (which pauses): resumes.
        row!(
            "cairn.admin.v1.Admin",
            "PauseRebalance",
            Needs::Grant,
            AdminC,
            pause_rebalance,
            apb::PauseRebalanceRequest { paused: false }
        ),
        Row {
            service: "cairn.auth.v1.Auth",
            method: "Login",
            needs: Needs::Nothing,
            call: |ch, token| {
                Box::pin(async move {
                    AuthC::new(ch)
                        .login(req(
                            authpb::LoginRequest {
                                user: "root".into(),
                                password: ROOT_PASSWORD.get().unwrap().clone(),
                                ttl_ms: 0,
                            },
                            &token,
                        ))
                        .await
                        .map(|_| ())
                })
            },
        },
        row!(
            "cairn.auth.v1.Auth",
            "WhoAmI",
            Needs::Anyone,
            AuthC,
            who_am_i,
            authpb::WhoAmIRequest {}
        ),
        row!(
            "cairn.auth.v1.Auth",
            "PutUser",
            Needs::Grant,
            AuthC,
            put_user,
            authpb::PutUserRequest {
                name: "matrix-tmp".into(),
                roles: vec!["readonly".into()],
                ..Default::default()
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "DeleteUser",
            Needs::Grant,
            AuthC,
            delete_user,
            authpb::DeleteUserRequest {
                name: "matrix-none".into()
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "ListUsers",
            Needs::Grant,
            AuthC,
            list_users,
            authpb::ListUsersRequest {}
        ),
        row!(
            "cairn.auth.v1.Auth",
            "PutRole",
            Needs::Grant,
            AuthC,
            put_role,
            authpb::PutRoleRequest {
                role: Some(authpb::Role {
                    name: "matrix-role".into(),
                    rules: vec![authpb::KeyRule {
                        prefix: key("m/"),
                        permissions: vec![authpb::KeyPermission::Read as i32],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "DeleteRole",
            Needs::Grant,
            AuthC,
            delete_role,
            authpb::DeleteRoleRequest {
                name: "matrix-none".into()
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "ListRoles",
            Needs::Grant,
            AuthC,
            list_roles,
            authpb::ListRolesRequest {}
        ),
        row!(
            "cairn.auth.v1.Auth",
            "CreateApiToken",
            Needs::Grant,
            AuthC,
            create_api_token,
            authpb::CreateApiTokenRequest {
                user: "matrix-tmp".into(),
                description: "matrix".into()
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "RevokeApiToken",
            Needs::Grant,
            AuthC,
            revoke_api_token,
            authpb::RevokeApiTokenRequest {
                id: "0000000000000000".into()
            }
        ),
        row!(
            "cairn.auth.v1.Auth",
            "RotateSigningKey",
            Needs::Grant,
            AuthC,
            rotate_signing_key,
            authpb::RotateSigningKeyRequest {}
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "AppendEntries",
            Needs::PeerApi,
            RaftC,
            append_entries,
            rpb::RaftMessage::default()
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "AppendBatch",
            Needs::PeerApi,
            RaftC,
            append_batch,
            rpb::RaftBatch::default()
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "Vote",
            Needs::PeerApi,
            RaftC,
            vote,
            rpb::RaftMessage::default()
        ),
        Row {
            service: "cairn.raft.v1.RaftTransport",
            method: "InstallSnapshotStream",
            needs: Needs::PeerApi,
            call: |ch, token| {
                Box::pin(async move {
                    RaftC::new(ch)
                        .install_snapshot_stream(req(
                            tokio_stream::iter(Vec::<rpb::SnapshotChunk>::new()),
                            &token,
                        ))
                        .await
                        .map(|_| ())
                })
            },
        },
        row!(
            "cairn.raft.v1.RaftTransport",
            "TransferLeader",
            Needs::PeerApi,
            RaftC,
            transfer_leader,
            rpb::RaftMessage::default()
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "Forward",
            Needs::PeerApi,
            RaftC,
            forward,
            rpb::ForwardRequest::default()
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "ReadIndex",
            Needs::PeerApi,
            RaftC,
            read_index,
            rpb::RaftMessage::default()
        ),
        row!(
            "cairn.raft.v1.RaftTransport",
            "Membership",
            Needs::PeerApi,
            RaftC,
            membership,
            rpb::RaftMessage::default()
        ),
    ]
}

static JOIN: std::sync::OnceLock<apb::JoinRequest> = std::sync::OnceLock::new();
static ROOT_PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Every method of the Cairn services, from the compiled descriptors.
fn described_methods() -> BTreeSet<(String, String)> {
    let fds = prost_types::FileDescriptorSet::decode(cairn_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for f in &fds.file {
        for s in &f.service {
            for m in &s.method {
                out.insert((
                    format!("{}.{}", f.package(), s.name()),
                    m.name().to_string(),
                ));
            }
        }
    }
    out
}

/// One HTTP request per route: method, path, body.
fn http_rows() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    // (route method, route path, request target, body)
    vec![
        ("PUT", "/store", "/store", r#"{"key":"zz/h","value":"v"}"#),
        ("GET", "/store", "/store?prefix=zz%2F", ""),
        ("HEAD", "/store", "/store?prefix=zz%2F", ""),
        ("PUT", "/store/{key}", "/store/zz%2Fh", "v"),
        ("GET", "/store/{key}", "/store/zz%2Fh", ""),
        ("HEAD", "/store/{key}", "/store/zz%2Fh", ""),
        ("PATCH", "/store/{key}", "/store/zz%2Fh", "p"),
        ("UPDATE", "/store/{key}", "/store/zz%2Fh", "u"),
        ("DELETE", "/store/{key}", "/store/zz%2Fh", ""),
    ]
}

/// The status code of one HTTPS request.
async fn http_status(
    addr: std::net::SocketAddr,
    tls: &TlsContext,
    method: &str,
    target: &str,
    body: &str,
    token: &Option<String>,
) -> u16 {
    let auth = token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let text = common::https_exchange(addr, tls, head.as_bytes()).await;
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn as_user<T>(token: &str, message: T) -> tonic::Request<T> {
    req(message, &Some(token.to_string()))
}

fn context(paths: TlsPaths) -> Arc<TlsContext> {
    TlsContext::load(paths, TlsMetrics::new().unwrap()).unwrap()
}

async fn channel(endpoint: &str, tls: &Arc<TlsContext>) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tls.connector())
        .await
        .unwrap()
}

async fn login(ch: &Channel, user: &str, password: &str, ttl_ms: u64) -> String {
    AuthC::new(ch.clone())
        .login(authpb::LoginRequest {
            user: user.into(),
            password: password.into(),
            ttl_ms,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_under_every_caller_is_refused_or_served_exactly_as_its_grant_says() {
    let audit = tempfile::tempdir().unwrap();
    let audit_log = audit.path().join("audit.jsonl");
    let mut spec = ClusterSpec::new(2, 8).secure().with_auth();
    spec.replication_factor = 1;
    spec.args
        .extend(["--audit-log".into(), audit_log.display().to_string()]);
    let cluster = LocalCluster::start(spec).await.unwrap();
    let dir = cluster.tls_dir().unwrap().to_path_buf();
    let ca_only = context(TlsPaths {
        ca: dir.join("ca.pem"),
        cert: None,
        key: None,
        crl: None,
    });
    let node_cert = context(TlsPaths {
        ca: dir.join("ca.pem"),
        cert: Some(dir.join("node1.pem")),
        key: Some(dir.join("node1.key")),
        crl: None,
    });
    let client_cert = cluster.client_tls().unwrap();
    let endpoint = cluster.endpoints()[0].replace("http://", "https://");
    let root_password = cluster.root_password().unwrap();
    let root = cluster.root_token().unwrap();
    let plain = channel(&endpoint, &ca_only).await;

    // Users: app (prefix app/, everything), writer (prefix w/, write only).
    let mut access = AuthC::new(plain.clone());
    for (name, rule) in [("app", ("app/", vec![1, 2, 3, 4])), ("w", ("w/", vec![2]))] {
        access
            .put_role(as_user(
                &root,
                authpb::PutRoleRequest {
                    role: Some(authpb::Role {
                        name: name.into(),
                        rules: vec![authpb::KeyRule {
                            prefix: key(rule.0),
                            permissions: rule.1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
    }
    for (user, role) in [("app", "app"), ("writer", "w")] {
        access
            .put_user(as_user(
                &root,
                authpb::PutUserRequest {
                    name: user.into(),
                    password: format!("{user}-password"),
                    roles: vec![role.into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }
    let app = login(&plain, "app", "app-password", 0).await;
    let writer = login(&plain, "writer", "writer-password", 0).await;
    let expiring = login(&plain, "app", "app-password", 1000).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every described method has a row, and every row a method.
    let node1 = &cluster.nodes[0];
    let join = apb::JoinRequest {
        node_id: 1,
        addr: node1.grpc.to_string(),
        http_addr: node1.http.to_string(),
        ..Default::default()
    };
    let rows = rows(join, root_password.clone());
    let have: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.service.to_string(), r.method.to_string()))
        .collect();
    assert_eq!(
        have,
        described_methods(),
        "a method without a row, or a row without a method"
    );
    let http: BTreeSet<(&str, &str)> = http_rows().iter().map(|r| (r.0, r.1)).collect();
    let routes: BTreeSet<(&str, &str)> = cairn_node::api::http::ROUTES.iter().copied().collect();
    assert_eq!(http, routes, "an HTTP route without a row");

    let mut cells = 0;
    let mut wrong = Vec::new();
    for case in CASES {
        let (tls, token) = match case {
            Case::NoCredential => (ca_only.clone(), None),
            Case::BadToken => (
                ca_only.clone(),
                Some("eyJhbGciOiJFZERTQSJ9.e30.bm9wZQ".to_string()),
            ),
            Case::ExpiredToken => (ca_only.clone(), Some(expiring.clone())),
            Case::WrongRole => (ca_only.clone(), Some(app.clone())),
            Case::RightRole => (ca_only.clone(), Some(root.clone())),
            Case::OtherCertificate => (node_cert.clone(), None),
        };
        let ch = channel(&endpoint, &tls).await;
        let peer_ch = match case {
            // The peer API's "other certificate" is a client's.
            Case::OtherCertificate => channel(&endpoint, &client_cert).await,
            _ => ch.clone(),
        };
        for row in &rows {
            let c = if row.needs == Needs::PeerApi {
                peer_ch.clone()
            } else {
                ch.clone()
            };
            let r = (row.call)(c, token.clone()).await;
            let want = expected(row.needs, case);
            cells += 1;
            if outcome(&r) != want {
                wrong.push(format!(
                    "{}/{} as {case:?}: want {want:?}, got {r:?}",
                    row.service, row.method
                ));
            }
            if case == Case::ExpiredToken
                && want == Outcome::Unauthenticated
                && row.needs != Needs::PeerApi
            {
                let code = r
                    .as_ref()
                    .err()
                    .and_then(|s| s.metadata().get("cairn-error-code").cloned());
                if code.as_ref().and_then(|c| c.to_str().ok()) != Some("token_expired") {
                    wrong.push(format!(
                        "{}/{}: an expired token is not named: {r:?}",
                        row.service, row.method
                    ));
                }
            }
        }
        for (method, path, target, body) in http_rows() {
            let status = http_status(node1.http, &tls, method, target, body, &token).await;
            let got = match status {
                401 => Outcome::Unauthenticated,
                403 => Outcome::Denied,
                _ => Outcome::Passed,
            };
            let want = expected(Needs::Grant, case);
            cells += 1;
            if got != want {
                wrong.push(format!(
                    "HTTP {method} {path} ({target}) as {case:?}: want {want:?}, got {status}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!(
        "authorization matrix: {} gRPC methods and {} HTTP routes x {} cases = {cells} cells",
        rows.len(),
        http_rows().len(),
        CASES.len()
    );

    // The shapes that bypassed etcd's checks, as user app (grant: app/).
    let app_ch = channel(&endpoint, &ca_only).await;
    let mut kv = KvC::new(app_ch.clone());
    let branch = |k: &str| pb::TxnOp {
        op: Some(pb::txn_op::Op::Put(put(k))),
    };
    let escape = kv
        .txn(as_user(
            &app,
            pb::TxnRequest {
                compares: vec![pb::Compare {
                    key: key("app/{e}a"),
                    ..Default::default()
                }],
                success: vec![branch("app/{e}b")],
                failure: vec![branch("zz/outside")],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(escape.code(), Code::PermissionDenied, "{escape:?}");
    assert!(escape.message().contains("zz/outside"), "{escape:?}");
    let compare_outside = kv
        .txn(as_user(
            &app,
            pb::TxnRequest {
                compares: vec![pb::Compare {
                    key: key("zz/peek"),
                    ..Default::default()
                }],
                success: vec![branch("app/x")],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(compare_outside.code(), Code::PermissionDenied);
    kv.txn(as_user(
        &app,
        pb::TxnRequest {
            compares: vec![pb::Compare {
                key: key("app/{t}a"),
                ..Default::default()
            }],
            success: vec![branch("app/{t}b")],
            failure: vec![branch("app/{t}c")],
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let scan_out = kv
        .scan(as_user(
            &app,
            pb::ScanRequest {
                start: key("app/a"),
                end: key("b"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(scan_out.code(), Code::PermissionDenied, "{scan_out:?}");
    kv.scan(as_user(
        &app,
        pb::ScanRequest {
            prefix: key("app/"),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let batch_out = kv
        .batch_get(as_user(
            &app,
            pb::BatchGetRequest {
                keys: vec![key("app/a"), key("zz/b")],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(batch_out.code(), Code::PermissionDenied);
    // writer may write w/ but not read it: return_previous would read.
    kv.put(as_user(&writer, put("w/k"))).await.unwrap();
    let leak = kv
        .put(as_user(
            &writer,
            pb::PutRequest {
                return_previous: true,
                ..put("w/k")
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(leak.code(), Code::PermissionDenied, "{leak:?}");
    let read = kv
        .get(as_user(
            &writer,
            pb::GetRequest {
                key: key("w/k"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);

    // Forwarded reads: a key node 1 does not hold is read through node 1
    // in app's name; node 2 checks the forwarded caller again.
    let mut remote_key = None;
    for i in 0..64 {
        let k = format!("app/f{i}");
        kv.put(as_user(&app, put(&k))).await.unwrap();
        let got = kv
            .get(as_user(
                &app,
                pb::GetRequest {
                    key: key(&k),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if got.header.unwrap().node_id == 2 {
            assert_eq!(got.kv.unwrap().value, b"v");
            remote_key = Some(k);
            break;
        }
    }
    let remote_key = remote_key.expect("no key of node 2 among 64");
    let endpoint2 = cluster.endpoints()[1].replace("http://", "https://");
    let as_node = |k: &str, user: &str| {
        let mut r = tonic::Request::new(pb::GetRequest {
            key: key(k),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("cairn-forwarded", MetadataValue::from_static("1"));
        r.metadata_mut()
            .insert("cairn-on-behalf-of", user.parse().unwrap());
        r
    };
    let mut node_kv = KvC::new(channel(&endpoint2, &node_cert).await);
    node_kv.get(as_node(&remote_key, "app")).await.unwrap();
    let named_outside = node_kv.get(as_node("zz/f", "app")).await.unwrap_err();
    assert_eq!(
        named_outside.code(),
        Code::PermissionDenied,
        "{named_outside:?}"
    );
    let mut client_kv = KvC::new(channel(&endpoint2, &client_cert).await);
    let impostor = client_kv
        .get(as_node(&remote_key, "root"))
        .await
        .unwrap_err();
    assert_eq!(impostor.code(), Code::Unauthenticated, "{impostor:?}");

    // A changed user's sessions end; others' do not.
    access
        .put_user(as_user(
            &root,
            authpb::PutUserRequest {
                name: "writer".into(),
                roles: vec!["w".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let ended = kv.put(as_user(&writer, put("w/k"))).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    kv.put(as_user(&app, put("app/still"))).await.unwrap();

    // API tokens work until revoked.
    let created = access
        .create_api_token(as_user(
            &root,
            authpb::CreateApiTokenRequest {
                user: "app".into(),
                description: "ci".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    kv.put(as_user(&created.token, put("app/svc")))
        .await
        .unwrap();
    access
        .revoke_api_token(as_user(
            &root,
            authpb::RevokeApiTokenRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap();
    let revoked = kv
        .put(as_user(&created.token, put("app/svc")))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);

    // The KV conformance suite, as root, over TLS, through the smart client.
    let client = Client::connect_with(
        &cluster.endpoints(),
        ClientOptions::default()
            .tls(ca_only.clone())
            .token(root.clone()),
    )
    .await
    .unwrap();
    let left_out = cairn_testkit::conformance::run_all_with(client).await;
    assert!(left_out.is_empty(), "{left_out:?}");

    // The audit log names who was refused what, and every admin call.
    let text = std::fs::read_to_string(&audit_log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(f);
    assert!(
        has(&|l| l["principal"] == "app"
            && l["call"] == "KV/Txn"
            && l["result"] == "denied"
            && l["needs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str().unwrap().contains("zz/outside"))),
        "{text}"
    );
    assert!(
        has(&|l| l["principal"] == "root" && l["call"] == "PutUser" && l["result"] == "allowed"),
        "{text}"
    );
    assert!(
        has(&|l| l["credential"] == "none" && l["result"] == "denied"),
        "{text}"
    );
    // And the denial metrics count them by reason.
    let metrics = reqwest::get(format!("http://{}/metrics", node1.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "permission",
        "expired_token",
        "no_credential",
        "bad_token",
        "changed_user",
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("cairn_auth_denials_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no {reason} denials line"));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0.0, "{line}");
    }
}

/// A refusal as the table states it: gRPC code, stable code, message.
type Refusal = (Code, String, String);

/// The error a call answered with: gRPC code and stable code.
fn refusal<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String, String) {
    let s = r.expect_err("the call was refused");
    let code = s
        .metadata()
        .get("cairn-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (s.code(), code, s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_refuses_bad_input_with_stable_codes_and_changes_nothing() {
    let cluster = LocalCluster::start(ClusterSpec::new(1, 4).with_auth())
        .await
        .unwrap();
    let root = cluster.root_token().unwrap();
    let ch = Channel::from_shared(cluster.endpoints()[0].clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut api = AuthC::new(ch.clone());
    let user = |name: &str, password: &str, roles: &[&str]| authpb::PutUserRequest {
        name: name.into(),
        password: password.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    };
    let role = |name: &str, rules: Vec<authpb::KeyRule>| authpb::PutRoleRequest {
        role: Some(authpb::Role {
            name: name.into(),
            rules,
            ..Default::default()
        }),
    };
    let rule = |prefix: &str, start: &str, end: &str, perms: Vec<i32>| authpb::KeyRule {
        prefix: key(prefix),
        start: key(start),
        end: key(end),
        permissions: perms,
    };
    api.put_role(as_user(
        &root,
        role("held", vec![rule("h/", "", "", vec![1])]),
    ))
    .await
    .unwrap();
    api.put_user(as_user(&root, user("holder", "", &["held"])))
        .await
        .unwrap();
    let before = api
        .list_users(as_user(&root, authpb::ListUsersRequest {}))
        .await
        .unwrap()
        .into_inner();

    let cases: Vec<(&str, Refusal, Code, &str, &str)> = vec![
        (
            "bad user name",
            refusal(
                api.put_user(as_user(&root, user("bad name", "", &[])))
                    .await,
            ),
            Code::InvalidArgument,
            "bad_access_rule",
            "letters, digits",
        ),
        (
            "short password",
            refusal(api.put_user(as_user(&root, user("u1", "short", &[]))).await),
            Code::InvalidArgument,
            "bad_access_rule",
            "8 to 1024",
        ),
        (
            "unknown role",
            refusal(
                api.put_user(as_user(&root, user("u1", "", &["nope"])))
                    .await,
            ),
            Code::NotFound,
            "role_not_found",
            "\"nope\"",
        ),
        (
            "create_only on an existing user",
            refusal(
                api.put_user(as_user(
                    &root,
                    authpb::PutUserRequest {
                        create_only: true,
                        ..user("holder", "", &["held"])
                    },
                ))
                .await,
            ),
            Code::AlreadyExists,
            "user_exists",
            "holder",
        ),
        (
            "the last root loses root",
            refusal(
                api.put_user(as_user(&root, user("root", "", &["readonly"])))
                    .await,
            ),
            Code::FailedPrecondition,
            "role_in_use",
            "last one holding role root",
        ),
        (
            "the last root removed",
            refusal(
                api.delete_user(as_user(
                    &root,
                    authpb::DeleteUserRequest {
                        name: "root".into(),
                    },
                ))
                .await,
            ),
            Code::FailedPrecondition,
            "role_in_use",
            "last one holding role root",
        ),
        (
            "a built-in role redefined",
            refusal(
                api.put_role(as_user(
                    &root,
                    role("root", vec![rule("a", "", "", vec![1])]),
                ))
                .await,
            ),
            Code::FailedPrecondition,
            "built_in_role",
            "built in",
        ),
        (
            "a built-in role removed",
            refusal(
                api.delete_role(as_user(
                    &root,
                    authpb::DeleteRoleRequest {
                        name: "readonly".into(),
                    },
                ))
                .await,
            ),
            Code::FailedPrecondition,
            "built_in_role",
            "built in",
        ),
        (
            "prefix and range in one rule",
            refusal(
                api.put_role(as_user(
                    &root,
                    role("r1", vec![rule("a", "b", "", vec![1])]),
                ))
                .await,
            ),
            Code::InvalidArgument,
            "bad_access_rule",
            "both a prefix",
        ),
        (
            "a rule without permissions",
            refusal(
                api.put_role(as_user(&root, role("r1", vec![rule("a", "", "", vec![])])))
                    .await,
            ),
            Code::InvalidArgument,
            "bad_access_rule",
            "grants no permission",
        ),
        (
            "an inverted range",
            refusal(
                api.put_role(as_user(
                    &root,
                    role("r1", vec![rule("", "b", "a", vec![1])]),
                ))
                .await,
            ),
            Code::InvalidArgument,
            "bad_access_rule",
            "covers no key",
        ),
        (
            "an unknown permission",
            refusal(
                api.put_role(as_user(
                    &root,
                    role("r1", vec![rule("a", "", "", vec![99])]),
                ))
                .await,
            ),
            Code::InvalidArgument,
            "bad_access_rule",
            "unknown key permission 99",
        ),
        (
            "a held role removed",
            refusal(
                api.delete_role(as_user(
                    &root,
                    authpb::DeleteRoleRequest {
                        name: "held".into(),
                    },
                ))
                .await,
            ),
            Code::FailedPrecondition,
            "role_in_use",
            "holder",
        ),
        (
            "a token for no user",
            refusal(
                api.create_api_token(as_user(
                    &root,
                    authpb::CreateApiTokenRequest {
                        user: "ghost".into(),
                        ..Default::default()
                    },
                ))
                .await,
            ),
            Code::NotFound,
            "user_not_found",
            "ghost",
        ),
        (
            "a wrong password",
            refusal(
                api.login(authpb::LoginRequest {
                    user: "root".into(),
                    password: "wrong password".into(),
                    ttl_ms: 0,
                })
                .await,
            ),
            Code::Unauthenticated,
            "bad_credentials",
            "no such user or wrong password",
        ),
        (
            "an unknown user's login",
            refusal(
                api.login(authpb::LoginRequest {
                    user: "ghost".into(),
                    password: "whatever1".into(),
                    ttl_ms: 0,
                })
                .await,
            ),
            Code::Unauthenticated,
            "bad_credentials",
            "no such user or wrong password",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, (code, stable, message), want_code, want_stable, fragment) in &cases {
        if code != want_code || stable != want_stable || !message.contains(fragment) {
            wrong.push(format!("{what}: want {want_code:?}/{want_stable} with {fragment:?}, got {code:?}/{stable}: {message}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let after = api
        .list_users(as_user(&root, authpb::ListUsersRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after, "a refused change changed the users");
    let roles = api
        .list_roles(as_user(&root, authpb::ListRolesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = roles.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["root", "readonly", "held"]);

    // A cluster without authentication has no users to manage or log in as.
    let open = LocalCluster::start(ClusterSpec::new(1, 4)).await.unwrap();
    let ch = Channel::from_shared(open.endpoints()[0].clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut api = AuthC::new(ch);
    let (code, stable, message) = refusal(
        api.login(authpb::LoginRequest {
            user: "root".into(),
            password: "anything1".into(),
            ttl_ms: 0,
        })
        .await,
    );
    assert_eq!(
        (code, stable.as_str()),
        (Code::FailedPrecondition, "auth_disabled"),
        "{message}"
    );
    assert!(message.contains("--auth-root-password-file"), "{message}");
    let who = api
        .who_am_i(authpb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!who.auth_enabled);
}
