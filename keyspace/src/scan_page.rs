//! Scan pages: the page token format and the merge of pages read from
//! disjoint sets of shards.
//!
//! Keys are spread over shards by hash, so a scan in key order reads every
//! shard. When the shards live on different nodes, each node pages through
//! its own shards and the pages are merged here. The token of a page is the
//! last key it returned, so the next page can start right after it on any
//! node, whichever way the shards are split then.

use cairn_proto::kv::v1::{KeyValue, ScanResponse};

/// Version byte in front of every page token.
const PAGE_TOKEN_V1: u8 = 1;

/// A page token that no Cairn node or client issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page_token is not one this server issued; pass next_page_token unchanged")]
pub struct BadPageToken;

/// The token that continues a scan after `last_key`.
pub fn encode_token(last_key: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(1 + last_key.len());
    t.push(PAGE_TOKEN_V1);
    t.extend_from_slice(last_key);
    t
}

/// The last key of the page that issued `token`.
///
/// # Errors
/// [`BadPageToken`] for an empty, unversioned or truncated token.
pub fn decode_token(token: &[u8]) -> Result<&[u8], BadPageToken> {
    match token.split_first() {
        Some((&PAGE_TOKEN_V1, rest)) if !rest.is_empty() => Ok(rest),
        _ => Err(BadPageToken),
    }
}

/// One page of a scan over some of the shards, as a node returned it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardsPage {
    /// Key-values in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether those shards hold more keys after the last one (the page
    /// came with a `next_page_token`).
    pub more: bool,
}

/// Why pages could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A page claimed more keys but returned none, so the scan could never
    /// advance past it.
    #[error("a scan page announced more keys but returned none")]
    EmptyPageWithMore,
}

/// Merges pages read from disjoint shard sets into one page of at most
/// `limit` keys in key order, and the token for the next page (empty when
/// the scan is complete).
///
/// A page that has more keys only proves what lies up to its last key, so
/// the merged page stops at the smallest such last key: nothing beyond it
/// may be returned yet, or keys of that page's shards would be skipped.
///
/// # Errors
/// [`MergeError::EmptyPageWithMore`] when a page breaks that contract.
pub fn merge_pages(
    pages: Vec<ShardsPage>,
    limit: usize,
) -> Result<(Vec<KeyValue>, Vec<u8>), MergeError> {
    let mut bound: Option<Vec<u8>> = None;
    for page in pages.iter().filter(|p| p.more) {
        let last = page.kvs.last().ok_or(MergeError::EmptyPageWithMore)?;
        if bound.as_ref().is_none_or(|b| last.key < *b) {
            bound = Some(last.key.clone());
        }
    }
    let mut kvs: Vec<KeyValue> = pages
        .into_iter()
        .flat_map(|p| p.kvs)
        .filter(|kv| bound.as_ref().is_none_or(|b| kv.key <= *b))
        .collect();
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    let cut = kvs.len() > limit.max(1);
    kvs.truncate(limit.max(1));
    let token = match kvs.last() {
        Some(last) if cut || bound.is_some() => encode_token(&last.key),
        _ => Vec::new(),
    };
    Ok((kvs, token))
}

/// [`merge_pages`] over the scan responses of the parts of one split scan
/// (node and smart client both split by owner): the merged keys, the page
/// token, and the highest revision any part read at.
///
/// # Errors
/// As [`merge_pages`].
pub fn merge_responses(
    parts: Vec<ScanResponse>,
    limit: usize,
) -> Result<(Vec<KeyValue>, Vec<u8>, u64), MergeError> {
    let mut revision = 0;
    let pages = parts
        .into_iter()
        .map(|p| {
            revision = revision.max(p.header.map_or(0, |h| h.revision));
            ShardsPage {
                more: !p.next_page_token.is_empty(),
                kvs: p.kvs,
            }
        })
        .collect();
    let (kvs, token) = merge_pages(pages, limit)?;
    Ok((kvs, token, revision))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn kv(key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            ..KeyValue::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_token(&encode_token(b"k\x00")), Ok(&b"k\x00"[..]));
        assert_eq!(decode_token(b""), Err(BadPageToken));
        assert_eq!(decode_token(&[PAGE_TOKEN_V1]), Err(BadPageToken));
        assert_eq!(decode_token(b"\x07abc"), Err(BadPageToken));
    }

    #[test]
    fn page_with_more_bounds_the_merge() {
        let pages = vec![
            ShardsPage {
                kvs: vec![kv(b"a"), kv(b"c")],
                more: true,
            },
            ShardsPage {
                kvs: vec![kv(b"b"), kv(b"d"), kv(b"e")],
                more: false,
            },
        ];
        let (kvs, token) = merge_pages(pages, 10).unwrap();
        let keys: Vec<&[u8]> = kvs.iter().map(|k| &k.key[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(token, encode_token(b"c"));
    }

    #[test]
    fn empty_page_claiming_more_is_refused() {
        let pages = vec![ShardsPage {
            kvs: vec![],
            more: true,
        }];
        assert_eq!(merge_pages(pages, 5), Err(MergeError::EmptyPageWithMore));
    }

    /// Pages one "node" would return for its shard set: the first `limit`
    /// keys after `after`.
    fn page_of(keys: &BTreeSet<Vec<u8>>, after: Option<&[u8]>, limit: usize) -> ShardsPage {
        let rest: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| after.is_none_or(|a| k.as_slice() > a))
            .collect();
        ShardsPage {
            kvs: rest.iter().take(limit).map(|k| kv(k)).collect(),
            more: rest.len() > limit,
        }
    }

    proptest! {
        /// Paging a split scan to the end returns every key exactly once, in
        /// order, with no page larger than the limit.
        #[test]
        fn paging_merged_pages_visits_every_key_once(
            sets in proptest::collection::vec(
                proptest::collection::btree_set(proptest::collection::vec(0u8..4, 1..4), 0..20),
                1..5,
            ),
            limit in 1usize..7,
        ) {
            // Disjoint shard sets: a key belongs to the first set holding it.
            let mut seen = BTreeSet::new();
            let sets: Vec<BTreeSet<Vec<u8>>> = sets
                .into_iter()
                .map(|s| s.into_iter().filter(|k| seen.insert(k.clone())).collect())
                .collect();
            let mut out: Vec<Vec<u8>> = Vec::new();
            let mut token: Vec<u8> = Vec::new();
            for _ in 0..1000 {
                let after = (!token.is_empty()).then(|| decode_token(&token).unwrap().to_vec());
                let pages = sets.iter().map(|s| page_of(s, after.as_deref(), limit)).collect();
                let (kvs, next) = merge_pages(pages, limit).unwrap();
                prop_assert!(kvs.len() <= limit);
                out.extend(kvs.into_iter().map(|k| k.key));
                if next.is_empty() {
                    break;
                }
                token = next;
            }
            let expected: Vec<Vec<u8>> = seen.into_iter().collect();
            prop_assert_eq!(out, expected);
        }
    }
}
