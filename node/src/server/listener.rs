//! Listening sockets and the addresses a node tells others about.
//!
//! In a Kubernetes pod a node listens on every interface (`[::]:7000`) and
//! advertises its stable DNS name; on a laptop it listens on a loopback
//! address and advertises that. `[::]` is made dual-stack explicitly, so
//! IPv4 clients reach it whatever the host's `bindv6only` default, and
//! falls back to `0.0.0.0` on a host without IPv6.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

use super::ServerError;

/// Binds `addr` for the `what` listener (named in errors).
///
/// # Errors
/// [`ServerError::Bind`] when the address is taken or not local.
pub(super) async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let error = |source| ServerError::Bind { what, addr, source };
    if addr.ip() != Ipv6Addr::UNSPECIFIED {
        return TcpListener::bind(addr).await.map_err(error);
    }
    match dual_stack(addr) {
        Ok(listener) => Ok(listener),
        Err(e) if ipv6_unavailable(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!(%addr, %v4, error = %e, "no IPv6 on this host; listening on IPv4 only");
            TcpListener::bind(v4).await.map_err(error)
        }
        Err(e) => Err(error(e)),
    }
}

/// A `[::]:port` listener that takes IPv4 connections too.
fn dual_stack(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As tokio's own bind: a restarted node must not wait out TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn ipv6_unavailable(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        code == Errno::EAFNOSUPPORT as i32 || code == Errno::EADDRNOTAVAIL as i32
    })
}

/// The gRPC address peers and clients are told: `advertise` when set,
/// else the bound address — which must then be a specific one.
///
/// # Errors
/// A wildcard bind without `advertise`: nobody could be told where this
/// node is.
pub(super) fn advertised_grpc(
    bound: SocketAddr,
    advertise: Option<&str>,
) -> Result<String, ServerError> {
    match advertise {
        Some(addr) => Ok(addr.to_owned()),
        None if bound.ip().is_unspecified() => Err(super::ConfigError::Invalid(format!(
            "grpc-addr {bound} listens on every interface, so peers cannot be told where to reach this node: set advertise-addr (HOST:PORT)"
        ))
        .into()),
        None => Ok(bound.to_string()),
    }
}

/// The HTTP address recorded for this node (shown by `cairnctl cluster
/// status`): the bound one, or when that is a wildcard, the advertised
/// gRPC host with the HTTP port.
pub(super) fn advertised_http(bound: SocketAddr, advertised_grpc: &str) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    match advertised_grpc.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => format!("{host}:{}", bound.port()),
        _ => bound.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wildcard_v6_listener_takes_ipv4_and_ipv6_clients() {
        let listener = bind("test", "[::]:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            for _ in 0..2 {
                listener.accept().await.unwrap();
            }
        });
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("IPv4 client");
        if let Ok(v6) = tokio::net::TcpStream::connect(("::1", port)).await {
            drop(v6);
        } else {
            // A host without IPv6 loopback: the v4 connection is what counts.
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
        }
        accept.await.unwrap();
    }

    #[test]
    fn advertised_addresses_name_a_reachable_host() {
        let wildcard: SocketAddr = "[::]:7000".parse().unwrap();
        assert!(advertised_grpc(wildcard, None).is_err());
        assert_eq!(
            advertised_grpc(wildcard, Some("kv-0.kv-peers.ns.svc:7000")).unwrap(),
            "kv-0.kv-peers.ns.svc:7000"
        );
        let local: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(advertised_grpc(local, None).unwrap(), "127.0.0.1:7000");

        let http_wildcard: SocketAddr = "0.0.0.0:7001".parse().unwrap();
        assert_eq!(
            advertised_http(http_wildcard, "kv-0.kv-peers.ns.svc:7000"),
            "kv-0.kv-peers.ns.svc:7001"
        );
        assert_eq!(
            advertised_http(http_wildcard, "[fd00::5]:7000"),
            "[fd00::5]:7001"
        );
        let http_local: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            advertised_http(http_local, "anything:7000"),
            "127.0.0.1:7001"
        );
    }
}
