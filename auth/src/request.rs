//! The one classification of every request Cairn serves into the
//! permissions it needs.
//!
//! Each front end (KV gRPC, the HTTP gateway, admin, auth) names the
//! request it serves as a [`Call`]; [`Call::needs`] is one exhaustive match,
//! so a new request kind does not compile until it is classified here, and
//! the matrix test walks [`AdminRpc::ALL`]/[`AuthRpc::ALL`] against the
//! services' descriptors, so a new RPC without a class fails it. Every key
//! a request touches is listed: both branches of a transaction and its
//! compares, `return_previous` (which reads), every BatchGet key, the whole
//! range of a scan.

use cairn_proto::kv::v1 as pb;

use crate::model::{AdminPermission, KeyPermission, KeyRange};

/// One permission a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `permission` on one key.
    Key(KeyPermission, Vec<u8>),
    /// `permission` on every key of a range.
    Range(KeyPermission, KeyRange),
    /// An admin permission.
    Admin(AdminPermission),
    /// Any authenticated caller, user or node (asking who one is, or the
    /// shard map every smart client routes by).
    Authenticated,
    /// Only a node of this cluster (peer calls on the admin service).
    Peer,
    /// Nothing: the call is how a caller signs in.
    Nothing,
}

/// A key-value request.
#[derive(Debug, Clone, Copy)]
pub enum KvCall<'a> {
    /// `KV/Get`, `GET /store/{key}`.
    Get(&'a pb::GetRequest),
    /// `KV/Put`, `PUT /store/{key}`.
    Put(&'a pb::PutRequest),
    /// `KV/Update`, `PATCH /store/{key}`.
    Update(&'a pb::UpdateRequest),
    /// `KV/Delete`, `DELETE /store/{key}`.
    Delete(&'a pb::DeleteRequest),
    /// `KV/BatchGet`.
    BatchGet(&'a pb::BatchGetRequest),
    /// `KV/Batch`, `PUT /store`.
    Batch(&'a pb::BatchRequest),
    /// `KV/Txn`.
    Txn(&'a pb::TxnRequest),
    /// `KV/Scan`, `GET /store?prefix=…`.
    Scan(&'a pb::ScanRequest),
}

macro_rules! rpc_enum {
    ($(#[$doc:meta])* $name:ident, $service:literal { $($(#[$vdoc:meta])* $variant:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            /// Every method of the service.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The full gRPC service name.
            pub const SERVICE: &'static str = $service;

            /// The gRPC method name.
            pub const fn method(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant),)* }
            }
        }
    };
}

rpc_enum! {
    /// A method of `cairn.admin.v1.Admin`.
    AdminRpc, "cairn.admin.v1.Admin" {
        /// Cluster identity (joining nodes and clients).
        GetCluster,
        /// A node asks to be admitted.
        Join,
        /// A node reports its replicas to another.
        NodeReport,
        /// Cluster-wide status.
        ClusterStatus,
        /// Shard → replicas and leader (smart clients route by it).
        ShardMap,
        /// Moves a shard's leadership.
        TransferLeader,
        /// Starts draining a node.
        DrainNode,
        /// Stops a drain.
        CancelDrain,
        /// Removes a drained node.
        RemoveNode,
        /// Declares a node lost.
        ReplaceNode,
        /// Moves leaderships off a node.
        EvacuateLeaders,
        /// Lets a node lead again.
        RestoreLeaders,
        /// Rebalance progress.
        RebalanceStatus,
        /// Pauses or resumes rebalancing.
        PauseRebalance,
        /// Cancels rebalancing moves.
        CancelRebalance,
    }
}

rpc_enum! {
    /// A method of `cairn.auth.v1.Auth`.
    AuthRpc, "cairn.auth.v1.Auth" {
        /// Password → session token.
        Login,
        /// Who the caller is.
        WhoAmI,
        /// Creates or replaces a user.
        PutUser,
        /// Removes a user.
        DeleteUser,
        /// Lists users.
        ListUsers,
        /// Creates or replaces a role.
        PutRole,
        /// Removes a role.
        DeleteRole,
        /// Lists roles.
        ListRoles,
        /// Creates an API token.
        CreateApiToken,
        /// Revokes an API token.
        RevokeApiToken,
        /// Rotates the token signing key.
        RotateSigningKey,
    }
}

/// A request, as the permission check sees it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// A key-value request (gRPC or HTTP).
    Kv(KvCall<'a>),
    /// An admin RPC.
    Admin(AdminRpc),
    /// An auth RPC.
    Auth(AuthRpc),
}

impl Call<'_> {
    /// What the request is called in logs and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Kv(k) => match k {
                KvCall::Get(_) => "KV/Get",
                KvCall::Put(_) => "KV/Put",
                KvCall::Update(_) => "KV/Update",
                KvCall::Delete(_) => "KV/Delete",
                KvCall::BatchGet(_) => "KV/BatchGet",
                KvCall::Batch(_) => "KV/Batch",
                KvCall::Txn(_) => "KV/Txn",
                KvCall::Scan(_) => "KV/Scan",
            },
            Call::Admin(a) => a.method(),
            Call::Auth(a) => a.method(),
        }
    }

    /// Whether the audit log records every call of this kind (not only
    /// denied ones): admin and access-control calls.
    pub fn audited(&self) -> bool {
        match self {
            Call::Kv(_) => false,
            Call::Admin(a) => !matches!(
                a,
                AdminRpc::GetCluster | AdminRpc::NodeReport | AdminRpc::ShardMap
            ),
            Call::Auth(a) => !matches!(a, AuthRpc::WhoAmI),
        }
    }

    /// Every permission the request needs.
    pub fn needs(&self) -> Vec<Need> {
        match self {
            Call::Kv(k) => kv_needs(k),
            Call::Admin(a) => vec![match a {
                // Joining nodes and clients discover the cluster before they
                // can hold a credential (a node without TLS has none); it
                // names no keys, users or addresses.
                AdminRpc::GetCluster => Need::Nothing,
                AdminRpc::ShardMap => Need::Authenticated,
                AdminRpc::Join | AdminRpc::NodeReport => Need::Peer,
                AdminRpc::ClusterStatus | AdminRpc::RebalanceStatus => {
                    Need::Admin(AdminPermission::ClusterRead)
                }
                AdminRpc::TransferLeader
                | AdminRpc::DrainNode
                | AdminRpc::CancelDrain
                | AdminRpc::RemoveNode
                | AdminRpc::ReplaceNode
                | AdminRpc::EvacuateLeaders
                | AdminRpc::RestoreLeaders => Need::Admin(AdminPermission::NodeLifecycle),
                AdminRpc::PauseRebalance | AdminRpc::CancelRebalance => {
                    Need::Admin(AdminPermission::Rebalance)
                }
            }],
            Call::Auth(a) => vec![match a {
                AuthRpc::Login => Need::Nothing,
                AuthRpc::WhoAmI => Need::Authenticated,
                AuthRpc::PutUser
                | AuthRpc::DeleteUser
                | AuthRpc::ListUsers
                | AuthRpc::PutRole
                | AuthRpc::DeleteRole
                | AuthRpc::ListRoles
                | AuthRpc::CreateApiToken
                | AuthRpc::RevokeApiToken
                | AuthRpc::RotateSigningKey => Need::Admin(AdminPermission::Users),
            }],
        }
    }
}

