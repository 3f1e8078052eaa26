//! Deterministic apply: turns a write command into changes of the stored
//! data. Both the standalone pipeline ([`crate::commit`]) and each Raft
//! group's state machine ([`crate::raft::state_machine`]) apply through it.
//!
//! A [`Command`] is what a replica log carries: the shard, the time the
//! proposer assigned, and the operation. Applying is deterministic — it depends
//! only on the stored state and the command — so every replica that applies
//! the same commands in the same order holds the same data and revisions.
//!
//! Each shard has a *revision* that grows by one for every command that changes
//! at least one key; all keys written by that command get it as `mod_revision`.
//! Expiry removals change no revision (expired keys are already invisible to
//! every read, so nothing observable changes when they are removed).
//!
//! [`ApplyGroup`] applies many commands (of any shards) into one RocksDB
//! `WriteBatch`, so one fsync makes the whole group durable (group commit).

pub mod dedup;
mod ops;
mod progress;

pub use dedup::EncodedOutput;
pub use ops::to_kv;
pub use progress::ShardProgress;

use std::collections::HashMap;

use cairn_proto::kv::v1 as pb;
use rocksdb::WriteBatch;

use crate::partition::ShardId;
use crate::storage::keys::{data_key, shard_state_key, ttl_key};
use crate::storage::record::Record;
use crate::storage::{CF_DATA, CF_META, CF_TTL, Engine, StorageError};

/// State of one shard's state machine, persisted with every applied command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardState {
    /// Last revision assigned by a write.
    pub revision: u64,
    /// Time (Unix ms) of the last applied command; commands never go back in time.
    pub clock_ms: u64,
    /// Index of the last applied log entry (0 until replication).
    pub applied_index: u64,
}

const SHARD_STATE_FORMAT_V1: u8 = 1;

impl ShardState {
    /// On-disk form: `format:u8 | revision | clock_ms | applied_index` (u64 BE).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(25);
        v.push(SHARD_STATE_FORMAT_V1);
        v.extend_from_slice(&self.revision.to_be_bytes());
        v.extend_from_slice(&self.clock_ms.to_be_bytes());
        v.extend_from_slice(&self.applied_index.to_be_bytes());
        v
    }

    /// Decodes [`ShardState::encode`]'s output.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a wrong length or unknown format.
    pub fn decode(b: &[u8]) -> Result<Self, StorageError> {
        if b.len() != 25 || b[0] != SHARD_STATE_FORMAT_V1 {
            return Err(StorageError::Corrupt(format!(
                "shard state of {} bytes, format {:?}",
                b.len(),
                b.first()
            )));
        }
        let w = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[1 + i * 8..9 + i * 8]);
            u64::from_be_bytes(a)
        };
        Ok(Self {
            revision: w(0),
            clock_ms: w(1),
            applied_index: w(2),
        })
    }
}

/// A key whose expiry index entry is due, for [`CommandOp::Expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueKey {
    /// The user key.
    pub key: Vec<u8>,
    /// The expiry recorded in the index.
    pub expires_at_ms: u64,
}

/// The operation of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOp {
    /// Writes applied in order, all or nothing.
    Batch(Vec<pb::WriteOp>),
    /// Compare, then run one branch, atomically.
    Txn(pb::TxnRequest),
    /// Remove records that are due to expire (and their index entries).
    Expire(Vec<DueKey>),
}

/// A write command for one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The shard all keys of the command belong to.
    pub shard: ShardId,
    /// Proposer-assigned time (Unix ms); raised to the shard's clock if behind.
    pub now_ms: u64,
    /// What to do.
    pub op: CommandOp,
    /// The client's request id for exactly-once retries; empty for none.
    pub request_id: Vec<u8>,
}

/// What a successfully applied command returns.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutput {
    /// One result per batch op, in order.
    Batch(Vec<pb::WriteResult>),
    /// Which branch ran and its op results.
    Txn {
        /// Whether all compares held.
        succeeded: bool,
        /// Results of the branch that ran.
        results: Vec<pb::TxnOpResult>,
    },
    /// Number of records removed.
    Expired(usize),
}

