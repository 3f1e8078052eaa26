//! Installing a received or adopted snapshot, crash-safely: a synced
//! install marker, then each range replaced in one ingestion, then one
//! synced batch with the shard state and applied log id (see the module
//! above for the protocol); a marker found at startup is redone.

use super::*;

/// `meta` key of the shard's install marker.
fn marker_key(shard: ShardId) -> Vec<u8> {
    raft_meta_key("installing", shard)
}

/// The directory name an interrupted install left in the shard's marker.
///
/// # Errors
/// RocksDB errors, an undecodable marker.
pub(crate) fn marker(engine: &Engine, shard: ShardId) -> io::Result<Option<String>> {
    match engine.get_meta(&marker_key(shard)).map_err(io_err)? {
        Some(b) => Ok(Some(decode(&b)?)),
        None => Ok(None),
    }
}

/// The exclusive end of `range` for a range deletion: its end, or for the
/// last shard id the first key after the column family's last key.
fn deletion_end(engine: &Engine, range: &Range) -> io::Result<Vec<u8>> {
    if let Some(end) = &range.end {
        return Ok(end.clone());
    }
    let handle = engine.cf(range.cf).map_err(io_err)?;
    let mut it = engine.db().raw_iterator_cf(handle);
    it.seek_to_last();
    it.status().map_err(io_err)?;
    // `k ‖ 0` is the first key after `k`.
    let mut after = match it.key() {
        Some(last) if last >= range.start.as_slice() => last.to_vec(),
        _ => range.start.clone(),
    };
    after.push(0);
    Ok(after)
}

/// Step 1 of an install: a synced marker naming `files`' directory. From
/// here on, a crash is repaired by redoing the install at startup.
pub(crate) fn write_marker(
    engine: &Engine,
    shard: ShardId,
    files: &SnapshotFiles,
) -> io::Result<()> {
    let name = files
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io_err(format!("bad snapshot directory {}", files.dir.display())))?;
    let mut batch = WriteBatch::default();
    batch.put_cf(
        engine.cf(CF_META).map_err(io_err)?,
        marker_key(shard),
        encode(&name.to_string())?,
    );
    engine.write_synced(batch).map_err(io_err)
}

/// Step 2: replaces each of the shard's ranges in one ingestion: a small
/// SST holding only a range deletion of the whole range, then the
/// snapshot's file for it through a fresh hard link (RocksDB takes the
/// links over with `move_files`, so the snapshot's own files remain for a
/// redo and for sending on). Files of one ingestion that overlap get
/// increasing sequence numbers, so the deletion removes the old keys and
/// not the new ones, and readers see a range switch from old to new in one
/// step — never empty. The `data` range goes last, right before the shard
/// state. Each file holds keys of its range only (the builder wrote them
/// from that range and they arrived with their checksums intact), so no
/// other shard is touched.
pub(crate) fn replace_ranges(
    engine: &Engine,
    shard: ShardId,
    files: &SnapshotFiles,
) -> io::Result<()> {
    let staging = files.dir.join(INGEST_DIR);
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    let mut opts = IngestExternalFileOptions::default();
    opts.set_move_files(true);
    for range in ranges(shard).into_iter().rev() {
        let clear = staging.join(format!("clear-{}", range.file));
        let end = deletion_end(engine, &range)?;
        let sst_opts = sst_options(range.cf);
        let mut writer = SstFileWriter::create(&sst_opts);
        writer.open(&clear).map_err(io_err)?;
        writer.delete_range(&range.start, &end).map_err(io_err)?;
        writer.finish().map_err(io_err)?;
        let mut paths = vec![clear];
        if files.manifest.files.iter().any(|f| f.name == range.file) {
            let link = staging.join(range.file);
            link_or_copy(&files.dir.join(range.file), &link)?;
            paths.push(link);
        }
        let cf = engine.cf(range.cf).map_err(io_err)?;
        engine
            .db()
            .ingest_external_file_cf_opts(cf, &opts, paths)
            .map_err(|e| io_err(format!("ingesting {} of shard {shard}: {e}", range.file)))?;
    }
    fs::remove_dir_all(&staging)
}

/// Step 3: one synced batch with the shard state, the applied log id and
/// membership, and the marker's deletion.
fn finish_install(
    engine: &Engine,
    shard: ShardId,
    meta: &SnapshotMetaOf<ShardRaft>,
    manifest: &Manifest,
) -> io::Result<()> {
    let meta_cf = engine.cf(CF_META).map_err(io_err)?;
    let mut batch = WriteBatch::default();
    match &manifest.shard_state {
        Some(s) => batch.put_cf(meta_cf, shard_state_key(shard), s),
        None => batch.delete_cf(meta_cf, shard_state_key(shard)),
    }
    batch.put_cf(
        meta_cf,
        raft_meta_key("applied", shard),
        encode(&(meta.last_log_id, meta.last_membership.clone()))?,
    );
    batch.delete_cf(meta_cf, marker_key(shard));
    engine.write_synced(batch).map_err(io_err)
}

/// Replaces the shard's data with the snapshot in `files` (a complete
/// snapshot of this node, see [`adopt`]), crash-safely: blocking; the same
/// call redoes an interrupted install.
///
/// # Errors
/// A snapshot of another shard, RocksDB or file errors. After an error the
/// marker may remain; the install is then redone at the next startup.
pub(crate) fn install(
    engine: &Engine,
    shard: ShardId,
    meta: &SnapshotMetaOf<ShardRaft>,
    files: &SnapshotFiles,
) -> io::Result<()> {
    files.manifest.check(shard).map_err(io_err)?;
    write_marker(engine, shard, files)?;
    replace_ranges(engine, shard, files)?;
    finish_install(engine, shard, meta, &files.manifest)
}