fn key(p: KeyPermission, k: &[u8]) -> Need {
    Need::Key(p, k.to_vec())
}

/// A write's own needs: the write, and a read when it returns the previous
/// value (a user who may write a key but not read it must not learn its
/// value from the response).
fn put_needs(out: &mut Vec<Need>, r: &pb::PutRequest) {
    out.push(key(KeyPermission::Write, &r.key));
    if r.return_previous {
        out.push(key(KeyPermission::Read, &r.key));
    }
}

fn update_needs(out: &mut Vec<Need>, r: &pb::UpdateRequest) {
    out.push(key(KeyPermission::Write, &r.key));
    if r.return_previous {
        out.push(key(KeyPermission::Read, &r.key));
    }
}

fn delete_needs(out: &mut Vec<Need>, r: &pb::DeleteRequest) {
    out.push(key(KeyPermission::Delete, &r.key));
    if r.return_previous {
        out.push(key(KeyPermission::Read, &r.key));
    }
}

fn write_op_needs(out: &mut Vec<Need>, op: &pb::WriteOp) {
    match &op.op {
        Some(pb::write_op::Op::Put(r)) => put_needs(out, r),
        Some(pb::write_op::Op::Update(r)) => update_needs(out, r),
        Some(pb::write_op::Op::Delete(r)) => delete_needs(out, r),
        None => {}
    }
}

