//! Shard snapshots as files: built from one RocksDB snapshot with
//! `SstFileWriter`, streamed to a peer in pieces, checked and staged there,
//! and installed by ingesting the files — a snapshot never passes through
//! memory as a whole, and a transfer is never one RPC per key.
//!
//! Layout under the node's data directory:
//!
//! ```text
//! snapshots/<shard>/<index>-<id>/     a complete snapshot; the newest one is the shard's current one
//!     meta                            0x01 ‖ postcard((snapshot meta, Manifest))
//!     data.sst                        the shard's range of the `data` column family
//!     ttl.sst                         the shard's range of the `ttl` column family
//!     dedup.sst                       the shard's exactly-once records (`meta` CF, `dedup/ ‖ shard`)
//!     ingest/                         range deletions and hard links handed to RocksDB while installing
//! snapshots/<shard>/building-<id>/    a snapshot being built (removed at startup)
//! snapshots/incoming/<shard>-<id>/    a snapshot being received (removed at startup)
//! ```
//!
//! A file whose range is empty is left out (`SstFileWriter` cannot finish an
//! empty file); the manifest lists the files present with their length and
//! xxh3-64.
//!
//! **Install** is crash-safe: a synced install marker (`meta`
//! CF, `raft/installing/ ‖ shard` → the snapshot's directory name) first;
//! then each range is replaced in one ingestion of a range-deletion SST and
//! the snapshot's file (hard-linked, so the snapshot's own files stay and
//! the install can be redone); then one synced batch writes the shard state
//! and the applied log id and membership and deletes the marker. A node that
//! finds a marker at startup redoes the whole install before Raft reads the
//! applied state.

mod install;
mod transfer;

pub(crate) use install::{install, marker};
#[cfg(test)]
pub(crate) use install::{replace_ranges, write_marker};
pub use transfer::{
    Header, ReceiveError, Step, StreamCheck, discard, header_chunk, receive, send_pieces,
};

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_proto::raft::v1 as rpb;
use futures::{Stream, StreamExt as _};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use rocksdb::{
    BlockBasedOptions, DBCompressionType, IngestExternalFileOptions, Options, ReadOptions,
    SstFileWriter, WriteBatch,
};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::io_err;
use super::log_store::{decode, encode, raft_meta_key};
use super::types::ShardRaft;
use crate::partition::ShardId;
use crate::storage::keys::{dedup_key, prefix_successor, shard_end, shard_start, shard_state_key};
use crate::storage::{CF_DATA, CF_META, CF_TTL, Engine};

/// Name of the file holding a snapshot's meta and manifest.
pub const META_FILE: &str = "meta";
/// The shard's range of the `data` column family.
pub const DATA_SST: &str = "data.sst";
/// The shard's range of the `ttl` column family.
pub const TTL_SST: &str = "ttl.sst";
/// The shard's exactly-once records from the `meta` column family.
pub const DEDUP_SST: &str = "dedup.sst";
/// Bytes of file data in one streamed chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

const INGEST_DIR: &str = "ingest";
const BUILDING_PREFIX: &str = "building-";

/// One file of a snapshot and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// File name inside the snapshot directory (one of the `*_SST` names).
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// xxh3-64 of the whole file.
    pub xxh3: u64,
}

/// What a snapshot holds besides openraft's meta: the shard, its state
/// record, and its SST files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The shard the snapshot is of.
    pub shard: ShardId,
    /// The shard's encoded `ShardState`, `None` if it had none yet.
    pub shard_state: Option<Vec<u8>>,
    /// The files present (an empty range has no file).
    pub files: Vec<SnapshotFile>,
}

