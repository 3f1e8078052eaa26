//! Request limits enforced at the API edge, before anything is stored.

use cairn_proto::ErrorCode;
use cairn_proto::kv::v1 as pb;

use super::KvError;

/// Size and count limits; defaults match the documented API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Longest key in bytes (keys must also be non-empty).
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// Most ops in one `Batch`, `Txn` (compares + ops) or `BatchGet`.
    pub max_batch_ops: usize,
    /// Largest total of keys and values in one `Batch` or `Txn`.
    pub max_batch_bytes: usize,
    /// Largest `limit` a `Scan` may ask for.
    pub max_scan_limit: u32,
    /// Page size of a `Scan` that gives no limit.
    pub default_scan_limit: u32,
    /// A scan page stops once it holds this many bytes (at least one key).
    pub max_scan_page_bytes: usize,
    /// Longest TTL in milliseconds (100 years).
    pub max_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: 8 << 20,
            max_batch_ops: 1000,
            max_batch_bytes: 16 << 20,
            max_scan_limit: 10_000,
            default_scan_limit: 1000,
            max_scan_page_bytes: 4 << 20,
            max_ttl_ms: 100 * 365 * 24 * 3600 * 1000,
        }
    }
}

impl Limits {
    /// Largest gRPC message the server must accept to enforce these limits
    /// itself (with a clear message) rather than fail in decoding.
    pub fn max_message_bytes(&self) -> usize {
        (2 * self.max_batch_bytes).max(self.max_value_bytes + self.max_key_bytes) + (1 << 20)
    }

    /// Checks a key.
    ///
    /// # Errors
    /// `empty_key` or `key_too_large`.
    pub fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::invalid(
                ErrorCode::EmptyKey,
                "key must not be empty",
            ));
        }
        if key.len() > self.max_key_bytes {
            return Err(KvError::too_large(
                ErrorCode::KeyTooLarge,
                format!(
                    "key is {} bytes; the limit is {} bytes (max-key-bytes)",
                    key.len(),
                    self.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Checks a value.
    ///
    /// # Errors
    /// `value_too_large`.
    pub fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.max_value_bytes {
            return Err(KvError::too_large(
                ErrorCode::ValueTooLarge,
                format!(
                    "value is {} bytes; the limit is {} bytes (max-value-bytes)",
                    value.len(),
                    self.max_value_bytes
                ),
            ));
        }
        Ok(())
    }

    fn check_ttl(&self, ttl_ms: u64) -> Result<(), KvError> {
        if ttl_ms > self.max_ttl_ms {
            return Err(KvError::invalid(
                ErrorCode::TtlTooLong,
                format!(
                    "ttl is {ttl_ms} ms; the limit is {} ms (100 years)",
                    self.max_ttl_ms
                ),
            ));
        }
        Ok(())
    }

    /// Checks a request id.
    ///
    /// # Errors
    /// `request_id_too_long`.
    pub fn check_request_id(&self, id: &[u8]) -> Result<(), KvError> {
        let max = crate::apply::dedup::MAX_REQUEST_ID_BYTES;
        if id.len() > max {
            return Err(KvError::invalid(
                ErrorCode::RequestIdTooLong,
                format!("request_id is {} bytes; the limit is {max} bytes", id.len()),
            ));
        }
        Ok(())
    }

    /// Checks a put; returns its size in bytes.
    ///
    /// # Errors
    /// Key, value or TTL limits.
    pub fn check_put(&self, r: &pb::PutRequest) -> Result<usize, KvError> {
        self.check_key(&r.key)?;
        self.check_value(&r.value)?;
        self.check_ttl(r.ttl_ms)?;
        if r.if_absent && r.if_mod_revision.is_some_and(|m| m != 0) {
            return Err(KvError::invalid(
                ErrorCode::ConflictingConditions,
                "if_absent and a non-zero if_mod_revision can never both hold",
            ));
        }
        Ok(r.key.len() + r.value.len())
    }

    /// Checks an update; returns its size in bytes.
    ///
    /// # Errors
    /// Key, value or TTL limits.
    pub fn check_update(&self, r: &pb::UpdateRequest) -> Result<usize, KvError> {
        self.check_key(&r.key)?;
        self.check_value(&r.value)?;
        self.check_ttl(r.ttl_ms)?;
        Ok(r.key.len() + r.value.len())
    }

    /// Checks the number of ops and their total size in a batch or txn.
    ///
    /// # Errors
    /// `too_many_ops` or `batch_too_large`.
    pub fn check_batch_totals(&self, what: &str, ops: usize, bytes: usize) -> Result<(), KvError> {
        if ops > self.max_batch_ops {
            return Err(KvError::too_large(
                ErrorCode::TooManyOps,
                format!(
                    "{what} has {ops} operations; the limit is {} (max-batch-ops)",
                    self.max_batch_ops
                ),
            ));
        }
        if bytes > self.max_batch_bytes {
            return Err(KvError::too_large(
                ErrorCode::BatchTooLarge,
                format!(
                    "{what} carries {bytes} bytes of keys and values; the limit is {} bytes (max-batch-bytes)",
                    self.max_batch_bytes
                ),
            ));
        }
        Ok(())
    }
}
