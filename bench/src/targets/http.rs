//! Cairn's HTTP gateway: `PUT`/`GET /store/{key}`, scans with
//! `GET /store?start=&end=&limit=`.
//!
//! HTTP/1.1, so every in-flight request holds its own keep-alive connection
//! from one shared pool; clients are spread round-robin over the endpoints.

use anyhow::{Context as _, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;

use super::{Connection, Target, TargetOptions};
use crate::keygen::KEY_RANGE_END;

/// Bytes escaped in a key path segment or query value: all but RFC 3986's
/// unreserved characters.
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Cairn gateways and a connection pool.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    bases: Vec<String>,
    serializable: bool,
}

impl HttpTarget {
    /// Builds the pool and checks every endpoint answers.
    pub async fn connect(options: &TargetOptions) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(options.clients)
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(options.op_timeout)
            .build()
            .context("building the HTTP client")?;
        let bases: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect();
        for base in &bases {
            // Any answer (404 included) proves the gateway is there.
            client
                .get(format!(
                    "{base}/store/{}",
                    utf8_percent_encode("cairn-bench-probe", ESCAPE)
                ))
                .send()
                .await
                .with_context(|| format!("connecting to the Cairn HTTP gateway at {base}"))?;
        }
        Ok(Self {
            client,
            bases,
            serializable: options.serializable,
        })
    }
}

impl Target for HttpTarget {
    type Conn = HttpConn;

    async fn connection(&self, worker: usize) -> anyhow::Result<HttpConn> {
        Ok(HttpConn {
            client: self.client.clone(),
            base: self.bases[worker % self.bases.len()].clone(),
            serializable: self.serializable,
        })
    }
}

/// One client's gateway.
#[derive(Debug, Clone)]
pub struct HttpConn {
    client: reqwest::Client,
    base: String,
    serializable: bool,
}

impl HttpConn {
    fn key_url(&self, key: &str) -> String {
        format!("{}/store/{}", self.base, utf8_percent_encode(key, ESCAPE))
    }

    /// Query parameters (with their leading `&`) of a read.
    fn read_params(&self) -> &'static str {
        if self.serializable {
            "&consistency=serializable"
        } else {
            ""
        }
    }

    async fn put(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let resp = self
            .client
            .put(self.key_url(key))
            .body(value)
            .send()
            .await
            .context("PUT")?;
        let status = resp.status();
        let body = resp.bytes().await.context("PUT response body")?;
        if status != StatusCode::OK && status != StatusCode::CREATED {
            bail!("PUT {key}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// The part of a scan page the benchmark looks at.
#[derive(serde::Deserialize)]
struct Page {
    items: Vec<serde_json::Value>,
}

impl Connection for HttpConn {
    async fn read(&mut self, key: &str) -> anyhow::Result<bool> {
        let mut url = self.key_url(key);
        if let Some(params) = self.read_params().strip_prefix('&') {
            url.push('?');
            url.push_str(params);
        }
        let resp = self.client.get(url).send().await.context("GET")?;
        let status = resp.status();
        let body = resp.bytes().await.context("GET response body")?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => bail!("GET {key}: {status}: {}", String::from_utf8_lossy(&body)),
        }
    }

    async fn update(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn insert(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn scan(&mut self, start: &str, count: u32) -> anyhow::Result<usize> {
        let url = format!(
            "{}/store?start={}&end={}&limit={count}{}",
            self.base,
            utf8_percent_encode(start, ESCAPE),
            utf8_percent_encode(KEY_RANGE_END, ESCAPE),
            self.read_params()
        );
        let resp = self.client.get(url).send().await.context("GET /store")?;
        let status = resp.status();
        let body = resp.bytes().await.context("scan response body")?;
        if status != StatusCode::OK {
            bail!(
                "scan from {start}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let page: Page =
            serde_json::from_slice(&body).context("scan response is not a JSON page")?;
        Ok(page.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_in_paths() {
        let c = HttpConn {
            client: reqwest::Client::new(),
            base: "http://127.0.0.1:1".into(),
            serializable: true,
        };
        assert_eq!(c.key_url("user0123"), "http://127.0.0.1:1/store/user0123");
        assert_eq!(c.key_url("a/b c%"), "http://127.0.0.1:1/store/a%2Fb%20c%25");
        assert_eq!(c.read_params(), "&consistency=serializable");
    }
}
