//! Mapping of service errors to gRPC and HTTP statuses.
//!
//! | error | gRPC | HTTP |
//! |---|---|---|
//! | invalid argument | `INVALID_ARGUMENT` | 400 |
//! | over a size limit | `INVALID_ARGUMENT` | 413 |
//! | key exists (`if_absent`) | `FAILED_PRECONDITION` | 409 (412 for `If-None-Match`) |
//! | revision mismatch | `FAILED_PRECONDITION` | 412 |
//! | key not found (update) | `NOT_FOUND` | 404 |
//! | request id reused for another request | `ALREADY_EXISTS` | 409 |
//! | `min_revision` not reached | `DEADLINE_EXCEEDED` | 504 |
//! | shutting down | `UNAVAILABLE` | 503 |
//! | storage failure | `INTERNAL` | 500 |
//!
//! Every gRPC error carries its stable code in the `cairn-error-code` metadata.

use http::StatusCode;
use tonic::{Code, Status};

use crate::kv::KvError;
use crate::state_machine::ApplyError;

/// gRPC metadata key carrying the stable error code.
pub use cairn_proto::ERROR_CODE_METADATA;

/// The gRPC code for `e`.
pub fn grpc_code(e: &KvError) -> Code {
    match e {
        KvError::InvalidArgument { .. } | KvError::TooLarge { .. } => Code::InvalidArgument,
        KvError::Refused(ApplyError::NotFound { .. }) => Code::NotFound,
        KvError::Refused(ApplyError::EmptyOp { .. }) => Code::InvalidArgument,
        KvError::Refused(ApplyError::RequestIdReused { .. }) => Code::AlreadyExists,
        KvError::Refused(_) => Code::FailedPrecondition,
        KvError::RevisionNotReached { .. } => Code::DeadlineExceeded,
        KvError::Unavailable(_) => Code::Unavailable,
        KvError::Storage(_) => Code::Internal,
        KvError::DiskFull(_) => Code::ResourceExhausted,
        KvError::Remote(s) => s.code(),
    }
}

/// Converts `e` to a gRPC status with its code in metadata.
pub fn to_status(e: &KvError) -> Status {
    if let KvError::Remote(status) = e {
        return status.clone();
    }
    let mut s = Status::new(grpc_code(e), e.to_string());
    if let Ok(v) = e.code().parse() {
        s.metadata_mut().insert(ERROR_CODE_METADATA, v);
    }
    s
}

/// The HTTP status for `e`.
pub fn http_status(e: &KvError) -> StatusCode {
    match e {
        KvError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        KvError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::Refused(ApplyError::KeyExists { .. }) => StatusCode::CONFLICT,
        KvError::Refused(ApplyError::RevisionMismatch { .. }) => StatusCode::PRECONDITION_FAILED,
        KvError::Refused(ApplyError::NotFound { .. }) => StatusCode::NOT_FOUND,
        KvError::Refused(ApplyError::EmptyOp { .. }) => StatusCode::BAD_REQUEST,
        KvError::Refused(ApplyError::RequestIdReused { .. }) => StatusCode::CONFLICT,
        KvError::RevisionNotReached { .. } => StatusCode::GATEWAY_TIMEOUT,
        KvError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        KvError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        KvError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
        KvError::Remote(s) => http_for_grpc(s.code()),
    }
}

/// The HTTP status matching a gRPC code another node answered with.
fn http_for_grpc(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
