//! Readiness probes: `httpGet` and `tcpSocket` against the pod's address.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `probe` once: `httpGet` succeeds on a status in 200..400, `tcpSocket`
/// when a connection opens. `exec` and `grpc` probes are not emulated and
/// always succeed. A named port is looked up in the container's ports.
pub(crate) async fn check(probe: &Probe, container: &Container, pod_ip: IpAddr) -> bool {
    let timeout = Duration::from_secs(
        probe
            .timeout_seconds
            .unwrap_or(1)
            .max(1)
            .unsigned_abs()
            .into(),
    );
    if let Some(http) = &probe.http_get {
        let Some(port) = port_number(&http.port, container) else {
            return false;
        };
        let host = http
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(pod_ip);
        let path = http.path.as_deref().unwrap_or("/");
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return false;
        }
        tokio::time::timeout(timeout, http_status(host, port, path))
            .await
            .ok()
            .flatten()
            .is_some_and(|status| (200..400).contains(&status))
    } else if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port_number(&tcp.port, container) else {
            return false;
        };
        tokio::time::timeout(timeout, TcpStream::connect((pod_ip, port)))
            .await
            .is_ok_and(|r| r.is_ok())
    } else {
        true
    }
}

fn port_number(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The status code of `GET path` on `host:port`, by a minimal HTTP/1.0
/// exchange (enough for a probe, and no client library to configure).
async fn http_status(host: IpAddr, port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect((host, port)).await.ok()?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kubesim-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}
