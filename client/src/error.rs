//! Errors returned by the client library.

use std::time::Duration;

/// Everything that can go wrong when talking to Cairn through [`crate::Client`].
///
/// Server-side outcomes (key conditions, bad arguments, unavailability after
/// retries) arrive as [`ClientError::Status`]; use [`ClientError::code`] to
/// branch on them without matching on the variant.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No endpoint was given to connect to.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint is not of the form `HOST:PORT` or `http://HOST:PORT`.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    /// The bearer token cannot be sent as gRPC metadata (it must be visible
    /// ASCII).
    #[error("invalid token: it must consist of visible ASCII characters")]
    InvalidToken,
    /// None of the endpoints could be connected to; `source` is the failure
    /// of the last one tried (reachable through `Error::source`, as usual,
    /// rather than repeated in the message).
    #[error("could not connect to any of {}", .endpoints.join(", "))]
    Connect {
        /// The endpoints that were tried, in order.
        endpoints: Vec<String>,
        /// Why the last attempt failed.
        #[source]
        source: ConnectFailure,
    },
    /// The server (or the transport underneath) answered with a gRPC status.
    ///
    /// Displayed as `what: message` (`precondition failed: ...`); the
    /// status is not chained as a source
    /// because its own `Display` would only repeat that.
    #[error("{}", describe_status(.0))]
    Status(tonic::Status),
    /// The server sent a response that breaks the API contract (for example a
    /// scan page token that never advances).
    #[error("unexpected response from server: {0}")]
    UnexpectedResponse(String),
}

impl ClientError {
    /// The server's stable error code (`key_exists`, `revision_mismatch`,
    /// `key_not_found`, …), which tells apart errors that share a gRPC
    /// status (both of those are FAILED_PRECONDITION). `None` for errors
    /// that did not come from a Cairn node.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ClientError::Status(status) => status
                .metadata()
                .get(cairn_proto::ERROR_CODE_METADATA)
                .and_then(|v| v.to_str().ok()),
            _ => None,
        }
    }

    /// The server's error code as a registry entry, so callers can match on
    /// it exhaustively-with-fallback. `None` for errors that did not come
    /// from a Cairn node, and for a code this client build does not know (a
    /// newer server's; [`ClientError::error_code`] still returns its text).
    pub fn stable_code(&self) -> Option<cairn_proto::ErrorCode> {
        self.error_code().and_then(cairn_proto::ErrorCode::parse)
    }

    /// Whether sending the same request again later (under the same request
    /// id, for writes) can succeed without changing it: the registry's
    /// answer for a known code, and for errors without one, whether the
    /// failure was the transport's (connection refused or reset).
    pub fn is_retryable(&self) -> bool {
        match self.stable_code() {
            Some(code) => code.retryable(),
            None => matches!(
                self.code(),
                Some(tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            ),
        }
    }

    /// The gRPC status code of the error, so callers can branch on outcomes
    /// such as `NotFound` or `FailedPrecondition`.
    ///
    /// Connection failures report `Unavailable`, the code gRPC itself uses
    /// for them; errors detected on the client side without talking to a
    /// server (bad endpoints or token, contract violations) have no code.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(status) => Some(status.code()),
            ClientError::Connect { .. } => Some(tonic::Code::Unavailable),
            ClientError::NoEndpoints
            | ClientError::InvalidEndpoint(_)
            | ClientError::InvalidToken
            | ClientError::UnexpectedResponse(_) => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Status(status)
    }
}

/// Why connecting to one endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// The transport reported an error (refused, unreachable, DNS, ...).
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The endpoint did not answer within the connect timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// `what: server message`, with `what` a short phrase for the status code
/// (`precondition failed`, `not found`, ...): how every tool built on this
/// crate (cairnctl among them) prints a server's answer.
fn describe_status(status: &tonic::Status) -> String {
    use tonic::Code;
    let what = match status.code() {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "precondition failed",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by the server",
        Code::Internal => "internal server error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    };
    if status.message().is_empty() {
        what.to_string()
    } else {
        format!("{what}: {}", status.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_exposed_only_for_statuses() {
        let status = ClientError::Status(tonic::Status::not_found("nope"));
        assert_eq!(status.code(), Some(tonic::Code::NotFound));
        assert_eq!(ClientError::NoEndpoints.code(), None);
    }

    fn with_code(status: tonic::Code, code: &str) -> ClientError {
        let mut s = tonic::Status::new(status, "x");
        s.metadata_mut().insert(
            cairn_proto::ERROR_CODE_METADATA,
            code.parse().expect("ascii metadata value"),
        );
        ClientError::Status(s)
    }

    #[test]
    fn stable_code_and_retryability_follow_the_registry() {
        let full = with_code(tonic::Code::ResourceExhausted, "disk_full");
        assert_eq!(full.stable_code(), Some(cairn_proto::ErrorCode::DiskFull));
        assert!(full.is_retryable());
        let exists = with_code(tonic::Code::FailedPrecondition, "key_exists");
        assert_eq!(
            exists.stable_code(),
            Some(cairn_proto::ErrorCode::KeyExists)
        );
        assert!(!exists.is_retryable());
        // A newer server's code: text kept, no registry entry, status decides.
        let unknown = with_code(tonic::Code::Unavailable, "from_the_future");
        assert_eq!(unknown.error_code(), Some("from_the_future"));
        assert_eq!(unknown.stable_code(), None);
        assert!(unknown.is_retryable());
        assert!(!ClientError::NoEndpoints.is_retryable());
    }

    #[test]
    fn status_display_includes_code_and_message() {
        let err = ClientError::Status(tonic::Status::failed_precondition("revision mismatch"));
        assert_eq!(err.to_string(), "precondition failed: revision mismatch");
    }

    #[test]
    fn status_without_message_is_just_the_phrase() {
        let err = ClientError::Status(tonic::Status::unavailable(""));
        assert_eq!(err.to_string(), "unavailable");
    }
}
