//! A shard's state machine under Raft.
//!
//! Entries are applied with the same deterministic [`ApplyGroup`] as the
//! single-node path: all entries handed over in one call become one RocksDB
//! `WriteBatch` that also records the last applied log id and membership, so
//! data and "applied up to" can never disagree after a crash.
//!
//! Snapshots are SST files on disk (see [`super::snapshot`]): built from
//! one RocksDB snapshot of the shard's `data` and `ttl` ranges and its
//! exactly-once records, with the shard state and applied log id in their
//! `meta` file; installed by ingesting them behind a crash-safe marker. The
//! newest snapshot of the shard is kept (openraft sends it to lagging
//! replicas) and older ones are removed.
//!
//! Before openraft first reads the applied state, the state machine
//! finishes what a crash interrupted: it redoes a marked install, removes
//! half-built and half-received snapshots, and takes the newest complete
//! snapshot as its current one.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::TryStreamExt as _;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::WriteBatch;

use super::io_err;
use super::log_store::{decode, encode, raft_meta_key};
use super::snapshot::{self, SnapshotDirs, SnapshotFiles};
use super::types::{EncodedOutput, ShardRaft, ShardResponse};
use crate::apply::ShardProgress;
use crate::apply::{ApplyGroup, ShardState};
use crate::partition::ShardId;
use crate::storage::keys::shard_state_key;
use crate::storage::{CF_META, Engine};

/// Last applied log id and membership, stored with every applied batch.
type AppliedState = (Option<LogIdOf<ShardRaft>>, StoredMembershipOf<ShardRaft>);

/// A complete snapshot of the shard: its meta and its files.
type Current = (SnapshotMetaOf<ShardRaft>, SnapshotFiles);

/// Snapshot bookkeeping shared by the clones of one state machine.
#[derive(Debug, Default)]
struct Snapshots {
    /// The newest complete snapshot (what openraft sends).
    current: Mutex<Option<Current>>,
    /// Held while snapshot directories or the shard's ranges change (an
    /// install, a built snapshot becoming current, startup recovery); the
    /// flag says whether startup recovery has run.
    files: Mutex<bool>,
    /// Fast path of the flag in `files`.
    recovered: AtomicBool,
}

/// The state machine of one shard.
#[derive(Debug, Clone)]
pub struct ShardStateMachine {
    engine: Engine,
    shard: ShardId,
    dirs: SnapshotDirs,
    snapshots: Arc<Snapshots>,
    progress: Option<Arc<ShardProgress>>,
    installs: Option<prometheus::IntCounter>,
}

impl ShardStateMachine {
    /// The state machine of `shard` in `engine`. Its snapshots live under
    /// `<data dir>/snapshots/<shard>/`.
    pub fn new(engine: Engine, shard: ShardId) -> Self {
        let dirs = SnapshotDirs::new(engine.data_dir(), shard);
        Self {
            engine,
            shard,
            dirs,
            snapshots: Arc::default(),
            progress: None,
            installs: None,
        }
    }

    /// Counts installed snapshots in `counter`.
    pub fn with_install_counter(mut self, counter: prometheus::IntCounter) -> Self {
        self.installs = Some(counter);
        self
    }

