//! Semantics of each write operation, executed inside an [`ApplyGroup`].

use cairn_proto::kv::v1 as pb;
use pb::compare::{Op as CmpOp, Target};

use super::{ApplyError, ApplyGroup, CommandOutput, DueKey, Staged, keys_for, ttl_entry};
use crate::partition::ShardId;
use crate::storage::StorageError;
use crate::storage::record::{Record, RecordMeta};

type Outcome<T> = Result<Result<T, ApplyError>, StorageError>;

/// One command's execution: reads see the group's staged state plus this
/// command's own changes; writes stay local until the command succeeds.
pub(super) struct Exec<'g, 'a> {
    pub group: &'g ApplyGroup<'a>,
    pub shard: ShardId,
    pub now: u64,
    pub revision: u64,
    pub staged: Staged,
    pub ttl_ops: Vec<(Vec<u8>, bool)>,
    pub wrote: bool,
}

/// Converts stored metadata to the API's key-value form.
pub fn to_kv(key: &[u8], meta: &RecordMeta, value: Option<&[u8]>) -> pb::KeyValue {
    pb::KeyValue {
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec).unwrap_or_default(),
        create_revision: meta.create_revision,
        mod_revision: meta.mod_revision,
        version: meta.version,
        expires_at_ms: meta.expires_at_ms,
    }
}

/// An `if_mod_revision` condition: the live key's mod_revision (0 when
/// absent) must equal `expected`.
fn check_revision(
    index: usize,
    key: &[u8],
    live: Option<&Record>,
    expected: Option<u64>,
) -> Result<(), ApplyError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = live.map_or(0, |r| r.meta.mod_revision);
    if actual == expected {
        Ok(())
    } else {
        Err(ApplyError::RevisionMismatch {
            op_index: index,
            key: key.to_vec(),
            expected,
            actual,
        })
    }
}

struct WriteSpec<'r> {
    key: &'r [u8],
    value: &'r [u8],
    ttl_ms: u64,
    keep_ttl: bool,
    if_absent: bool,
    must_exist: bool,
    if_mod_revision: Option<u64>,
    return_previous: bool,
}

struct WriteDone {
    kv: pb::KeyValue,
    created: bool,
    previous: Option<pb::KeyValue>,
}

impl Exec<'_, '_> {
    /// The stored record (expired or not) as this command sees it.
    fn physical(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        let dk = keys_for(self.shard, key);
        if let Some(s) = self.staged.get(&dk) {
            return Ok(s.clone());
        }
        self.group.read(&dk)
    }

    /// The live (unexpired) record of `key`.
    fn live(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        Ok(self.physical(key)?.filter(|r| !r.meta.is_expired(self.now)))
    }

    fn store(&mut self, key: &[u8], old: Option<&Record>, new: Option<Record>) {
        let old_exp = old.map_or(0, |r| r.meta.expires_at_ms);
        let new_exp = new.as_ref().map_or(0, |r| r.meta.expires_at_ms);
        if old_exp != 0 && old_exp != new_exp {
            self.ttl_ops
                .push((ttl_entry(self.shard, old_exp, key), false));
        }
        if new_exp != 0 && new_exp != old_exp {
            self.ttl_ops
                .push((ttl_entry(self.shard, new_exp, key), true));
        }
        self.staged.insert(keys_for(self.shard, key), new);
    }

    fn write(&mut self, index: usize, spec: &WriteSpec<'_>) -> Outcome<WriteDone> {
        let physical = self.physical(spec.key)?;
        let live = physical.as_ref().filter(|r| !r.meta.is_expired(self.now));
        if spec.if_absent
            && let Some(r) = live
        {
            return Ok(Err(ApplyError::KeyExists {
                op_index: index,
                key: spec.key.to_vec(),
                mod_revision: r.meta.mod_revision,
            }));
        }
        if spec.must_exist && live.is_none() {
            return Ok(Err(ApplyError::NotFound {
                op_index: index,
                key: spec.key.to_vec(),
            }));
        }
        if let Err(e) = check_revision(index, spec.key, live, spec.if_mod_revision) {
            return Ok(Err(e));
        }
        let expires_at_ms = if spec.keep_ttl {
            live.map_or(0, |r| r.meta.expires_at_ms)
        } else if spec.ttl_ms > 0 {
            self.now.saturating_add(spec.ttl_ms)
        } else {
            0
        };
        let meta = RecordMeta {
            create_revision: live.map_or(self.revision, |r| r.meta.create_revision),
            mod_revision: self.revision,
            version: live.map_or(1, |r| r.meta.version + 1),
            expires_at_ms,
        };
        let previous = if spec.return_previous {
            live.map(|r| to_kv(spec.key, &r.meta, Some(&r.value)))
        } else {
            None
        };
        let created = live.is_none();
        let new = Record {
            meta,
            value: spec.value.to_vec(),
        };
        self.store(spec.key, physical.as_ref(), Some(new));
        self.wrote = true;
        Ok(Ok(WriteDone {
            kv: to_kv(spec.key, &meta, None),
            created,
            previous,
        }))
    }

    fn put(&mut self, index: usize, r: &pb::PutRequest) -> Outcome<pb::PutResponse> {
        let spec = WriteSpec {
            key: &r.key,
            value: &r.value,
            ttl_ms: r.ttl_ms,
            keep_ttl: r.keep_ttl,
            if_absent: r.if_absent,
            must_exist: false,
            if_mod_revision: r.if_mod_revision,
            return_previous: r.return_previous,
        };
        Ok(self.write(index, &spec)?.map(|d| pb::PutResponse {
            header: None,
            kv: Some(d.kv),
            created: d.created,
            previous: d.previous,
        }))
    }

