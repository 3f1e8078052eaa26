//! `cairnctl login|whoami|user|role|token|auth`: the access-control API
//! (`cairn.auth.v1.Auth`). Secrets are read from files or stdin, never taken
//! from the command line (where `ps` and shell history would show them).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use cairn_client::Client;
use cairn_proto::auth::v1 as authpb;
use serde_json::json;

use super::args::{AuthCommand, Command, RoleCommand, TokenCommand, UserArgs, UserCommand};
use super::execute::Format;
use super::failure::{UsageError, client_error};

/// An access-control command, its input read and checked (before any
/// connection is made).
#[derive(Debug)]
pub enum AccessCommand {
    /// `login`.
    Login {
        /// User.
        user: String,
        /// Password.
        password: String,
        /// Lifetime in ms (0: the cluster's default).
        ttl_ms: u64,
    },
    /// `whoami`.
    Whoami,
    /// `user add|set|passwd`.
    PutUser {
        /// The change.
        request: authpb::PutUserRequest,
        /// `passwd`: keep the user's roles and certificates.
        keep_roles: bool,
    },
    /// `user remove`.
    RemoveUser(String),
    /// `user list`.
    ListUsers,
    /// `role add`.
    PutRole(authpb::Role),
    /// `role remove`.
    RemoveRole(String),
    /// `role list`.
    ListRoles,
    /// `token create`.
    CreateToken {
        /// For whom.
        user: String,
        /// What for.
        description: String,
    },
    /// `token revoke`.
    RevokeToken(String),
    /// `auth rotate-key`.
    RotateKey,
}

/// Reads a password file (`-`: stdin); one line, the newline dropped.
///
/// # Errors
/// The file cannot be read, or is empty.
pub fn read_password(path: &Path) -> Result<String, UsageError> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_line(&mut s)
            .map_err(|e| UsageError::new(format!("reading the password from stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("reading {}: {e}", path.display())))?
    };
    let p = text.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err(UsageError::new(format!(
            "{} holds no password",
            path.display()
        )));
    }
    Ok(p)
}

/// Parses `prefix=P:PERMS` or `range=START..END:PERMS`.
///
/// # Errors
/// The rule's shape, in words.
pub fn parse_rule(text: &str) -> Result<authpb::KeyRule, UsageError> {
    let bad = |why: &str| {
        UsageError::new(format!(
            "rule {text:?}: {why} (expected prefix=P:PERMS or range=START..END:PERMS, PERMS from read,write,delete,scan)"
        ))
    };
    let (target, perms) = text.rsplit_once(':').ok_or_else(|| bad("no ':PERMS'"))?;
    let mut rule = authpb::KeyRule::default();
    if let Some(p) = target.strip_prefix("prefix=") {
        rule.prefix = p.as_bytes().to_vec();
    } else if let Some(r) = target.strip_prefix("range=") {
        let (a, b) = r
            .split_once("..")
            .ok_or_else(|| bad("a range needs START..END"))?;
        rule.start = a.as_bytes().to_vec();
        rule.end = b.as_bytes().to_vec();
    } else {
        return Err(bad("it must start with prefix= or range="));
    }
    for p in perms.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let perm = match p {
            "read" => authpb::KeyPermission::Read,
            "write" => authpb::KeyPermission::Write,
            "delete" => authpb::KeyPermission::Delete,
            "scan" => authpb::KeyPermission::Scan,
            other => return Err(bad(&format!("unknown permission {other:?}"))),
        };
        rule.permissions.push(perm as i32);
    }
    if rule.permissions.is_empty() {
        return Err(bad("no permission"));
    }
    Ok(rule)
}

/// Parses an admin permission name.
///
/// # Errors
/// An unknown name.
pub fn parse_admin(text: &str) -> Result<authpb::AdminPermission, UsageError> {
    Ok(match text {
        "cluster_read" => authpb::AdminPermission::ClusterRead,
        "node_lifecycle" => authpb::AdminPermission::NodeLifecycle,
        "rebalance" => authpb::AdminPermission::Rebalance,
        "users" => authpb::AdminPermission::Users,
        other => {
            return Err(UsageError::new(format!(
                "unknown admin permission {other:?} (cluster_read, node_lifecycle, rebalance, users)"
            )));
        }
    })
}

/// A command line, sorted.
pub enum Prepared {
    /// An access-control command, ready to send.
    Access(AccessCommand),
    /// Any other command, untouched.
    Other(Command),
}

