//! The systems a benchmark can drive, behind one small interface.
//!
//! A [`Target`] is connected once and hands every client (worker) its own
//! [`Connection`]. Every target stores record `key` with value bytes as-is;
//! scans read up to N records in key order starting at a key, within the
//! record key space (`user…`).

pub mod cairn;
pub mod etcd;
pub mod http;
pub mod redis;

use std::future::Future;
use std::time::Duration;

/// Which system to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// Cairn over gRPC (`cairn.kv.v1.KV`).
    Cairn,
    /// Cairn's HTTP gateway (`/store/{key}`).
    CairnHttp,
    /// etcd v3 over gRPC.
    Etcd,
    /// Redis (RESP), one connection per client.
    Redis,
}

impl TargetKind {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cairn => "cairn",
            Self::CairnHttp => "cairn-http",
            Self::Etcd => "etcd",
            Self::Redis => "redis",
        }
    }

    /// Endpoint used when `--endpoints` is not given.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Self::Cairn => "127.0.0.1:7000",
            Self::CairnHttp => "127.0.0.1:7001",
            Self::Etcd => "127.0.0.1:2379",
            Self::Redis => "127.0.0.1:6379",
        }
    }
}

/// How to connect to a target.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// `HOST:PORT` of every server (several for a cluster).
    pub endpoints: Vec<String>,
    /// Workers that will ask for connections.
    pub clients: usize,
    /// Clients sharing one multiplexed connection (gRPC targets).
    pub clients_per_connection: usize,
    /// Serve reads from the local replica instead of linearizably.
    pub serializable: bool,
    /// Deadline of one operation.
    pub op_timeout: Duration,
    /// TLS with this CA bundle (`cairn` target only).
    pub tls_ca: Option<std::path::PathBuf>,
    /// Bearer token sent with every request (`cairn` target only).
    pub token: Option<String>,
}

impl TargetOptions {
    /// Multiplexed connections to open for the gRPC targets: one per
    /// `clients_per_connection` clients, at least one per endpoint.
    pub fn connections(&self) -> usize {
        self.clients
            .div_ceil(self.clients_per_connection.max(1))
            .max(self.endpoints.len())
            .max(1)
    }

    /// The endpoint of connection number `i` (round-robin).
    pub fn endpoint(&self, i: usize) -> &str {
        &self.endpoints[i % self.endpoints.len()]
    }
}

/// A connected system that hands out per-client connections.
pub trait Target: Send + Sync + 'static {
    /// One client's handle.
    type Conn: Connection;

    /// The connection of worker `worker` (may share a multiplexed transport
    /// with other workers).
    fn connection(&self, worker: usize) -> impl Future<Output = anyhow::Result<Self::Conn>> + Send;
}

/// One client's operations. Each call is one request/response exchange
/// (except where a target's module says otherwise).
pub trait Connection: Send + 'static {
    /// Reads `key`; `Ok(false)` when it does not exist.
    fn read(&mut self, key: &str) -> impl Future<Output = anyhow::Result<bool>> + Send;

    /// Overwrites `key` (it exists).
    fn update(
        &mut self,
        key: &str,
        value: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Writes the new record `key`.
    fn insert(
        &mut self,
        key: &str,
        value: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Reads up to `count` records in key order from `start`; returns how
    /// many came back.
    fn scan(
        &mut self,
        start: &str,
        count: u32,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(clients: usize, endpoints: usize) -> TargetOptions {
        TargetOptions {
            endpoints: (0..endpoints)
                .map(|i| format!("127.0.0.1:{}", 7000 + i))
                .collect(),
            clients,
            clients_per_connection: 32,
            serializable: false,
            op_timeout: Duration::from_secs(1),
            tls_ca: None,
            token: None,
        }
    }

    #[test]
    fn one_connection_per_32_clients_and_per_endpoint() {
        assert_eq!(opts(1, 1).connections(), 1);
        assert_eq!(opts(32, 1).connections(), 1);
        assert_eq!(opts(33, 1).connections(), 2);
        assert_eq!(opts(256, 1).connections(), 8);
        assert_eq!(opts(4, 3).connections(), 3);
        let o = opts(256, 3);
        assert_eq!(
            [o.endpoint(0), o.endpoint(1), o.endpoint(3)],
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7000"]
        );
    }
}
