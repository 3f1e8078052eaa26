//! The key space of Cairn as both sides of the wire must agree on it.
//!
//! A node and a smart client have to compute the same shard for a key (so
//! the client can send a request straight to that shard's leader) and read
//! the same scan page tokens (so a scan split over several nodes can be
//! merged and continued anywhere), and split and merge a BatchGet the same
//! way. Keeping both rules in this one small crate
//! means they cannot drift apart.

pub mod batch_get;
pub mod scan_page;
mod shard;

pub use shard::{MAX_SHARDS, ShardCount, ShardId, hash_part};