    fn update(&mut self, index: usize, r: &pb::UpdateRequest) -> Outcome<pb::UpdateResponse> {
        let spec = WriteSpec {
            key: &r.key,
            value: &r.value,
            ttl_ms: r.ttl_ms,
            keep_ttl: r.keep_ttl,
            if_absent: false,
            must_exist: true,
            if_mod_revision: r.if_mod_revision,
            return_previous: r.return_previous,
        };
        Ok(self.write(index, &spec)?.map(|d| pb::UpdateResponse {
            header: None,
            kv: Some(d.kv),
            previous: d.previous,
        }))
    }

    fn delete(&mut self, index: usize, r: &pb::DeleteRequest) -> Outcome<pb::DeleteResponse> {
        let physical = self.physical(&r.key)?;
        let live = physical.as_ref().filter(|x| !x.meta.is_expired(self.now));
        if let Err(e) = check_revision(index, &r.key, live, r.if_mod_revision) {
            return Ok(Err(e));
        }
        let existed = live.is_some();
        let previous = if r.return_previous {
            live.map(|x| to_kv(&r.key, &x.meta, Some(&x.value)))
        } else {
            None
        };
        if physical.is_some() {
            // An expired record is removed too, but that changes nothing a
            // reader can see, so only a live one counts as a write.
            self.store(&r.key, physical.as_ref(), None);
        }
        self.wrote |= existed;
        Ok(Ok(pb::DeleteResponse {
            header: None,
            existed,
            previous,
        }))
    }

    fn get(&self, r: &pb::GetRequest) -> Result<pb::GetResponse, StorageError> {
        let kv = self
            .live(&r.key)?
            .map(|x| to_kv(&r.key, &x.meta, Some(&x.value)));
        Ok(pb::GetResponse { header: None, kv })
    }

    fn write_op(&mut self, index: usize, op: &pb::WriteOp) -> Outcome<pb::WriteResult> {
        use pb::write_op::Op;
        use pb::write_result::Result as R;
        let result = match &op.op {
            Some(Op::Put(p)) => self.put(index, p)?.map(R::Put),
            Some(Op::Update(u)) => self.update(index, u)?.map(R::Update),
            Some(Op::Delete(d)) => self.delete(index, d)?.map(R::Delete),
            None => Err(ApplyError::EmptyOp { op_index: index }),
        };
        Ok(result.map(|r| pb::WriteResult { result: Some(r) }))
    }

    pub fn batch(&mut self, ops: &[pb::WriteOp]) -> Outcome<CommandOutput> {
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.write_op(i, op)? {
                Ok(r) => results.push(r),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(CommandOutput::Batch(results)))
    }

    fn compare_holds(&self, c: &pb::Compare) -> Result<bool, StorageError> {
        let live = self.live(&c.key)?;
        let target = Target::try_from(c.target).unwrap_or(Target::Value);
        let op = CmpOp::try_from(c.op).unwrap_or(CmpOp::Equal);
        let ord = match target {
            Target::Value => {
                let v: &[u8] = live.as_ref().map_or(&[], |r| &r.value);
                v.cmp(&c.value[..])
            }
            Target::Version => live.map_or(0, |r| r.meta.version).cmp(&c.number),
            Target::CreateRevision => live.map_or(0, |r| r.meta.create_revision).cmp(&c.number),
            Target::ModRevision => live.map_or(0, |r| r.meta.mod_revision).cmp(&c.number),
            Target::Exists => u64::from(live.is_some()).cmp(&u64::from(c.number != 0)),
        };
        Ok(match op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Greater => ord.is_gt(),
            CmpOp::Less => ord.is_lt(),
        })
    }

    pub fn txn(&mut self, txn: &pb::TxnRequest) -> Outcome<CommandOutput> {
        use pb::txn_op::Op;
        use pb::txn_op_result::Result as R;
        let mut succeeded = true;
        for c in &txn.compares {
            if !self.compare_holds(c)? {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let mut results = Vec::with_capacity(branch.len());
        for (i, op) in branch.iter().enumerate() {
            let r = match &op.op {
                Some(Op::Put(p)) => self.put(i, p)?.map(R::Put),
                Some(Op::Update(u)) => self.update(i, u)?.map(R::Update),
                Some(Op::Delete(d)) => self.delete(i, d)?.map(R::Delete),
                Some(Op::Get(g)) => Ok(R::Get(self.get(g)?)),
                None => Err(ApplyError::EmptyOp { op_index: i }),
            };
            match r {
                Ok(r) => results.push(pb::TxnOpResult { result: Some(r) }),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(CommandOutput::Txn { succeeded, results }))
    }

    pub fn expire(&mut self, due: &[DueKey]) -> Outcome<CommandOutput> {
        let mut removed = 0;
        for d in due {
            let physical = self.physical(&d.key)?;
            match physical {
                Some(r)
                    if r.meta.expires_at_ms == d.expires_at_ms && r.meta.is_expired(self.now) =>
                {
                    self.store(&d.key, Some(&r), None);
                    removed += 1;
                }
                Some(r) if r.meta.expires_at_ms == d.expires_at_ms => {}
                _ => {
                    // The index entry is stale (key rewritten or already gone).
                    self.ttl_ops
                        .push((ttl_entry(self.shard, d.expires_at_ms, &d.key), false));
                }
            }
        }
        Ok(Ok(CommandOutput::Expired(removed)))
    }
}
