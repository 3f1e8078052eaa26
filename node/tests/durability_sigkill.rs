//! Every acknowledged write survives SIGKILL: writers run flat out, the node
//! is killed mid-stream, restarted on the same data directory, and every key
//! whose write was acknowledged must be there with its exact value and
//! revision.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::kv::v1 as pb;
use cairn_testkit::conformance::{connect, put};

/// Acknowledged writes: key → (value, mod_revision, version) of the last ack.
type Acked = HashMap<Vec<u8>, (Vec<u8>, u64, u64)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let mut t = common::start_node(&[]);
    let endpoint = t.node.grpc_url();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let acked = acked.clone();
        let mut kv = connect(&endpoint).await;
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                // Rewrite some keys so revisions and versions matter too.
                let key = format!("w{w}/k{}", i % 500).into_bytes();
                let value =
                    format!("w{w}-i{i}-{}", "x".repeat((i % 7) as usize * 100)).into_bytes();
                match kv.put(put(key.clone(), value.clone())).await {
                    Ok(r) => {
                        let m = r.into_inner().kv.unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert(key, (value, m.mod_revision, m.version));
                    }
                    Err(_) => return i,
                }
            }
            unreachable!()
        }));
    }
    // Let enough writes land, then kill without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3000 {
        assert!(
            std::time::Instant::now() < deadline,
            "writers too slow; stderr: {}",
            t.node.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.node.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3000);

    t.node.restart().expect("restart");
    let mut kv = connect(&t.node.grpc_url()).await;
    let keys: Vec<Vec<u8>> = acked.keys().cloned().collect();
    for chunk in keys.chunks(1000) {
        let r = kv
            .batch_get(pb::BatchGetRequest {
                keys: chunk.to_vec(),
                read: None,
            })
            .await
            .unwrap()
            .into_inner();
        for (k, res) in chunk.iter().zip(r.results) {
            let (value, rev, version) = &acked[k];
            let got = res
                .kv
                .unwrap_or_else(|| panic!("acknowledged key {} lost", String::from_utf8_lossy(k)));
            // A later, unacknowledged write may have landed after the last ack;
            // it then carries a higher revision. Anything older is a lost write.
            if got.mod_revision == *rev {
                assert_eq!(&got.value, value, "value of {}", String::from_utf8_lossy(k));
                assert_eq!(got.version, *version);
            } else {
                assert!(
                    got.mod_revision > *rev,
                    "key {} went back in time",
                    String::from_utf8_lossy(k)
                );
                assert!(got.version > *version);
            }
        }
    }
}