/// Reads and checks what an access-control command needs.
///
/// # Errors
/// A malformed rule or permission, or a password file that cannot be read.
pub fn prepare(command: Command) -> Result<Prepared, UsageError> {
    Ok(Prepared::Access(match command {
        Command::Login {
            user,
            password_file,
            ttl,
        } => AccessCommand::Login {
            user,
            password: read_password(&password_file)?,
            ttl_ms: ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        },
        Command::Whoami => AccessCommand::Whoami,
        Command::User { command } => match command {
            UserCommand::Add(a) => AccessCommand::PutUser {
                request: put_user(a, true)?,
                keep_roles: false,
            },
            UserCommand::Set(a) => AccessCommand::PutUser {
                request: put_user(a, false)?,
                keep_roles: false,
            },
            UserCommand::Passwd {
                name,
                password_file,
            } => AccessCommand::PutUser {
                request: authpb::PutUserRequest {
                    name,
                    password: read_password(&password_file)?,
                    ..Default::default()
                },
                keep_roles: true,
            },
            UserCommand::Remove { name } => AccessCommand::RemoveUser(name),
            UserCommand::List => AccessCommand::ListUsers,
        },
        Command::Role { command } => match command {
            RoleCommand::Add { name, rules, admin } => AccessCommand::PutRole(authpb::Role {
                name,
                rules: rules
                    .iter()
                    .map(|r| parse_rule(r))
                    .collect::<Result<_, _>>()?,
                admin: admin
                    .iter()
                    .map(|a| parse_admin(a).map(|p| p as i32))
                    .collect::<Result<_, _>>()?,
                built_in: false,
            }),
            RoleCommand::Remove { name } => AccessCommand::RemoveRole(name),
            RoleCommand::List => AccessCommand::ListRoles,
        },
        Command::Token { command } => match command {
            TokenCommand::Create { user, description } => {
                AccessCommand::CreateToken { user, description }
            }
            TokenCommand::Revoke { id } => AccessCommand::RevokeToken(id),
        },
        Command::Auth {
            command: AuthCommand::RotateKey,
        } => AccessCommand::RotateKey,
        other => return Ok(Prepared::Other(other)),
    }))
}

fn perm_name(p: i32) -> &'static str {
    match authpb::KeyPermission::try_from(p) {
        Ok(authpb::KeyPermission::Read) => "read",
        Ok(authpb::KeyPermission::Write) => "write",
        Ok(authpb::KeyPermission::Delete) => "delete",
        Ok(authpb::KeyPermission::Scan) => "scan",
        _ => "?",
    }
}

fn admin_name(p: i32) -> &'static str {
    match authpb::AdminPermission::try_from(p) {
        Ok(authpb::AdminPermission::ClusterRead) => "cluster_read",
        Ok(authpb::AdminPermission::NodeLifecycle) => "node_lifecycle",
        Ok(authpb::AdminPermission::Rebalance) => "rebalance",
        Ok(authpb::AdminPermission::Users) => "users",
        _ => "?",
    }
}

fn rule_text(r: &authpb::KeyRule) -> String {
    let perms: Vec<&str> = r.permissions.iter().map(|p| perm_name(*p)).collect();
    format!(
        "range={}..{}:{}",
        String::from_utf8_lossy(&r.start),
        String::from_utf8_lossy(&r.end),
        perms.join(",")
    )
}

fn user_json(u: &authpb::User) -> serde_json::Value {
    json!({
        "name": u.name,
        "roles": u.roles,
        "certificates": u.certificates,
        "api_tokens": u.api_tokens,
        "has_password": u.has_password,
    })
}

fn role_json(r: &authpb::Role) -> serde_json::Value {
    json!({
        "name": r.name,
        "rules": r.rules.iter().map(rule_text).collect::<Vec<_>>(),
        "admin": r.admin.iter().map(|a| admin_name(*a)).collect::<Vec<_>>(),
        "built_in": r.built_in,
    })
}

fn put_user(args: UserArgs, create_only: bool) -> Result<authpb::PutUserRequest, UsageError> {
    Ok(authpb::PutUserRequest {
        name: args.name,
        password: match &args.password_file {
            Some(p) => read_password(p)?,
            None => String::new(),
        },
        roles: args.roles,
        certificates: args.certificates,
        create_only,
    })
}