impl Manifest {
    /// Checks that the manifest is of `shard` and names only known,
    /// non-empty files, each once.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn check(&self, shard: ShardId) -> Result<(), String> {
        if self.shard != shard {
            return Err(format!(
                "snapshot of shard {} sent for shard {shard}",
                self.shard
            ));
        }
        let mut seen = Vec::new();
        for f in &self.files {
            if range_of(shard, &f.name).is_none() {
                return Err(format!(
                    "file {:?} is not a snapshot file (expected {DATA_SST}, {TTL_SST} or {DEDUP_SST})",
                    f.name
                ));
            }
            if seen.contains(&f.name.as_str()) {
                return Err(format!("file {:?} is listed twice", f.name));
            }
            if f.len == 0 {
                return Err(format!("file {:?} is empty", f.name));
            }
            seen.push(&f.name);
        }
        Ok(())
    }

    fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }
}

/// A snapshot's files on disk: the snapshot data openraft hands around.
/// Cloning shares the manifest; the files stay where they are.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
    manifest: Arc<Manifest>,
}

impl SnapshotFiles {
    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the snapshot holds.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Bytes of all SST files together.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.total_bytes()
    }

    /// Reads a complete snapshot directory (its `meta` file) and checks that
    /// every listed file is there with its length.
    ///
    /// # Errors
    /// A missing or undecodable `meta` file, a missing or short file.
    pub fn load(dir: &Path) -> io::Result<(SnapshotMetaOf<ShardRaft>, Self)> {
        let bytes = fs::read(dir.join(META_FILE))?;
        let (meta, manifest): (SnapshotMetaOf<ShardRaft>, Manifest) = decode(&bytes)?;
        for f in &manifest.files {
            let len = fs::metadata(dir.join(&f.name))?.len();
            if len != f.len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has {len} bytes, its manifest says {}",
                        dir.join(&f.name).display(),
                        f.len
                    ),
                ));
            }
        }
        Ok((
            meta,
            Self {
                dir: dir.to_path_buf(),
                manifest: Arc::new(manifest),
            },
        ))
    }

    /// Opens every file for reading. Open descriptors keep the data readable
    /// even if a newer snapshot replaces this one while it is being sent.
    ///
    /// # Errors
    /// A file cannot be opened.
    pub fn open(&self) -> io::Result<Vec<(SnapshotFile, File)>> {
        self.manifest
            .files
            .iter()
            .map(|f| Ok((f.clone(), File::open(self.dir.join(&f.name))?)))
            .collect()
    }
}

/// Where one shard's snapshots live.
#[derive(Debug, Clone)]
pub struct SnapshotDirs {
    root: PathBuf,
    shard: ShardId,
}

impl SnapshotDirs {
    /// The snapshot directories of `shard` under the node's `data_dir`.
    pub fn new(data_dir: &Path, shard: ShardId) -> Self {
        Self {
            root: data_dir.join("snapshots"),
            shard,
        }
    }

    /// `snapshots/<shard>`: the shard's complete snapshots.
    pub fn shard_dir(&self) -> PathBuf {
        self.root.join(self.shard.to_string())
    }

    /// `snapshots/incoming`: snapshots being received, of every shard.
    pub fn incoming_root(&self) -> PathBuf {
        self.root.join("incoming")
    }

    /// A fresh (not yet created) directory to receive a snapshot of the shard in.
    pub fn new_staging(&self) -> PathBuf {
        self.incoming_root()
            .join(format!("{}-{}", self.shard, unique_id()))
    }

    fn new_building(&self) -> PathBuf {
        self.shard_dir()
            .join(format!("{BUILDING_PREFIX}{}", unique_id()))
    }

    fn complete_dir(&self, meta: &SnapshotMetaOf<ShardRaft>) -> PathBuf {
        let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
        self.shard_dir()
            .join(format!("{index:020}-{}", unique_id()))
    }
}

/// A name no other directory of this process or an earlier one has.
fn unique_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One key range a snapshot file carries.
struct Range {
    file: &'static str,
    cf: &'static str,
    start: Vec<u8>,
    /// Exclusive end; `None` means to the end of the column family.
    end: Option<Vec<u8>>,
}

