//! Users, roles and the rules roles hold, as the meta group stores them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a rule lets a caller do with the keys it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPermission {
    /// Read a key's value and metadata (Get, BatchGet, Txn gets and
    /// compares, `return_previous`).
    Read,
    /// Create or replace a key (Put, Update).
    Write,
    /// Delete a key.
    Delete,
    /// List keys and values of a range (Scan).
    Scan,
}

impl KeyPermission {
    /// Every key permission.
    pub const ALL: [KeyPermission; 4] = [Self::Read, Self::Write, Self::Delete, Self::Scan];

    /// The name used in the CLI, logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Scan => "scan",
        }
    }

    /// The permission named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Cluster administration a role may perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminPermission {
    /// Cluster and rebalance status.
    ClusterRead,
    /// Drain, cancel drain, remove, replace, leader evacuation and transfer.
    NodeLifecycle,
    /// Pause, resume and cancel rebalancing.
    Rebalance,
    /// Users, roles, API tokens and signing keys.
    Users,
}

impl AdminPermission {
    /// Every admin permission.
    pub const ALL: [AdminPermission; 4] = [
        Self::ClusterRead,
        Self::NodeLifecycle,
        Self::Rebalance,
        Self::Users,
    ];

    /// The name used in the CLI, logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClusterRead => "cluster_read",
            Self::NodeLifecycle => "node_lifecycle",
            Self::Rebalance => "rebalance",
            Self::Users => "users",
        }
    }

    /// The permission named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Keys from `start` (inclusive) to `end` (exclusive; `None`: to the last
/// key). A prefix is the range from the prefix to its successor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyRange {
    /// First key covered.
    pub start: Vec<u8>,
    /// First key not covered; `None` means no end.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        Self {
            start: Vec::new(),
            end: None,
        }
    }

    /// Every key beginning with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self {
            start: prefix.to_vec(),
            end: prefix_successor(prefix),
        }
    }

    /// `[start, end)`; an empty `end` means no end.
    pub fn between(start: &[u8], end: &[u8]) -> Self {
        Self {
            start: start.to_vec(),
            end: (!end.is_empty()).then(|| end.to_vec()),
        }
    }

    /// The one key `key`.
    pub fn single(key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        Self {
            start: key.to_vec(),
            end: Some(end),
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// Whether the range covers no key.
    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|e| e <= self.start.as_slice())
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end {
            Some(e) => write!(f, "[{}, {})", shown(&self.start), shown(e)),
            None => write!(f, "[{}, end)", shown(&self.start)),
        }
    }
}

/// A key as it appears in messages: text when printable, else hex.
pub fn shown(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// The first key after every key beginning with `prefix` (`None` when the
/// prefix is empty or all `0xff`: no key follows them all).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One grant of a role: permissions on a range of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The keys.
    pub range: KeyRange,
    /// What may be done with them.
    pub permissions: BTreeSet<KeyPermission>,
}

/// A named set of grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Unique name.
    pub name: String,
    /// Key grants.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Admin grants.
    #[serde(default)]
    pub admin: BTreeSet<AdminPermission>,
}

/// The built-in role that may do everything.
pub const ROOT_ROLE: &str = "root";
/// The built-in role that may read and scan every key and read cluster status.
pub const READONLY_ROLE: &str = "readonly";
/// The user created at bootstrap, holding [`ROOT_ROLE`].
pub const ROOT_USER: &str = "root";

impl Role {
    /// The built-in role named `name`, if it is one.
    pub fn built_in(name: &str) -> Option<Role> {
        match name {
            ROOT_ROLE => Some(Role {
                name: ROOT_ROLE.into(),
                rules: vec![Rule {
                    range: KeyRange::all(),
                    permissions: KeyPermission::ALL.into_iter().collect(),
                }],
                admin: AdminPermission::ALL.into_iter().collect(),
            }),
            READONLY_ROLE => Some(Role {
                name: READONLY_ROLE.into(),
                rules: vec![Rule {
                    range: KeyRange::all(),
                    permissions: [KeyPermission::Read, KeyPermission::Scan].into(),
                }],
                admin: [AdminPermission::ClusterRead].into(),
            }),
            _ => None,
        }
    }

    /// Checks the role is well formed.
    ///
    /// # Errors
    /// A bad name, a built-in name, an empty range or a rule without
    /// permissions, said in words.
    pub fn validate(&self) -> Result<(), String> {
        check_name("role", &self.name)?;
        if Self::built_in(&self.name).is_some() {
            return Err(format!(
                "role {:?} is built in and cannot be changed",
                self.name
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.range.is_empty() {
                return Err(format!("rule {i} covers no key: {}", r.range));
            }
            if r.permissions.is_empty() {
                return Err(format!("rule {i} ({}) grants no permission", r.range));
            }
        }
        Ok(())
    }
}

/// A stored API token: its public id and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    /// Public id (also part of the token).
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub sha256: String,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// argon2id hash in PHC string form; `None`: no password login.
    #[serde(default)]
    pub password: Option<String>,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Bumped by every change to the user: session tokens carry the epoch
    /// they were issued at and stop working when it moves, so changing or
    /// revoking one user ends only that user's sessions.
    #[serde(default)]
    pub epoch: u64,
    /// Client-certificate identities (SAN URI or DNS name, exactly) that
    /// sign in as this user: an explicit mapping, never the raw subject CN.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Long-lived API tokens.
    #[serde(default)]
    pub api_tokens: Vec<ApiTokenRecord>,
}

impl User {
    /// Checks names and identities are well formed.
    ///
    /// # Errors
    /// A bad user or role name, or an empty certificate identity.
    pub fn validate(&self) -> Result<(), String> {
        check_name("user", &self.name)?;
        for r in &self.roles {
            check_name("role", r)?;
        }
        if self.certificates.iter().any(|c| c.trim().is_empty()) {
            return Err("a certificate identity is empty".into());
        }
        Ok(())
    }
}

/// Longest user or role name.
pub const MAX_NAME_LEN: usize = 128;

/// Names are 1–128 characters of letters, digits and `-_.@:`.
///
/// # Errors
/// The rule, in words.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is not 1 to {MAX_NAME_LEN} characters of letters, digits and -_.@:"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_their_keys() {
        let r = KeyRange::prefix(b"app/");
        assert!(r.contains(b"app/"));
        assert!(r.contains(b"app/x\xff"));
        assert!(!r.contains(b"app0"));
        assert!(!r.contains(b"apo"));
        let ff = KeyRange::prefix(b"a\xff");
        assert_eq!(ff.end.as_deref(), Some(&b"b"[..]));
        assert_eq!(KeyRange::prefix(b""), KeyRange::all());
        assert!(KeyRange::single(b"k").contains(b"k"));
        assert!(!KeyRange::single(b"k").contains(b"k\0"));
        assert!(KeyRange::between(b"b", b"a").is_empty());
    }

    #[test]
    fn built_in_roles_cannot_be_redefined_and_names_are_checked() {
        let mut r = Role::built_in(ROOT_ROLE).unwrap();
        assert!(r.validate().is_err());
        r.name = "ops team".into();
        assert!(r.validate().unwrap_err().contains("letters, digits"));
        r.name = "ops".into();
        r.validate().unwrap();
        r.rules[0].permissions.clear();
        assert!(r.validate().unwrap_err().contains("grants no permission"));
    }
}
