//! Whether a caller's roles grant what a request needs. Deny by default:
//! a need no grant covers is refused, and the refusal names it.

use crate::model::{KeyPermission, KeyRange, Role, shown};
use crate::request::Need;

/// Who a request is from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, and how they proved it.
    User {
        /// User name.
        name: String,
        /// How the request proved it.
        credential: Credential,
    },
    /// A node of this cluster (its certificate names it).
    Node(u64),
}

impl Principal {
    /// The name the audit log records.
    pub fn describe(&self) -> String {
        match self {
            Principal::User { name, .. } => name.clone(),
            Principal::Node(id) => format!("node {id}"),
        }
    }
}

/// How a user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A session token from Login.
    SessionToken,
    /// A long-lived API token.
    ApiToken,
    /// A client certificate mapped to the user.
    Certificate,
    /// Named by the node that forwarded the request (which authenticated
    /// it); trusted only from a node certificate of this cluster.
    Forwarded,
}

impl Credential {
    /// The name used in WhoAmI and the audit log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Credential::SessionToken => "session_token",
            Credential::ApiToken => "api_token",
            Credential::Certificate => "certificate",
            Credential::Forwarded => "forwarded",
        }
    }
}

/// A refused request: the first need nothing granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// What was needed.
    pub need: Need,
    /// The refusal in words (names the permission and key, range or action).
    pub message: String,
}

/// What the check sees of the caller.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A user holding these roles (unknown role names already dropped).
    User(&'a [Role]),
    /// A node of this cluster.
    Node,
}

/// Checks every need of a request against `subject`. `peers_open`: the
/// cluster runs without TLS, so no caller can prove it is a node and
/// [`Need::Peer`] is not enforced (the peer API is open then anyway).
///
/// # Errors
/// The first need not granted.
pub fn check(subject: Subject<'_>, needs: &[Need], peers_open: bool) -> Result<(), Denial> {
    for need in needs {
        let granted = match (subject, need) {
            (_, Need::Nothing) => true,
            (_, Need::Peer) if peers_open => true,
            (Subject::Node, Need::Peer | Need::Authenticated) => true,
            (Subject::Node, _) => false,
            (Subject::User(_), Need::Peer) => false,
            (Subject::User(_), Need::Authenticated) => true,
            (Subject::User(roles), Need::Admin(a)) => roles.iter().any(|r| r.admin.contains(a)),
            (Subject::User(roles), Need::Key(p, k)) => roles
                .iter()
                .flat_map(|r| &r.rules)
                .any(|rule| rule.permissions.contains(p) && rule.range.contains(k)),
            (Subject::User(roles), Need::Range(p, range)) => covered(roles, *p, range),
        };
        if !granted {
            return Err(Denial {
                need: need.clone(),
                message: refusal(subject, need),
            });
        }
    }
    Ok(())
}

/// Whether the union of the ranges granting `p` covers all of `want`.
fn covered(roles: &[Role], p: KeyPermission, want: &KeyRange) -> bool {
    if want.is_empty() {
        return true;
    }
    let mut grants: Vec<&KeyRange> = roles
        .iter()
        .flat_map(|r| &r.rules)
        .filter(|rule| rule.permissions.contains(&p))
        .map(|rule| &rule.range)
        .collect();
    grants.sort_by(|a, b| a.start.cmp(&b.start));
    let mut cursor = want.start.clone();
    loop {
        // The furthest end among grants containing the cursor.
        let mut best: Option<Option<&Vec<u8>>> = None;
        for g in &grants {
            if g.contains(&cursor) {
                let end = g.end.as_ref();
                best = Some(match (best, end) {
                    (None, e) => e,
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(b)), Some(e)) => Some(if e > b { e } else { b }),
                });
            }
        }
        match best {
            None => return false,
            Some(None) => return true,
            Some(Some(end)) => {
                if want.end.as_ref().is_some_and(|w| end >= w) {
                    return true;
                }
                cursor = end.clone();
            }
        }
    }
}

fn refusal(subject: Subject<'_>, need: &Need) -> String {
    let who = match subject {
        Subject::Node => "a node certificate grants only peer calls".to_string(),
        Subject::User(roles) => {
            let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
            if names.is_empty() {
                "the user holds no role".to_string()
            } else {
                format!("no role of the user ({}) grants it", names.join(", "))
            }
        }
    };
    match need {
        Need::Key(p, k) => format!("needs {} on key {}; {who}", p.as_str(), shown(k)),
        Need::Range(p, r) => format!("needs {} on every key of {r}; {who}", p.as_str()),
        Need::Admin(a) => format!("needs admin permission {}; {who}", a.as_str()),
        Need::Peer => "only nodes of this cluster (node certificates) may call this".into(),
        Need::Authenticated => format!("needs an authenticated caller; {who}"),
        Need::Nothing => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AdminPermission, Rule};

    fn role(rules: &[(KeyRange, &[KeyPermission])]) -> Role {
        Role {
            name: "app".into(),
            rules: rules
                .iter()
                .map(|(range, p)| Rule {
                    range: range.clone(),
                    permissions: p.iter().copied().collect(),
                })
                .collect(),
            admin: Default::default(),
        }
    }

    #[test]
    fn a_scan_must_stay_inside_the_union_of_grants() {
        use KeyPermission::*;
        let roles = [role(&[
            (KeyRange::prefix(b"a/"), &[Scan]),
            (KeyRange::between(b"a0", b"c"), &[Scan]),
            (KeyRange::prefix(b"x/"), &[Read]),
        ])];
        let s = Subject::User(&roles);
        let scan = |r: KeyRange| check(s, &[Need::Range(Scan, r)], false);
        scan(KeyRange::prefix(b"a/")).unwrap();
        // Two touching grants cover their union.
        scan(KeyRange::between(b"a/x", b"b")).unwrap();
        // Starts inside a grant, ends outside every one.
        let d = scan(KeyRange::between(b"a/x", b"d")).unwrap_err();
        assert!(
            d.message.contains("needs scan on every key of"),
            "{}",
            d.message
        );
        scan(KeyRange::between(b"a/", b"")).unwrap_err();
        // Read on x/ does not grant scanning it.
        scan(KeyRange::prefix(b"x/")).unwrap_err();
        // The unbounded grant covers an unbounded scan.
        let all = [role(&[(KeyRange::all(), &[Scan])])];
        check(
            Subject::User(&all),
            &[Need::Range(Scan, KeyRange::between(b"q", b""))],
            false,
        )
        .unwrap();
    }

    #[test]
    fn nodes_get_peer_calls_only_and_users_never_do_under_tls() {
        let root = [Role::built_in(crate::model::ROOT_ROLE).unwrap()];
        check(Subject::Node, &[Need::Peer], false).unwrap();
        check(Subject::Node, &[Need::Authenticated], false).unwrap();
        check(
            Subject::Node,
            &[Need::Key(KeyPermission::Read, b"k".to_vec())],
            false,
        )
        .unwrap_err();
        check(Subject::User(&root), &[Need::Peer], false).unwrap_err();
        check(Subject::User(&root), &[Need::Peer], true).unwrap();
        check(
            Subject::User(&root),
            &[Need::Admin(AdminPermission::Users)],
            false,
        )
        .unwrap();
        let ro = [Role::built_in(crate::model::READONLY_ROLE).unwrap()];
        let d = check(
            Subject::User(&ro),
            &[Need::Key(KeyPermission::Write, b"k".to_vec())],
            false,
        )
        .unwrap_err();
        assert_eq!(
            d.message,
            "needs write on key \"k\"; no role of the user (readonly) grants it"
        );
    }
}
