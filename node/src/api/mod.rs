//! Front ends of the key-value service: gRPC, the HTTP gateway, and the
//! mapping of service errors to their statuses.

pub mod admin;
pub mod grpc;
pub mod http;
pub mod rebalance_progress;
pub mod status;
