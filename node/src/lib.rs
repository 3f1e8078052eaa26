//! `cairn-node`: the Cairn storage node.
//!
//! Layers, bottom up (imports only point down):
//! [`storage`] (RocksDB, on-disk formats) → [`state_machine`] (deterministic
//! apply of write commands) → [`commit`] (group commit) → [`kv`] (the
//! key-value service: limits, routing to shards, reads) → [`api`] (gRPC and
//! HTTP front ends) → [`server`] (config, startup, shutdown).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod api;
pub mod clock;
pub mod cluster;
pub mod commit;
#[doc(hidden)]
pub mod fuzzing;
pub mod kv;
pub mod metrics;
pub mod partition;
pub mod raft;
pub mod reaper;
pub mod server;
pub mod state_machine;
pub mod storage;
