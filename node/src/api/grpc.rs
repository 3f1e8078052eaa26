//! The `cairn.kv.v1.KV` gRPC service.

use std::future::Future;
use std::time::Instant;

use cairn_auth::policy::Principal;
use cairn_auth::{Call, KvCall};
use cairn_proto::kv::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::status::to_status;
use crate::auth::{AccessGate, CALLER, Caller, Credentials};
use crate::kv::forward::FORWARDED_METADATA;
use crate::kv::{KvError, KvStore};
use crate::metrics::Metrics;

/// gRPC front end over a [`KvStore`].
#[derive(Clone)]
pub struct KvGrpc {
    store: KvStore,
    metrics: Metrics,
    gate: AccessGate,
}

impl KvGrpc {
    /// Serves `store`, admitting requests through `gate` and recording
    /// request metrics in `metrics`.
    pub fn new(store: KvStore, metrics: Metrics, gate: AccessGate) -> Self {
        Self {
            store,
            metrics,
            gate,
        }
    }

    /// Whether the caller of `req` may make `call`; who they are, for
    /// forwarded reads to name.
    fn admit<T>(&self, req: &Request<T>, call: KvCall<'_>) -> Result<Caller, KvError> {
        let creds = Credentials::of_grpc(req);
        let principal = self.gate.check("grpc", &creds, &Call::Kv(call))?;
        Ok(Caller {
            bearer: creds.bearer,
            user: match principal {
                Some(Principal::User { name, .. }) => Some(name),
                _ => None,
            },
        })
    }

    /// The tonic service, with message size limits that let the service
    /// itself report limit violations clearly.
    pub fn into_server(self) -> pb::kv_server::KvServer<Self> {
        let max = self.store.limits().max_message_bytes();
        pb::kv_server::KvServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX)
    }

    /// Runs one admitted call in `span` (as `caller`), recording its metrics.
    async fn serve<T>(
        &self,
        method: &'static str,
        span: tracing::Span,
        admitted: Result<Caller, KvError>,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let r = match admitted {
            Ok(caller) => CALLER.scope(caller, call.instrument(span)).await,
            Err(e) => Err(e),
        };
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
        let admitted = self.admit(&req, KvCall::Get(req.get_ref()));
        let call = self.store.get_from(req.get_ref(), forwarded(&req));
        self.serve("Get", span, admitted, call).await
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let span = edge_span("Put", &req);
        let admitted = self.admit(&req, KvCall::Put(req.get_ref()));
        self.serve("Put", span, admitted, self.store.put(req.into_inner()))
            .await
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let span = edge_span("Update", &req);
        let admitted = self.admit(&req, KvCall::Update(req.get_ref()));
        self.serve(
            "Update",
            span,
            admitted,
            self.store.update(req.into_inner()),
        )
        .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let span = edge_span("Delete", &req);
        let admitted = self.admit(&req, KvCall::Delete(req.get_ref()));
        self.serve(
            "Delete",
            span,
            admitted,
            self.store.delete(req.into_inner()),
        )
        .await
    }

    async fn batch_get(
        &self,
        req: Request<pb::BatchGetRequest>,
    ) -> Result<Response<pb::BatchGetResponse>, Status> {
        let span = edge_span("BatchGet", &req);
        let admitted = self.admit(&req, KvCall::BatchGet(req.get_ref()));
        let call = self.store.batch_get_from(req.get_ref(), forwarded(&req));
        self.serve("BatchGet", span, admitted, call).await
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let span = edge_span("Batch", &req);
        let admitted = self.admit(&req, KvCall::Batch(req.get_ref()));
        self.serve("Batch", span, admitted, self.store.batch(req.into_inner()))
            .await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let span = edge_span("Txn", &req);
        let admitted = self.admit(&req, KvCall::Txn(req.get_ref()));
        self.serve("Txn", span, admitted, self.store.txn(req.into_inner()))
            .await
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let span = edge_span("Scan", &req);
        let admitted = self.admit(&req, KvCall::Scan(req.get_ref()));
        let hop = forwarded(&req);
        self.serve(
            "Scan",
            span,
            admitted,
            self.store.scan_from(req.into_inner(), hop),
        )
        .await
    }
}
