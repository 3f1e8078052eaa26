//! Access-control records in the meta group: the auth configuration
//! (enabled, signing keys), users and roles, one JSON record each under
//! `auth/`. Every node reads them from its own meta replica; changes are
//! conditional meta transactions (the record's mod revision must still be
//! the one read), so two admins changing the same user cannot lose either
//! change silently.

use std::collections::{BTreeMap, HashMap};

use cairn_auth::model::{Role, User};
use cairn_auth::token::KeyRing;
use cairn_proto::kv::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::apply::{Command, CommandOp};
use crate::cluster::meta::META_SHARD;
use crate::raft::ShardRequest;
use crate::storage::{Engine, StorageError};

/// Where the auth configuration lives.
pub const CONFIG_KEY: &[u8] = b"auth/config";
const USER_PREFIX: &str = "auth/user/";
const ROLE_PREFIX: &str = "auth/role/";
const AUTH_PREFIX: &[u8] = b"auth/";

/// The cluster's auth configuration. Its presence means authentication is
/// on (it is written once, with the root user, at bootstrap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Session-token signing keys.
    pub ring: KeyRing,
}

/// The meta key of user `name`.
pub fn user_key(name: &str) -> Vec<u8> {
    format!("{USER_PREFIX}{name}").into_bytes()
}

/// The meta key of role `name`.
pub fn role_key(name: &str) -> Vec<u8> {
    format!("{ROLE_PREFIX}{name}").into_bytes()
}

/// Everything under `auth/`, as one node's meta replica has it.
#[derive(Debug, Clone, Default)]
pub struct AuthRecords {
    /// The configuration and its mod revision; `None`: authentication off.
    pub config: Option<(AuthConfig, u64)>,
    /// Users by name, with mod revisions.
    pub users: BTreeMap<String, (User, u64)>,
    /// Stored roles by name, with mod revisions (built-in ones are not stored).
    pub roles: BTreeMap<String, (Role, u64)>,
    /// API token id → user name.
    pub api_tokens: HashMap<String, String>,
}

fn json<T: serde::de::DeserializeOwned>(key: &[u8], b: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(b).map_err(|e| {
        StorageError::Corrupt(format!("meta record {}: {e}", String::from_utf8_lossy(key)))
    })
}

/// Reads every access-control record.
///
/// # Errors
/// Storage failure or an unreadable record.
pub fn read(engine: &Engine) -> Result<AuthRecords, StorageError> {
    let mut out = AuthRecords::default();
    for (key, rec) in crate::cluster::meta::records_under(engine, AUTH_PREFIX)? {
        let rev = rec.meta.mod_revision;
        if key == CONFIG_KEY {
            out.config = Some((json(&key, &rec.value)?, rev));
        } else if let Some(name) = key.strip_prefix(USER_PREFIX.as_bytes()) {
            let user: User = json(&key, &rec.value)?;
            for t in &user.api_tokens {
                out.api_tokens.insert(t.id.clone(), user.name.clone());
            }
            out.users
                .insert(String::from_utf8_lossy(name).into_owned(), (user, rev));
        } else if let Some(name) = key.strip_prefix(ROLE_PREFIX.as_bytes()) {
            out.roles.insert(
                String::from_utf8_lossy(name).into_owned(),
                (json(&key, &rec.value)?, rev),
            );
        }
    }
    Ok(out)
}

/// One write of a conditional change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Store `value` (JSON) at `key`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

impl Change {
    /// Stores `value` as JSON at `key`.
    ///
    /// # Errors
    /// Serialisation failure.
    pub fn put<T: Serialize>(key: Vec<u8>, value: &T) -> Result<Self, StorageError> {
        let v = serde_json::to_vec(value).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok(Self::Put(key, v))
    }
}

/// The meta command applying `changes` if every `(key, mod_revision)` in
/// `expect` still holds (0: the key is absent). Its outcome says whether
/// it applied ([`crate::cluster::meta::txn_succeeded`] reads it).
pub fn conditional(expect: &[(Vec<u8>, u64)], changes: Vec<Change>, now_ms: u64) -> ShardRequest {
    let ops = changes
        .into_iter()
        .map(|c| pb::TxnOp {
            op: Some(match c {
                Change::Put(key, value) => pb::txn_op::Op::Put(pb::PutRequest {
                    key,
                    value,
                    ..Default::default()
                }),
                Change::Delete(key) => pb::txn_op::Op::Delete(pb::DeleteRequest {
                    key,
                    ..Default::default()
                }),
            }),
        })
        .collect();
    ShardRequest::from_command(&Command {
        shard: META_SHARD,
        now_ms,
        op: CommandOp::Txn(pb::TxnRequest {
            compares: expect
                .iter()
                .map(|(key, rev)| pb::Compare {
                    key: key.clone(),
                    target: pb::compare::Target::ModRevision as i32,
                    op: pb::compare::Op::Equal as i32,
                    number: *rev,
                    ..Default::default()
                })
                .collect(),
            success: ops,
            ..Default::default()
        }),
        request_id: Vec::new(),
    })
}
