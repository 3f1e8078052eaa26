//! `Scan`: prefixes, ranges, keys-only, pages.

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, expect_code, put};
use crate::unique_prefix;

/// `Scan` returns keys in order by prefix or range, honours limits and
/// keys-only, and pages through everything exactly once.
pub async fn scan_prefix_range_and_pages<K: KvApi>(mut kv: K) {
    let p = unique_prefix("scan");
    let mut expected = Vec::new();
    for i in 0..57 {
        let k = format!("{p}/{i:03}");
        kv.put(put(k.clone(), format!("v{i}"))).await.unwrap();
        expected.push(k);
    }
    // A neighbour that must not appear in the prefix scan.
    kv.put(put(format!("{p}0"), "outside")).await.unwrap();
    let mut seen = Vec::new();
    let mut token = Vec::new();
    let mut pages = 0;
    loop {
        let r = kv
            .scan(pb::ScanRequest {
                prefix: format!("{p}/").into_bytes(),
                limit: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(r.kvs.len() <= 10);
        for kv in &r.kvs {
            let k = String::from_utf8(kv.key.clone()).unwrap();
            let i: usize = k.rsplit('/').next().unwrap().parse().unwrap();
            assert_eq!(kv.value, format!("v{i}").into_bytes());
            seen.push(k);
        }
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
        assert!(pages < 20, "scan does not terminate");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 6);
    // Range [010, 020), keys only.
    let r = kv
        .scan(pb::ScanRequest {
            start: format!("{p}/010").into_bytes(),
            end: format!("{p}/020").into_bytes(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> = r
        .kvs
        .iter()
        .map(|k| String::from_utf8(k.key.clone()).unwrap())
        .collect();
    assert_eq!(keys, expected[10..20].to_vec());
    assert!(r.kvs.iter().all(|k| k.value.is_empty()));
    assert!(r.next_page_token.is_empty());
    expect_code(
        kv.scan(pb::ScanRequest {
            prefix: b"a".to_vec(),
            start: b"b".to_vec(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "prefix",
    );
    expect_code(
        kv.scan(pb::ScanRequest {
            page_token: b"garbage".to_vec(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );
}
