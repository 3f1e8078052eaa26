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
    /// Displayed as `Code: message`; the status is not chained as a source
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

/// `code: message`, or just the code when the server sent no message.
fn describe_status(status: &tonic::Status) -> String {
    let code = status.code();
    if status.message().is_empty() {
        format!("{code:?}")
    } else {
        format!("{code:?}: {}", status.message())
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

    #[test]
    fn status_display_includes_code_and_message() {
        let err = ClientError::Status(tonic::Status::failed_precondition("revision mismatch"));
        assert_eq!(err.to_string(), "FailedPrecondition: revision mismatch");
    }
}