    /// Also publishes every applied revision to `progress` (what
    /// `min_revision` reads wait on).
    pub fn with_progress(mut self, progress: Arc<ShardProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// A fresh directory to receive a snapshot of this shard into (not yet
    /// created), on the same file system as the shard's snapshots so an
    /// install can move it into place. Meant for a state machine in use
    /// (its startup recovery, which removes partial transfers, has run).
    pub fn staging_dir(&self) -> std::path::PathBuf {
        self.dirs.new_staging()
    }

    /// Makes a newly applied shard state visible: the TTL compaction filter's
    /// clock and the published revision.
    fn publish(&self, state: &ShardState) {
        self.engine.clocks().advance(self.shard, state.clock_ms);
        if let Some(p) = &self.progress {
            p.publish(self.shard, state.revision);
        }
    }

    fn publish_encoded(&self, state: Option<&Vec<u8>>) -> io::Result<()> {
        if let Some(s) = state {
            self.publish(&ShardState::decode(s).map_err(io_err)?);
        }
        Ok(())
    }

    fn read_applied(&self) -> io::Result<AppliedState> {
        match self
            .engine
            .get_meta(&raft_meta_key("applied", self.shard))
            .map_err(io_err)?
        {
            Some(b) => decode(&b),
            None => Ok((None, StoredMembershipOf::<ShardRaft>::default())),
        }
    }

    fn shard_state(&self) -> io::Result<ShardState> {
        match self
            .engine
            .get_meta(&shard_state_key(self.shard))
            .map_err(io_err)?
        {
            Some(b) => ShardState::decode(&b).map_err(io_err),
            None => Ok(ShardState::default()),
        }
    }

    /// Applied entries need no fsync of their own: the log they come from is
    /// durable, and after a crash openraft re-applies it from the last
    /// applied id stored in the same batch (halving fsyncs per write).
    /// A full disk is waited out (see [`super::write_retrying_while_full`]).
    async fn write_applied(&self, batch: WriteBatch) -> io::Result<()> {
        super::write_waiting_for_space(&self.engine, batch, Engine::write_unsynced).await
    }

    fn current(&self) -> io::Result<Option<Current>> {
        Ok(self.snapshots.current.lock().map_err(io_err)?.clone())
    }

    /// Makes `files` the current snapshot and removes every older one.
    /// Called with the `files` lock held.
    fn set_current(&self, meta: SnapshotMetaOf<ShardRaft>, files: SnapshotFiles) -> io::Result<()> {
        snapshot::prune(&self.dirs, files.dir());
        *self.snapshots.current.lock().map_err(io_err)? = Some((meta, files));
        Ok(())
    }

    /// Runs [`Self::recover`] once, before anything else touches snapshots.
    async fn ensure_recovered(&self) -> io::Result<()> {
        if self.snapshots.recovered.load(Ordering::Acquire) {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut done = this.snapshots.files.lock().map_err(io_err)?;
            if !*done {
                this.recover()?;
                *done = true;
                this.snapshots.recovered.store(true, Ordering::Release);
            }
            Ok(())
        })
        .await
        .map_err(io_err)?
    }

    /// Startup recovery (blocking, `files` lock held): removes half-built and
    /// half-received snapshots, redoes an install a crash interrupted, and
    /// takes the newest complete snapshot not ahead of the applied state as
    /// the current one (removing the others).
    fn recover(&self) -> io::Result<()> {
        snapshot::remove_partial(&self.dirs)?;
        if let Some(name) = snapshot::marker(&self.engine, self.shard)? {
            let dir = self.dirs.shard_dir().join(&name);
            let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "..";
            let loaded = if plain {
                SnapshotFiles::load(&dir)
            } else {
                Err(io_err(format!(
                    "marker names {name:?}, not a snapshot directory"
                )))
            };
            let (meta, files) = loaded.map_err(|e| {
                io_err(format!(
                    "shard {}: a snapshot install was interrupted and cannot be redone from {}: {e}",
                    self.shard,
                    dir.display()
                ))
            })?;
            tracing::warn!(
                shard = self.shard,
                dir = %dir.display(),
                last_log_id = ?meta.last_log_id,
                "redoing a snapshot install interrupted by a crash"
            );
            snapshot::install(&self.engine, self.shard, &meta, &files)?;
            self.publish_encoded(files.manifest().shard_state.as_ref())?;
        }
        let (applied, _) = self.read_applied()?;
        let newest = snapshot::load_newest(&self.dirs, applied)?;
        *self.snapshots.current.lock().map_err(io_err)? = newest;
        Ok(())
    }
}

