//! Types of a shard's Raft group: what a log entry carries and what applying
//! it returns.

use cairn_proto::kv::v1 as pb;
use cairn_proto::raft::v1 as rpb;
use prost::Message as _;
use serde::{Deserialize, Serialize};

pub use crate::apply::EncodedOutput;
use crate::apply::{ApplyError, Command, CommandOp, DueKey};
use crate::partition::ShardId;

/// A log entry's application data: an encoded `cairn.raft.v1.ShardCommand`.
///
/// Protobuf (not serde) keeps the command format versioned and readable by
/// other languages; serde only frames it inside openraft's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest {
    /// The encoded `ShardCommand`.
    pub command: Vec<u8>,
}

/// What applying a [`ShardRequest`] returned, for the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardResponse {
    /// The shard's revision after the entry.
    pub revision: u64,
    /// The command's output, or why it was refused (nothing applied).
    pub outcome: Option<Result<EncodedOutput, ApplyError>>,
}

impl std::fmt::Display for ShardRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard command ({} bytes)", self.command.len())
    }
}

impl std::fmt::Display for ShardResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            None => write!(f, "no-op at revision {}", self.revision),
            Some(Ok(_)) => write!(f, "applied at revision {}", self.revision),
            Some(Err(e)) => write!(f, "refused: {e}"),
        }
    }
}

openraft::declare_raft_types!(
    /// Type configuration of a shard's Raft group.
    pub ShardRaft:
        D = ShardRequest,
        R = ShardResponse,
);

impl ShardRequest {
    /// Encodes `cmd` for the log.
    pub fn from_command(cmd: &Command) -> Self {
        let op = match &cmd.op {
            CommandOp::Batch(ops) => rpb::shard_command::Op::Batch(pb::BatchRequest {
                ops: ops.clone(),
                request_id: Vec::new(),
            }),
            CommandOp::Txn(t) => rpb::shard_command::Op::Txn(t.clone()),
            CommandOp::Expire(keys) => rpb::shard_command::Op::Expire(rpb::Expire {
                keys: keys
                    .iter()
                    .map(|k| rpb::DueKey {
                        key: k.key.clone(),
                        expires_at_ms: k.expires_at_ms,
                    })
                    .collect(),
            }),
        };
        let msg = rpb::ShardCommand {
            now_ms: cmd.now_ms,
            op: Some(op),
            request_id: cmd.request_id.clone(),
        };
        Self {
            command: msg.encode_to_vec(),
        }
    }

    /// Decodes the command for `shard`.
    ///
    /// # Errors
    /// A message that is not a valid `ShardCommand` or carries no operation.
    pub fn to_command(&self, shard: ShardId) -> Result<Command, String> {
        let msg = rpb::ShardCommand::decode(self.command.as_slice())
            .map_err(|e| format!("undecodable shard command: {e}"))?;
        let op = match msg.op {
            Some(rpb::shard_command::Op::Batch(b)) => CommandOp::Batch(b.ops),
            Some(rpb::shard_command::Op::Txn(t)) => CommandOp::Txn(t),
            Some(rpb::shard_command::Op::Expire(e)) => CommandOp::Expire(
                e.keys
                    .into_iter()
                    .map(|k| DueKey {
                        key: k.key,
                        expires_at_ms: k.expires_at_ms,
                    })
                    .collect(),
            ),
            None => return Err("shard command without an operation".into()),
        };
        Ok(Command {
            shard,
            now_ms: msg.now_ms,
            op,
            request_id: msg.request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_the_log_encoding() {
        let cmd = Command {
            shard: 7,
            now_ms: 1234,
            op: CommandOp::Expire(vec![DueKey {
                key: b"k".to_vec(),
                expires_at_ms: 99,
            }]),
            request_id: b"retry-me".to_vec(),
        };
        let back = ShardRequest::from_command(&cmd).to_command(7).unwrap();
        assert_eq!(back.now_ms, 1234);
        assert_eq!(back.request_id, b"retry-me");
        assert!(matches!(back.op, CommandOp::Expire(ref k) if k[0].expires_at_ms == 99));
        assert!(
            ShardRequest {
                command: vec![0xff, 0xff]
            }
            .to_command(0)
            .is_err()
        );
    }
}
