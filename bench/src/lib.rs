//! `cairn-bench`: YCSB core workloads against Cairn (gRPC or HTTP), etcd and
//! Redis, with the same keys, values and request distributions for every
//! target, and HdrHistogram latencies per operation kind.
//!
//! Modules, one concept each: [`cli`] (flags to a [`cli::Plan`]), [`keygen`]
//! (record keys and values), [`distribution`] (which record an operation
//! touches), [`sequence`] (insert numbering), [`workload`] (operation mixes),
//! [`targets`] (the systems), [`runner`] (load and run phases),
//! [`histogram`] (latency recording and the [`histogram::report::Report`]),
//! [`progress`] (the stderr progress line).

pub mod cli;
pub mod distribution;
pub mod histogram;
pub mod keygen;
pub mod progress;
pub mod runner;
pub mod sequence;
pub mod targets;
pub mod workload;
