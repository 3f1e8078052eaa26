//! Test support shared by Cairn's test suites: the KV API conformance suite
//! ([`conformance`]), which any front end ([`kv_api`], [`http_api`]) or
//! topology must pass, a harness that runs real `cairn-node` processes
//! ([`process`], [`cluster`], [`single`]), and a proxy that loses
//! responses ([`lossy_proxy`]).
// Test support: a helper that panics fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod conformance;
pub mod http_api;
pub mod kv_api;
/// The local-cluster launcher (`cairn-local`), re-exported where tests have
/// always found it.
pub use cairn_local::{cluster, process};
pub mod lossy_proxy;
pub mod single;

/// A random prefix so tests sharing a server never see each other's keys.
pub fn unique_prefix(name: &str) -> String {
    format!("{name}-{:016x}", rand::random::<u64>())
}
