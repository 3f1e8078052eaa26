//! The reconcile loop: a kube-runtime `Controller` over `KVCluster`s that
//! also wakes on changes to their StatefulSets, Services, ConfigMaps and
//! pods, and polls while an operation is in progress (the Cairn cluster's
//! own progress — drains, rebalancing — is not visible to the API server).

pub mod admin;
pub mod decide;
pub mod observe;
pub mod reconcile;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use crate::builders::BuildError;
use crate::builders::metadata::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER};
use crate::crd::KVCluster;
use crate::metrics::Metrics;
use admin::{AdminError, ClusterAdmin};

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The cluster's admin API failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The owned objects could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The status could not be serialised.
    #[error("status encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A `KVCluster` without a namespace (the API never returns one).
    #[error("KVCluster has no namespace")]
    NoNamespace,
}

/// What every reconcile shares.
pub struct Context {
    /// API server client.
    pub client: kube::Client,
    /// The Cairn admin API.
    pub admin: Arc<dyn ClusterAdmin>,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events for lifecycle steps.
    pub recorder: Recorder,
    /// Clusters (`namespace/name`) known to have no ServiceMonitor since
    /// this process started: a disabled `spec.monitoring` costs one DELETE
    /// per cluster per operator start, not one per reconcile.
    pub monitors_absent: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Context {
    /// A context whose Events are reported by `instance` of `cairn-operator`.
    pub fn new(
        client: kube::Client,
        admin: Arc<dyn ClusterAdmin>,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.to_owned(),
                instance,
            },
        );
        Self {
            client,
            admin,
            metrics,
            recorder,
            monitors_absent: std::sync::Mutex::default(),
        }
    }
}

fn error_policy(_: Arc<KVCluster>, error: &ControllerError, _: Arc<Context>) -> Requeue {
    tracing::warn!(%error, "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}

/// The `KVCluster` a pod belongs to, from its instance label.
fn owner_of_pod(pod: Pod) -> Option<ObjectRef<KVCluster>> {
    let name = pod.labels().get(INSTANCE_LABEL)?.clone();
    let ns = pod.namespace()?;
    Some(ObjectRef::new(&name).within(&ns))
}

/// Runs the controller until `shutdown` resolves, over `KVCluster`s in
/// `namespace` (all namespaces when `None`).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    Controller::new(api::<KVCluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned)
        .watches(
            api::<Pod>(&client, ns),
            watcher::Config::default().labels("app.kubernetes.io/name=cairn"),
            owner_of_pod,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
