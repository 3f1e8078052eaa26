//! Cairn's access control, free of I/O: what users and roles are
//! ([`model`]), how passwords are hashed ([`password`]), how session and API
//! tokens are made and checked ([`token`]), which permissions every request
//! needs ([`request`], one exhaustive classification) and whether a set of
//! roles grants them ([`policy`]).
//!
//! The node stores the records in its meta group, resolves who a request is
//! from, and asks this crate whether it may proceed; the same rules serve
//! gRPC, the HTTP gateway, the admin API and forwarded requests.

pub mod model;
pub mod password;
pub mod policy;
pub mod request;
pub mod token;

pub use model::{AdminPermission, KeyPermission, KeyRange, Role, Rule, User};
pub use policy::{Denial, Principal};
pub use request::{AdminRpc, AuthRpc, Call, KvCall, Need};
