//! What a run records: every operation a client called, with its input, its
//! outcome and the times it was called and returned.
//!
//! Values are unique per write (`c<client>-<n>`), so a read names the write
//! it saw. A history is plain JSON so a failing run can be written to a file
//! and re-checked offline (`cairn-chaos check FILE`).

use serde::{Deserialize, Serialize};

/// Nanoseconds since the run started (a monotonic clock).
pub type Nanos = u64;

/// How a read was asked to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started.
    Linearizable,
    /// Served from the local replica; may be stale, never invents a value.
    Serializable,
}

/// What a client asked for, on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    /// Unconditional put.
    Put {
        /// The (unique) value written.
        value: String,
    },
    /// Put with `if_absent`.
    PutIfAbsent {
        /// The value written.
        value: String,
    },
    /// Put with `if_mod_revision` set to the revision at which `expect` was
    /// read: succeeds only while the key still holds that write.
    PutIfValue {
        /// The value the key must hold.
        expect: String,
        /// The value written.
        value: String,
    },
    /// Update: succeeds only if the key exists.
    Update {
        /// The value written.
        value: String,
    },
    /// Delete.
    Delete,
    /// Get.
    Get {
        /// How it was served.
        consistency: Consistency,
        /// `min_revision` sent with it (0: none).
        #[serde(default)]
        min_revision: u64,
    },
    /// Single-shard `Txn`: if the value equals `expect`, put `value`, else
    /// get the key.
    CompareAndSet {
        /// The value compared against.
        expect: String,
        /// The value written when the compare holds.
        value: String,
    },
}

impl Input {
    /// Whether this operation can change the key.
    pub fn is_write(&self) -> bool {
        !matches!(self, Input::Get { .. })
    }

    /// The value this operation writes, if any.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Input::Put { value }
            | Input::PutIfAbsent { value }
            | Input::PutIfValue { value, .. }
            | Input::Update { value }
            | Input::CompareAndSet { value, .. } => Some(value),
            Input::Delete | Input::Get { .. } => None,
        }
    }
}

/// A key's contents as a read reports them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stored {
    /// The value.
    pub value: String,
    /// Writes since the key was (re)created: 1 after the first.
    pub version: u64,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Output {
    /// A write applied; the key's version after it.
    Written {
        /// The version the response reported.
        version: u64,
        /// The shard revision of the write.
        revision: u64,
    },
    /// The write's condition did not hold (`key_exists`,
    /// `revision_mismatch`, `key_not_found`): nothing was applied.
    Refused {
        /// The server's error code.
        code: String,
    },
    /// A delete applied.
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A read (or a compare-and-set whose compare failed, which reads).
    Read {
        /// What the key held (`None`: absent).
        found: Option<Stored>,
        /// The key's `mod_revision` (0 when absent).
        #[serde(default)]
        mod_revision: u64,
        /// The response header's revision.
        #[serde(default)]
        header_revision: u64,
    },
    /// The outcome is unknown (timeout, lost connection, unavailable).
    Unknown {
        /// Why.
        error: String,
    },
}

/// How the client reached the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The smart gRPC client.
    Grpc,
    /// The HTTP gateway of one node.
    Http,
}

/// One operation: input, outcome and its call and return times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client (one operation at a time per client).
    pub client: u32,
    /// The key.
    pub key: String,
    /// What was asked.
    pub input: Input,
    /// What came back.
    pub output: Output,
    /// When it was called.
    pub call: Nanos,
    /// When it returned (for an unknown outcome: when the client gave up;
    /// the checker lets such an operation take effect at any later point,
    /// or never).
    pub ret: Nanos,
    /// How the cluster was reached.
    pub via: Via,
}

impl Operation {
    /// Whether the outcome is unknown.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self.output, Output::Unknown { .. })
    }
}

/// Ops in call order.
pub type History = Vec<Operation>;