/// A command that applied and what the shard looked like afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The command's output.
    pub output: CommandOutput,
    /// The shard's revision after the command.
    pub revision: u64,
}

/// Why a command was refused by the state machine (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ApplyError {
    /// `if_absent` and the key exists.
    #[error("{}key {} already exists (mod_revision {mod_revision})", op_prefix(*.op_index), show_key(.key))]
    KeyExists {
        /// Index of the failing op in its batch or branch.
        op_index: usize,
        /// The key.
        key: Vec<u8>,
        /// Its current mod_revision.
        mod_revision: u64,
    },
    /// `if_mod_revision` did not match.
    #[error("{}key {} has mod_revision {actual}, expected {expected}", op_prefix(*.op_index), show_key(.key))]
    RevisionMismatch {
        /// Index of the failing op.
        op_index: usize,
        /// The key.
        key: Vec<u8>,
        /// The revision the request required.
        expected: u64,
        /// The key's current mod_revision (0 = absent).
        actual: u64,
    },
    /// `Update` of a key that does not exist.
    #[error("{}key {} not found", op_prefix(*.op_index), show_key(.key))]
    NotFound {
        /// Index of the failing op.
        op_index: usize,
        /// The key.
        key: Vec<u8>,
    },
    /// An op carried no operation.
    #[error("op {op_index} is empty")]
    EmptyOp {
        /// Index of the empty op.
        op_index: usize,
    },
    /// The request id was used recently for a different request.
    #[error("request_id {} was already used for a different request; use a new id for a new request", show_key(.request_id))]
    RequestIdReused {
        /// The reused id.
        request_id: Vec<u8>,
    },
}

fn op_prefix(i: usize) -> String {
    if i == 0 {
        String::new()
    } else {
        format!("op {i}: ")
    }
}

/// Renders a key for messages: UTF-8 when printable, else hex; long keys cut.
pub fn show_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let cut = if key.len() > 64 { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}{cut}"),
        _ => format!(
            "0x{}{cut}",
            shown.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// A change staged by a command: a record to store or a deletion.
type Staged = HashMap<Vec<u8>, Option<Record>>;

/// Applies a group of commands into one write batch.
pub struct ApplyGroup<'a> {
    engine: &'a Engine,
    staged: Staged,
    ttl_ops: Vec<(Vec<u8>, bool)>,
    states: HashMap<ShardId, ShardState>,
    dedup: HashMap<Vec<u8>, dedup::DedupRecord>,
}

impl<'a> ApplyGroup<'a> {
    /// Starts an empty group over `engine`.
    pub fn new(engine: &'a Engine) -> Self {
        Self {
            engine,
            staged: HashMap::new(),
            ttl_ops: Vec::new(),
            states: HashMap::new(),
            dedup: HashMap::new(),
        }
    }

