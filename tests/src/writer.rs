//! A client that keeps writing fresh keys while the operator changes the
//! cluster under it, and the check that every write it was told succeeded
//! is still there afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_client::{Client, ClientOptions, pb};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A running writer.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
    /// Keys acknowledged, with their values.
    pub acked: Arc<Mutex<Vec<(String, String)>>>,
    /// Calls that failed after the client's own retries.
    pub failures: Arc<AtomicU64>,
    pub last_error: Arc<Mutex<Option<String>>>,
    client: Client,
}

/// A client over `endpoints` that retries for up to 30 s (a restart or a
/// leader change is retried, never reported).
pub async fn client(endpoints: &[String]) -> anyhow::Result<Client> {
    Ok(Client::connect_with(
        endpoints,
        ClientOptions::default().retry_deadline(Duration::from_secs(30)),
    )
    .await?)
}

impl Writer {
    /// Starts writing `<prefix>/<n>` = `v<n>` one after another.
    pub async fn start(endpoints: &[String], prefix: &str) -> anyhow::Result<Writer> {
        let client = client(endpoints).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let (client, stop, acked, failures, last_error) = (
                client.clone(),
                stop.clone(),
                acked.clone(),
                failures.clone(),
                last_error.clone(),
            );
            let prefix = prefix.to_owned();
            async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}/{n:06}");
                    let value = format!("v{n}");
                    let put = pb::PutRequest {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        ..pb::PutRequest::default()
                    };
                    match client.put(put).await {
                        Ok(_) => acked.lock().await.push((key, value)),
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock().await = Some(e.to_string());
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(Writer {
            stop,
            task,
            acked,
            failures,
            last_error,
            client,
        })
    }

    /// Stops writing; returns (acknowledged writes, failed calls).
    pub async fn stop(self) -> anyhow::Result<(Vec<(String, String)>, u64, Option<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?;
        let acked = self.acked.lock().await.clone();
        let error = self.last_error.lock().await.clone();
        Ok((acked, self.failures.load(Ordering::Relaxed), error))
    }

    /// The client the writer uses.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

/// Reads every acknowledged key back (linearizably) and fails on any that is
/// missing or holds another value.
pub async fn check_all_readable(client: &Client, acked: &[(String, String)]) -> anyhow::Result<()> {
    for (key, value) in acked {
        let got = client
            .get(key.clone().into_bytes(), pb::ReadOptions::default())
            .await?;
        let kv = got
            .kv
            .ok_or_else(|| anyhow::anyhow!("acknowledged key {key} is missing"))?;
        anyhow::ensure!(
            kv.value == value.as_bytes(),
            "key {key}: acknowledged {value}, read {}",
            String::from_utf8_lossy(&kv.value)
        );
    }
    Ok(())
}
