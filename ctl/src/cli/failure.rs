//! How failures become exit codes and `error: ...` lines.
//!
//! Exit status 1 means the operation was attempted and failed; 2 means the
//! command line or an input file was wrong (clap uses 2 for bad arguments
//! too), so scripts can tell "fix your invocation" from "the store said no".

use std::fmt;
use std::process::ExitCode;

use cairn_client::ClientError;

/// A mistake in the invocation or its input files; exits with status 2.
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error with the given message (printed after `error: `).
    pub fn new(message: String) -> Self {
        UsageError(message)
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit status for a completed command.
const OK: u8 = 0;
/// Exit status when the operation failed.
const FAILED: u8 = 1;
/// Exit status for usage errors.
const USAGE: u8 = 2;

/// Prints `err` to stderr and picks the exit status for it.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        // The reader went away (e.g. `cairnctl scan | head`): not our failure.
        return ExitCode::from(OK);
    }
    eprintln!("error: {}", message(err));
    if err.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(USAGE)
    } else {
        ExitCode::from(FAILED)
    }
}

/// The error and its causes joined by `: `, skipping a cause that merely
/// repeats the previous message (some transport errors wrap themselves).
fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Converts a library error into the CLI's error, classifying invocation
/// mistakes (bad endpoint or token) as usage errors.
pub fn client_error(err: ClientError) -> anyhow::Error {
    match err {
        ClientError::NoEndpoints | ClientError::InvalidEndpoint(_) | ClientError::InvalidToken => {
            UsageError::new(err.to_string()).into()
        }
        ClientError::Status(_)
        | ClientError::Connect { .. }
        | ClientError::UnexpectedResponse(_) => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_endpoints_are_usage_errors_and_server_errors_are_not() {
        let usage = client_error(ClientError::InvalidEndpoint("x".into()));
        assert!(usage.downcast_ref::<UsageError>().is_some());
        let failed = client_error(ClientError::Status(tonic::Status::not_found("k")));
        assert!(failed.downcast_ref::<UsageError>().is_none());
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let err = anyhow::anyhow!("connection refused")
            .context("tcp connect error")
            .context("tcp connect error")
            .context("could not connect");
        assert_eq!(
            message(&err),
            "could not connect: tcp connect error: connection refused"
        );
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let err = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing output");
        assert!(is_broken_pipe(&err));
    }
}
