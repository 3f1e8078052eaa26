//! The harness of Cairn's end-to-end tests, which span crates: a stand-in
//! Kubernetes ([`kube_env`]: kubesim's API server, controllers and kubelet,
//! the CRD, the real `cairn-operator` binary, real `cairn-node` pods) and a
//! client that keeps writing while the cluster changes under it
//! ([`writer`]). The tests themselves (`e2e/`) are named by the guarantee
//! each proves; tests of one crate stay in that crate.
// Test support: a helper that panics fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod kube_env;
pub mod writer;

pub use kube_env::*;