fn ranges(shard: ShardId) -> [Range; 3] {
    let dedup_start = dedup_key(shard, b"");
    let dedup_end = prefix_successor(&dedup_start);
    [
        Range {
            file: DATA_SST,
            cf: CF_DATA,
            start: shard_start(shard),
            end: shard_end(shard),
        },
        Range {
            file: TTL_SST,
            cf: CF_TTL,
            start: shard_start(shard),
            end: shard_end(shard),
        },
        Range {
            file: DEDUP_SST,
            cf: CF_META,
            start: dedup_start,
            end: dedup_end,
        },
    ]
}

fn range_of(shard: ShardId, file: &str) -> Option<Range> {
    ranges(shard).into_iter().find(|r| r.file == file)
}

/// Options of the SST files of column family `cf`: LZ4 and, for `data`, the
/// same bloom filter the live column family has.
fn sst_options(cf: &str) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::Lz4);
    if cf == CF_DATA {
        let mut t = BlockBasedOptions::default();
        t.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&t);
    }
    o
}

/// fsyncs a directory, so the entries created or renamed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// fsyncs a file and returns its length and xxh3-64.
fn hash_file(path: &Path) -> io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    f.sync_all()?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.digest()))
}

/// The last applied log id and membership stored with the shard's data.
type Applied = (
    Option<openraft::alias::LogIdOf<ShardRaft>>,
    StoredMembershipOf<ShardRaft>,
);

/// Builds a snapshot of `dirs`' shard from one RocksDB snapshot into a new
/// `building-` directory (blocking). [`publish_built`] makes it complete.
///
/// # Errors
/// RocksDB or file errors; the partial directory is removed.
pub(crate) fn build(
    engine: &Engine,
    dirs: &SnapshotDirs,
) -> io::Result<(SnapshotMetaOf<ShardRaft>, SnapshotFiles)> {
    let shard = dirs.shard;
    let db = engine.db();
    let snap = db.snapshot();
    let meta_cf = engine.cf(CF_META).map_err(io_err)?;
    let (last_log_id, last_membership): Applied = match snap
        .get_cf(meta_cf, raft_meta_key("applied", shard))
        .map_err(io_err)?
    {
        Some(b) => decode(&b)?,
        None => (None, StoredMembershipOf::<ShardRaft>::default()),
    };
    let shard_state = snap
        .get_cf(meta_cf, shard_state_key(shard))
        .map_err(io_err)?;
    let meta = SnapshotMetaOf::<ShardRaft> {
        last_log_id,
        last_membership,
    };
    let dir = dirs.new_building();
    fs::create_dir_all(&dir)?;
    let written = (|| -> io::Result<Manifest> {
        let mut files = Vec::new();
        for range in ranges(shard) {
            let cf = engine.cf(range.cf).map_err(io_err)?;
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            ro.fill_cache(false);
            ro.set_iterate_lower_bound(range.start.clone());
            if let Some(end) = &range.end {
                ro.set_iterate_upper_bound(end.clone());
            }
            let path = dir.join(range.file);
            let opts = sst_options(range.cf);
            let mut writer = SstFileWriter::create(&opts);
            let mut it = db.raw_iterator_cf_opt(cf, ro);
            it.seek_to_first();
            let mut keys = 0u64;
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if keys == 0 {
                    writer.open(&path).map_err(io_err)?;
                }
                writer.put(k, v).map_err(io_err)?;
                keys += 1;
                it.next();
            }
            it.status().map_err(io_err)?;
            if keys > 0 {
                writer.finish().map_err(io_err)?;
                let (len, xxh3) = hash_file(&path)?;
                files.push(SnapshotFile {
                    name: range.file.to_string(),
                    len,
                    xxh3,
                });
            }
        }
        let manifest = Manifest {
            shard,
            shard_state,
            files,
        };
        write_synced(&dir.join(META_FILE), &encode(&(&meta, &manifest))?)?;
        sync_dir(&dir)?;
        Ok(manifest)
    })();
    match written {
        Ok(manifest) => Ok((
            meta,
            SnapshotFiles {
                dir,
                manifest: Arc::new(manifest),
            },
        )),
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Renames a built snapshot to its complete name (blocking).
///
/// # Errors
/// File system errors.
pub(crate) fn publish_built(
    dirs: &SnapshotDirs,
    meta: &SnapshotMetaOf<ShardRaft>,
    built: SnapshotFiles,
) -> io::Result<SnapshotFiles> {
    let target = dirs.complete_dir(meta);
    fs::rename(&built.dir, &target)?;
    sync_dir(&dirs.shard_dir())?;
    Ok(SnapshotFiles {
        dir: target,
        manifest: built.manifest,
    })
}

/// Hard-links `from` to `to`, or copies it (and syncs the copy) where links
/// are impossible.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)?;
    File::open(to)?.sync_all()
}

