//! Client write requests → state-machine commands: the limits, the one shard
//! a request may touch, and the [`CommandOp`] it becomes. Pure (no storage,
//! no clock), so the gRPC and HTTP front ends, the tests and the fuzz
//! targets all go through the same checks.

use cairn_proto::ErrorCode;
use cairn_proto::kv::v1 as pb;

use super::{KvError, Limits};
use crate::apply::{CommandOp, show_key};
use crate::partition::{ShardCount, ShardId};

/// A checked write request, ready to be proposed to its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The one shard every key of the request belongs to.
    pub shard: ShardId,
    /// The state-machine operation.
    pub op: CommandOp,
    /// The client's request id (empty for none).
    pub request_id: Vec<u8>,
}

/// A single-key write (`Put`, `Update` or `Delete`) as a one-op batch.
///
/// # Errors
/// Key, value, TTL or request-id limits, conflicting conditions.
pub fn single_command(
    limits: &Limits,
    shards: ShardCount,
    op: pb::write_op::Op,
) -> Result<Proposal, KvError> {
    let (_, key) = check_write_op(limits, None, Some(&op))?;
    let request_id = match &op {
        pb::write_op::Op::Put(p) => p.request_id.clone(),
        pb::write_op::Op::Update(u) => u.request_id.clone(),
        pb::write_op::Op::Delete(d) => d.request_id.clone(),
    };
    limits.check_request_id(&request_id)?;
    Ok(Proposal {
        shard: shards.shard_for_key(&key),
        op: CommandOp::Batch(vec![pb::WriteOp { op: Some(op) }]),
        request_id,
    })
}

/// A `Batch`: writes applied in order, all or nothing, within one shard.
///
/// # Errors
/// An empty batch or op, limits, keys of more than one shard.
pub fn batch_command(
    limits: &Limits,
    shards: ShardCount,
    req: pb::BatchRequest,
) -> Result<Proposal, KvError> {
    if req.ops.is_empty() {
        return Err(KvError::invalid(
            ErrorCode::EmptyRequest,
            "batch has no ops",
        ));
    }
    let mut bytes = 0;
    let mut keys = Vec::with_capacity(req.ops.len());
    for (i, op) in req.ops.iter().enumerate() {
        let (b, k) = check_write_op(limits, Some(i), op.op.as_ref())?;
        bytes += b;
        keys.push(k);
    }
    limits.check_batch_totals("batch", req.ops.len(), bytes)?;
    limits.check_request_id(&req.request_id)?;
    let shard = one_shard(shards, "batch", keys.iter().map(Vec::as_slice))?;
    Ok(Proposal {
        shard,
        op: CommandOp::Batch(req.ops),
        request_id: req.request_id,
    })
}

/// A `Txn`: compare, then one branch, within one shard.
///
/// # Errors
/// Unknown compare targets or operators, limits, keys of more than one
/// shard, a txn naming no keys.
pub fn txn_command(
    limits: &Limits,
    shards: ShardCount,
    req: pb::TxnRequest,
) -> Result<Proposal, KvError> {
    use pb::txn_op::Op;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for c in &req.compares {
        limits.check_key(&c.key)?;
        if pb::compare::Target::try_from(c.target).is_err()
            || pb::compare::Op::try_from(c.op).is_err()
        {
            return Err(KvError::invalid(
                ErrorCode::BadCompare,
                format!(
                    "compare on key {} has an unknown target or operator",
                    show_key(&c.key)
                ),
            ));
        }
        bytes += c.key.len() + c.value.len();
        keys.push(c.key.clone());
    }
    for (i, op) in req.success.iter().chain(&req.failure).enumerate() {
        let write = match &op.op {
            Some(Op::Put(p)) => Some(pb::write_op::Op::Put(p.clone())),
            Some(Op::Update(u)) => Some(pb::write_op::Op::Update(u.clone())),
            Some(Op::Delete(d)) => Some(pb::write_op::Op::Delete(d.clone())),
            Some(Op::Get(g)) => {
                limits.check_key(&g.key).map_err(|e| prefix_error(i, e))?;
                bytes += g.key.len();
                keys.push(g.key.clone());
                continue;
            }
            None => None,
        };
        let (b, k) = check_write_op(limits, Some(i), write.as_ref())?;
        bytes += b;
        keys.push(k);
    }
    limits.check_batch_totals(
        "txn",
        req.compares.len() + req.success.len() + req.failure.len(),
        bytes,
    )?;
    limits.check_request_id(&req.request_id)?;
    let shard = one_shard(shards, "txn", keys.iter().map(Vec::as_slice))?;
    let request_id = req.request_id.clone();
    Ok(Proposal {
        shard,
        op: CommandOp::Txn(req),
        request_id,
    })
}

/// Checks one write op (`i` is its place in a batch or txn, for messages);
/// returns its size in bytes and its key.
fn check_write_op(
    limits: &Limits,
    i: Option<usize>,
    op: Option<&pb::write_op::Op>,
) -> Result<(usize, Vec<u8>), KvError> {
    use pb::write_op::Op;
    let at = |e: KvError| match i {
        Some(i) => prefix_error(i, e),
        None => e,
    };
    match op {
        Some(Op::Put(p)) => Ok((limits.check_put(p).map_err(at)?, p.key.clone())),
        Some(Op::Update(u)) => Ok((limits.check_update(u).map_err(at)?, u.key.clone())),
        Some(Op::Delete(d)) => {
            limits.check_key(&d.key).map_err(at)?;
            Ok((d.key.len(), d.key.clone()))
        }
        None => Err(KvError::invalid(
            ErrorCode::EmptyOp,
            format!("op {} is empty", i.unwrap_or(0)),
        )),
    }
}

/// The one shard all `keys` belong to.
fn one_shard<'k>(
    shards: ShardCount,
    what: &str,
    keys: impl Iterator<Item = &'k [u8]>,
) -> Result<ShardId, KvError> {
    let mut shard: Option<(ShardId, &[u8])> = None;
    for k in keys {
        let s = shards.shard_for_key(k);
        match shard {
            None => shard = Some((s, k)),
            Some((first, first_key)) if first != s => {
                return Err(KvError::invalid(
                    ErrorCode::CrossShard,
                    format!(
                        "{what} spans shards {first} (key {}) and {s} (key {}); a {what} must stay in one shard: give related keys the same hash tag, e.g. {{user42}}/a and {{user42}}/b",
                        show_key(first_key),
                        show_key(k)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    shard
        .map(|(s, _)| s)
        .ok_or_else(|| KvError::invalid(ErrorCode::EmptyRequest, format!("{what} names no keys")))
}

/// Prefixes an argument error with the op it is about.
fn prefix_error(i: usize, e: KvError) -> KvError {
    match e {
        KvError::InvalidArgument { code, message } => KvError::InvalidArgument {
            code,
            message: format!("op {i}: {message}"),
        },
        KvError::TooLarge { code, message } => KvError::TooLarge {
            code,
            message: format!("op {i}: {message}"),
        },
        other => other,
    }
}
