//! The `cairn.kv.v1.KV` gRPC service.

use std::future::Future;
use std::time::Instant;

use cairn_proto::kv::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

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

    /// Runs one call in `span`, recording its metrics.
    async fn serve<T>(
        &self,
        method: &'static str,
        span: tracing::Span,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let r = call.instrument(span).await;
        let code = match &r {
            Ok(_) => "ok",
            Err(e) => e.code().as_str(),
        };
        self.metrics
            .observe("grpc", method, code, started.elapsed());
        r.map(Response::new).map_err(|e| to_status(&e))
    }
}

/// The span of one KV call, a child of the caller's trace if it sent one.
fn edge_span<T>(method: &'static str, req: &Request<T>) -> tracing::Span {
    let span = tracing::debug_span!(
        "kv",
        otel.name = %format_args!("cairn.kv.v1.KV/{method}"),
        otel.kind = "server",
        rpc.method = method,
    );
    crate::telemetry::continue_remote(&span, req.metadata());
    span
}

/// Whether another node forwarded `req` here (it must not travel further).
fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED_METADATA)
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvGrpc {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let span = edge_span("Get", &req);
        self.serve(
            "Get",
            span,
            self.store.get_from(req.get_ref(), forwarded(&req)),
        )
        .await
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let span = edge_span("Put", &req);
        self.serve("Put", span, self.store.put(req.into_inner()))
            .await
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let span = edge_span("Update", &req);
        self.serve("Update", span, self.store.update(req.into_inner()))
            .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let span = edge_span("Delete", &req);
        self.serve("Delete", span, self.store.delete(req.into_inner()))
            .await
    }

    async fn batch_get(
        &self,
        req: Request<pb::BatchGetRequest>,
    ) -> Result<Response<pb::BatchGetResponse>, Status> {
        let span = edge_span("BatchGet", &req);
        let call = self.store.batch_get_from(req.get_ref(), forwarded(&req));
        self.serve("BatchGet", span, call).await
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let span = edge_span("Batch", &req);
        self.serve("Batch", span, self.store.batch(req.into_inner()))
            .await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let span = edge_span("Txn", &req);
        self.serve("Txn", span, self.store.txn(req.into_inner()))
            .await
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let span = edge_span("Scan", &req);
        let hop = forwarded(&req);
        self.serve("Scan", span, self.store.scan_from(req.into_inner(), hop))
            .await
    }
}
