//! The versioned value record stored in the `data` column family.
//!
//! Layout (format version 1), all integers big-endian:
//! `version:u8 = 1 | flags:u8 = 0 | create_revision:u64 | mod_revision:u64 |
//! version:u64 | expires_at_ms:u64 | value bytes`.
//! A reader refuses unknown format versions instead of misreading them.

use super::StorageError;

/// Current on-disk record format.
pub const RECORD_FORMAT_V1: u8 = 1;
/// Size of the record header in bytes.
pub const HEADER_LEN: usize = 2 + 4 * 8;

/// Metadata kept with every stored value (etcd semantics, plus expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// Shard revision at which the key was created.
    pub create_revision: u64,
    /// Shard revision of the last write.
    pub mod_revision: u64,
    /// Writes since creation, 1 on create.
    pub version: u64,
    /// Unix milliseconds at which the key expires; 0 = never.
    pub expires_at_ms: u64,
}

impl RecordMeta {
    /// Whether the record is expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// A decoded record: metadata and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Revision metadata and expiry.
    pub meta: RecordMeta,
    /// The user's value.
    pub value: Vec<u8>,
}

impl Record {
    /// Encodes the record into its on-disk form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.value.len());
        out.push(RECORD_FORMAT_V1);
        out.push(0);
        out.extend_from_slice(&self.meta.create_revision.to_be_bytes());
        out.extend_from_slice(&self.meta.mod_revision.to_be_bytes());
        out.extend_from_slice(&self.meta.version.to_be_bytes());
        out.extend_from_slice(&self.meta.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] when the bytes are not a valid record.
    pub fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        let meta = decode_meta(bytes)?;
        Ok(Self {
            meta,
            value: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

/// Decodes only the header of a record (no value copy).
///
/// # Errors
/// [`StorageError::Corrupt`] when the header is short or of an unknown version.
pub fn decode_meta(bytes: &[u8]) -> Result<RecordMeta, StorageError> {
    if bytes.len() < HEADER_LEN {
        return Err(StorageError::Corrupt(format!(
            "record of {} bytes is shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != RECORD_FORMAT_V1 {
        return Err(StorageError::Corrupt(format!(
            "record format version {} is not supported (this build reads {RECORD_FORMAT_V1})",
            bytes[0]
        )));
    }
    let word = |i: usize| {
        let start = 2 + i * 8;
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[start..start + 8]);
        u64::from_be_bytes(b)
    };
    Ok(RecordMeta {
        create_revision: word(0),
        mod_revision: word(1),
        version: word(2),
        expires_at_ms: word(3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = Record {
            meta: RecordMeta {
                create_revision: 3,
                mod_revision: 9,
                version: 4,
                expires_at_ms: 1_700_000_000_000,
            },
            value: b"hello".to_vec(),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    /// A record written by format version 1, byte for byte: later formats must
    /// keep reading it.
    #[test]
    fn reads_v1_fixture() {
        let fixture: [u8; 37] = [
            1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
            0, 0, 0, 0, 0, b'a', b'b', b'c',
        ];
        let r = Record::decode(&fixture).unwrap();
        assert_eq!(r.meta.create_revision, 5);
        assert_eq!(r.meta.mod_revision, 7);
        assert_eq!(r.meta.version, 2);
        assert_eq!(r.meta.expires_at_ms, 0);
        assert_eq!(r.value, b"abc");
    }

    #[test]
    fn rejects_short_and_unknown_versions() {
        assert!(Record::decode(&[1, 0, 0]).is_err());
        let mut bytes = Record {
            meta: RecordMeta::default(),
            value: vec![],
        }
        .encode();
        bytes[0] = 9;
        assert!(matches!(
            Record::decode(&bytes),
            Err(StorageError::Corrupt(_))
        ));
    }
}
