//! A controller loop (StatefulSet, Deployment) running in the background on
//! the current Tokio runtime, stopped when its handle is dropped — tests
//! start one per API server and forget about it.

use std::fmt::Display;
use std::future::Future;

use tokio::task::JoinHandle;
use tracing::warn;

/// The running loop; dropping it aborts the task.
#[derive(Debug)]
pub struct ControllerTask {
    task: JoinHandle<()>,
}

impl ControllerTask {
    /// Spawns `run`, logging its error (naming the controller `name`) if it ever ends with one.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub(crate) fn spawn<E: Display>(
        name: &'static str,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Self {
        let task = tokio::spawn(async move {
            if let Err(e) = run.await {
                warn!(controller = name, error = %e, "controller stopped");
            }
        });
        Self { task }
    }
}

impl Drop for ControllerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}
