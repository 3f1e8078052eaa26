//! Access control on the node: the access-control records in the meta
//! group ([`records`]), the gate every request passes ([`gate`]), the
//! audit log ([`audit`]) and the Auth gRPC service ([`service`]). The rules
//! themselves (roles, tokens, what each request needs) are `cairn-auth`'s.

pub mod admin_gate;
pub mod audit;
pub mod gate;
pub mod records;
pub mod service;

pub use gate::{AccessError, AccessGate, CALLER, Caller, Credentials};
