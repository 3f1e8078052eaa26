//! `cairn-node`: the Cairn storage node.
//!
//! Layers, bottom up (imports only point down):
//! [`storage`] (RocksDB, on-disk formats) → [`apply`] (deterministic apply
//! of write commands) → [`commit`] (the standalone node's group commit) and
//! [`raft`] (one openraft group per shard: log, state machine, snapshots,
//! transport) → [`cluster`] (the groups a node hosts, membership, placement
//! and balancing, failure handling) → [`kv`] (the key-value service: limits,
//! routing to shards, reads) → [`api`] (gRPC and HTTP front ends) →
//! [`server`] (config, startup, join, shutdown). [`partition`] re-exports
//! the hash-sharding rule of `cairn-keyspace`; [`reaper`] removes expired
//! keys; [`metrics`], [`telemetry`] (logs, traces, trace-context
//! propagation) and [`clock`] are used by every layer.

pub mod api;
pub mod apply;
pub mod auth;
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
pub mod storage;
pub mod telemetry;