/// Runs an access-control command.
///
/// # Errors
/// The server refused; output failed.
pub async fn run(
    client: &Client,
    command: AccessCommand,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut api = client.admin().access();
    let status = |s: tonic::Status| client_error(cairn_client::ClientError::Status(s));
    let value = match command {
        AccessCommand::Login {
            user,
            password,
            ttl_ms,
        } => {
            let r = api
                .login(authpb::LoginRequest {
                    user,
                    password,
                    ttl_ms,
                })
                .await
                .map_err(status)?
                .into_inner();
            if !format.json {
                return writeln!(out, "{}", r.token).context("writing output");
            }
            json!({"token": r.token, "expires_at_ms": r.expires_at_ms})
        }
        AccessCommand::Whoami => {
            let r = api
                .who_am_i(authpb::WhoAmIRequest {})
                .await
                .map_err(status)?
                .into_inner();
            json!({"user": r.user, "roles": r.roles, "credential": r.credential, "auth_enabled": r.auth_enabled})
        }
        AccessCommand::PutUser {
            mut request,
            keep_roles,
        } => {
            if keep_roles {
                let users = api
                    .list_users(authpb::ListUsersRequest {})
                    .await
                    .map_err(status)?
                    .into_inner()
                    .users;
                let Some(u) = users.into_iter().find(|u| u.name == request.name) else {
                    anyhow::bail!("user {:?} does not exist", request.name);
                };
                request.roles = u.roles;
                request.certificates = u.certificates;
            }
            let r = api.put_user(request).await.map_err(status)?.into_inner();
            json!({"user": user_json(&r.user.unwrap_or_default()), "created": r.created})
        }
        AccessCommand::RemoveUser(name) => {
            let r = api
                .delete_user(authpb::DeleteUserRequest { name: name.clone() })
                .await
                .map_err(status)?
                .into_inner();
            if !r.existed {
                anyhow::bail!("user {name:?} does not exist");
            }
            json!({"removed": name})
        }
        AccessCommand::ListUsers => {
            let r = api
                .list_users(authpb::ListUsersRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if !format.json {
                for u in &r.users {
                    writeln!(
                        out,
                        "{}\troles={}\tcertificates={}\tapi_tokens={}\tpassword={}",
                        u.name,
                        u.roles.join(","),
                        u.certificates.join(","),
                        u.api_tokens.join(","),
                        if u.has_password { "yes" } else { "no" }
                    )
                    .context("writing output")?;
                }
                return Ok(());
            }
            json!({"users": r.users.iter().map(user_json).collect::<Vec<_>>()})
        }
        AccessCommand::PutRole(role) => {
            let r = api
                .put_role(authpb::PutRoleRequest { role: Some(role) })
                .await
                .map_err(status)?
                .into_inner();
            json!({"role": role_json(&r.role.unwrap_or_default()), "created": r.created})
        }
        AccessCommand::RemoveRole(name) => {
            let r = api
                .delete_role(authpb::DeleteRoleRequest { name: name.clone() })
                .await
                .map_err(status)?
                .into_inner();
            if !r.existed {
                anyhow::bail!("role {name:?} does not exist");
            }
            json!({"removed": name})
        }
        AccessCommand::ListRoles => {
            let r = api
                .list_roles(authpb::ListRolesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if !format.json {
                for role in &r.roles {
                    let rules: Vec<String> = role.rules.iter().map(rule_text).collect();
                    let admin: Vec<&str> = role.admin.iter().map(|a| admin_name(*a)).collect();
                    writeln!(
                        out,
                        "{}{}\trules={}\tadmin={}",
                        role.name,
                        if role.built_in { " (built in)" } else { "" },
                        rules.join(" "),
                        admin.join(",")
                    )
                    .context("writing output")?;
                }
                return Ok(());
            }
            json!({"roles": r.roles.iter().map(role_json).collect::<Vec<_>>()})
        }
        AccessCommand::CreateToken { user, description } => {
            let r = api
                .create_api_token(authpb::CreateApiTokenRequest { user, description })
                .await
                .map_err(status)?
                .into_inner();
            if !format.json {
                return writeln!(out, "{}", r.token).context("writing output");
            }
            json!({"id": r.id, "token": r.token})
        }
        AccessCommand::RevokeToken(id) => {
            let r = api
                .revoke_api_token(authpb::RevokeApiTokenRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            if !r.existed {
                anyhow::bail!("no API token has id {id:?}");
            }
            json!({"revoked": id})
        }
        AccessCommand::RotateKey => {
            let r = api
                .rotate_signing_key(authpb::RotateSigningKeyRequest {})
                .await
                .map_err(status)?
                .into_inner();
            json!({"key_id": r.key_id, "verifying_key_ids": r.verifying_key_ids})
        }
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?).context("writing output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_or_say_what_is_wrong() {
        let r = parse_rule("prefix=app/:read,scan").unwrap();
        assert_eq!(r.prefix, b"app/");
        assert_eq!(r.permissions.len(), 2);
        let r = parse_rule("range=a..m:write").unwrap();
        assert_eq!(
            (r.start.as_slice(), r.end.as_slice()),
            (&b"a"[..], &b"m"[..])
        );
        for bad in [
            "app/:read",
            "prefix=a",
            "prefix=a:fly",
            "range=a:read",
            "prefix=a:",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
        assert!(parse_admin("users").is_ok());
        assert!(parse_admin("everything").is_err());
    }
}
