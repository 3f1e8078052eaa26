//! `cairn-operator --check-health <url>`: asks an operator's `/healthz` and
//! succeeds only on `200`. The Helm chart's `helm test` hook runs it from
//! the operator image itself, so the test needs no other image (no shell or
//! curl is in the runtime image).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    /// The URL is not `http://host:port/path`.
    #[error("bad health URL {0:?}: expected http://host:port/path")]
    BadUrl(String),
    /// No connection, no answer in time, or a broken answer.
    #[error("{url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered, with another status than 200.
    #[error("{url}: answered {status_line:?}")]
    Unhealthy {
        /// The URL asked.
        url: String,
        /// The HTTP status line it sent.
        status_line: String,
    },
}

/// GETs `url` (plain HTTP/1.1) within `timeout` and returns the status line
/// when it is a `200`.
pub async fn check(url: &str, timeout: Duration) -> Result<String, HealthCheckError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HealthCheckError::BadUrl(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(HealthCheckError::BadUrl(url.to_owned()));
    }
    let unreachable = |reason: String| HealthCheckError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| unreachable(format!("connect: {e}")))?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: cairn-operator\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| unreachable(format!("send: {e}")))?;
        let mut answer = Vec::new();
        // The status line is all that matters; bound what is read.
        stream
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| unreachable(format!("read: {e}")))?;
        Ok::<_, HealthCheckError>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    let code = status_line.split_whitespace().nth(1);
    if status_line.starts_with("HTTP/1.") && code == Some("200") {
        Ok(status_line)
    } else {
        Err(HealthCheckError::Unhealthy {
            url: url.to_owned(),
            status_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server on a real socket answering `response`.
    async fn serve_once(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{addr}/healthz")
    }

    #[tokio::test]
    async fn a_200_is_healthy_anything_else_is_not() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        assert_eq!(
            check(&ok, Duration::from_secs(30)).await.expect("healthy"),
            "HTTP/1.1 200 OK"
        );
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = check(&bad, Duration::from_secs(30))
            .await
            .expect_err("unhealthy");
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_and_a_bad_url_are_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = check(&format!("http://{addr}/healthz"), Duration::from_secs(30))
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, HealthCheckError::Unreachable { .. }), "{err}");
        for url in ["https://x:1/", "http:///healthz", "localhost/healthz"] {
            assert!(matches!(
                check(url, Duration::from_secs(1)).await,
                Err(HealthCheckError::BadUrl(_))
            ));
        }
    }
}
