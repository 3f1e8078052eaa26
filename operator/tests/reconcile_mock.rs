//! `reconcile()` against a mock API server (tower-test) that checks every
//! request in order — the exact calls for a new cluster, the start of a
//! scale-out and the first step of a scale-in — and a recording stand-in for
//! the Cairn admin API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::{Arc, Mutex};

use cairn_operator::builders::statefulset::{POD_SPEC_HASH_ANNOTATION, pod_spec_hash};
use cairn_operator::controller::Context;
use cairn_operator::controller::admin::{AdminError, ClusterAdmin};
use cairn_operator::controller::decide::AdminCall;
use cairn_operator::controller::reconcile::reconcile;
use cairn_operator::controller::view::{ClusterView, NodeState, NodeView};
use cairn_operator::crd::KVCluster;
use cairn_operator::metrics::Metrics;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// The admin API as a recorder: a fixed view, and the calls made.
struct RecordingAdmin {
    view: Option<ClusterView>,
    calls: Mutex<Vec<AdminCall>>,
}

impl ClusterAdmin for RecordingAdmin {
    fn observe<'a>(&'a self, _: &'a [String], _: u32) -> BoxFuture<'a, Option<ClusterView>> {
        Box::pin(async move { self.view.clone() })
    }

    fn call<'a>(
        &'a self,
        _: &'a [String],
        call: AdminCall,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(call);
            Ok(())
        })
    }
}

fn cluster(nodes: u32, status: Value) -> KVCluster {
    serde_json::from_value(json!({
        "apiVersion": "cairn.dev/v1alpha1",
        "kind": "KVCluster",
        "metadata": {"name": "kv", "namespace": "ns", "uid": "uid-kv", "generation": 2},
        "spec": {
            "nodes": nodes, "shards": 16, "replicationFactor": 3,
            "image": "cairn", "version": "1", "storage": {"size": "1Gi"}
        },
        "status": status,
    }))
    .expect("cluster")
}

fn pods(n: u32) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|o| {
            json!({
                "metadata": {"name": format!("kv-default-{o}"), "namespace": "ns", "uid": format!("p{o}"),
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"app.kubernetes.io/instance": "kv"}},
                "status": {"podIP": format!("10.0.0.{o}"),
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn claims(n: u32) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|o| json!({"metadata": {"name": format!("data-kv-default-{o}"), "namespace": "ns"}, "spec": {}}))
        .collect();
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn statefulset(replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "kv-default", "namespace": "ns"},
        "spec": {"replicas": replicas, "serviceName": "kv-peers",
            "selector": {"matchLabels": {"a": "b"}}, "template": {}}})
}

fn view(nodes: u64) -> ClusterView {
    ClusterView {
        cluster_id: "c1".into(),
        nodes: (1..=nodes)
            .map(|id| NodeView {
                id,
                state: NodeState::Active,
                reachable: true,
                replicas: 48 / nodes as u32,
                leaders: 16 / nodes as u32,
                evacuating: false,
            })
            .collect(),
        shards: 16,
        ..ClusterView::default()
    }
}

/// One request the API server expects, and its answer.
struct Expect {
    method: Method,
    path: &'static str,
    check: Box<dyn Fn(&Value) + Send>,
    reply: Option<Value>,
}

fn expect(method: Method, path: &'static str, reply: Option<Value>) -> Expect {
    Expect {
        method,
        path,
        check: Box::new(|_| {}),
        reply,
    }
}

fn checked(method: Method, path: &'static str, check: impl Fn(&Value) + Send + 'static) -> Expect {
    Expect {
        method,
        path,
        check: Box::new(check),
        reply: None,
    }
}

