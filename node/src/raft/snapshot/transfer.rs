//! Moving a snapshot between nodes: the sender's header chunk and file
//! pieces, the receiver's checks of the stream ([`StreamCheck`]) and its
//! staging directory, and why a stream was refused ([`ReceiveError`]).

use super::*;

/// Why a streamed snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The stream broke the protocol: wrong order, bad offsets, unknown
    /// files, missing bytes, a failed checksum.
    #[error("bad snapshot stream: {0}")]
    Invalid(String),
    /// The stream itself failed.
    #[error("snapshot stream broke: {0}")]
    Transport(#[from] tonic::Status),
    /// Staging the files failed.
    #[error("staging a snapshot: {0}")]
    Io(#[from] io::Error),
}

impl From<ReceiveError> for tonic::Status {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::Invalid(m) => Self::invalid_argument(format!("bad snapshot stream: {m}")),
            ReceiveError::Transport(s) => s,
            ReceiveError::Io(e) => Self::internal(format!("staging a snapshot: {e}")),
        }
    }
}

/// The header of a snapshot stream: the leader's vote, the snapshot's meta
/// and its manifest.
pub type Header = (VoteOf<ShardRaft>, SnapshotMetaOf<ShardRaft>, Manifest);

/// What a checked chunk after the header asks the receiver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'c> {
    /// Append this piece's data to its file (at the offset it names, which
    /// is where the file ends so far).
    Write(&'c rpb::FilePiece),
    /// The stream is complete; [`StreamCheck::finish`] says whether it is whole.
    Done,
}

/// The receiver's bookkeeping of a snapshot stream, without any files: the
/// header decoded and checked, each piece checked against the manifest
/// (known file, contiguous offset, within the announced length) and hashed,
/// and at the end every file's length and checksum. [`receive`] writes what
/// it accepts; the fuzz target drives it alone.
pub struct StreamCheck {
    shard: ShardId,
    manifest: Manifest,
    /// Per manifest file: bytes accepted so far and their running hash.
    files: HashMap<String, (u64, Xxh3)>,
}

