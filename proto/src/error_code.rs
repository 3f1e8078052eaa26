//! The registry of Cairn's stable error codes: each code defined once, with
//! the gRPC status and HTTP status it travels with, whether sending the same
//! request again later can succeed, and what it means.
//!
//! The node puts the code in the [`crate::ERROR_CODE_METADATA`] gRPC header
//! (and in the `code` field of HTTP error bodies); clients parse it back
//! with [`ErrorCode::parse`]. Codes never change meaning once published; new
//! ones may be added, so clients must expect codes they do not know.
//! `docs/API.md` carries [`markdown_table`]'s output, checked by a test.

use std::fmt;

use tonic::Code;

macro_rules! error_codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $grpc:ident, $http:literal, $retry:literal, $meaning:literal;
    )*) => {
        /// A stable, machine-readable reason for a failed request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* #[doc = $meaning] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in registry order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it travels (`key_exists`, …).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The gRPC status code the node answers this error with.
            pub const fn grpc(self) -> Code {
                match self { $(ErrorCode::$variant => Code::$grpc,)* }
            }

            /// The HTTP status the node's gateway answers this error with.
            pub const fn http(self) -> u16 {
                match self { $(ErrorCode::$variant => $http,)* }
            }

            /// Whether the same request, sent again later (or to another
            /// node), can succeed without the caller changing anything.
            pub const fn retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retry,)* }
            }

            /// One line saying what the code means.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    // Malformed requests and broken rules: fix the request.
    EmptyKey = "empty_key", InvalidArgument, 400, false, "The key is empty.";
    EmptyRequest = "empty_request", InvalidArgument, 400, false, "The request names nothing to do (no keys, no operations).";
    EmptyOp = "empty_op", InvalidArgument, 400, false, "A batch or transaction operation has no operation set.";
    BadRange = "bad_range", InvalidArgument, 400, false, "A scan range is empty or inverted, or mixes a prefix with bounds.";
    BadShard = "bad_shard", InvalidArgument, 400, false, "The shard named in the request does not exist.";
    BadCompare = "bad_compare", InvalidArgument, 400, false, "A transaction comparison is malformed.";
    BadPageToken = "bad_page_token", InvalidArgument, 400, false, "A scan page token was not produced by this scan.";
    ConflictingConditions = "conflicting_conditions", InvalidArgument, 400, false, "A write sets conditions that cannot hold together.";
    CrossShard = "cross_shard", InvalidArgument, 400, false, "A batch or transaction spans keys of more than one shard.";
    MinRevisionCrossShard = "min_revision_cross_shard", InvalidArgument, 400, false, "A min_revision read spans more than one shard (revisions are per shard).";
    RequestIdTooLong = "request_id_too_long", InvalidArgument, 400, false, "The request id is longer than the limit.";
    TtlTooLong = "ttl_too_long", InvalidArgument, 400, false, "The TTL exceeds the limit.";
    LimitTooLarge = "limit_too_large", InvalidArgument, 400, false, "A scan or page limit exceeds the largest allowed.";
    BadQuery = "bad_query", InvalidArgument, 400, false, "HTTP: a query parameter is malformed or unknown.";
    BadHeader = "bad_header", InvalidArgument, 400, false, "HTTP: a header (If-Match, …) is malformed.";
    BadJson = "bad_json", InvalidArgument, 400, false, "HTTP: the JSON body does not parse as the request.";
    BadBody = "bad_body", InvalidArgument, 400, false, "HTTP: the body is not what the route takes.";
    BadBase64 = "bad_base64", InvalidArgument, 400, false, "HTTP: a base64-encoded key or value does not decode.";
    BadEncoding = "bad_encoding", InvalidArgument, 400, false, "HTTP: an unknown value encoding (use utf8 or base64).";
    MethodNotAllowed = "method_not_allowed", InvalidArgument, 400, false, "HTTP: the route does not take this method.";
    NoRoute = "no_route", InvalidArgument, 400, false, "HTTP: no such route (the API lives under /store).";
    // Over a size limit: make the request smaller.
    KeyTooLarge = "key_too_large", InvalidArgument, 413, false, "The key exceeds max-key-bytes.";
    ValueTooLarge = "value_too_large", InvalidArgument, 413, false, "The value exceeds max-value-bytes.";
    BatchTooLarge = "batch_too_large", InvalidArgument, 413, false, "The batch's total size exceeds max-batch-bytes.";
    TooManyOps = "too_many_ops", InvalidArgument, 413, false, "The batch or transaction has more operations than allowed.";
    BodyTooLarge = "body_too_large", InvalidArgument, 413, false, "HTTP: the request body exceeds its limit.";
    // The store refused a condition: nothing was applied.
    KeyExists = "key_exists", FailedPrecondition, 409, false, "if_absent: the key already exists.";
    RevisionMismatch = "revision_mismatch", FailedPrecondition, 412, false, "if_mod_revision / If-Match: the key's mod revision differs.";
    KeyNotFound = "key_not_found", NotFound, 404, false, "The key does not exist (update, or a read of a missing key over HTTP).";
    RequestIdReused = "request_id_reused", AlreadyExists, 409, false, "The request id was already used for a different request.";
    // The cluster cannot answer now: the same request may succeed later.
    RevisionNotReached = "revision_not_reached", DeadlineExceeded, 504, true, "The shard did not reach the read's min_revision in time.";
    Unavailable = "unavailable", Unavailable, 503, true, "No leader could be reached in time, or the node is shutting down; the request may or may not have applied (a retry under the same request id applies at most once).";
    DiskFull = "disk_full", ResourceExhausted, 507, true, "The data directory of the node that had to write is full; nothing was applied. Succeeds once space returns.";
    StorageError = "storage_error", Internal, 500, false, "The node's storage failed; nothing was applied. See the node's log.";
    RemoteError = "remote_error", Internal, 500, false, "The node a request was forwarded to failed in a way it did not classify.";
    Internal = "internal", Internal, 500, false, "A check inside the node failed (a bug, or a task that stopped); nothing was applied. See the node's log.";
    // Access control: present a valid credential with the right role.
    Unauthenticated = "unauthenticated", Unauthenticated, 401, false, "Authentication is on and the request carries no valid credential: none, a malformed or unknown token, a revoked one, a changed user's, or a certificate mapped to no user.";
    TokenExpired = "token_expired", Unauthenticated, 401, false, "The session token has expired; log in again.";
    PermissionDenied = "permission_denied", PermissionDenied, 403, false, "The caller's roles do not grant what the request needs; the message names the permission and the key, range or admin action.";
    AuthDisabled = "auth_disabled", FailedPrecondition, 409, false, "Authentication is not set up on this cluster (start a node with --auth-root-password-file), so there are no users to manage or log in as.";
    BadCredentials = "bad_credentials", Unauthenticated, 401, false, "Login: no such user, or the password is wrong (which one is not said).";
    UserNotFound = "user_not_found", NotFound, 404, false, "No user has this name (or no API token has this id).";
    RoleNotFound = "role_not_found", NotFound, 404, false, "No role has this name.";
    UserExists = "user_exists", AlreadyExists, 409, false, "create_only: a user with this name exists.";
    RoleInUse = "role_in_use", FailedPrecondition, 409, false, "The role is held by users; take it from them first.";
    BuiltInRole = "built_in_role", FailedPrecondition, 409, false, "The built-in roles root and readonly cannot be changed or removed.";
    BadAccessRule = "bad_access_rule", InvalidArgument, 400, false, "A user, role or rule is malformed: a bad name, an empty or inverted range, a prefix mixed with bounds, no permissions, or an unknown role.";
    // Cluster administration refusals: nothing was changed.
    NodeRemoved = "node_removed", FailedPrecondition, 409, false, "The node was removed from the cluster; its identity is fenced for good.";
    NotDrained = "not_drained", FailedPrecondition, 409, false, "The node must be drained (all replicas moved) before it can be removed.";
    TooFewNodes = "too_few_nodes", FailedPrecondition, 409, false, "The change would leave fewer nodes than the replication factor.";
    NotEnoughCapacity = "not_enough_capacity", FailedPrecondition, 409, false, "The other nodes lack the room to take the replicas.";
}