/// Runs one reconcile of `cluster` against the expected requests; returns
/// the admin calls it made.
async fn run(
    cluster: KVCluster,
    admin_view: Option<ClusterView>,
    expected: Vec<Expect>,
) -> Vec<AdminCall> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(async move {
        for (i, e) in expected.into_iter().enumerate() {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), e.method, "request {i}: {}", request.uri());
            assert_eq!(request.uri().path(), e.path, "request {i}");
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (e.check)(&body);
            let response = match e.reply {
                Some(Value::Null) => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::from(
                        serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}))
                        .expect("json"),
                    )),
                Some(reply) => Response::builder().body(Body::from(serde_json::to_vec(&reply).expect("json"))),
                // Echo the applied object (SSA answers with the live object).
                None => Response::builder().body(Body::from(bytes.to_vec())),
            }
            .expect("response");
            send.send_response(response);
        }
        // Nothing else may be called.
        let extra =
            tokio::time::timeout(std::time::Duration::from_millis(300), handle.next_request())
                .await;
        if let Ok(Some((request, _))) = extra {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    });
    let client = kube::Client::new(service, "ns");
    let admin = Arc::new(RecordingAdmin {
        view: admin_view,
        calls: Mutex::new(Vec::new()),
    });
    let ctx = Arc::new(Context::new(
        client,
        admin.clone(),
        Arc::new(Metrics::new().expect("metrics")),
        None,
    ));
    reconcile(Arc::new(cluster), ctx).await.expect("reconcile");
    verifier.await.expect("every expected request, in order");
    admin.calls.lock().expect("lock").clone()
}

const PODS: &str = "/api/v1/namespaces/ns/pods";
const CLAIMS: &str = "/api/v1/namespaces/ns/persistentvolumeclaims";
const STS: &str = "/apis/apps/v1/namespaces/ns/statefulsets/kv-default";
const STATUS: &str = "/apis/cairn.dev/v1alpha1/namespaces/ns/kvclusters/kv/status";
const IDENTITY: &str = "/api/v1/namespaces/ns/configmaps/kv-identity";
const PEERS: &str = "/api/v1/namespaces/ns/services/kv-peers";
const CLIENT_SVC: &str = "/api/v1/namespaces/ns/services/kv";
const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/kv";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
const MONITOR: &str = "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors/kv";

/// `cluster` as the API server returns it after a status patch.
fn with_status(cluster: &KVCluster, patch: &Value) -> Value {
    let mut c = serde_json::to_value(cluster).expect("json");
    c["status"] = patch["status"].clone();
    c
}

#[tokio::test]
async fn a_new_cluster_gets_its_objects_applied_in_order() {
    let c = cluster(3, json!(null));
    let status_echo = with_status(
        &c,
        &json!({"status": {"members": [
        {"nodeId": 1, "pod": "kv-default-0", "rack": "default", "lifecycle": "Pending"},
        {"nodeId": 2, "pod": "kv-default-1", "rack": "default", "lifecycle": "Pending"},
        {"nodeId": 3, "pod": "kv-default-2", "rack": "default", "lifecycle": "Pending"}]}}),
    );
    let calls = run(
        c,
        None,
        vec![
            expect(Method::GET, PODS, Some(pods(0))),
            expect(Method::GET, STS, Some(Value::Null)),
            expect(Method::GET, CLAIMS, Some(claims(0))),
            Expect {
                reply: Some(status_echo),
                ..checked(Method::PATCH, STATUS, |body| {
                    let status = &body["status"];
                    assert_eq!(status["phase"], "Creating");
                    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
                    assert!(status["operation"].is_null());
                })
            },
            checked(Method::PATCH, IDENTITY, |body| {
                let data = body["data"].as_object().expect("data");
                assert_eq!(data.len(), 3);
                assert!(
                    data["kv-default-0.toml"]
                        .as_str()
                        .is_some_and(|f| f.contains("bootstrap = true"))
                );
            }),
            expect(Method::PATCH, PEERS, None),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            checked(Method::PATCH, STS, |body| {
                assert_eq!(body["spec"]["replicas"], 3)
            }),
            expect(Method::DELETE, MONITOR, Some(Value::Null)),
        ],
    )
    .await;
    assert!(
        calls.is_empty(),
        "no admin call before the cluster forms: {calls:?}"
    );
}

