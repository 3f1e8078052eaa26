//! A loopback TCP proxy that can lose one response: when armed, it swallows
//! the next bytes the server sends back and cuts the connection, as if the
//! answer to a request the server already applied were lost on the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running proxy; it lives as long as the test's runtime.
pub struct LossyProxy {
    /// `http://127.0.0.1:PORT`, to connect to instead of the server.
    pub addr: String,
    armed: Arc<AtomicBool>,
}

impl LossyProxy {
    /// Starts a proxy in front of `upstream` (`HOST:PORT` or `http://HOST:PORT`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let armed = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let upstream = upstream.trim_start_matches("http://").to_string();
        let flag = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, flag.clone()));
            }
        });
        Ok(Self { addr, armed })
    }

    /// Loses the next response.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Whether the armed loss is still pending (no response came back since).
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    flag: Arc<AtomicBool>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flag.swap(false, Ordering::SeqCst) {
            break; // drop the response and the connection
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}
