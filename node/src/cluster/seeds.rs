//! The members a new node contacts to learn about and join the cluster
//! (`--join`). Each seed name is resolved to all of its addresses and this
//! node's own address is left out.
//!
//! Why: a headless Service name resolves to every pod, this one included,
//! and resolvers sort first the address that shares the longest prefix with
//! the caller's own — which is its own. A joining node would ask itself
//! first, reach a socket that is bound but not yet served, and wait out the
//! request timeout before trying anyone else.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The addresses of `seeds` other than this node's (`bound`, its gRPC
/// listener), in resolver order, without repeats. A seed that does not
/// resolve is kept as written, so the attempt to use it reports why.
pub(crate) async fn remote_seeds(seeds: &[String], bound: SocketAddr) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => {
                for addr in addrs.filter(|a| !is_self(*a, bound)) {
                    let addr = addr.to_string();
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
            Err(_) => {
                if !out.contains(seed) {
                    out.push(seed.clone());
                }
            }
        }
    }
    out
}

/// Whether a connection to `addr` would reach this node's own listener.
fn is_self(addr: SocketAddr, bound: SocketAddr) -> bool {
    if bound.ip().is_unspecified() {
        addr.port() == bound.port() && is_local(addr.ip())
    } else {
        addr == bound
    }
}

/// Whether `ip` belongs to this host (binding to it succeeds only then).
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_address_is_left_out_and_others_kept() {
        let specific: SocketAddr = "127.0.0.11:7000".parse().unwrap();
        let seeds = vec![
            "127.0.0.11:7000".to_owned(),
            "127.0.0.12:7000".to_owned(),
            "127.0.0.12:7000".to_owned(),
            "no-such-host.invalid:7000".to_owned(),
        ];
        assert_eq!(
            remote_seeds(&seeds, specific).await,
            vec!["127.0.0.12:7000", "no-such-host.invalid:7000"],
            "a node bound to one address skips exactly that address"
        );

        let wildcard: SocketAddr = "[::]:7000".parse().unwrap();
        let seeds = vec![
            "localhost:7000".to_owned(),
            "127.0.0.1:7001".to_owned(),
            "192.0.2.77:7000".to_owned(),
        ];
        assert_eq!(
            remote_seeds(&seeds, wildcard).await,
            vec!["127.0.0.1:7001", "192.0.2.77:7000"],
            "a node on every interface skips its port on any local address"
        );
    }
}
