//! Record keys and values, identical for every target.
//!
//! As in YCSB (`insertorder=hashed`), record number `i` is stored under
//! `"user"` followed by the FNV-1a 64 hash of `i`, so consecutive inserts land
//! all over the key space. The hash is zero-padded to a fixed width, so every
//! key has the same length ([`KEY_LEN`]) and key order is numeric order of
//! the hash.

/// Prefix shared by every record key.
pub const KEY_PREFIX: &str = "user";

/// Exclusive upper bound of the key space: the prefix with its last byte
/// incremented (`"uses"`), used as the end of range scans.
pub const KEY_RANGE_END: &str = "uses";

/// Digits of the zero-padded hash (`i64::MAX` has 19).
const HASH_DIGITS: usize = 19;

/// Length in bytes of every key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + HASH_DIGITS;

const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 little-endian octets of
/// `value`, made non-negative as a Java `long` would be by `Math.abs`.
pub fn fnv_hash64(value: u64) -> u64 {
    let mut hash = FNV_OFFSET_BASIS_64;
    for octet in value.to_le_bytes() {
        hash ^= u64::from(octet);
        hash = hash.wrapping_mul(FNV_PRIME_64);
    }
    (hash as i64).unsigned_abs()
}

/// The key of record number `index`.
pub fn key(index: u64) -> String {
    format!(
        "{KEY_PREFIX}{:0width$}",
        fnv_hash64(index),
        width = HASH_DIGITS
    )
}

/// Size of the pool values are cut from.
const POOL_BYTES: usize = 1 << 20;

/// Produces values of a fixed size: printable ASCII (so gateways that render
/// values as UTF-8 need no base64), cut at a random offset from a random pool.
#[derive(Debug, Clone)]
pub struct ValueGen {
    pool: std::sync::Arc<[u8]>,
    size: usize,
}

impl ValueGen {
    /// A generator of `size`-byte values whose pool is filled from `rng`.
    pub fn new(size: usize, rng: &mut impl rand::Rng) -> Self {
        let len = POOL_BYTES.max(size * 2);
        let pool: Vec<u8> = (0..len).map(|_| rng.random_range(b'!'..=b'~')).collect();
        Self {
            pool: pool.into(),
            size,
        }
    }

    /// Size of every value.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A fresh value.
    pub fn value(&self, rng: &mut impl rand::Rng) -> Vec<u8> {
        let start = rng.random_range(0..=self.pool.len() - self.size);
        self.pool[start..start + self.size].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn keys_have_fixed_length_prefix_and_range() {
        for i in [0, 1, 2, 99, 1 << 40, u64::MAX] {
            let k = key(i);
            assert_eq!(k.len(), KEY_LEN, "{k}");
            assert!(k.starts_with(KEY_PREFIX));
            assert!(k.as_str() < KEY_RANGE_END);
            assert!(k[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn keys_are_distinct_and_scattered() {
        let keys: Vec<String> = (0..10_000).map(key).collect();
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        // Hashed order: consecutive records are not consecutive keys.
        let ascending = keys.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((3_000..7_000).contains(&ascending), "{ascending}");
    }

    #[test]
    fn fnv_matches_reference() {
        // FNV-1a of eight zero octets.
        let mut h = FNV_OFFSET_BASIS_64;
        for _ in 0..8 {
            h = h.wrapping_mul(FNV_PRIME_64);
        }
        assert_eq!(fnv_hash64(0), (h as i64).unsigned_abs());
        assert_ne!(fnv_hash64(1), fnv_hash64(2));
    }

    #[test]
    fn values_are_printable_and_sized() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let gen_ = ValueGen::new(1024, &mut rng);
        let v = gen_.value(&mut rng);
        assert_eq!(v.len(), 1024);
        assert!(v.iter().all(|b| b.is_ascii_graphic()));
        let big = ValueGen::new(3 << 20, &mut rng);
        assert_eq!(big.value(&mut rng).len(), 3 << 20);
    }
}
