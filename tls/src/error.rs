//! Why TLS material could not be used.

use std::path::PathBuf;

/// Why TLS material was refused. Every variant names the file concerned,
/// so an operator knows which Secret key to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A certificate could not be parsed.
    #[error("unparsable certificate: {0}")]
    Certificate(String),
    /// The key is not the certificate's.
    #[error("the key {key} does not belong to the certificate {cert}: {message}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Detail.
        message: String,
    },
    /// The certificate has expired.
    #[error("the certificate {path} expired at {not_after} (Unix seconds)")]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// Its expiry.
        not_after: i64,
    },
    /// The certificate is not valid yet.
    #[error("the certificate {path} is not valid before {not_before} (Unix seconds)")]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// Its start.
        not_before: i64,
    },
    /// The certificate does not chain to the trusted bundle.
    #[error("the certificate {path} {message} ({ca})")]
    Chain {
        /// The certificate file.
        path: PathBuf,
        /// The CA bundle.
        ca: PathBuf,
        /// Detail.
        message: String,
    },
    /// Serving needs a certificate and the context has none.
    #[error("serving TLS needs a certificate and key")]
    NoCertificate,
    /// Any other inconsistency.
    #[error("{0}")]
    Invalid(String),
}
