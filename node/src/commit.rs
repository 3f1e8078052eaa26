//! Group commit: the single writer that makes commands durable.
//!
//! Every write command of every shard goes through one queue. A dedicated
//! thread takes whatever is queued (up to a bound), applies it all into one
//! RocksDB `WriteBatch`, writes and fsyncs it once, then answers every caller.
//! While one group is being synced the next one queues up, so under load one
//! fsync carries many writes and throughput is not bounded by fsync latency.
//! A caller is answered only after its group is durable.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::apply::{Applied, ApplyError, ApplyGroup, Command, ShardProgress, ShardState};
use crate::metrics::Metrics;
use crate::storage::{Engine, StorageError};

/// Most commands one group commit takes.
const MAX_GROUP_COMMANDS: usize = 1024;
/// Queue depth before callers wait (backpressure).
const QUEUE_DEPTH: usize = 8192;

/// Why a command did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The state machine refused the command; nothing was applied.
    #[error(transparent)]
    Refused(#[from] ApplyError),
    /// Reading or writing storage failed; the command was not applied.
    #[error("storage failure: {0}")]
    Storage(Arc<StorageError>),
    /// The pipeline is shut down.
    #[error("the node is shutting down")]
    Closed,
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Applied, CommitError>>,
}

/// Handle to the writer thread.
pub struct CommitPipeline {
    tx: std::sync::Mutex<Option<mpsc::Sender<Proposal>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    progress: Arc<ShardProgress>,
}

impl CommitPipeline {
    /// Starts the writer over `engine`, whose shards are at `states`.
    ///
    /// # Errors
    /// The OS refused to start the thread.
    pub fn start(
        engine: Engine,
        states: Vec<ShardState>,
        progress: Arc<ShardProgress>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            engine,
            states,
            metrics,
            progress: progress.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("cairn-commit".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
            progress,
        })
    }

    /// Published shard revisions.
    pub fn progress(&self) -> &Arc<ShardProgress> {
        &self.progress
    }

    /// Queues `cmd` and waits until it is durable (or refused).
    ///
    /// # Errors
    /// [`CommitError`] as described there.
    pub async fn submit(&self, cmd: Command) -> Result<Applied, CommitError> {
        let tx = {
            let guard = self.tx.lock().map_err(|_| CommitError::Closed)?;
            guard.clone().ok_or(CommitError::Closed)?
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Proposal { cmd, reply })
            .await
            .map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Stops taking commands, commits everything already queued, and joins the writer.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("commit thread panicked");
        }
    }
}

impl Drop for CommitPipeline {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    engine: Engine,
    states: Vec<ShardState>,
    metrics: Metrics,
    progress: Arc<ShardProgress>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Proposal>) {
        let mut group = Vec::with_capacity(MAX_GROUP_COMMANDS);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP_COMMANDS {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
    }

    fn commit(&mut self, group: &mut Vec<Proposal>) {
        self.metrics
            .commit_group_commands
            .observe(group.len() as f64);
        let mut apply = ApplyGroup::new(&self.engine);
        let mut outcomes: Vec<Result<Applied, CommitError>> = Vec::with_capacity(group.len());
        for p in group.iter() {
            let base = self
                .states
                .get(p.cmd.shard as usize)
                .copied()
                .unwrap_or_default();
            outcomes.push(match apply.apply(base, &p.cmd) {
                Ok(Ok(applied)) => Ok(applied),
                Ok(Err(refused)) => Err(CommitError::Refused(refused)),
                Err(e) => Err(CommitError::Storage(Arc::new(e))),
            });
        }
        let started = Instant::now();
        let written = apply
            .finish()
            .and_then(|(batch, states)| self.engine.write(batch).map(|()| states));
        self.metrics
            .commit_write_duration
            .observe(started.elapsed().as_secs_f64());
        match written {
            Ok(states) => {
                for (shard, st) in states {
                    if let Some(slot) = self.states.get_mut(shard as usize) {
                        *slot = st;
                    }
                    self.engine.clocks().advance(shard, st.clock_ms);
                    self.progress.publish(shard, st.revision);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; its writes were not applied");
                let e = Arc::new(e);
                for o in &mut outcomes {
                    if o.is_ok() {
                        *o = Err(CommitError::Storage(e.clone()));
                    }
                }
            }
        }
        for (p, o) in group.drain(..).zip(outcomes) {
            let _ = p.reply.send(o);
        }
    }
}