#[tokio::test]
async fn spec_monitoring_applies_a_service_monitor_after_the_statefulset() {
    let mut c = cluster(3, json!(null));
    c.spec.monitoring.enabled = true;
    c.spec.monitoring.interval = "15s".into();
    let status_echo = with_status(
        &c,
        &json!({"status": {"members": [
        {"nodeId": 1, "pod": "kv-default-0", "rack": "default", "lifecycle": "Pending"},
        {"nodeId": 2, "pod": "kv-default-1", "rack": "default", "lifecycle": "Pending"},
        {"nodeId": 3, "pod": "kv-default-2", "rack": "default", "lifecycle": "Pending"}]}}),
    );
    run(
        c,
        None,
        vec![
            expect(Method::GET, PODS, Some(pods(0))),
            expect(Method::GET, STS, Some(Value::Null)),
            expect(Method::GET, CLAIMS, Some(claims(0))),
            expect(Method::PATCH, STATUS, Some(status_echo)),
            expect(Method::PATCH, IDENTITY, None),
            checked(Method::PATCH, PEERS, |body| {
                let ports: Vec<&str> = body["spec"]["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(ports, ["grpc", "metrics"]);
            }),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            expect(Method::PATCH, STS, None),
            checked(Method::PATCH, MONITOR, |body| {
                assert_eq!(body["apiVersion"], "monitoring.coreos.com/v1");
                assert_eq!(body["kind"], "ServiceMonitor");
                assert_eq!(body["spec"]["endpoints"][0]["port"], "metrics");
                assert_eq!(body["spec"]["endpoints"][0]["interval"], "15s");
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn scaling_out_records_the_operation_then_grows_the_statefulset() {
    let c = cluster(5, json!({"clusterId": "c1"}));
    let calls = run(
        c.clone(),
        Some(view(3)),
        vec![
            expect(Method::GET, PODS, Some(pods(3))),
            expect(Method::GET, STS, Some(statefulset(3))),
            expect(Method::GET, CLAIMS, Some(claims(3))),
            Expect {
                reply: Some(serde_json::to_value(&c).expect("json")),
                ..checked(Method::PATCH, STATUS, |body| {
                    assert_eq!(body["status"]["operation"]["kind"], "ScaleOut");
                    let pods: Vec<&str> = body["status"]["members"]
                        .as_array()
                        .expect("members")
                        .iter()
                        .filter_map(|m| m["pod"].as_str())
                        .collect();
                    assert_eq!(pods.len(), 5, "identities for the new pods first");
                })
            },
            checked(Method::POST, EVENTS, |body| {
                assert_eq!(body["reason"], "ScaleOutStarted")
            }),
            expect(Method::PATCH, IDENTITY, None),
            expect(Method::PATCH, PEERS, None),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            checked(Method::PATCH, STS, |body| {
                assert_eq!(body["spec"]["replicas"], 5)
            }),
            expect(Method::DELETE, MONITOR, Some(Value::Null)),
        ],
    )
    .await;
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_recorded_scale_in_drains_its_node_and_holds_the_statefulset() {
    let members: Vec<Value> = (1..=5)
        .map(|id| json!({"nodeId": id, "pod": format!("kv-default-{}", id - 1), "rack": "default", "lifecycle": "Serving"}))
        .collect();
    let c = cluster(
        3,
        json!({"clusterId": "c1", "members": members,
            "operation": {"kind": "ScaleIn", "nodeId": 5, "startedAt": "2026-01-01T00:00:00Z"}}),
    );
    let calls = run(
        c.clone(),
        Some(view(5)),
        vec![
            expect(Method::GET, PODS, Some(pods(5))),
            expect(Method::GET, STS, Some(statefulset(5))),
            expect(Method::GET, CLAIMS, Some(claims(5))),
            Expect {
                reply: Some(serde_json::to_value(&c).expect("json")),
                ..checked(Method::PATCH, STATUS, |body| {
                    assert_eq!(body["status"]["operation"]["nodeId"], 5);
                    assert_eq!(body["status"]["phase"], "Scaling");
                })
            },
            expect(Method::PATCH, IDENTITY, None),
            expect(Method::PATCH, PEERS, None),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            checked(Method::PATCH, STS, |body| {
                assert_eq!(
                    body["spec"]["replicas"], 5,
                    "held until the node is removed"
                );
            }),
            expect(Method::DELETE, MONITOR, Some(Value::Null)),
        ],
    )
    .await;
    assert_eq!(calls, vec![AdminCall::Drain(5)]);
}

/// Pods of `cluster`'s current template bound to Kubernetes nodes `w0`,
/// `w1`, ...
fn bound_pods(cluster: &KVCluster, n: u32) -> Value {
    let hash = pod_spec_hash(cluster, &cluster.spec.racks[0]);
    let mut list = pods(n);
    for (o, pod) in list["items"]
        .as_array_mut()
        .expect("items")
        .iter_mut()
        .enumerate()
    {
        pod["spec"] = json!({"nodeName": format!("w{o}"), "containers": []});
        pod["metadata"]["annotations"] = json!({ POD_SPEC_HASH_ANNOTATION: hash });
    }
    list
}

fn nodes(names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}))
        .collect();
    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": items})
}

const NODES: &str = "/api/v1/nodes";

#[tokio::test]
async fn a_pod_whose_kubernetes_node_was_deleted_starts_a_replacement() {
    let members: Vec<Value> = (1..=3)
        .map(|id| json!({"nodeId": id, "pod": format!("kv-default-{}", id - 1), "rack": "default", "lifecycle": "Serving"}))
        .collect();
    let c = cluster(3, json!({"clusterId": "c1", "members": members}));
    let calls = run(
        c.clone(),
        Some(view(3)),
        vec![
            expect(Method::GET, PODS, Some(bound_pods(&c, 3))),
            expect(Method::GET, STS, Some(statefulset(3))),
            expect(Method::GET, CLAIMS, Some(claims(3))),
            expect(Method::GET, NODES, Some(nodes(&["w0", "w1"]))),
            Expect {
                reply: Some(serde_json::to_value(&c).expect("json")),
                ..checked(Method::PATCH, STATUS, |body| {
                    let op = &body["status"]["operation"];
                    assert_eq!(op["kind"], "Replace");
                    assert_eq!(op["nodeId"], 3, "the node on the deleted machine");
                })
            },
            checked(Method::POST, EVENTS, |body| {
                assert_eq!(body["reason"], "ReplaceStarted");
                let note = body["note"].as_str().unwrap_or_default();
                assert!(note.contains("w2"), "{note}");
            }),
            expect(Method::PATCH, IDENTITY, None),
            expect(Method::PATCH, PEERS, None),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            expect(Method::PATCH, STS, None),
            // spec.monitoring is off: the first reconcile makes sure no
            // ServiceMonitor is left (404 here: none, or no CRD).
            expect(Method::DELETE, MONITOR, Some(Value::Null)),
        ],
    )
    .await;
    assert!(
        calls.is_empty(),
        "recorded first, acted on from the next reconcile: {calls:?}"
    );
}

#[tokio::test]
async fn pods_on_nodes_missing_from_an_empty_node_list_are_not_replaced() {
    let members: Vec<Value> = (1..=3)
        .map(|id| json!({"nodeId": id, "pod": format!("kv-default-{}", id - 1), "rack": "default", "lifecycle": "Serving"}))
        .collect();
    let c = cluster(3, json!({"clusterId": "c1", "members": members}));
    let calls = run(
        c.clone(),
        Some(view(3)),
        vec![
            expect(Method::GET, PODS, Some(bound_pods(&c, 3))),
            expect(Method::GET, STS, Some(statefulset(3))),
            expect(Method::GET, CLAIMS, Some(claims(3))),
            expect(Method::GET, NODES, Some(nodes(&[]))),
            Expect {
                reply: Some(serde_json::to_value(&c).expect("json")),
                ..checked(Method::PATCH, STATUS, |body| {
                    assert!(body["status"]["operation"].is_null(), "{body}");
                })
            },
            expect(Method::PATCH, IDENTITY, None),
            expect(Method::PATCH, PEERS, None),
            expect(Method::PATCH, CLIENT_SVC, None),
            expect(Method::PATCH, PDB, None),
            expect(Method::PATCH, STS, None),
            // spec.monitoring is off: the first reconcile makes sure no
            // ServiceMonitor is left (404 here: none, or no CRD).
            expect(Method::DELETE, MONITOR, Some(Value::Null)),
        ],
    )
    .await;
    assert!(calls.is_empty(), "{calls:?}");
}
