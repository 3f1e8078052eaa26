//! One writer of the node's Raft logs: every group's log appends, votes,
//! truncations and purges go through one dedicated thread, which writes
//! whatever has queued (one RocksDB write each, without a sync), then syncs
//! the WAL **once** for all of them and only then reports them durable.
//!
//! Why: with one Raft group per shard, a node runs dozens of logs, each with
//! about one write in flight. Handed to RocksDB one by one from blocking
//! threads, their syncs only partly meet in RocksDB's write groups, and every
//! write costs a thread hand-off and a futex wake-up per waiter. Here a round
//! costs one thread and one `fdatasync`, however many groups it carries, and
//! an append returns as soon as its entries are written (readable), leaving
//! openraft's `IOFlushed` callback to fire after the sync — what openraft's
//! `RaftLogStorage::append` contract allows. No tokio worker ever waits on an
//! fsync.
//!
//! A full disk is waited out here (100 ms doubling to 1 s), as
//! `raft::write_retrying_while_full` explains: openraft stops a group for good on any
//! storage error, while a late write is only late.

use std::sync::{Arc, Mutex, PoisonError, mpsc};

use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::storage::{Engine, StorageError, SyncMode};

/// What to tell once the WAL sync of a round is done (or failed).
pub(crate) type OnDurable = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// One queued write.
struct LogWrite {
    batch: WriteBatch,
    /// Told when the batch is written (readable), before the sync.
    written: Option<oneshot::Sender<Result<(), StorageError>>>,
    /// Told when the batch is durable.
    durable: Option<OnDurable>,
}

/// Most writes taken into one round (one sync).
const MAX_ROUND: usize = 4096;

/// The handle of the node's Raft log writer thread. Cloning shares the
/// thread; it ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<LogWrite>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl LogWriter {
    /// Starts the writer thread of `engine`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        Self::start_counted(engine, None)
    }

    /// Starts the writer thread of `engine`, counting its syncs and the
    /// writes each one covers in `counters`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start_counted(engine: Engine, counters: Option<SyncCounters>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cairn-raft-log".into())
            .spawn(move || run(&engine, &rx, counters.as_ref()))?;
        Ok(Self {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Drops this handle; if it is the last one, waits for the thread to
    /// finish its queue and release the engine. Without the wait a process
    /// that exits right after could tear RocksDB down under the thread.
    pub fn close(self) {
        let Self { tx, thread } = self;
        drop(tx);
        if let Ok(m) = Arc::try_unwrap(thread)
            && let Some(handle) = m.into_inner().unwrap_or_else(PoisonError::into_inner)
        {
            let _ = handle.join();
        }
    }

    /// Queues `batch`; the returned receiver says when it is written
    /// (readable), and `durable` is called from the writer thread once it
    /// is on stable storage per the node's sync mode.
    pub(crate) fn submit(
        &self,
        batch: WriteBatch,
        durable: Option<OnDurable>,
    ) -> oneshot::Receiver<Result<(), StorageError>> {
        let (written, rx) = oneshot::channel();
        let write = LogWrite {
            batch,
            written: Some(written),
            durable,
        };
        if let Err(mpsc::SendError(mut w)) = self.tx.send(write) {
            // Only after the thread died; the caller sees it as a failure.
            if let Some(tell) = w.durable.take() {
                tell(Err(stopped()));
            }
        }
        rx
    }

    /// Writes `batch` and waits until it is durable (per the sync mode).
    ///
    /// # Errors
    /// The write or the sync failed, or the writer stopped.
    pub(crate) async fn write_durable(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        let written = self.submit(
            batch,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        written.await.map_err(|_| stopped())??;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StorageError {
    failure("the raft log writer stopped".into())
}

fn failure(detail: String) -> StorageError {
    StorageError::Io {
        context: "raft log write".into(),
        source: std::io::Error::other(detail),
    }
}

/// Where the writer counts its WAL syncs (the node's metrics).
#[derive(Clone, Debug)]
pub struct SyncCounters {
    /// Incremented per sync.
    pub syncs: prometheus::IntCounter,
    /// Observes the number of writes each sync made durable.
    pub writes_per_sync: prometheus::Histogram,
}

fn run(engine: &Engine, rx: &mpsc::Receiver<LogWrite>, counters: Option<&SyncCounters>) {
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(w) => round.push(w),
                Err(_) => break,
            }
        }
        let mut waiting = Vec::with_capacity(round.len());
        for mut w in round {
            let result = super::write_retrying_while_full(engine, w.batch, Engine::write_unsynced);
            let failed = result.as_ref().err().map(|e| e.to_string());
            if let Some(tell) = w.written.take() {
                let _ = tell.send(result);
            }
            if let Some(tell) = w.durable.take() {
                waiting.push((tell, failed));
            }
        }
        if waiting.is_empty() {
            continue;
        }
        let synced = if engine.sync_mode() == SyncMode::Fsync {
            if let Some(c) = counters {
                c.syncs.inc();
                c.writes_per_sync.observe(waiting.len() as f64);
            }
            engine.sync_wal().map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        for (tell, failed) in waiting {
            let outcome = match (&failed, &synced) {
                (Some(e), _) | (None, Err(e)) => Err(failure(e.clone())),
                (None, Ok(())) => Ok(()),
            };
            tell(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{CF_RAFT, EngineOptions};

    #[tokio::test]
    async fn a_write_is_readable_when_written_and_told_durable_after_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&EngineOptions {
            data_dir: dir.path().to_path_buf(),
            block_cache_bytes: 8 << 20,
            row_cache_bytes: 0,
            sync: SyncMode::Fsync,
        })
        .unwrap();
        let counters = SyncCounters {
            syncs: prometheus::IntCounter::new("syncs", "syncs").unwrap(),
            writes_per_sync: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
                "writes", "writes",
            ))
            .unwrap(),
        };
        let writer = LogWriter::start_counted(engine.clone(), Some(counters.clone())).unwrap();
        let mut receivers = Vec::new();
        let (durable_tx, mut durable_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0u32..200 {
            let mut batch = WriteBatch::default();
            batch.put_cf(engine.cf(CF_RAFT).unwrap(), i.to_be_bytes(), b"entry");
            let tx = durable_tx.clone();
            receivers.push(writer.submit(
                batch,
                Some(Box::new(move |r| {
                    let _ = tx.send((i, r.is_ok()));
                })),
            ));
        }
        for (i, rx) in receivers.into_iter().enumerate() {
            rx.await.unwrap().unwrap();
            let key = u32::try_from(i).unwrap().to_be_bytes();
            assert!(
                engine
                    .db()
                    .get_cf(engine.cf(CF_RAFT).unwrap(), key)
                    .unwrap()
                    .is_some(),
                "write {i} is readable once reported written"
            );
        }
        let mut told = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (i, ok) = durable_rx.recv().await.unwrap();
            assert!(ok, "write {i} failed");
            told.insert(i);
        }
        assert_eq!(told.len(), 200, "every write is told durable exactly once");
        let mut batch = WriteBatch::default();
        batch.put_cf(engine.cf(CF_RAFT).unwrap(), b"vote", b"v");
        writer.write_durable(batch).await.unwrap();
        // Every write was covered by a counted sync, and each sync counted
        // the writes it made durable.
        let syncs = counters.syncs.get();
        assert!(syncs >= 1);
        assert_eq!(counters.writes_per_sync.get_sample_count(), syncs);
        assert_eq!(counters.writes_per_sync.get_sample_sum(), 201.0);
        writer.close();
    }
}