fn txn_op_needs(out: &mut Vec<Need>, op: &pb::TxnOp) {
    match &op.op {
        Some(pb::txn_op::Op::Put(r)) => put_needs(out, r),
        Some(pb::txn_op::Op::Update(r)) => update_needs(out, r),
        Some(pb::txn_op::Op::Delete(r)) => delete_needs(out, r),
        Some(pb::txn_op::Op::Get(r)) => out.push(key(KeyPermission::Read, &r.key)),
        None => {}
    }
}

/// The range a scan reads: its prefix, or `[start, end)`.
pub fn scan_range(r: &pb::ScanRequest) -> KeyRange {
    if r.prefix.is_empty() {
        KeyRange::between(&r.start, &r.end)
    } else {
        KeyRange::prefix(&r.prefix)
    }
}

fn kv_needs(call: &KvCall<'_>) -> Vec<Need> {
    let mut out = Vec::new();
    match call {
        KvCall::Get(r) => out.push(key(KeyPermission::Read, &r.key)),
        KvCall::Put(r) => put_needs(&mut out, r),
        KvCall::Update(r) => update_needs(&mut out, r),
        KvCall::Delete(r) => delete_needs(&mut out, r),
        KvCall::BatchGet(r) => {
            out.extend(r.keys.iter().map(|k| key(KeyPermission::Read, k)));
        }
        KvCall::Batch(r) => r.ops.iter().for_each(|op| write_op_needs(&mut out, op)),
        KvCall::Txn(r) => {
            // A compare reveals the key's value or metadata whichever branch
            // runs, and either branch may run: both are checked.
            out.extend(r.compares.iter().map(|c| key(KeyPermission::Read, &c.key)));
            r.success.iter().for_each(|op| txn_op_needs(&mut out, op));
            r.failure.iter().for_each(|op| txn_op_needs(&mut out, op));
        }
        KvCall::Scan(r) => out.push(Need::Range(KeyPermission::Scan, scan_range(r))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, prev: bool) -> pb::PutRequest {
        pb::PutRequest {
            key: k.into(),
            return_previous: prev,
            ..Default::default()
        }
    }

    #[test]
    fn a_txn_needs_both_branches_and_its_compares() {
        let txn = pb::TxnRequest {
            compares: vec![pb::Compare {
                key: b"c".to_vec(),
                ..Default::default()
            }],
            success: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Put(put("s", false))),
            }],
            failure: vec![pb::TxnOp {
                op: Some(pb::txn_op::Op::Delete(pb::DeleteRequest {
                    key: b"f".to_vec(),
                    return_previous: true,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let needs = Call::Kv(KvCall::Txn(&txn)).needs();
        assert_eq!(
            needs,
            vec![
                Need::Key(KeyPermission::Read, b"c".to_vec()),
                Need::Key(KeyPermission::Write, b"s".to_vec()),
                Need::Key(KeyPermission::Delete, b"f".to_vec()),
                Need::Key(KeyPermission::Read, b"f".to_vec()),
            ]
        );
    }

    #[test]
    fn return_previous_needs_read_and_scans_need_their_whole_range() {
        let p = put("k", true);
        assert!(
            Call::Kv(KvCall::Put(&p))
                .needs()
                .contains(&Need::Key(KeyPermission::Read, b"k".to_vec()))
        );
        let s = pb::ScanRequest {
            start: b"a".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            Call::Kv(KvCall::Scan(&s)).needs(),
            vec![Need::Range(
                KeyPermission::Scan,
                KeyRange::between(b"a", b"")
            )]
        );
    }
}
