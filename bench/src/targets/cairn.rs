//! Cairn over gRPC: the raw generated `KvClient`, several HTTP/2 connections.
//!
//! One HTTP/2 connection serialises on one socket and one connection task, so
//! clients are spread round-robin over one connection per
//! `clients_per_connection` clients, and connections round-robin over the
//! endpoints. Updates and inserts are `Put`s, reads `Get`s (linearizable
//! unless `--serializable`), scans one `Scan` page.

use anyhow::Context as _;
use cairn_proto::kv::v1 as pb;
use pb::kv_client::KvClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::{Connection, Target, TargetOptions};
use crate::keygen::KEY_RANGE_END;

/// Connected Cairn nodes.
#[derive(Debug, Clone)]
pub struct CairnTarget {
    channels: Vec<Channel>,
    consistency: pb::Consistency,
    authorize: cairn_client::Authorize,
}

impl CairnTarget {
    /// Opens `options.connections()` connections.
    pub async fn connect(options: &TargetOptions) -> anyhow::Result<Self> {
        let tls = match &options.tls_ca {
            None => None,
            Some(ca) => Some(cairn_tls::TlsContext::load(
                cairn_tls::TlsPaths {
                    ca: ca.clone(),
                    cert: None,
                    key: None,
                    crl: None,
                },
                cairn_tls::TlsMetrics::new()?,
            )?),
        };
        let mut channels = Vec::new();
        for i in 0..options.connections() {
            let ep = options.endpoint(i);
            let endpoint = Endpoint::from_shared(format!("http://{ep}"))
                .with_context(|| format!("bad endpoint {ep:?}"))?
                .tcp_nodelay(true)
                .connect_timeout(std::time::Duration::from_secs(5))
                .timeout(options.op_timeout);
            let channel = match &tls {
                None => endpoint.connect().await,
                Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
            }
            .with_context(|| format!("connecting to Cairn gRPC at {ep}"))?;
            channels.push(channel);
        }
        let consistency = if options.serializable {
            pb::Consistency::Serializable
        } else {
            pb::Consistency::Linearizable
        };
        Ok(Self {
            channels,
            consistency,
            authorize: cairn_client::Authorize::token(options.token.as_deref())?,
        })
    }
}

impl Target for CairnTarget {
    type Conn = CairnConn;

    async fn connection(&self, worker: usize) -> anyhow::Result<CairnConn> {
        Ok(CairnConn {
            client: KvClient::with_interceptor(
                self.channels[worker % self.channels.len()].clone(),
                self.authorize.clone(),
            ),
            consistency: self.consistency,
        })
    }
}

/// One client's gRPC stub.
#[derive(Debug, Clone)]
pub struct CairnConn {
    client: KvClient<InterceptedService<Channel, cairn_client::Authorize>>,
    consistency: pb::Consistency,
}

impl CairnConn {
    fn read_options(&self) -> Option<pb::ReadOptions> {
        Some(pb::ReadOptions {
            consistency: self.consistency as i32,
            min_revision: 0,
        })
    }

    async fn put(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                ..Default::default()
            })
            .await
            .context("Put")?;
        Ok(())
    }
}

impl Connection for CairnConn {
    async fn read(&mut self, key: &str) -> anyhow::Result<bool> {
        let read = self.read_options();
        let resp = self
            .client
            .get(pb::GetRequest {
                key: key.as_bytes().to_vec(),
                read,
            })
            .await
            .context("Get")?;
        Ok(resp.into_inner().kv.is_some())
    }

    async fn update(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn insert(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        self.put(key, value).await
    }

    async fn scan(&mut self, start: &str, count: u32) -> anyhow::Result<usize> {
        let read = self.read_options();
        let resp = self
            .client
            .scan(pb::ScanRequest {
                start: start.as_bytes().to_vec(),
                end: KEY_RANGE_END.as_bytes().to_vec(),
                limit: count,
                read,
                ..Default::default()
            })
            .await
            .context("Scan")?;
        Ok(resp.into_inner().kvs.len())
    }
}
