//! The storage engine: one RocksDB instance per node.
//!
//! Column families (see [`keys`] for their key layouts):
//! - `data`: user keys and their [`record::Record`]s, prefixed by shard.
//! - `ttl`: expiry index, so expired keys are found without a full scan.
//! - `meta`: cluster identity and each shard's state-machine state.
//! - `raft`: the Raft logs of the node's shard groups (empty on a single node).
//!
//! This layer knows nothing about gRPC or the API: it stores bytes, guards the
//! data directory against a second process and against being opened as
//! another node or cluster ([`identity`]), and reclaims expired records in
//! compaction.

pub mod identity;
pub mod keys;
pub mod record;
pub mod stats;
mod ttl_filter;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    SingleThreaded, WriteBatch, WriteOptions,
};

pub use ttl_filter::ShardClocks;

/// The RocksDB handle type used by Cairn.
pub type Db = rocksdb::DBWithThreadMode<SingleThreaded>;

/// Column family of user data.
pub const CF_DATA: &str = "data";
/// Column family of the expiry index.
pub const CF_TTL: &str = "ttl";
/// Column family of node and shard metadata.
pub const CF_META: &str = "meta";
/// Column family of the Raft log entries (and votes) of every shard group.
pub const CF_RAFT: &str = "raft";

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process holds the data directory.
    #[error(
        "data directory {dir} is in use by another cairn-node process ({holder}); stop it or choose another --data-dir"
    )]
    Locked {
        /// The contested directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// An I/O error outside RocksDB (directory creation, lock file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The filesystem of the data directory is full: the write was not
    /// applied. RocksDB resumes by itself once space returns.
    #[error(
        "the data directory {dir} is full ({detail}); nothing of this write was applied. Writes resume by themselves once at least {RESUME_FREE_MIB} MiB are free there (one memtable flush)"
    )]
    DiskFull {
        /// The data directory.
        dir: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Bytes on disk do not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The data directory was created with settings that conflict with the configuration.
    #[error("{0}")]
    Mismatch(String),
}

/// Free space RocksDB waits for before it clears a "no space" error by
/// itself: its reserved disk buffer, one memtable (the default 64 MiB
/// write buffer), so that the flush its recovery starts with can succeed.
pub const RESUME_FREE_MIB: u64 = 64;

/// Whether RocksDB failed for want of space (`IOStatus::NoSpace`; the
/// crate exposes only the message, which RocksDB words this way whatever
/// file it was writing).
fn is_no_space(e: &rocksdb::Error) -> bool {
    e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("No space")
}

/// Whether a write is acknowledged before or after its WAL is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// fsync the WAL before acknowledging (group commit shares one fsync among
    /// all writes queued at the time). Survives process and machine crashes.
    #[default]
    Fsync,
    /// Write the WAL to the OS page cache only. Survives a process crash but a
    /// power loss or kernel crash can lose the last acknowledged writes.
    Buffered,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fsync" => Ok(Self::Fsync),
            "buffered" => Ok(Self::Buffered),
            other => Err(format!(
                "unknown sync mode {other:?}; expected fsync or buffered"
            )),
        }
    }
}

/// Tuning for [`Engine::open`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Directory holding the RocksDB files and the lock file.
    pub data_dir: PathBuf,
    /// Block cache capacity in bytes (shared by all column families).
    pub block_cache_bytes: usize,
    /// Row cache capacity in bytes; 0 disables it.
    pub row_cache_bytes: usize,
    /// Durability of acknowledged writes.
    pub sync: SyncMode,
}

/// How large the write-ahead log may grow before RocksDB flushes the
/// column families that keep its oldest files alive (see `Engine::open`).
pub const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;

/// An open storage engine. Cloning shares the same database.
#[derive(Clone)]
pub struct Engine {
    db: Arc<Db>,
    clocks: Arc<ShardClocks>,
    sync: SyncMode,
    block_cache: Cache,
    /// The options the database was opened with: RocksDB keeps its
    /// statistics (tickers) in them.
    db_opts: Arc<Options>,
    data_dir: Arc<PathBuf>,
    /// Set by a write that failed for want of space, cleared by the next
    /// write that succeeds.
    disk_full: Arc<AtomicBool>,
    _lock: Arc<DirLock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Engine {
    /// Opens (creating if needed) the database in `opts.data_dir`.
    ///
    /// # Errors
    /// [`StorageError::Locked`] when another process uses the directory, or any
    /// I/O or RocksDB error while opening.
    pub fn open(opts: &EngineOptions) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|source| StorageError::Io {
            context: format!("creating data directory {}", opts.data_dir.display()),
            source,
        })?;
        let lock = DirLock::acquire(&opts.data_dir)?;
        let clocks = Arc::new(ShardClocks::default());

