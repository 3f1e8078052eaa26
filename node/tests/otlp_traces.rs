//! OpenTelemetry traces across nodes, received by a real OTLP/gRPC
//! collector endpoint (the `TraceService` of `opentelemetry-proto`, served
//! in the test): a client's `traceparent` is continued by the node it
//! calls, and a write sent to a follower shows its whole path — the KV
//! call on the follower, the forward, and the leader's Raft proposal — as
//! one trace with spans from two nodes and correct parent links.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::kv::v1 as pb;
use cairn_testkit::cluster::{ClusterSpec, LocalCluster};
use cairn_testkit::conformance;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    node: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
}

/// The collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let node = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.instance.id")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Span {
                        node: node.clone(),
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent: s.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn start_collector() -> (Collector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (collector, format!("http://{addr}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `span`'s ancestors (within `trace`) include `ancestor`.
fn descends_from(span: &Span, ancestor: &Span, trace: &[Span]) -> bool {
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let mut at = span;
    for _ in 0..trace.len() {
        if at.parent == ancestor.span_id {
            return true;
        }
        match by_id.get(at.parent.as_slice()) {
            Some(p) => at = p,
            None => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_is_one_trace_across_nodes() {
    let (collector, endpoint) = start_collector().await;
    let mut spec = ClusterSpec::new(3, 4);
    spec.args.extend([
        "--otlp-endpoint".to_string(),
        endpoint,
        "--trace-sample-ratio".to_string(),
        "1".to_string(),
        "--log-format".to_string(),
        "json".to_string(),
        "--log-level".to_string(),
        "info,openraft=warn,cairn_node=debug".to_string(),
    ]);
    let cluster = LocalCluster::start(spec).await.expect("cluster settles");

    // The same key written through every node: its shard has one leader,
    // so at least two of the three writes reach a follower and are
    // forwarded. Each write carries its own client trace context.
    let mut sent = Vec::new();
    for (i, endpoint) in cluster.endpoints().iter().enumerate() {
        let trace_id = format!("{:032x}", 0xca1f_0000_u128 + i as u128 + 1);
        let client_span = format!("{:016x}", 0xbeef_u64 + i as u64);
        let mut req = tonic::Request::new(conformance::put("traced", format!("v{i}")));
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
        );
        let mut kv = conformance::connect(endpoint).await;
        pb::kv_client::KvClient::put(&mut kv, req)
            .await
            .expect("traced put");
        sent.push((trace_id, client_span));
    }

    // Spans arrive in batches (every few seconds): poll until every trace
    // has its Put span and at least two traces show the leader's side.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let spans = collector.spans.lock().unwrap().clone();
        let traces: Vec<Vec<Span>> = sent
            .iter()
            .map(|(t, _)| {
                spans
                    .iter()
                    .filter(|s| hex(&s.trace_id) == *t)
                    .cloned()
                    .collect()
            })
            .collect();
        let all_put = traces
            .iter()
            .all(|t| t.iter().any(|s| s.name == "cairn.kv.v1.KV/Put"));
        let across: Vec<&Vec<Span>> = traces
            .iter()
            .filter(|t| {
                t.iter()
                    .any(|s| s.name == "cairn.raft.v1.RaftTransport/Forward")
            })
            .collect();
        if all_put && across.len() >= 2 {
            for (trace, (_, client_span)) in traces.iter().zip(&sent) {
                let put = trace
                    .iter()
                    .find(|s| s.name == "cairn.kv.v1.KV/Put")
                    .unwrap();
                assert_eq!(
                    hex(&put.parent),
                    *client_span,
                    "the Put span continues the client's span: {trace:#?}"
                );
            }
            for trace in across {
                let put = trace
                    .iter()
                    .find(|s| s.name == "cairn.kv.v1.KV/Put")
                    .unwrap();
                let fwd = trace
                    .iter()
                    .find(|s| s.name == "cairn.raft.v1.RaftTransport/Forward")
                    .unwrap();
                assert_ne!(
                    fwd.node, put.node,
                    "the forward is served by another node: {trace:#?}"
                );
                assert!(
                    descends_from(fwd, put, trace),
                    "the leader's span is a descendant of the follower's Put: {trace:#?}"
                );
                // The leader proposes the write inside the forwarded call.
                assert!(
                    trace.iter().any(|s| s.name == "raft.client_write"
                        && s.node == fwd.node
                        && descends_from(s, fwd, trace)),
                    "the leader's proposal is under the forward: {trace:#?}"
                );
                let nodes: std::collections::BTreeSet<&str> =
                    trace.iter().map(|s| s.node.as_str()).collect();
                assert!(nodes.len() >= 2, "spans from two nodes: {nodes:?}");
            }
            // A log line written inside a traced request carries its
            // trace id, so logs and traces of one request meet: the
            // follower's "forwarding" debug line of a forwarded write.
            let logs: String = cluster.nodes.iter().map(|n| n.stderr()).collect();
            let logged: Vec<&String> = sent
                .iter()
                .map(|(t, _)| t)
                .filter(|t| {
                    logs.lines().any(|l| {
                        l.starts_with(&format!("{{\"trace_id\":\"{t}\","))
                            && l.contains("forwarding to the shard's leader")
                    })
                })
                .collect();
            assert!(
                logged.len() >= 2,
                "forwarding log lines carry their trace id (found for {logged:?}); logs:\n{logs}"
            );
            // Only Cairn's own spans are exported (none of h2, hyper,
            // tonic or the exporter).
            for s in &spans {
                assert!(
                    s.name.starts_with("cairn.")
                        || s.name.starts_with("raft.")
                        || s.name.starts_with("HTTP "),
                    "unexpected span {s:?}"
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "traces incomplete after 90 s; received {} spans: {:#?}",
            spans.len(),
            spans
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
