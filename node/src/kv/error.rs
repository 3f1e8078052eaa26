//! Errors of the key-value service, each with a stable code from the
//! registry ([`cairn_proto::ErrorCode`]), which also gives its gRPC and HTTP
//! statuses.

use std::sync::Arc;

use cairn_proto::ErrorCode;

use crate::apply::ApplyError;
use crate::commit::CommitError;
use crate::storage::StorageError;

/// Why a key-value request failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The request is malformed or breaks a rule.
    #[error("{message}")]
    InvalidArgument {
        /// Stable code, e.g. `empty_key`.
        code: ErrorCode,
        /// What is wrong, naming the rule or limit.
        message: String,
    },
    /// A key, value, batch or body exceeds a configured limit.
    #[error("{message}")]
    TooLarge {
        /// Stable code, e.g. `value_too_large`.
        code: ErrorCode,
        /// What is too large and the limit.
        message: String,
    },
    /// The state machine refused the write (condition failed, key missing).
    #[error(transparent)]
    Refused(#[from] ApplyError),
    /// A `min_revision` read timed out waiting for the shard to catch up.
    #[error(
        "shard {shard} is at revision {current}; timed out waiting for min_revision {min_revision}"
    )]
    RevisionNotReached {
        /// The shard read.
        shard: u32,
        /// Revision the request required.
        min_revision: u64,
        /// The shard's revision when the wait ended.
        current: u64,
    },
    /// The node cannot serve now (shutting down); retrying elsewhere or later is safe.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed; the request had no effect (the [`StorageError`] is
    /// the source).
    #[error("storage error: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// A check inside the node failed (an invariant, or a task that
    /// stopped); the request had no effect.
    #[error("internal error: {0}")]
    Internal(String),
    /// The disk of the node that had to write is full; the request had no
    /// effect. Retrying after space is freed (or, in a cluster, after the
    /// shard's leadership moved) succeeds.
    #[error("{0}")]
    DiskFull(String),
    /// The access gate refused the request (no valid credential, or the
    /// caller's roles do not grant it); nothing was read or applied.
    #[error(transparent)]
    Access(#[from] crate::auth::AccessError),
    /// The node this read was forwarded to answered with an error; it is
    /// passed on as it came (code, message and error-code metadata).
    #[error("{}", .0.message())]
    Remote(tonic::Status),
}

impl KvError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { code, .. } | Self::TooLarge { code, .. } => *code,
            Self::Refused(ApplyError::KeyExists { .. }) => ErrorCode::KeyExists,
            Self::Refused(ApplyError::RevisionMismatch { .. }) => ErrorCode::RevisionMismatch,
            Self::Refused(ApplyError::NotFound { .. }) => ErrorCode::KeyNotFound,
            Self::Refused(ApplyError::EmptyOp { .. }) => ErrorCode::EmptyOp,
            Self::Refused(ApplyError::RequestIdReused { .. }) => ErrorCode::RequestIdReused,
            Self::RevisionNotReached { .. } => ErrorCode::RevisionNotReached,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Storage(_) => ErrorCode::StorageError,
            Self::Internal(_) => ErrorCode::Internal,
            Self::DiskFull(_) => ErrorCode::DiskFull,
            Self::Access(e) => e.code,
            Self::Remote(_) => ErrorCode::RemoteError,
        }
    }

    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn too_large(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::TooLarge {
            code,
            message: message.into(),
        }
    }
}

impl From<CommitError> for KvError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Refused(r) => Self::Refused(r),
            CommitError::Storage(s) => match s.as_ref() {
                StorageError::DiskFull { .. } => Self::DiskFull(s.to_string()),
                _ => Self::Storage(s),
            },
            CommitError::Closed => Self::Unavailable("the node is shutting down".into()),
        }
    }
}

impl From<crate::cluster::ClusterError> for KvError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError as C;
        match e {
            C::Storage(s) => match s.as_ref() {
                StorageError::DiskFull { .. } => Self::DiskFull(s.to_string()),
                _ => Self::Storage(s),
            },
            C::DiskFull(s) => Self::DiskFull(s),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<StorageError> for KvError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::DiskFull { .. } => Self::DiskFull(e.to_string()),
            e => Self::Storage(Arc::new(e)),
        }
    }
}

impl From<rocksdb::Error> for KvError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Storage(Arc::new(StorageError::Rocks(e)))
    }
}
