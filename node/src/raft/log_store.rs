//! A shard's Raft log on the node's RocksDB.
//!
//! Layout: entries in the `raft` column family at `shard:u32 BE ‖ index:u64 BE`,
//! value `0x01 ‖ postcard(entry)`; the vote, the committed log id and the last
//! purged log id in `meta` at `raft/vote/`, `raft/committed/`, `raft/purged/`
//! `‖ shard`. Every write goes through the node's one [`LogWriter`], which
//! shares one WAL sync among all groups' writes of a round: appends return
//! once readable and tell Raft they are flushed after the sync (per the
//! node's sync mode, fsync by default); votes, truncations and purges wait
//! for the sync; the committed log id does not (see `save_committed`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry as _;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::{ReadOptions, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::io_err;
use super::log_writer::LogWriter;
use super::types::ShardRaft;
use crate::partition::ShardId;
use crate::storage::keys::{shard_end, shard_start};
use crate::storage::{CF_META, CF_RAFT, Engine};

const ENTRY_FORMAT_V1: u8 = 1;

fn log_key(shard: ShardId, index: u64) -> Vec<u8> {
    let mut k = shard.to_be_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn index_of(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(4..12)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// `meta` key of one of the shard's Raft records.
pub(crate) fn raft_meta_key(what: &str, shard: ShardId) -> Vec<u8> {
    let mut k = format!("raft/{what}/").into_bytes();
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

/// Encodes a Raft record (a log entry, the vote, a log id, a snapshot's
/// meta) in its on-disk form: `0x01 ‖ postcard(v)`.
///
/// # Errors
/// Serialisation failure (not expected for the Raft types).
pub fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![ENTRY_FORMAT_V1];
    out.extend(postcard::to_stdvec(v).map_err(io_err)?);
    Ok(out)
}

/// Decodes [`encode`]'s output; the reader of every Raft record on disk and
/// of snapshot headers from peers.
///
/// # Errors
/// [`io::ErrorKind::InvalidData`] for an empty record or an unknown format;
/// the postcard error for bytes that are not a `T`.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    match b.split_first() {
        Some((&ENTRY_FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(io_err),
        Some((v, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("raft record format {v} is not supported (this build reads {ENTRY_FORMAT_V1})"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "empty raft record",
        )),
    }
}

/// The Raft log of one shard. Cloning shares the database and the writer.
#[derive(Clone, Debug)]
pub struct ShardLogStore {
    engine: Engine,
    writer: LogWriter,
    shard: ShardId,
}

impl ShardLogStore {
    /// The log of `shard` in `engine`, written through `writer` (the
    /// node's one log writer, shared by all its groups).
    pub fn new(engine: Engine, writer: LogWriter, shard: ShardId) -> Self {
        Self {
            engine,
            writer,
            shard,
        }
    }

    fn get_meta<T: DeserializeOwned>(&self, what: &str) -> io::Result<Option<T>> {
        self.engine
            .get_meta(&raft_meta_key(what, self.shard))
            .map_err(io_err)?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Writes `batch` through the log writer and waits until it is durable.
    async fn write(&self, batch: WriteBatch) -> io::Result<()> {
        self.writer.write_durable(batch).await.map_err(io_err)
    }

    fn put_meta_into<T: Serialize>(
        &self,
        batch: &mut WriteBatch,
        what: &str,
        v: &T,
    ) -> io::Result<()> {
        let cf = self.engine.cf(CF_META).map_err(io_err)?;
        batch.put_cf(cf, raft_meta_key(what, self.shard), encode(v)?);
        Ok(())
    }

    fn shard_iter(
        &self,
    ) -> io::Result<rocksdb::DBRawIteratorWithThreadMode<'_, crate::storage::Db>> {
        let cf = self.engine.cf(CF_RAFT).map_err(io_err)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(shard_start(self.shard));
        if let Some(end) = shard_end(self.shard) {
            ro.set_iterate_upper_bound(end);
        }
        Ok(self.engine.db().raw_iterator_cf_opt(cf, ro))
    }
}

impl RaftLogReader<ShardRaft> for ShardLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<ShardRaft>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut it = self.shard_iter()?;
        it.seek(log_key(self.shard, start));
        let mut out = Vec::new();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let Some(index) = index_of(k) else { break };
            if !range.contains(&index) {
                break;
            }
            out.push(decode(v)?);
            it.next();
        }
        it.status().map_err(io_err)?;
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<ShardRaft>>, io::Error> {
        self.get_meta("vote")
    }
}

impl RaftLogStorage<ShardRaft> for ShardLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<ShardRaft>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<ShardRaft>> = self.get_meta("purged")?;
        let mut it = self.shard_iter()?;
        it.seek_to_last();
        let last = match it.value() {
            Some(v) if it.valid() => Some(decode::<EntryOf<ShardRaft>>(v)?.log_id()),
            _ => {
                it.status().map_err(io_err)?;
                None
            }
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<ShardRaft>) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        self.put_meta_into(&mut batch, "vote", vote)?;
        self.write(batch).await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<ShardRaft>>,
    ) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        self.put_meta_into(&mut batch, "committed", &committed)?;
        // Not waited for to be synced: a committed log id lost in a crash
        // only makes the restarted replica re-learn how far the log is
        // committed from its leader (openraft treats the record as
        // optional). It goes through the log writer, after the appends
        // queued before it, and RocksDB recovers a prefix of its WAL, so a
        // record that survives never points past log entries written before
        // it; the applies it allows are re-run from the synced log.
        self.writer
            .submit(batch, None)
            .await
            .map_err(io_err)?
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<ShardRaft>>, io::Error> {
        Ok(self
            .get_meta::<Option<LogIdOf<ShardRaft>>>("committed")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<ShardRaft>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<ShardRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.engine.cf(CF_RAFT).map_err(io_err)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, log_key(self.shard, entry.index()), encode(&entry)?);
        }
        // Readable when this returns; Raft hears it is flushed only once
        // the log writer's round is durable (per the node's sync mode).
        let written = self.writer.submit(
            batch,
            Some(Box::new(move |durable| {
                callback.io_completed(durable.map_err(io_err));
            })),
        );
        written.await.map_err(io_err)?.map_err(io_err)
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<ShardRaft>>,
    ) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index() + 1);
        let cf = self.engine.cf(CF_RAFT).map_err(io_err)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf,
            log_key(self.shard, from),
            shard_end(self.shard).unwrap_or_else(|| log_key(self.shard, u64::MAX)),
        );
        self.write(batch).await
    }

    async fn purge(&mut self, log_id: LogIdOf<ShardRaft>) -> Result<(), io::Error> {
        let cf = self.engine.cf(CF_RAFT).map_err(io_err)?;
        let mut batch = WriteBatch::default();
        self.put_meta_into(&mut batch, "purged", &log_id)?;
        batch.delete_range_cf(
            cf,
            log_key(self.shard, 0),
            log_key(self.shard, log_id.index() + 1),
        );
        self.write(batch).await
    }
}
