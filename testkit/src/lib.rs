//! Test support shared by Cairn's test suites: the KV API conformance suite
//! ([`conformance`]), which any front end or topology must pass, and a harness
//! that runs real `cairn-node` processes ([`process`], [`cluster`]), and a
//! proxy that loses responses ([`lossy_proxy`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod conformance;
pub mod lossy_proxy;
pub mod process;

/// A random prefix so tests sharing a server never see each other's keys.
pub fn unique_prefix(name: &str) -> String {
    format!("{name}-{:016x}", rand::random::<u64>())
}
