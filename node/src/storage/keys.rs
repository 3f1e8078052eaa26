//! Key layouts of the column families.
//!
//! - `data`: `shard:u32 BE ‖ user key` → [`Record`](super::record::Record).
//! - `ttl` (expiry index): `shard:u32 BE ‖ expires_at_ms:u64 BE ‖ user key` → empty.
//! - `meta`: `b"cluster"` → cluster identity; `b"shard/" ‖ shard:u32 BE` → shard state.
//!
//! Big-endian prefixes keep each shard's keys contiguous and in user-key order,
//! so a shard's range can be scanned, snapshotted or moved on its own.

use crate::partition::ShardId;

/// Length of the shard prefix on `data` and `ttl` keys.
pub const SHARD_PREFIX_LEN: usize = 4;

/// `data` key for `user_key` in `shard`.
pub fn data_key(shard: ShardId, user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(SHARD_PREFIX_LEN + user_key.len());
    k.extend_from_slice(&shard.to_be_bytes());
    k.extend_from_slice(user_key);
    k
}

/// Splits a `data` key into shard and user key; `None` for a malformed key.
pub fn split_data_key(key: &[u8]) -> Option<(ShardId, &[u8])> {
    if key.len() < SHARD_PREFIX_LEN {
        return None;
    }
    let mut s = [0u8; 4];
    s.copy_from_slice(&key[..SHARD_PREFIX_LEN]);
    Some((u32::from_be_bytes(s), &key[SHARD_PREFIX_LEN..]))
}

/// The first key of `shard` in `data` or `ttl`.
pub fn shard_start(shard: ShardId) -> Vec<u8> {
    shard.to_be_bytes().to_vec()
}

/// The first key after every key of `shard` in `data` or `ttl`, `None` for the last shard id.
pub fn shard_end(shard: ShardId) -> Option<Vec<u8>> {
    shard.checked_add(1).map(|s| s.to_be_bytes().to_vec())
}

/// `ttl` index key.
pub fn ttl_key(shard: ShardId, expires_at_ms: u64, user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(SHARD_PREFIX_LEN + 8 + user_key.len());
    k.extend_from_slice(&shard.to_be_bytes());
    k.extend_from_slice(&expires_at_ms.to_be_bytes());
    k.extend_from_slice(user_key);
    k
}

/// Splits a `ttl` index key into (shard, expires_at_ms, user key).
pub fn split_ttl_key(key: &[u8]) -> Option<(ShardId, u64, &[u8])> {
    if key.len() < SHARD_PREFIX_LEN + 8 {
        return None;
    }
    let (shard, rest) = split_data_key(key)?;
    let mut e = [0u8; 8];
    e.copy_from_slice(&rest[..8]);
    Some((shard, u64::from_be_bytes(e), &rest[8..]))
}

/// `meta` key of the cluster identity record.
pub const CLUSTER_KEY: &[u8] = b"cluster";

/// `meta` key of a shard's state-machine state.
pub fn shard_state_key(shard: ShardId) -> Vec<u8> {
    let mut k = b"shard/".to_vec();
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

/// Prefix of exactly-once request records in `meta`.
pub const DEDUP_PREFIX: &[u8] = b"dedup/";

/// How long (in shard time) a request id is remembered for exactly-once retries.
pub const DEDUP_RETENTION_MS: u64 = 120_000;

/// `meta` key of a request id in `shard`.
pub fn dedup_key(shard: ShardId, request_id: &[u8]) -> Vec<u8> {
    let mut k = DEDUP_PREFIX.to_vec();
    k.extend_from_slice(&shard.to_be_bytes());
    k.extend_from_slice(request_id);
    k
}

/// `(shard, applied_at_ms)` of a request record (value format 1:
/// `0x01 ‖ applied_at_ms:u64 BE ‖ …`), `None` for any other `meta` entry.
pub fn parse_dedup_entry(key: &[u8], value: &[u8]) -> Option<(ShardId, u64)> {
    let rest = key.strip_prefix(DEDUP_PREFIX)?;
    let shard = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    if value.first() != Some(&1) {
        return None;
    }
    let at = u64::from_be_bytes(value.get(1..9)?.try_into().ok()?);
    Some((shard, at))
}

/// The smallest key strictly greater than every key starting with `prefix`,
/// or `None` when no such key exists (prefix empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_round_trip_and_sort_by_shard_then_key() {
        let a = data_key(1, b"zzz");
        let b = data_key(2, b"aaa");
        assert!(a < b);
        assert_eq!(split_data_key(&a), Some((1, &b"zzz"[..])));
    }

    #[test]
    fn ttl_keys_sort_by_expiry() {
        let a = ttl_key(3, 100, b"z");
        let b = ttl_key(3, 200, b"a");
        assert!(a < b);
        assert_eq!(split_ttl_key(&b), Some((3, 200, &b"a"[..])));
    }

    #[test]
    fn prefix_successor_handles_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
