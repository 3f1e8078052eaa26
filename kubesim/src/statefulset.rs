//! The StatefulSet controller: keeps, for every apps/v1 StatefulSet, one pod
//! per ordinal and one claim per ordinal and claim template, and reports the
//! set's status — the part of kube-controller-manager the operator relies on.
//!
//! It is a [`kube::runtime::Controller`] over StatefulSets that also watches
//! the pods and claims the sets own, so a pod turning Ready or going away
//! triggers the next step at once; each set is also reconciled again every
//! few seconds. What is and is not emulated is listed in the crate README
//! (`## StatefulSet controller`).

mod identity;
mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::controller_task::ControllerTask;

pub use identity::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};

/// How often each set is reconciled even when nothing it watches changes.
const RESYNC: Duration = Duration::from_secs(5);
/// How soon a failed reconciliation is retried.
const RETRY: Duration = Duration::from_secs(1);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum StatefulSetError {
    /// A call to the API server failed.
    #[error("kubesim:statefulset:api: {0}")]
    Api(#[from] kube::Error),
}

/// Runs the controller until the watch streams end (they normally do not).
///
/// Reconciliation errors are logged and retried, never returned: a
/// controller keeps going while the API server is briefly unreachable.
///
/// # Errors
///
/// None today; the `Result` leaves room for start-up checks.
pub async fn run(client: Client) -> Result<(), StatefulSetError> {
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    info!("statefulset controller starting");
    Controller::new(sets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .owns(claims, watcher::Config::default())
        .run(reconcile_one, on_error, Arc::new(client))
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "statefulset controller stream error");
            }
        })
        .await;
    Ok(())
}

async fn reconcile_one(
    set: Arc<StatefulSet>,
    client: Arc<Client>,
) -> Result<Action, StatefulSetError> {
    reconcile::reconcile(&client, &set).await?;
    Ok(Action::requeue(RESYNC))
}

fn on_error(set: Arc<StatefulSet>, error: &StatefulSetError, _client: Arc<Client>) -> Action {
    warn!(
        namespace = set.metadata.namespace.as_deref().unwrap_or_default(),
        set = set.metadata.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(RETRY)
}

/// The controller running on the current Tokio runtime; dropping the handle
/// stops it (tests start one per API server and forget about it).
#[derive(Debug)]
pub struct StatefulSetController {
    /// Held for its Drop, which stops the loop.
    _task: ControllerTask,
}

impl StatefulSetController {
    /// Spawns [`run`] on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn(client: Client) -> Self {
        Self {
            _task: ControllerTask::spawn("statefulset", run(client)),
        }
    }
}