impl RaftSnapshotBuilder<ShardRaft> for ShardStateMachine {
    type SnapshotData = SnapshotFiles;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<ShardRaft, SnapshotFiles>, io::Error> {
        self.ensure_recovered().await?;
        let this = self.clone();
        let (meta, files) = tokio::task::spawn_blocking(move || -> io::Result<Current> {
            let started = Instant::now();
            let (meta, built) = snapshot::build(&this.engine, &this.dirs)?;
            let _files = this.snapshots.files.lock().map_err(io_err)?;
            // An install may have overtaken this build; keep the newer one.
            if let Some(current) = this.current()?
                && current.0.last_log_id > meta.last_log_id
            {
                let _ = std::fs::remove_dir_all(built.dir());
                return Ok(current);
            }
            let files = snapshot::publish_built(&this.dirs, &meta, built)?;
            this.set_current(meta.clone(), files.clone())?;
            tracing::info!(
                shard = this.shard,
                last_log_id = ?meta.last_log_id,
                bytes = files.total_bytes(),
                millis = started.elapsed().as_millis() as u64,
                "built a snapshot"
            );
            Ok((meta, files))
        })
        .await
        .map_err(io_err)??;
        Ok(SnapshotOf::<ShardRaft, SnapshotFiles> {
            meta,
            snapshot: files,
        })
    }
}

impl RaftStateMachine<ShardRaft> for ShardStateMachine {
    type SnapshotData = SnapshotFiles;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, io::Error> {
        self.ensure_recovered().await?;
        self.read_applied()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<ShardRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        self.ensure_recovered().await?;
        let (mut last_applied, mut membership) = self.read_applied()?;
        let base = self.shard_state()?;
        let mut responses = Vec::new();
        let (batch, states) = {
            let mut group = ApplyGroup::new(&self.engine);
            while let Some((entry, responder)) = entries.try_next().await? {
                last_applied = Some(entry.log_id);
                let response = match &entry.payload {
                    EntryPayload::Blank => ShardResponse::default(),
                    EntryPayload::Membership(m) => {
                        membership =
                            StoredMembershipOf::<ShardRaft>::new(Some(entry.log_id), m.clone());
                        ShardResponse::default()
                    }
                    EntryPayload::Normal(req) => {
                        // An undecodable command is a corrupt log: stop rather
                        // than let replicas diverge.
                        let cmd = req.to_command(self.shard).map_err(io_err)?;
                        match group.apply(base, &cmd).map_err(io_err)? {
                            Ok(applied) => ShardResponse {
                                revision: applied.revision,
                                outcome: Some(Ok(EncodedOutput::from_output(&applied.output))),
                            },
                            Err(refused) => ShardResponse {
                                revision: 0,
                                outcome: Some(Err(refused)),
                            },
                        }
                    }
                };
                if let Some(r) = responder {
                    responses.push((r, response));
                }
            }
            group.finish().map_err(io_err)?
        };
        let mut batch = batch;
        let meta_cf = self.engine.cf(CF_META).map_err(io_err)?;
        batch.put_cf(
            meta_cf,
            raft_meta_key("applied", self.shard),
            encode(&(last_applied, membership))?,
        );
        self.write_applied(batch).await?;
        if let Some(st) = states.get(&self.shard) {
            self.publish(st);
        }
        for (r, resp) in responses {
            r.send(resp);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<ShardRaft>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        self.ensure_recovered().await?;
        let this = self.clone();
        let owned = meta.clone();
        let (state, bytes, millis) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let started = Instant::now();
            let _files = this.snapshots.files.lock().map_err(io_err)?;
            let files = snapshot::adopt(&this.dirs, &owned, snapshot)?;
            snapshot::install(&this.engine, this.shard, &owned, &files)?;
            let state = files.manifest().shard_state.clone();
            let bytes = files.total_bytes();
            this.set_current(owned, files)?;
            Ok((state, bytes, started.elapsed().as_millis() as u64))
        })
        .await
        .map_err(io_err)??;
        self.publish_encoded(state.as_ref())?;
        if let Some(c) = &self.installs {
            c.inc();
        }
        tracing::info!(shard = self.shard, last_log_id = ?meta.last_log_id, bytes, millis, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<ShardRaft, SnapshotFiles>>, io::Error> {
        self.ensure_recovered().await?;
        Ok(self
            .current()?
            .map(|(meta, files)| SnapshotOf::<ShardRaft, SnapshotFiles> {
                meta,
                snapshot: files,
            }))
    }
}

#[cfg(test)]
mod tests;