impl ErrorCode {
    /// The code named `s`, or `None` for a code this build does not know
    /// (a newer server's).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The registry as the Markdown table `docs/API.md` carries.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| code | gRPC status | HTTP | retry as is | meaning |\n|---|---|---|---|---|\n",
    );
    for c in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | `{:?}` | {} | {} | {} |\n",
            c.as_str(),
            c.grpc(),
            c.http(),
            if c.retryable() { "yes" } else { "no" },
            c.meaning()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_snake_case_and_parse_back() {
        let mut seen = BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} defined twice");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{c} is not snake_case"
            );
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(!c.meaning().is_empty());
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn statuses_agree_with_their_class() {
        for &c in ErrorCode::ALL {
            match c.grpc() {
                Code::InvalidArgument => assert!(matches!(c.http(), 400 | 413), "{c}"),
                Code::Internal => assert_eq!(c.http(), 500, "{c}"),
                Code::Unavailable => assert_eq!(c.http(), 503, "{c}"),
                _ => {}
            }
            // Only codes whose request may succeed unchanged are retryable.
            if c.retryable() {
                assert!(
                    matches!(
                        c.grpc(),
                        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
                    ),
                    "{c}"
                );
            }
        }
    }

    #[test]
    fn the_api_doc_lists_every_code() {
        let doc = include_str!("../../docs/API.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/API.md is out of date: paste in cairn_proto::error_code::markdown_table()'s output:\n{}",
            markdown_table()
        );
    }
}