impl StreamCheck {
    /// Decodes and checks the `first` chunk of a stream, which must carry
    /// the header.
    ///
    /// # Errors
    /// [`ReceiveError::Invalid`]: no header, an undecodable one, or a
    /// manifest that fails [`Manifest::check`].
    pub fn start(
        first: &rpb::SnapshotChunk,
    ) -> Result<(VoteOf<ShardRaft>, SnapshotMetaOf<ShardRaft>, Self), ReceiveError> {
        use rpb::snapshot_chunk::Body;
        let shard = first.shard;
        let Some(Body::Header(header)) = &first.body else {
            return Err(ReceiveError::Invalid(
                "the first chunk must carry the header".into(),
            ));
        };
        let (vote, meta, manifest): Header = decode(header)
            .map_err(|e| ReceiveError::Invalid(format!("undecodable header: {e}")))?;
        manifest.check(shard).map_err(ReceiveError::Invalid)?;
        let files = manifest
            .files
            .iter()
            .map(|f| (f.name.clone(), (0, Xxh3::new())))
            .collect();
        Ok((
            vote,
            meta,
            Self {
                shard,
                manifest,
                files,
            },
        ))
    }

    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the next chunk after the header and accounts for its piece.
    ///
    /// # Errors
    /// [`ReceiveError::Invalid`]: a chunk of another shard, a second header
    /// or an empty chunk, a piece of an unknown file, at the wrong offset or
    /// past the file's announced length.
    pub fn accept<'c>(&mut self, chunk: &'c rpb::SnapshotChunk) -> Result<Step<'c>, ReceiveError> {
        use rpb::snapshot_chunk::Body;
        if chunk.shard != self.shard {
            return Err(ReceiveError::Invalid(format!(
                "a chunk for shard {} in a snapshot of shard {}",
                chunk.shard, self.shard
            )));
        }
        let piece = match &chunk.body {
            Some(Body::Piece(piece)) => piece,
            Some(Body::Done(_)) => return Ok(Step::Done),
            Some(Body::Header(_)) | None => {
                return Err(ReceiveError::Invalid(
                    "a second header or an empty chunk".into(),
                ));
            }
        };
        let declared = self.manifest.files.iter().find(|f| f.name == piece.name);
        let (Some(declared), Some((written, hash))) = (declared, self.files.get_mut(&piece.name))
        else {
            return Err(ReceiveError::Invalid(format!(
                "file {:?} is not part of the snapshot",
                piece.name
            )));
        };
        if piece.offset != *written {
            return Err(ReceiveError::Invalid(format!(
                "file {}: piece at offset {}, expected {written}",
                piece.name, piece.offset
            )));
        }
        let end = written.saturating_add(piece.data.len() as u64);
        if end > declared.len {
            return Err(ReceiveError::Invalid(format!(
                "file {}: piece ends at {end}, past the announced {} bytes",
                piece.name, declared.len
            )));
        }
        hash.update(&piece.data);
        *written = end;
        Ok(Step::Write(piece))
    }

    /// Bytes of each manifest file accepted so far, for messages.
    fn progress(&self) -> String {
        let got: Vec<String> = self
            .manifest
            .files
            .iter()
            .filter_map(|f| {
                let (w, _) = self.files.get(&f.name)?;
                Some(format!("{} {w} of {} bytes", f.name, f.len))
            })
            .collect();
        got.join(", ")
    }

    /// After the done chunk: checks that every file arrived whole and
    /// matches its checksum.
    ///
    /// # Errors
    /// [`ReceiveError::Invalid`] naming the short or corrupt file.
    pub fn finish(&self) -> Result<(), ReceiveError> {
        for f in &self.manifest.files {
            let Some((written, hash)) = self.files.get(&f.name) else {
                return Err(ReceiveError::Invalid(format!("file {} is missing", f.name)));
            };
            if *written != f.len {
                return Err(ReceiveError::Invalid(format!(
                    "file {} ended at {written} of {} bytes",
                    f.name, f.len
                )));
            }
            if hash.digest() != f.xxh3 {
                return Err(ReceiveError::Invalid(format!(
                    "file {} fails its checksum",
                    f.name
                )));
            }
        }
        Ok(())
    }
}

/// The files of a snapshot being received into a staging directory.
struct Staging {
    dir: PathBuf,
    check: StreamCheck,
    files: HashMap<String, File>,
}

impl Staging {
    fn create(dir: PathBuf, check: StreamCheck) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let mut files = HashMap::new();
        for f in &check.manifest.files {
            files.insert(f.name.clone(), File::create(dir.join(&f.name))?);
        }
        Ok(Self { dir, check, files })
    }

    /// Checks `chunk`; writes its piece. Returns whether it was the done chunk.
    fn take(&mut self, chunk: &rpb::SnapshotChunk) -> Result<bool, ReceiveError> {
        match self.check.accept(chunk)? {
            Step::Done => Ok(true),
            Step::Write(piece) => {
                let Some(file) = self.files.get_mut(&piece.name) else {
                    return Err(ReceiveError::Invalid(format!(
                        "file {:?} is not part of the snapshot",
                        piece.name
                    )));
                };
                file.write_all(&piece.data)?;
                Ok(false)
            }
        }
    }

    /// Checks every file, makes everything durable and writes the `meta` file.
    fn finish(self, meta: &SnapshotMetaOf<ShardRaft>) -> Result<SnapshotFiles, ReceiveError> {
        self.check.finish()?;
        for file in self.files.values() {
            file.sync_all()?;
        }
        write_synced(
            &self.dir.join(META_FILE),
            &encode(&(meta, &self.check.manifest))?,
        )?;
        sync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(SnapshotFiles {
            dir: self.dir,
            manifest: Arc::new(self.check.manifest),
        })
    }
}

/// The header chunk of a snapshot stream.
///
/// # Errors
/// The snapshot cannot be encoded.
pub fn header_chunk(
    shard: ShardId,
    vote: &VoteOf<ShardRaft>,
    meta: &SnapshotMetaOf<ShardRaft>,
    files: &SnapshotFiles,
) -> io::Result<rpb::SnapshotChunk> {
    Ok(rpb::SnapshotChunk {
        shard,
        body: Some(rpb::snapshot_chunk::Body::Header(encode(&(
            vote,
            meta,
            files.manifest(),
        ))?)),
    })
}

