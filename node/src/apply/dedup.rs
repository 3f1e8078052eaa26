//! Exactly-once writes: the shard's table of recently applied request ids.
//!
//! A write may carry a client-chosen request id. After applying it (or
//! refusing it) the shard records, in the same batch, the id, a fingerprint
//! of the request, the revision and the exact result. A retry with the same
//! id within [`RETENTION_MS`] of shard time gets that result back and changes
//! nothing; the same id on a different request is refused. Entries older
//! than the retention are ignored and dropped by the `meta` compaction filter
//! using the shard's applied clock, so every replica agrees on what is
//! remembered.
//!
//! Record (meta CF, key `dedup/ ‖ shard:u32 BE ‖ request id`):
//! `0x01 ‖ applied_at_ms ‖ fingerprint ‖ revision` (u64 BE each) `‖ postcard(result)`.

use cairn_proto::kv::v1 as pb;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{ApplyError, CommandOp, CommandOutput};
use crate::storage::StorageError;

pub use crate::storage::keys::{DEDUP_RETENTION_MS as RETENTION_MS, dedup_key};
/// Longest request id accepted.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

const FORMAT_V1: u8 = 1;

/// A command's output in encoded, storable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncodedOutput {
    /// An encoded `cairn.kv.v1.BatchResponse` (header unset).
    Batch(Vec<u8>),
    /// An encoded `cairn.kv.v1.TxnResponse` (header unset).
    Txn(Vec<u8>),
    /// Records removed by an expire command.
    Expired(u64),
}

impl EncodedOutput {
    /// Encodes a state-machine output.
    pub fn from_output(out: &CommandOutput) -> Self {
        match out {
            CommandOutput::Batch(results) => Self::Batch(
                pb::BatchResponse {
                    header: None,
                    results: results.clone(),
                }
                .encode_to_vec(),
            ),
            CommandOutput::Txn { succeeded, results } => Self::Txn(
                pb::TxnResponse {
                    header: None,
                    succeeded: *succeeded,
                    results: results.clone(),
                }
                .encode_to_vec(),
            ),
            CommandOutput::Expired(n) => Self::Expired(*n as u64),
        }
    }

    /// Decodes back into a state-machine output.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for bytes that do not decode.
    pub fn to_output(&self) -> Result<CommandOutput, StorageError> {
        let corrupt = |e: prost::DecodeError| StorageError::Corrupt(format!("stored result: {e}"));
        Ok(match self {
            Self::Batch(b) => CommandOutput::Batch(
                pb::BatchResponse::decode(b.as_slice())
                    .map_err(corrupt)?
                    .results,
            ),
            Self::Txn(b) => {
                let t = pb::TxnResponse::decode(b.as_slice()).map_err(corrupt)?;
                CommandOutput::Txn {
                    succeeded: t.succeeded,
                    results: t.results,
                }
            }
            Self::Expired(n) => CommandOutput::Expired(*n as usize),
        })
    }
}

/// A remembered request.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupRecord {
    /// Shard time at which it was applied.
    pub applied_at_ms: u64,
    /// Fingerprint of the request's operation.
    pub fingerprint: u64,
    /// Shard revision after it.
    pub revision: u64,
    /// Its result.
    pub result: Result<EncodedOutput, ApplyError>,
}

impl DedupRecord {
    /// On-disk form.
    ///
    /// # Errors
    /// Serialisation failure (not expected for these types).
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let mut v = vec![FORMAT_V1];
        v.extend_from_slice(&self.applied_at_ms.to_be_bytes());
        v.extend_from_slice(&self.fingerprint.to_be_bytes());
        v.extend_from_slice(&self.revision.to_be_bytes());
        v.extend(
            postcard::to_stdvec(&self.result)
                .map_err(|e| StorageError::Corrupt(format!("dedup record: {e}")))?,
        );
        Ok(v)
    }

    /// Decodes [`DedupRecord::encode`]'s output.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for an unknown format or bad bytes.
    pub fn decode(b: &[u8]) -> Result<Self, StorageError> {
        if b.len() < 25 || b[0] != FORMAT_V1 {
            return Err(StorageError::Corrupt(
                "dedup record of unknown format".into(),
            ));
        }
        let word =
            |i: usize| u64::from_be_bytes(b[1 + 8 * i..9 + 8 * i].try_into().unwrap_or([0; 8]));
        Ok(Self {
            applied_at_ms: word(0),
            fingerprint: word(1),
            revision: word(2),
            result: postcard::from_bytes(&b[25..])
                .map_err(|e| StorageError::Corrupt(format!("dedup record: {e}")))?,
        })
    }

    /// Whether the record still counts at shard time `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.applied_at_ms.saturating_add(RETENTION_MS) > now_ms
    }
}

/// Fingerprint of an operation, to tell a retry from a reused id.
pub fn fingerprint(op: &CommandOp) -> u64 {
    match op {
        CommandOp::Batch(ops) => xxh3_64(
            &pb::BatchRequest {
                ops: ops.clone(),
                request_id: Vec::new(),
            }
            .encode_to_vec(),
        ),
        CommandOp::Txn(t) => xxh3_64(&t.encode_to_vec()),
        CommandOp::Expire(keys) => {
            let mut bytes = Vec::new();
            for k in keys {
                bytes.extend_from_slice(&k.expires_at_ms.to_be_bytes());
                bytes.extend_from_slice(&k.key);
            }
            xxh3_64(&bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_age_out() {
        let r = DedupRecord {
            applied_at_ms: 1000,
            fingerprint: 42,
            revision: 7,
            result: Err(ApplyError::NotFound {
                op_index: 0,
                key: b"k".to_vec(),
            }),
        };
        let bytes = r.encode().unwrap();
        assert_eq!(DedupRecord::decode(&bytes).unwrap(), r);
        assert!(r.is_live(1000 + RETENTION_MS - 1));
        assert!(!r.is_live(1000 + RETENTION_MS));
        let key = dedup_key(3, b"abc");
        let parse = crate::storage::keys::parse_dedup_entry;
        assert_eq!(parse(&key, &bytes), Some((3, 1000)));
        assert_eq!(parse(b"shard/xxxx", &bytes), None);
    }
}
