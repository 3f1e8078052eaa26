//! Hash partitioning: which shard owns a key.
//!
//! `shard(key)` is the top `log2(S)` bits of `xxh3_64(hash_part(key))`, where
//! `hash_part` is the text inside the first `{…}` of the key when it has a
//! non-empty one (a *hash tag*, so related keys can share a shard and therefore
//! a `Batch` or `Txn`), else the whole key. Using the top bits means a later
//! split of shard `i` into `2i` and `2i + 1` moves no key to a third shard.

use xxhash_rust::xxh3::xxh3_64;

/// Index of a hash shard, `0 .. shard_count`.
pub type ShardId = u32;

/// The largest shard count a cluster may be created with.
pub const MAX_SHARDS: u32 = 1 << 16;

/// A validated shard count: a power of two between 1 and [`MAX_SHARDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCount(u32);

impl ShardCount {
    /// Validates `n`.
    ///
    /// # Errors
    /// Returns a message naming the rule when `n` is not a power of two in range.
    pub fn new(n: u32) -> Result<Self, String> {
        if n == 0 || !n.is_power_of_two() || n > MAX_SHARDS {
            return Err(format!(
                "shard count must be a power of two between 1 and {MAX_SHARDS}, got {n}"
            ));
        }
        Ok(Self(n))
    }

    /// The number of shards.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The shard that owns `key`.
    pub fn shard_for_key(self, key: &[u8]) -> ShardId {
        let bits = self.0.trailing_zeros();
        if bits == 0 {
            return 0;
        }
        let hash = xxh3_64(hash_part(key));
        (hash >> (64 - bits)) as ShardId
    }
}

/// The part of `key` that is hashed: the contents of the first non-empty
/// `{…}` hash tag, or the whole key.
pub fn hash_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_groups_keys_into_one_shard() {
        let s = ShardCount::new(64).unwrap();
        let a = s.shard_for_key(b"{user42}/name");
        let b = s.shard_for_key(b"{user42}/email");
        let c = s.shard_for_key(b"prefix-{user42}");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, s.shard_for_key(b"user42"));
    }

    #[test]
    fn empty_or_unclosed_tags_hash_the_whole_key() {
        assert_eq!(hash_part(b"{}abc"), b"{}abc");
        assert_eq!(hash_part(b"{abc"), b"{abc");
        assert_eq!(hash_part(b"a{b}c{d}"), b"b");
    }

    #[test]
    fn keys_spread_over_all_shards() {
        let s = ShardCount::new(64).unwrap();
        let mut seen = vec![0u32; 64];
        for i in 0..64_000 {
            seen[s.shard_for_key(format!("key-{i}").as_bytes()) as usize] += 1;
        }
        // Each shard gets its share within a wide bound (expected 1000).
        assert!(seen.iter().all(|&n| (700..1300).contains(&n)), "{seen:?}");
    }

    #[test]
    fn split_keeps_keys_in_child_shards() {
        let s64 = ShardCount::new(64).unwrap();
        let s128 = ShardCount::new(128).unwrap();
        for i in 0..1000 {
            let k = format!("k{i}");
            let parent = s64.shard_for_key(k.as_bytes());
            let child = s128.shard_for_key(k.as_bytes());
            assert!(child == 2 * parent || child == 2 * parent + 1);
        }
    }

    #[test]
    fn rejects_bad_shard_counts() {
        assert!(ShardCount::new(0).is_err());
        assert!(ShardCount::new(3).is_err());
        assert!(ShardCount::new(MAX_SHARDS * 2).is_err());
        assert_eq!(ShardCount::new(1).unwrap().shard_for_key(b"x"), 0);
    }
}
