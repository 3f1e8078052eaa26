//! The KV API conformance suite: every method of `cairn.kv.v1.KV` and every
//! documented error, checked through any front end that implements
//! [`KvApi`] — the raw gRPC stub against any node of any topology, the
//! smart client, or the HTTP gateway. Each check uses keys under its own
//! random prefix, so runs can share a server. One file per concept:
//! single-key calls, multi-key calls, scans, TTL, read options, limits,
//! exactly-once retries; [`run_all_with`] runs them all.

use std::time::Duration;

use cairn_proto::kv::v1 as pb;
use pb::kv_client::KvClient;
use tonic::Code;
use tonic::transport::Channel;

pub use crate::kv_api::KvApi;

mod consistency;
mod exactly_once;
mod limits;
mod multi_key;
mod scan;
mod single_key;
mod ttl;

pub use consistency::read_your_writes_token;
pub use exactly_once::retried_writes_apply_once;
pub use limits::limits_and_bad_input;
pub use multi_key::{batch_get_in_request_order, batch_is_atomic, txn_branches};
pub use scan::scan_prefix_range_and_pages;
pub use single_key::{
    conditional_puts, delete_reports_existence, put_get_and_revisions, update_only_if_present,
};
pub use ttl::ttl_hides_expired_keys;

/// The raw gRPC stub, the suite's reference front end.
pub type Kv = KvClient<Channel>;

/// Connects to `endpoint` (`http://HOST:PORT`).
pub async fn connect(endpoint: &str) -> Kv {
    let ch = Channel::from_shared(endpoint.to_string())
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {endpoint}: {e}"));
    KvClient::new(ch)
        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
}

/// A KV client for `endpoint` over TLS with `tls`.
pub async fn connect_tls(endpoint: &str, tls: &std::sync::Arc<cairn_tls::TlsContext>) -> Kv {
    let ch = Channel::from_shared(endpoint.to_string())
        .expect("endpoint URL")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tls.connector())
        .await
        .unwrap_or_else(|e| panic!("connecting to {endpoint} over TLS: {e}"));
    KvClient::new(ch)
        .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
}

/// Runs every check of the suite against the gRPC endpoint `endpoint`.
pub async fn run_all(endpoint: &str) {
    let left_out = run_all_with(connect(endpoint).await).await;
    assert!(left_out.is_empty(), "gRPC offers every call: {left_out:?}");
}

/// Runs every check of the suite through `kv`, any front end of the API,
/// and returns the names of the checks left out because the front end's
/// [`KvApi::surface`] lacks the call they are about (none for gRPC). Checks
/// that only touch a missing call in passing run without that part.
pub async fn run_all_with<K: KvApi>(kv: K) -> Vec<&'static str> {
    let surface = kv.surface();
    let mut left_out = Vec::new();
    put_get_and_revisions(kv.clone()).await;
    conditional_puts(kv.clone()).await;
    update_only_if_present(kv.clone()).await;
    delete_reports_existence(kv.clone()).await;
    if surface.batch_get {
        batch_get_in_request_order(kv.clone()).await;
    } else {
        left_out.push("batch_get_in_request_order");
    }
    if surface.batch {
        batch_is_atomic(kv.clone()).await;
    } else {
        left_out.push("batch_is_atomic");
    }
    if surface.txn {
        txn_branches(kv.clone()).await;
    } else {
        left_out.push("txn_branches");
    }
    scan_prefix_range_and_pages(kv.clone()).await;
    ttl_hides_expired_keys(kv.clone()).await;
    read_your_writes_token(kv.clone()).await;
    retried_writes_apply_once(kv.clone()).await;
    limits_and_bad_input(kv).await;
    left_out
}

/// `Put`
pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

/// `Get` with default (linearizable) consistency.
pub fn get(key: impl Into<Vec<u8>>) -> pb::GetRequest {
    pb::GetRequest {
        key: key.into(),
        read: None,
    }
}

/// Reads `key`'s current value, if any.
pub async fn value_of<K: KvApi>(kv: &mut K, key: &[u8]) -> Option<pb::KeyValue> {
    kv.get(get(key.to_vec()))
        .await
        .expect("get")
        .into_inner()
        .kv
}

fn expect_code<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) -> tonic::Status {
    match r {
        Ok(v) => panic!("expected {code:?} ({needle}), got success {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert!(
                s.message().contains(needle),
                "message {:?} should mention {needle:?}",
                s.message()
            );
            s
        }
    }
}

fn op_put(key: &str, value: &str) -> pb::WriteOp {
    pb::WriteOp {
        op: Some(pb::write_op::Op::Put(put(key, value))),
    }
}

/// A `Batch` of `ops` without a request id.
fn batch(ops: Vec<pb::WriteOp>) -> pb::BatchRequest {
    pb::BatchRequest {
        ops,
        request_id: Default::default(),
    }
}
