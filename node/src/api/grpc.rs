//! The `cairn.kv.v1.KV` gRPC service.

use std::time::Instant;

use cairn_proto::kv::v1 as pb;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::kv::forward::FORWARDED_METADATA;
use crate::kv::{KvError, KvStore};
use crate::metrics::Metrics;

/// gRPC front end over a [`KvStore`].
#[derive(Clone)]
pub struct KvGrpc {
    store: KvStore,
    metrics: Metrics,
}

impl KvGrpc {
    /// Serves `store`, recording request metrics in `metrics`.
    pub fn new(store: KvStore, metrics: Metrics) -> Self {
        Self { store, metrics }
    }

    /// The tonic service, with message size limits that let the service
    /// itself report limit violations clearly.
    pub fn into_server(self) -> pb::kv_server::KvServer<Self> {
        let max = self.store.limits().max_message_bytes();
        pb::kv_server::KvServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX)
    }

    fn finish<T>(
        &self,
        method: &str,
        started: Instant,
        r: Result<T, KvError>,
    ) -> Result<Response<T>, Status> {
        let code = match &r {
            Ok(_) => "ok",
            Err(e) => e.code().as_str(),
        };
        self.metrics
            .observe("grpc", method, code, started.elapsed());
        r.map(Response::new).map_err(|e| to_status(&e))
    }
}

/// Whether another node forwarded `req` here (it must not travel further).
fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED_METADATA)
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvGrpc {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let t = Instant::now();
        let r = self.store.get_from(req.get_ref(), forwarded(&req)).await;
        self.finish("Get", t, r)
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let t = Instant::now();
        let r = self.store.put(req.into_inner()).await;
        self.finish("Put", t, r)
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let t = Instant::now();
        let r = self.store.update(req.into_inner()).await;
        self.finish("Update", t, r)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let t = Instant::now();
        let r = self.store.delete(req.into_inner()).await;
        self.finish("Delete", t, r)
    }

    async fn batch_get(
        &self,
        req: Request<pb::BatchGetRequest>,
    ) -> Result<Response<pb::BatchGetResponse>, Status> {
        let t = Instant::now();
        let r = self
            .store
            .batch_get_from(req.get_ref(), forwarded(&req))
            .await;
        self.finish("BatchGet", t, r)
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let t = Instant::now();
        let r = self.store.batch(req.into_inner()).await;
        self.finish("Batch", t, r)
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let t = Instant::now();
        let r = self.store.txn(req.into_inner()).await;
        self.finish("Txn", t, r)
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let t = Instant::now();
        let hop = forwarded(&req);
        let r = self.store.scan_from(req.into_inner(), hop).await;
        self.finish("Scan", t, r)
    }
}
