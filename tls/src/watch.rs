//! Reloading TLS material when its files change.
//!
//! The files are re-read every `interval` and on SIGHUP. Comparing bytes
//! (not modification times or inotify events) is what survives a Kubernetes
//! Secret volume update: the kubelet swaps a `..data` symlink, so the file
//! paths stay the same, their mtimes may not move and an inotify watch on
//! the old inode goes silent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::TlsContext;
use crate::bundle::Bundle;
use crate::error::TlsError;

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are what is already in use.
    Unchanged,
    /// New, valid material is in use for new handshakes.
    Reloaded,
}

impl TlsContext {
    /// Re-reads the files; swaps in their material if it changed and is
    /// valid. Invalid new material leaves the current one in place and
    /// counts a failed reload.
    ///
    /// # Errors
    /// Why the new files were refused (the old material stays in use).
    pub fn reload(&self) -> Result<ReloadOutcome, TlsError> {
        let result = self.try_reload();
        match &result {
            Ok(ReloadOutcome::Reloaded) => {
                self.metrics().reloaded(true);
                let b = self.bundle();
                tracing::info!(serial = ?b.serial, not_after = ?b.not_after, cas = b.ca_count, "reloaded TLS material");
            }
            Ok(ReloadOutcome::Unchanged) => {}
            Err(e) => {
                self.metrics().reloaded(false);
                tracing::error!(error = %e, "new TLS material refused; still serving the previous certificate");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<ReloadOutcome, TlsError> {
        let sources = self.paths().read_all()?;
        if sources == self.configs().bundle.sources {
            return Ok(ReloadOutcome::Unchanged);
        }
        let bundle = Bundle::load(self.paths(), SystemTime::now())?;
        self.swap(bundle)?;
        Ok(ReloadOutcome::Reloaded)
    }

    /// Reloads every `interval` and on SIGHUP until `stop` resolves.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let ctx = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler; TLS reloads by polling only");
                    None
                }
            };
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    _ = tick.tick() => {}
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => tracing::info!("SIGHUP: reloading TLS material"),
                }
                // Reading files blocks; a slow volume must not stall a worker.
                let c = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || c.reload()).await;
            }
        })
    }
}