/// Sends the pieces of `opened` files and the done chunk into `tx`
/// (blocking), noting the time of every sent chunk in `progress` (ms since
/// `start`). Stops quietly when the receiving side is gone: the call's
/// result then says why.
///
/// # Errors
/// A file cannot be read.
pub fn send_pieces(
    shard: ShardId,
    opened: Vec<(SnapshotFile, File)>,
    tx: &tokio::sync::mpsc::Sender<rpb::SnapshotChunk>,
    start: std::time::Instant,
    progress: &AtomicU64,
    throttle: &crate::raft::throttle::Throttle,
) -> io::Result<()> {
    use rpb::snapshot_chunk::Body;
    let mark = || progress.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    for (f, mut file) in opened {
        let mut offset = 0u64;
        while offset < f.len {
            let want = CHUNK_BYTES.min((f.len - offset) as usize);
            throttle.wait_blocking(want as u64);
            // Waiting for the throttle is progress, not a stalled peer.
            mark();
            let mut data = vec![0u8; want];
            file.read_exact(&mut data)?;
            let chunk = rpb::SnapshotChunk {
                shard,
                body: Some(Body::Piece(rpb::FilePiece {
                    name: f.name.clone(),
                    offset,
                    data,
                })),
            };
            if tx.blocking_send(chunk).is_err() {
                return Ok(());
            }
            mark();
            offset += want as u64;
        }
    }
    let done = rpb::SnapshotChunk {
        shard,
        body: Some(Body::Done(rpb::SnapshotDone {})),
    };
    if tx.blocking_send(done).is_ok() {
        mark();
    }
    Ok(())
}

/// Receives a snapshot stream whose `first` chunk has been read: checks the
/// header, writes every piece into `staging` (a fresh directory), and on the
/// done chunk checks every file's length and checksum and makes the
/// directory durable. Nothing outside `staging` changes; on any error
/// `staging` is removed.
///
/// # Errors
/// [`ReceiveError`] says why the snapshot was refused.
pub async fn receive<S>(
    staging: PathBuf,
    first: rpb::SnapshotChunk,
    mut rest: S,
) -> Result<(VoteOf<ShardRaft>, SnapshotOf<ShardRaft, SnapshotFiles>), ReceiveError>
where
    S: Stream<Item = Result<rpb::SnapshotChunk, tonic::Status>> + Unpin + Send,
{
    let (vote, meta, check) = StreamCheck::start(&first)?;
    let dir = staging.clone();
    let result = async move {
        let mut stage =
            blocking(move || Staging::create(staging, check).map_err(Into::into)).await?;
        loop {
            let Some(chunk) = rest.next().await else {
                return Err(ReceiveError::Invalid(format!(
                    "the stream ended before its done chunk ({})",
                    stage.check.progress()
                )));
            };
            let chunk = chunk?;
            let (back, done) = blocking(move || {
                let done = stage.take(&chunk)?;
                Ok((stage, done))
            })
            .await?;
            stage = back;
            if done {
                break;
            }
        }
        let files = blocking(move || stage.finish(&meta).map(|f| (meta, f))).await?;
        Ok(files)
    }
    .await;
    match result {
        Ok((meta, files)) => Ok((
            vote,
            SnapshotOf::<ShardRaft, SnapshotFiles> {
                meta,
                snapshot: files,
            },
        )),
        Err(e) => {
            discard(dir).await;
            Err(e)
        }
    }
}

/// Removes a staging directory if it is still there (an install moves it
/// away; a refused or superseded snapshot leaves it).
pub async fn discard(dir: PathBuf) {
    let shown = dir.display().to_string();
    let r = tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    })
    .await;
    if let Ok(Err(e)) = r {
        tracing::warn!(dir = %shown, error = %e, "could not remove a staged snapshot");
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReceiveError> + Send + 'static,
) -> Result<T, ReceiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReceiveError::Io(io_err(e)))?
}
