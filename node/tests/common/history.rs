//! A history of acknowledged writes: writers that record every write they
//! were told succeeded, and a check that each one is still readable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_client::Client;
use cairn_proto::kv::v1 as pb;
use cairn_testkit::conformance;
use tokio::sync::Mutex;

/// Per key: the last acknowledged value, and values written after it whose
/// outcome is unknown (in flight when a node died; they may have applied).
pub type History = Arc<Mutex<BTreeMap<String, (Option<String>, Vec<String>)>>>;

/// Writers that keep putting keys through `client` until `stop`, recording
/// every acknowledged write; any error reaching a writer fails the test.
pub fn spawn_writers(
    client: Client,
    prefix: &str,
    writers: usize,
    stop: Arc<AtomicBool>,
    acked: History,
) -> Vec<tokio::task::JoinHandle<Result<u64, String>>> {
    (0..writers)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}/w{w}/k{}", n % 200);
                    let value = format!("w{w}-v{n}");
                    acked
                        .lock()
                        .await
                        .entry(key.clone())
                        .or_default()
                        .1
                        .push(value.clone());
                    client
                        .put(conformance::put(key.clone(), value.clone()))
                        .await
                        .map_err(|e| format!("write {key} failed: {e}"))?;
                    acked.lock().await.insert(key, (Some(value), Vec::new()));
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect()
}

pub async fn check_history(client: &Client, acked: &History) {
    let acked = acked.lock().await;
    assert!(
        acked.values().any(|(v, _)| v.is_some()),
        "no write was acknowledged"
    );
    for (key, (value, in_flight)) in acked.iter() {
        let Some(value) = value else { continue };
        let got = client
            .get(key.clone(), pb::ReadOptions::default())
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"))
            .kv
            .unwrap_or_else(|| panic!("acknowledged key {key} is missing"));
        let got = String::from_utf8_lossy(&got.value);
        assert!(
            got == *value || in_flight.iter().any(|v| *v == got),
            "key {key} lost its last acknowledged value {value}: read {got}, unacknowledged writes {in_flight:?}"
        );
    }
}
