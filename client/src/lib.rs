//! Client library for Cairn, a distributed key-value store.
//!
//! [`Client`] wraps the generated gRPC stub for the `cairn.kv.v1.KV` service
//! with endpoint fail-over and bounded, jittered retries, so applications and
//! tools (`cairnctl`) do not each reimplement connection handling. The wire
//! types are re-exported as [`pb`] so callers need not depend on
//! `cairn-proto` directly.
//!
//! ```no_run
//! # async fn example() -> Result<(), cairn_client::ClientError> {
//! use cairn_client::{Client, pb};
//!
//! let client = Client::connect(&["127.0.0.1:7000".to_string()]).await?;
//! client
//!     .put(pb::PutRequest { key: b"greeting".to_vec(), value: b"hello".to_vec(), ..Default::default() })
//!     .await?;
//! let got = client.get("greeting", pb::ReadOptions::default()).await?;
//! assert_eq!(got.kv.map(|kv| kv.value), Some(b"hello".to_vec()));
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod backoff;
mod client;
mod dial;
pub mod duration;
mod endpoint;
mod error;
mod routing;

/// The generated protobuf messages and gRPC stubs of the key-value API
/// (`cairn.kv.v1`), re-exported so users of this crate share one version.
pub use cairn_proto::kv::v1 as pb;

/// The generated protobuf messages of the admin API (`cairn.admin.v1`),
/// which [`Admin`] takes and returns.
pub use cairn_proto::admin::v1 as admin_pb;

pub use admin::{AccessStub, Admin, AdminOptions, AdminStub, Authorize, NodeAction};
pub use client::{Client, ClientOptions, MAX_MESSAGE_SIZE};
pub use error::{ClientError, ConnectFailure};
