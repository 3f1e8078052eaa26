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

/// gRPC metadata key carrying the stable error code.
pub use cairn_proto::ERROR_CODE_METADATA;

/// The gRPC code for `e` (the registry's, or what a forwarded-to node said).
pub fn grpc_code(e: &KvError) -> Code {
    match e {
        KvError::Remote(s) => s.code(),
        e => e.code().grpc(),
    }
}

/// Converts `e` to a gRPC status with its code in metadata.
pub fn to_status(e: &KvError) -> Status {
    if let KvError::Remote(status) = e {
        return status.clone();
    }
    let mut s = Status::new(grpc_code(e), e.to_string());
    if let Ok(v) = e.code().as_str().parse() {
        s.metadata_mut().insert(ERROR_CODE_METADATA, v);
    }
    s
}

/// The HTTP status for `e` (the registry's, or the one matching what a
/// forwarded-to node said).
pub fn http_status(e: &KvError) -> StatusCode {
    match e {
        KvError::Remote(s) => http_for_grpc(s.code()),
        e => StatusCode::from_u16(e.code().http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
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