    fn remembered(&self, key: &[u8]) -> Result<Option<dedup::DedupRecord>, StorageError> {
        if let Some(r) = self.dedup.get(key) {
            return Ok(Some(r.clone()));
        }
        match self.engine.get_meta(key)? {
            Some(b) => Ok(Some(dedup::DedupRecord::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Applies `cmd` on top of the group so far, given the shard's state
    /// before the group (`base`). On error nothing of `cmd` is staged.
    ///
    /// # Errors
    /// [`ApplyError`] inside `Ok` when the command is refused; the outer
    /// `Err` is a storage failure while reading.
    pub fn apply(
        &mut self,
        base: ShardState,
        cmd: &Command,
    ) -> Result<Result<Applied, ApplyError>, StorageError> {
        let state = *self.states.get(&cmd.shard).unwrap_or(&base);
        let now = cmd.now_ms.max(state.clock_ms);
        let remember =
            (!cmd.request_id.is_empty()).then(|| dedup::dedup_key(cmd.shard, &cmd.request_id));
        let fingerprint = dedup::fingerprint(&cmd.op);
        if let Some(key) = &remember
            && let Some(seen) = self.remembered(key)?.filter(|r| r.is_live(now))
        {
            // A retry: answer as the first time, apply nothing.
            if seen.fingerprint != fingerprint {
                return Ok(Err(ApplyError::RequestIdReused {
                    request_id: cmd.request_id.clone(),
                }));
            }
            return Ok(match seen.result {
                Ok(out) => Ok(Applied {
                    output: out.to_output()?,
                    revision: seen.revision,
                }),
                Err(refused) => Err(refused),
            });
        }
        let mut exec = ops::Exec {
            group: self,
            shard: cmd.shard,
            now,
            revision: state.revision + 1,
            staged: Staged::new(),
            ttl_ops: Vec::new(),
            wrote: false,
        };
        let outcome = match &cmd.op {
            CommandOp::Batch(ops) => exec.batch(ops)?,
            CommandOp::Txn(txn) => exec.txn(txn)?,
            CommandOp::Expire(keys) => exec.expire(keys)?,
        };
        let output = match outcome {
            Ok(o) => o,
            Err(e) => {
                if let Some(key) = remember {
                    let record = dedup::DedupRecord {
                        applied_at_ms: now,
                        fingerprint,
                        revision: state.revision,
                        result: Err(e.clone()),
                    };
                    let at_now = ShardState {
                        clock_ms: now,
                        ..state
                    };
                    self.record(cmd.shard, at_now, key, record);
                }
                return Ok(Err(e));
            }
        };
        let ops::Exec {
            staged,
            ttl_ops,
            wrote,
            revision,
            ..
        } = exec;
        let new_state = ShardState {
            revision: if wrote { revision } else { state.revision },
            clock_ms: now,
            applied_index: state.applied_index,
        };
        self.staged.extend(staged);
        self.ttl_ops.extend(ttl_ops);
        self.states.insert(cmd.shard, new_state);
        if let Some(key) = remember {
            let record = dedup::DedupRecord {
                applied_at_ms: now,
                fingerprint,
                revision: new_state.revision,
                result: Ok(EncodedOutput::from_output(&output)),
            };
            self.record(cmd.shard, new_state, key, record);
        }
        Ok(Ok(Applied {
            output,
            revision: new_state.revision,
        }))
    }

    /// Stages a request record and the shard state that goes with it.
    fn record(
        &mut self,
        shard: ShardId,
        state: ShardState,
        key: Vec<u8>,
        record: dedup::DedupRecord,
    ) {
        self.states.insert(shard, state);
        self.dedup.insert(key, record);
    }

    /// Reads the stored record of `key` as the group sees it (staged changes
    /// first, then the database), expired or not.
    fn read(&self, dkey: &[u8]) -> Result<Option<Record>, StorageError> {
        if let Some(staged) = self.staged.get(dkey) {
            return Ok(staged.clone());
        }
        let cf = self.engine.cf(CF_DATA)?;
        match self.engine.db().get_pinned_cf(cf, dkey)? {
            Some(bytes) => Ok(Some(Record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The group's write batch and the shard states it leaves behind.
    ///
    /// # Errors
    /// A missing column family (never after a successful open).
    pub fn finish(self) -> Result<(WriteBatch, HashMap<ShardId, ShardState>), StorageError> {
        let mut batch = WriteBatch::default();
        let data = self.engine.cf(CF_DATA)?;
        let ttl = self.engine.cf(CF_TTL)?;
        let meta = self.engine.cf(CF_META)?;
        for (k, v) in &self.staged {
            match v {
                Some(r) => batch.put_cf(data, k, r.encode()),
                None => batch.delete_cf(data, k),
            }
        }
        for (k, put) in &self.ttl_ops {
            if *put {
                batch.put_cf(ttl, k, []);
            } else {
                batch.delete_cf(ttl, k);
            }
        }
        for (shard, st) in &self.states {
            batch.put_cf(meta, shard_state_key(*shard), st.encode());
        }
        for (k, record) in &self.dedup {
            batch.put_cf(meta, k, record.encode()?);
        }
        Ok((batch, self.states))
    }
}

/// Builds the data key and TTL keys used by [`ops`].
fn keys_for(shard: ShardId, user_key: &[u8]) -> Vec<u8> {
    data_key(shard, user_key)
}

fn ttl_entry(shard: ShardId, expires_at_ms: u64, user_key: &[u8]) -> Vec<u8> {
    ttl_key(shard, expires_at_ms, user_key)
}
