//! etcd v3 (`etcd-client`): `Put`, `Range` for reads and scans.
//!
//! Reads are linearizable (etcd's default: a ReadIndex round through the
//! leader) unless `--serializable`. As for Cairn, clients share one client
//! (a balanced HTTP/2 channel over every endpoint) per
//! `clients_per_connection` clients.

use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

use super::{Connection, Target, TargetOptions};
use crate::keygen::KEY_RANGE_END;

/// Connected etcd members.
#[derive(Clone)]
pub struct EtcdTarget {
    clients: Vec<Client>,
    serializable: bool,
}

impl EtcdTarget {
    /// Opens `options.connections()` clients, each over all endpoints.
    pub async fn connect(options: &TargetOptions) -> anyhow::Result<Self> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(options.op_timeout);
        let mut clients = Vec::new();
        for i in 0..options.connections() {
            // Rotate the endpoint list so connections start on different members.
            let mut endpoints = options.endpoints.clone();
            let n = endpoints.len();
            endpoints.rotate_left(i % n);
            let client = Client::connect(&endpoints, Some(connect.clone()))
                .await
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
            clients.push(client);
        }
        // Fail now, not per operation, if nothing answers.
        clients[0]
            .kv_client()
            .get("cairn-bench-probe", None)
            .await
            .with_context(|| format!("etcd at {} does not answer", options.endpoints.join(",")))?;
        Ok(Self {
            clients,
            serializable: options.serializable,
        })
    }
}

impl Target for EtcdTarget {
    type Conn = EtcdConn;

    async fn connection(&self, worker: usize) -> anyhow::Result<EtcdConn> {
        Ok(EtcdConn {
            kv: self.clients[worker % self.clients.len()].kv_client(),
            serializable: self.serializable,
        })
    }
}

/// One client's KV stub.
#[derive(Clone)]
pub struct EtcdConn {
    kv: KvClient,
    serializable: bool,
}

impl EtcdConn {
    fn get_options(&self) -> GetOptions {
        let o = GetOptions::new();
        if self.serializable {
            o.with_serializable()
        } else {
            o
        }
    }

    async fn put(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.kv.put(key, value, None).await.context("etcd Put")?;
        Ok(())
    }
}

impl Connection for EtcdConn {
    async fn read(&mut self, key: &str) -> anyhow::Result<bool> {
        let options = self.get_options();
        let resp = self
            .kv
            .get(key, Some(options))
            .await
            .context("etcd Range")?;
        Ok(!resp.kvs().is_empty())
    }

    async fn update(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn insert(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn scan(&mut self, start: &str, count: u32) -> anyhow::Result<usize> {
        let options = self
            .get_options()
            .with_range(KEY_RANGE_END)
            .with_limit(i64::from(count));
        let resp = self
            .kv
            .get(start, Some(options))
            .await
            .context("etcd Range (scan)")?;
        Ok(resp.kvs().len())
    }
}
