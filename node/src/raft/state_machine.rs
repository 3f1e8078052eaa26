//! A shard's state machine under Raft.
//!
//! Entries are applied with the same deterministic [`ApplyGroup`] as the
//! single-node path: all entries handed over in one call become one RocksDB
//! `WriteBatch` that also records the last applied log id and membership, so
//! data and "applied up to" can never disagree after a crash.
//!
//! Snapshots hold the shard's `data` and `ttl` ranges and its state, read
//! from one RocksDB snapshot. They are built in memory for now; the design's
//! streamed SST snapshot (`SstFileWriter` + ingest) is the next step, needed
//! before shards grow large.

use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt as _;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use super::io_err;
use super::log_store::{decode, encode, raft_meta_key};
use super::types::{EncodedOutput, ShardRaft, ShardResponse};
use crate::commit::ShardProgress;
use crate::partition::ShardId;
use crate::state_machine::{ApplyGroup, ShardState};
use crate::storage::keys::{shard_end, shard_start, shard_state_key};
use crate::storage::{CF_DATA, CF_META, CF_TTL, Engine};

/// Last applied log id and membership, stored with every applied batch.
type AppliedState = (Option<LogIdOf<ShardRaft>>, StoredMembershipOf<ShardRaft>);

/// What a snapshot carries (encoded with a format byte, see `log_store`).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    data: Vec<(Vec<u8>, Vec<u8>)>,
    ttl: Vec<Vec<u8>>,
    shard_state: Option<Vec<u8>>,
}

type Current = Arc<Mutex<Option<(SnapshotMetaOf<ShardRaft>, Vec<u8>)>>>;

/// The state machine of one shard.
#[derive(Debug, Clone)]
pub struct ShardStateMachine {
    engine: Engine,
    shard: ShardId,
    current: Current,
    progress: Option<Arc<ShardProgress>>,
    installs: Option<prometheus::IntCounter>,
}

impl ShardStateMachine {
    /// The state machine of `shard` in `engine`.
    pub fn new(engine: Engine, shard: ShardId) -> Self {
        Self {
            engine,
            shard,
            current: Arc::default(),
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

    /// Makes a newly applied shard state visible: the TTL compaction filter's
    /// clock and the published revision.
    fn publish(&self, state: &ShardState) {
        self.engine.clocks().advance(self.shard, state.clock_ms);
        if let Some(p) = &self.progress {
            p.publish(self.shard, state.revision);
        }
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

    async fn write(&self, batch: WriteBatch) -> io::Result<()> {
        super::write_batch(&self.engine, batch).await
    }

    /// Applied entries need no fsync of their own: the log they come from is
    /// durable, and after a crash openraft re-applies it from the last
    /// applied id stored in the same batch (halving fsyncs per write).
    async fn write_applied(&self, batch: WriteBatch) -> io::Result<()> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.write_unsynced(batch))
            .await
            .map_err(io_err)?
            .map_err(io_err)
    }

    fn remember(&self, meta: SnapshotMetaOf<ShardRaft>, bytes: Vec<u8>) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some((meta, bytes));
        }
    }
}

impl RaftSnapshotBuilder<ShardRaft> for ShardStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<ShardRaft, Cursor<Vec<u8>>>, io::Error> {
        let this = self.clone();
        let (meta, bytes) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let db = this.engine.db();
            let snap = db.snapshot();
            let meta_cf = this.engine.cf(CF_META).map_err(io_err)?;
            let (last_log_id, last_membership): AppliedState = match snap
                .get_cf(meta_cf, raft_meta_key("applied", this.shard))
                .map_err(io_err)?
            {
                Some(b) => decode(&b)?,
                None => (None, StoredMembershipOf::<ShardRaft>::default()),
            };
            let range = |cf: &str| -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
                let handle = this.engine.cf(cf).map_err(io_err)?;
                let mut ro = ReadOptions::default();
                ro.set_snapshot(&snap);
                ro.set_iterate_lower_bound(shard_start(this.shard));
                if let Some(end) = shard_end(this.shard) {
                    ro.set_iterate_upper_bound(end);
                }
                let mut it = db.raw_iterator_cf_opt(handle, ro);
                it.seek_to_first();
                let mut out = Vec::new();
                while let (true, Some(k), Some(v)) = (it.valid(), it.key(), it.value()) {
                    out.push((k.to_vec(), v.to_vec()));
                    it.next();
                }
                it.status().map_err(io_err)?;
                Ok(out)
            };
            let payload = SnapshotPayload {
                data: range(CF_DATA)?,
                ttl: range(CF_TTL)?.into_iter().map(|(k, _)| k).collect(),
                shard_state: snap
                    .get_cf(meta_cf, shard_state_key(this.shard))
                    .map_err(io_err)?,
            };
            let meta = SnapshotMetaOf::<ShardRaft> {
                last_log_id,
                last_membership,
            };
            Ok((meta, encode(&payload)?))
        })
        .await
        .map_err(io_err)??;
        self.remember(meta.clone(), bytes.clone());
        Ok(SnapshotOf::<ShardRaft, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(bytes),
        })
    }
}

impl RaftStateMachine<ShardRaft> for ShardStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, io::Error> {
        self.read_applied()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<ShardRaft>, io::Error>>
            + Unpin
            + OptionalSend,
    {
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
        let bytes = snapshot.into_inner();
        let payload: SnapshotPayload = decode(&bytes)?;
        let data = self.engine.cf(CF_DATA).map_err(io_err)?;
        let ttl = self.engine.cf(CF_TTL).map_err(io_err)?;
        let meta_cf = self.engine.cf(CF_META).map_err(io_err)?;
        let start = shard_start(self.shard);
        let end = shard_end(self.shard).unwrap_or_else(|| vec![0xff; 5]);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(data, &start, &end);
        batch.delete_range_cf(ttl, &start, &end);
        for (k, v) in &payload.data {
            batch.put_cf(data, k, v);
        }
        for k in &payload.ttl {
            batch.put_cf(ttl, k, []);
        }
        match &payload.shard_state {
            Some(s) => batch.put_cf(meta_cf, shard_state_key(self.shard), s),
            None => batch.delete_cf(meta_cf, shard_state_key(self.shard)),
        }
        batch.put_cf(
            meta_cf,
            raft_meta_key("applied", self.shard),
            encode(&(meta.last_log_id, meta.last_membership.clone()))?,
        );
        self.write(batch).await?;
        if let Some(s) = &payload.shard_state {
            self.publish(&ShardState::decode(s).map_err(io_err)?);
        }
        self.remember(meta.clone(), bytes);
        if let Some(c) = &self.installs {
            c.inc();
        }
        tracing::info!(shard = self.shard, last_log_id = ?meta.last_log_id, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<ShardRaft, Cursor<Vec<u8>>>>, io::Error> {
        let current = self.current.lock().map_err(io_err)?.clone();
        Ok(
            current.map(|(meta, bytes)| SnapshotOf::<ShardRaft, Cursor<Vec<u8>>> {
                meta,
                snapshot: Cursor::new(bytes),
            }),
        )
    }
}