        let block_cache = Cache::new_lru_cache(opts.block_cache_bytes.max(1 << 20));
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(4);
        db_opts.set_bytes_per_sync(1 << 20);
        // A column family written rarely (TTL index, metadata) keeps every
        // WAL file since its last flush alive; RocksDB's default bound (4x
        // all write buffers, 2 GiB here) let the WAL alone fill a small
        // data disk and made restarts replay gigabytes. Past this size the
        // families pinning the oldest WAL are flushed.
        db_opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // Counters only (no timers): cache hits, stalls, bytes written by
        // flushes and compactions, WAL syncs. Read by `/metrics`.
        db_opts.enable_statistics();
        db_opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptTimers);
        if opts.row_cache_bytes > 0 {
            db_opts.set_row_cache(&Cache::new_lru_cache(opts.row_cache_bytes));
        }

        let table_opts = |bloom: bool| {
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&block_cache);
            if bloom {
                t.set_bloom_filter(10.0, false);
            }
            t.set_cache_index_and_filter_blocks(true);
            t
        };
        let mut data_opts = Options::default();
        data_opts.set_block_based_table_factory(&table_opts(true));
        data_opts.set_compression_type(DBCompressionType::Lz4);
        data_opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        data_opts.set_compaction_filter("cairn-ttl", ttl_filter::filter(clocks.clone()));
        let mut small_opts = Options::default();
        small_opts.set_block_based_table_factory(&table_opts(false));

        let mut meta_opts = small_opts.clone();
        meta_opts.set_compaction_filter("cairn-dedup", ttl_filter::dedup_filter(clocks.clone()));
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_DATA, data_opts),
            ColumnFamilyDescriptor::new(CF_TTL, small_opts.clone()),
            ColumnFamilyDescriptor::new(CF_META, meta_opts),
            ColumnFamilyDescriptor::new(CF_RAFT, small_opts),
        ];
        let db = Db::open_cf_descriptors(&db_opts, opts.data_dir.join("db"), cfs)?;
        Ok(Self {
            db: Arc::new(db),
            clocks,
            sync: opts.sync,
            block_cache,
            db_opts: Arc::new(db_opts),
            data_dir: Arc::new(opts.data_dir.clone()),
            disk_full: Arc::new(AtomicBool::new(false)),
            _lock: Arc::new(lock),
        })
    }

    /// The raw database, for the layers above that iterate and snapshot.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The node's data directory (RocksDB lives in its `db/` subdirectory):
    /// the place for other durable files of the node, such as Raft snapshots.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Per-shard applied clocks shared with the TTL compaction filter.
    pub fn clocks(&self) -> &Arc<ShardClocks> {
        &self.clocks
    }

    /// The handle of column family `name`.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] if the family is missing (the open created all of them).
    pub fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Corrupt(format!("column family {name} is missing")))
    }

    /// Approximate on-disk bytes of `shard`'s records (flushed data only;
    /// 0 when unknown): what copying the shard to a new replica costs.
    pub fn approximate_shard_bytes(&self, shard: crate::partition::ShardId) -> u64 {
        let Ok(cf) = self.cf(CF_DATA) else {
            return 0;
        };
        let start = keys::shard_start(shard);
        let end = keys::shard_end(shard).unwrap_or_else(|| vec![0xff; 5]);
        self.db
            .get_approximate_sizes_cf(&cf, &[rocksdb::Range::new(&start, &end)])
            .first()
            .copied()
            .unwrap_or(0)
    }

    /// Estimated bytes of live records on this node (every shard, flushed
    /// and in memtables): what moving all its replicas elsewhere needs.
    pub fn data_bytes(&self) -> u64 {
        let Ok(cf) = self.cf(CF_DATA) else {
            return 0;
        };
        [
            "rocksdb.estimate-live-data-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.db.property_int_value_cf(&cf, *p).ok().flatten())
        .sum()
    }

    /// Free bytes on the file system of the data directory (0 when unknown).
    pub fn disk_free_bytes(&self) -> u64 {
        nix::sys::statvfs::statvfs(self.data_dir.as_path())
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .unwrap_or(0)
    }

    /// Reads a value from the `meta` column family.
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_META)?, key)?)
    }

    /// Writes `batch` atomically with the configured durability.
    ///
    /// # Errors
    /// RocksDB errors; on error nothing of the batch is visible.
    pub fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync == SyncMode::Fsync);
        self.write_with(batch, &wo)
    }

    /// The durability of acknowledged writes this engine was opened with.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// Whether the last write failed because the disk is full (and none
    /// has succeeded since).
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Writes `batch`, telling a full disk apart from other failures.
    fn write_with(&self, batch: WriteBatch, wo: &WriteOptions) -> Result<(), StorageError> {
        match self.db.write_opt(batch, wo) {
            Ok(()) => {
                if self.disk_full.swap(false, Ordering::Relaxed) {
                    tracing::info!(dir = %self.data_dir.display(), "the data directory has space again; writes resumed");
                }
                Ok(())
            }
            Err(e) if is_no_space(&e) => {
                if !self.disk_full.swap(true, Ordering::Relaxed) {
                    tracing::error!(dir = %self.data_dir.display(), error = %e, "the data directory is full; writes are refused until space is freed");
                }
                Err(StorageError::DiskFull {
                    dir: self.data_dir.as_ref().clone(),
                    detail: e.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `batch` atomically and waits for its WAL fsync whatever the
    /// node's sync mode: for records a crash-recovery step relies on (a
    /// snapshot install marker must be on disk before data is deleted).
    ///
    /// # Errors
    /// RocksDB errors; on error nothing of the batch is visible.
    pub fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.write_with(batch, &wo)
    }

    /// Writes `batch` atomically without waiting for an fsync: for state
    /// that can be rebuilt from something already durable (a Raft state
    /// machine re-applies its log after a crash). The next synced write
    /// makes it durable too, since the WAL is one sequential file.
    ///
    /// # Errors
    /// RocksDB errors; on error nothing of the batch is visible.
    pub fn write_unsynced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write_with(batch, &WriteOptions::default())
    }

    /// Flushes and syncs the WAL (used at shutdown in buffered mode).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Bytes currently held by the block cache.
    pub fn block_cache_usage(&self) -> usize {
        self.block_cache.get_usage()
    }

    /// Forces a full compaction of the `data` column family (tests and admin).
    ///
    /// # Errors
    /// RocksDB errors.
    pub fn compact_data(&self) -> Result<(), StorageError> {
        let cf = self.cf(CF_DATA)?;
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }
}

/// An exclusive advisory lock on `DIR/cairn.lock`, held while the engine is open.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("cairn.lock");
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source: std::io::Error| StorageError::Io { context, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "unknown pid".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(StorageError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking")(e)),
        }
        file.set_len(0).map_err(io("truncating"))?;
        file.rewind().map_err(io("rewinding"))?;
        write!(file, "{}", std::process::id()).map_err(io("writing"))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir.join("db"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// One small write to a rarely written family, then a steady stream
    /// to another: the rare family's memtable must not keep the whole WAL
    /// alive (it did: 320 MiB of WAL for 320 MiB written).
    #[test]
    fn a_rarely_written_family_does_not_pin_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&EngineOptions {
            data_dir: dir.path().to_path_buf(),
            block_cache_bytes: 8 << 20,
            row_cache_bytes: 0,
            sync: SyncMode::Buffered,
        })
        .unwrap();
        let db = engine.db();
        db.put_cf(engine.cf(CF_META).unwrap(), b"rare", b"x")
            .unwrap();
        let value = vec![7u8; 1 << 20];
        let data = engine.cf(CF_DATA).unwrap();
        for i in 0..320u32 {
            db.put_cf(data, i.to_be_bytes(), &value).unwrap();
        }
        // Flushes run in the background: poll, with a generous deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let wal = wal_bytes(dir.path());
            // The bound plus one memtable's worth still being flushed.
            if wal <= MAX_TOTAL_WAL_BYTES + (64 << 20) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL holds {} MiB after 60 s (bound {} MiB)",
                wal >> 20,
                MAX_TOTAL_WAL_BYTES >> 20
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