/// Makes `files` a complete snapshot of `dirs`' shard (blocking): kept where
/// it is if it is one already, moved if it was received into this node's
/// staging area, else linked or copied (a snapshot of another engine, as in
/// tests).
///
/// # Errors
/// File system errors.
pub(crate) fn adopt(
    dirs: &SnapshotDirs,
    meta: &SnapshotMetaOf<ShardRaft>,
    files: SnapshotFiles,
) -> io::Result<SnapshotFiles> {
    let shard_dir = dirs.shard_dir();
    if files.dir.parent() == Some(shard_dir.as_path()) {
        return Ok(files);
    }
    fs::create_dir_all(&shard_dir)?;
    let target = dirs.complete_dir(meta);
    if files.dir.parent() == Some(dirs.incoming_root().as_path()) {
        fs::rename(&files.dir, &target)?;
        sync_dir(&dirs.incoming_root())?;
    } else {
        let tmp = dirs.new_building();
        fs::create_dir_all(&tmp)?;
        let names = files
            .manifest
            .files
            .iter()
            .map(|f| f.name.as_str())
            .chain([META_FILE]);
        for name in names {
            link_or_copy(&files.dir.join(name), &tmp.join(name))?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, &target)?;
    }
    sync_dir(&shard_dir)?;
    Ok(SnapshotFiles {
        dir: target,
        manifest: files.manifest,
    })
}

/// Removes every complete snapshot of the shard except `keep` (blocking).
/// Directories being built are left alone.
pub(crate) fn prune(dirs: &SnapshotDirs, keep: &Path) {
    let Ok(entries) = fs::read_dir(dirs.shard_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let building = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(BUILDING_PREFIX));
        if path != keep
            && !building
            && let Err(e) = fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an old snapshot");
        }
    }
}

/// Startup cleanup of the shard (blocking): removes snapshots left half
/// built or half received by an earlier process.
///
/// # Errors
/// File system errors other than a missing directory.
pub(crate) fn remove_partial(dirs: &SnapshotDirs) -> io::Result<()> {
    let incoming_prefix = format!("{}-", dirs.shard);
    for (root, prefix) in [
        (dirs.shard_dir(), BUILDING_PREFIX),
        (dirs.incoming_root(), incoming_prefix.as_str()),
    ] {
        let entries = match fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
            {
                fs::remove_dir_all(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Finds the newest complete snapshot of the shard that is not ahead of
/// `applied` and removes every other one (blocking, at startup).
///
/// # Errors
/// File system errors other than a missing directory.
pub(crate) fn load_newest(
    dirs: &SnapshotDirs,
    applied: Option<openraft::alias::LogIdOf<ShardRaft>>,
) -> io::Result<Option<(SnapshotMetaOf<ShardRaft>, SnapshotFiles)>> {
    let entries = match fs::read_dir(dirs.shard_dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut best: Option<(SnapshotMetaOf<ShardRaft>, SnapshotFiles)> = None;
    for entry in entries {
        let path = entry?.path();
        match SnapshotFiles::load(&path) {
            Ok((meta, files)) if meta.last_log_id <= applied => {
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| b.last_log_id < meta.last_log_id)
                {
                    best = Some((meta, files));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping an unreadable snapshot");
            }
        }
    }
    prune(
        dirs,
        best.as_ref()
            .map_or(Path::new(""), |(_, f)| f.dir.as_path()),
    );
    Ok(best)
}
