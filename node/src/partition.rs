//! Re-exports of the hash-partitioning rule, which lives in
//! `cairn-keyspace` (shared with clients that route by shard): node code
//! names it `crate::partition`.

pub use cairn_keyspace::{MAX_SHARDS, ShardCount, ShardId, hash_part};
