//! BatchGet split and merge: a read of keys from many shards is cut into
//! one request per node (by the client, per shard leader; by a node, per
//! replica holder) and the answers are put back in request order.
//!
//! Both sides use these two functions, so the positions a part answers for
//! and the revision the merged answer reports follow one rule.

use cairn_proto::kv::v1::{BatchGetRequest, BatchGetResponse, BatchGetResult};

/// A part's answer does not have one result per key it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node answered {answered} results for {asked} keys")]
pub struct PartMismatch {
    /// Results in the part's answer.
    pub answered: usize,
    /// Keys the part was asked for.
    pub asked: usize,
}

/// The part of `req` that reads the keys at `positions` (indexes into
/// `req.keys`), with the same read options.
pub fn part(req: &BatchGetRequest, positions: &[usize]) -> BatchGetRequest {
    BatchGetRequest {
        keys: positions.iter().map(|&i| req.keys[i].clone()).collect(),
        read: req.read,
    }
}

/// Puts the answers of the parts of a request of `total` keys back in
/// request order: each part comes with the positions it answered for. The
/// revision is the highest any part reported (each part is a snapshot of
/// its own shards; revisions are per shard).
///
/// # Errors
/// [`PartMismatch`] when a part answered a different number of keys than
/// it was asked for.
pub fn merge(
    total: usize,
    parts: impl IntoIterator<Item = (Vec<usize>, BatchGetResponse)>,
) -> Result<(Vec<BatchGetResult>, u64), PartMismatch> {
    let mut results = vec![BatchGetResult::default(); total];
    let mut revision = 0;
    for (positions, resp) in parts {
        if resp.results.len() != positions.len() {
            return Err(PartMismatch {
                answered: resp.results.len(),
                asked: positions.len(),
            });
        }
        revision = revision.max(resp.header.map_or(0, |h| h.revision));
        for (i, r) in positions.into_iter().zip(resp.results) {
            results[i] = r;
        }
    }
    Ok((results, revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::kv::v1::{KeyValue, ResponseHeader};

    fn answer(revision: u64, keys: &[&str]) -> BatchGetResponse {
        BatchGetResponse {
            header: Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            }),
            results: keys
                .iter()
                .map(|k| BatchGetResult {
                    found: true,
                    kv: Some(KeyValue {
                        key: k.as_bytes().to_vec(),
                        ..KeyValue::default()
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn parts_go_back_to_their_positions_with_the_highest_revision() {
        let req = BatchGetRequest {
            keys: ["a", "b", "c", "d"].map(|k| k.as_bytes().to_vec()).to_vec(),
            read: None,
        };
        let odd = part(&req, &[1, 3]);
        assert_eq!(odd.keys, [b"b".to_vec(), b"d".to_vec()]);
        let (results, revision) = merge(
            4,
            [
                (vec![1, 3], answer(7, &["b", "d"])),
                (vec![0, 2], answer(9, &["a", "c"])),
            ],
        )
        .unwrap();
        let keys: Vec<&[u8]> = results
            .iter()
            .map(|r| r.kv.as_ref().unwrap().key.as_slice())
            .collect();
        assert_eq!(keys, [b"a", b"b", b"c", b"d"]);
        assert_eq!(revision, 9);
    }

    #[test]
    fn a_short_answer_is_refused() {
        assert_eq!(
            merge(2, [(vec![0, 1], answer(1, &["a"]))]),
            Err(PartMismatch {
                answered: 1,
                asked: 2
            })
        );
    }
}
