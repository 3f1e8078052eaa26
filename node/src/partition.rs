//! Hash partitioning: which shard owns a key (the rule lives in
//! `cairn-keyspace`, shared with clients that route by shard).

pub use cairn_keyspace::{MAX_SHARDS, ShardCount, ShardId, hash_part};
