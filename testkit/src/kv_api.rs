//! [`KvApi`]: what the conformance suite needs of a key-value front end, so
//! one suite checks every way users reach Cairn — the raw gRPC stub (any
//! node of any topology), the smart client [`cairn_client::Client`] and the
//! HTTP gateway ([`crate::http_api::HttpKv`]).
//!
//! Outcomes keep gRPC's shape (`tonic::Response` / `tonic::Status`, the
//! stable error code in the `cairn-error-code` metadata), because that is
//! the contract every front end maps onto.

use std::future::Future;

use cairn_client::{Client, ClientError};
use cairn_proto::kv::v1 as pb;
use pb::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::{Response, Status};

/// The result of one call, as gRPC reports it.
pub type Outcome<T> = Result<Response<T>, Status>;

/// The parts of the API a front end may lack (the HTTP gateway has no
/// multi-key calls). The suite runs every check whose parts are offered and
/// names the ones it left out, so a gap is visible, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surface {
    /// `BatchGet`
    pub batch_get: bool,
    /// `Batch`
    pub batch: bool,
    /// `Txn`
    pub txn: bool,
}

impl Surface {
    /// The whole API, as gRPC offers it.
    pub const FULL: Surface = Surface {
        batch_get: true,
        batch: true,
        txn: true,
    };
}

/// A front end of the key-value API.
pub trait KvApi: Clone + Send + Sync + 'static {
    /// What this front end offers; gRPC front ends offer everything.
    fn surface(&self) -> Surface {
        Surface::FULL
    }
    /// Whether a `BatchGet` may be split into one request per shard leader
    /// (the smart client does), so a request over the server's key limit
    /// can be served in parts instead of refused.
    fn splits_batch_get(&self) -> bool {
        false
    }
    /// `Get`
    fn get(&mut self, r: pb::GetRequest) -> impl Future<Output = Outcome<pb::GetResponse>> + Send;
    /// `Put`
    fn put(&mut self, r: pb::PutRequest) -> impl Future<Output = Outcome<pb::PutResponse>> + Send;
    /// `Update`
    fn update(
        &mut self,
        r: pb::UpdateRequest,
    ) -> impl Future<Output = Outcome<pb::UpdateResponse>> + Send;
    /// `Delete`
    fn delete(
        &mut self,
        r: pb::DeleteRequest,
    ) -> impl Future<Output = Outcome<pb::DeleteResponse>> + Send;
    /// `BatchGet`
    fn batch_get(
        &mut self,
        r: pb::BatchGetRequest,
    ) -> impl Future<Output = Outcome<pb::BatchGetResponse>> + Send;
    /// `Batch`
    fn batch(
        &mut self,
        r: pb::BatchRequest,
    ) -> impl Future<Output = Outcome<pb::BatchResponse>> + Send;
    /// `Txn`
    fn txn(&mut self, r: pb::TxnRequest) -> impl Future<Output = Outcome<pb::TxnResponse>> + Send;
    /// `Scan`
    fn scan(
        &mut self,
        r: pb::ScanRequest,
    ) -> impl Future<Output = Outcome<pb::ScanResponse>> + Send;
}

impl KvApi for KvClient<Channel> {
    async fn get(&mut self, r: pb::GetRequest) -> Outcome<pb::GetResponse> {
        KvClient::get(self, r).await
    }
    async fn put(&mut self, r: pb::PutRequest) -> Outcome<pb::PutResponse> {
        KvClient::put(self, r).await
    }
    async fn update(&mut self, r: pb::UpdateRequest) -> Outcome<pb::UpdateResponse> {
        KvClient::update(self, r).await
    }
    async fn delete(&mut self, r: pb::DeleteRequest) -> Outcome<pb::DeleteResponse> {
        KvClient::delete(self, r).await
    }
    async fn batch_get(&mut self, r: pb::BatchGetRequest) -> Outcome<pb::BatchGetResponse> {
        KvClient::batch_get(self, r).await
    }
    async fn batch(&mut self, r: pb::BatchRequest) -> Outcome<pb::BatchResponse> {
        KvClient::batch(self, r).await
    }
    async fn txn(&mut self, r: pb::TxnRequest) -> Outcome<pb::TxnResponse> {
        KvClient::txn(self, r).await
    }
    async fn scan(&mut self, r: pb::ScanRequest) -> Outcome<pb::ScanResponse> {
        KvClient::scan(self, r).await
    }
}

/// A [`ClientError`] as the status a raw stub would have seen: the
/// server's own status when there was one, `UNAVAILABLE` for a connection
/// that could not be made, `INTERNAL` for a broken contract.
fn as_status(e: ClientError) -> Status {
    match e {
        ClientError::Status(status) => status,
        ClientError::Connect { .. } => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn outcome<T>(r: Result<T, ClientError>) -> Outcome<T> {
    r.map(Response::new).map_err(as_status)
}

impl KvApi for Client {
    fn splits_batch_get(&self) -> bool {
        true
    }
    async fn get(&mut self, r: pb::GetRequest) -> Outcome<pb::GetResponse> {
        outcome(Client::get(self, r.key, r.read.unwrap_or_default()).await)
    }
    async fn put(&mut self, r: pb::PutRequest) -> Outcome<pb::PutResponse> {
        outcome(Client::put(self, r).await)
    }
    async fn update(&mut self, r: pb::UpdateRequest) -> Outcome<pb::UpdateResponse> {
        outcome(Client::update(self, r).await)
    }
    async fn delete(&mut self, r: pb::DeleteRequest) -> Outcome<pb::DeleteResponse> {
        outcome(Client::delete(self, r).await)
    }
    async fn batch_get(&mut self, r: pb::BatchGetRequest) -> Outcome<pb::BatchGetResponse> {
        outcome(Client::batch_get(self, r).await)
    }
    async fn batch(&mut self, r: pb::BatchRequest) -> Outcome<pb::BatchResponse> {
        outcome(Client::batch(self, r).await)
    }
    async fn txn(&mut self, r: pb::TxnRequest) -> Outcome<pb::TxnResponse> {
        outcome(Client::txn(self, r).await)
    }
    async fn scan(&mut self, r: pb::ScanRequest) -> Outcome<pb::ScanResponse> {
        outcome(Client::scan(self, r).await)
    }
}
