//! Ordered scans over hash-partitioned data.
//!
//! Keys are spread over shards by hash, so a range in key order touches every
//! shard. A scan opens one iterator per shard over the same snapshot and
//! merges them with a min-heap, reading only about `limit + shards` entries
//! per page. The page token is the last key returned; the next page starts
//! just after it.

use cairn_proto::ErrorCode;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use cairn_keyspace::scan_page::{decode_token, encode_token};
use cairn_proto::kv::v1 as pb;
use rocksdb::DBRawIteratorWithThreadMode;

use super::{KvError, Limits};
use crate::apply::to_kv;
use crate::partition::ShardId;
use crate::storage::Db;
use crate::storage::keys::{data_key, prefix_successor, shard_end, split_data_key};
use crate::storage::record::Record;

/// A validated scan: the user-key range still to read and page bounds.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: usize,
    max_bytes: usize,
    keys_only: bool,
}

impl ScanPlan {
    /// Keys per page: the request's limit or the server default.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Validates `req`.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a prefix combined with a range, an inverted
    /// range, a limit above the maximum, or a malformed page token.
    pub fn new(req: &pb::ScanRequest, limits: &Limits) -> Result<Self, KvError> {
        if !req.prefix.is_empty() && (!req.start.is_empty() || !req.end.is_empty()) {
            return Err(KvError::invalid(
                ErrorCode::BadRange,
                "give either a prefix or a start/end range, not both",
            ));
        }
        if req.limit > limits.max_scan_limit {
            return Err(KvError::invalid(
                ErrorCode::LimitTooLarge,
                format!(
                    "scan limit {} exceeds the maximum of {} (max-scan-limit)",
                    req.limit, limits.max_scan_limit
                ),
            ));
        }
        let (mut start, end) = if req.prefix.is_empty() {
            let end = (!req.end.is_empty()).then(|| req.end.clone());
            (req.start.clone(), end)
        } else {
            (req.prefix.clone(), prefix_successor(&req.prefix))
        };
        if let Some(e) = &end
            && *e < start
        {
            return Err(KvError::invalid(
                ErrorCode::BadRange,
                "scan end is before its start",
            ));
        }
        if !req.page_token.is_empty() {
            let last = decode_token(&req.page_token)
                .map_err(|e| KvError::invalid(ErrorCode::BadPageToken, e.to_string()))?;
            let mut after = last.to_vec();
            after.push(0);
            if after > start {
                start = after;
            }
        }
        let limit = if req.limit == 0 {
            limits.default_scan_limit
        } else {
            req.limit
        } as usize;
        Ok(Self {
            start,
            end,
            limit,
            max_bytes: limits.max_scan_page_bytes,
            keys_only: req.keys_only,
        })
    }

    /// Runs the scan over `shards`, opening each shard's iterator with
    /// `open(lower, upper)`; returns the page and the next page token.
    ///
    /// # Errors
    /// Storage errors or undecodable records.
    pub fn run<'a, F>(
        &self,
        shards: &[ShardId],
        now_ms: u64,
        mut open: F,
    ) -> Result<(Vec<pb::KeyValue>, Vec<u8>), KvError>
    where
        F: FnMut(Vec<u8>, Option<Vec<u8>>) -> DBRawIteratorWithThreadMode<'a, Db>,
    {
        let mut iters = Vec::with_capacity(shards.len());
        let mut heap = BinaryHeap::new();
        if self.end.as_ref().is_some_and(|e| *e <= self.start) {
            return Ok((Vec::new(), Vec::new()));
        }
        for (idx, &shard) in shards.iter().enumerate() {
            let lower = data_key(shard, &self.start);
            let upper = match &self.end {
                Some(e) => Some(data_key(shard, e)),
                None => shard_end(shard),
            };
            let mut it = open(lower.clone(), upper);
            it.seek(&lower);
            push_current(&mut heap, &it, idx)?;
            iters.push(it);
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next_token = Vec::new();
        while let Some(Reverse((key, idx))) = heap.pop() {
            if out.len() >= self.limit || (bytes >= self.max_bytes && !out.is_empty()) {
                if let Some(last) = out.last() {
                    next_token = encode_token(&last_key(last));
                }
                break;
            }
            let it = &mut iters[idx];
            if let Some(value) = it.value() {
                let r = Record::decode(value)?;
                if !r.meta.is_expired(now_ms) {
                    bytes += key.len() + if self.keys_only { 0 } else { r.value.len() };
                    let v = (!self.keys_only).then_some(&r.value[..]);
                    out.push(to_kv(&key, &r.meta, v));
                }
            }
            it.next();
            push_current(&mut heap, it, idx)?;
        }
        Ok((out, next_token))
    }
}

fn last_key(kv: &pb::KeyValue) -> Vec<u8> {
    kv.key.clone()
}

fn push_current(
    heap: &mut BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    it: &DBRawIteratorWithThreadMode<'_, Db>,
    idx: usize,
) -> Result<(), KvError> {
    if it.valid() {
        if let Some((_, user_key)) = it.key().and_then(split_data_key) {
            heap.push(Reverse((user_key.to_vec(), idx)));
        }
    } else {
        it.status()?;
    }
    Ok(())
}
