//! The command-line contract of `cairnctl`: global options and subcommands.
//!
//! Scripts depend on these names and shapes; change them only additively.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Command-line client for the Cairn key-value store.
#[derive(Debug, Parser)]
#[command(
    name = "cairnctl",
    version,
    after_help = "Exit status: 0 on success, 1 when the operation failed, 2 on usage errors."
)]
pub struct Cli {
    /// Comma-separated node addresses (HOST:PORT or http://HOST:PORT); the
    /// first that answers is used, the others on fail-over.
    #[arg(
        long,
        global = true,
        env = "CAIRN_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7000",
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Vec<String>,

    /// Bearer token sent with every request.
    #[arg(
        long,
        global = true,
        env = "CAIRN_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: Option<String>,

    /// Trusted CA bundle (PEM): speak TLS to the nodes and verify them.
    #[arg(long, global = true, value_name = "F", env = "CAIRN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) to present, with --tls-key.
    #[arg(long, global = true, value_name = "F", env = "CAIRN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "F", env = "CAIRN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Print results as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The operations `cairnctl` can perform.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or replace a key.
    Put {
        /// The key.
        key: OsString,
        /// The value; `@PATH` reads it from a file, `-` from stdin (so a
        /// value that starts with `@` must come from a file or stdin).
        value: OsString,
        #[command(flatten)]
        ttl: TtlArgs,
        /// Fail unless the key does not exist yet.
        #[arg(long)]
        if_absent: bool,
        /// Fail unless the key's mod_revision equals N.
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// Print the value of a key (exact bytes; a newline is added only on a terminal).
    Get {
        /// The key.
        key: OsString,
        /// Read from the local replica (may be stale) instead of a linearizable read.
        #[arg(long)]
        serializable: bool,
    },
    /// Replace the value of an existing key.
    Update {
        /// The key.
        key: OsString,
        /// The value; `@PATH` reads it from a file, `-` from stdin.
        value: OsString,
        #[command(flatten)]
        ttl: TtlArgs,
        /// Fail unless the key's mod_revision equals N.
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// Delete a key (exit status 1 if it did not exist).
    Delete {
        /// The key.
        key: OsString,
        /// Fail unless the key's mod_revision equals N.
        #[arg(long, value_name = "N")]
        if_revision: Option<u64>,
    },
    /// List keys by prefix or by range [START, END), in key order.
    Scan {
        /// Only keys starting with P.
        #[arg(long, value_name = "P", conflicts_with_all = ["start", "end"])]
        prefix: Option<OsString>,
        /// First key of the range (inclusive).
        #[arg(long, value_name = "S")]
        start: Option<OsString>,
        /// End of the range (exclusive); empty or absent means the last key.
        #[arg(long, value_name = "E")]
        end: Option<OsString>,
        /// Stop after N keys in total.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Print keys without values.
        #[arg(long)]
        keys_only: bool,
    },
    /// Apply the writes in a JSON file atomically (`-` reads stdin).
    #[command(after_help = BATCH_HELP)]
    Batch {
        /// The batch file.
        file: PathBuf,
    },
    /// Run a compare-then-act transaction from a JSON file (`-` reads stdin).
    #[command(after_help = TXN_HELP)]
    Txn {
        /// The transaction file.
        file: PathBuf,
    },
    /// Cluster administration.
    Cluster {
        /// What to show or do.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Show every shard: leader, term, replicas and how far each lags.
    Shards,
    /// Rebalancing progress.
    Rebalance {
        /// What to show.
        #[command(subcommand)]
        command: RebalanceCommand,
    },
    /// Node lifecycle: drain, cancel a drain, remove.
    Node {
        /// What to do.
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Run a local cluster of cairn-node processes until Ctrl-C.
    Playground(PlaygroundArgs),
    /// Exchange a password for a session token, printed on stdout
    /// (`export CAIRN_TOKEN=$(cairnctl login --user root --password-file F)`).
    Login {
        /// The user.
        #[arg(long)]
        user: String,
        /// File holding the password (`-`: stdin); never on the command line.
        #[arg(long, value_name = "F")]
        password_file: PathBuf,
        /// Token lifetime (e.g. `30m`, `8h`); the cluster's default when absent.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// Who the credentials in use are.
    Whoami,
    /// Users: add, change, remove, list.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Roles: grants on key prefixes or ranges and admin permissions.
    Role {
        /// What to do.
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Long-lived API tokens for services.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Session-token signing keys.
    Auth {
        /// What to do.
        #[command(subcommand)]
        command: AuthCommand,
    },
}

/// `cairnctl user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (fails if it exists).
    Add(UserArgs),
    /// Replace a user's roles and certificate identities (and password, if
    /// given); ends its sessions.
    Set(UserArgs),
    /// Change a user's password, keeping its roles; ends its sessions.
    Passwd {
        /// The user.
        name: String,
        /// File holding the new password (`-`: stdin).
        #[arg(long, value_name = "F")]
        password_file: PathBuf,
    },
    /// Remove a user (its sessions and API tokens stop working).
    Remove {
        /// The user.
        name: String,
    },
    /// List users.
    List,
}

/// A user's settings.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The user.
    pub name: String,
    /// File holding the password (`-`: stdin); a user without one signs in
    /// only by API token or certificate.
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
    /// A role to hold (repeatable): root, readonly, or one of `cairnctl role list`.
    #[arg(long = "role", value_name = "R")]
    pub roles: Vec<String>,
    /// A client-certificate SAN (URI or DNS name, exactly) that signs in as
    /// this user (repeatable).
    #[arg(long = "certificate", value_name = "SAN")]
    pub certificates: Vec<String>,
}

/// `cairnctl role ...`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create or replace a role.
    #[command(after_help = ROLE_HELP)]
    Add {
        /// The role.
        name: String,
        /// A key grant (repeatable): `prefix=P:PERMS` or `range=START..END:PERMS`,
        /// PERMS a comma list of read, write, delete, scan.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// An admin permission (repeatable): cluster_read, node_lifecycle,
        /// rebalance, users.
        #[arg(long = "admin", value_name = "P")]
        admin: Vec<String>,
    },
    /// Remove a role (refused while a user holds it).
    Remove {
        /// The role.
        name: String,
    },
    /// List roles and their grants.
    List,
}

const ROLE_HELP: &str = "Examples:\n  cairnctl role add app --rule prefix=app/:read,write,delete,scan\n  cairnctl role add auditor --rule range=a..m:read,scan --admin cluster_read";

/// `cairnctl token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; the token is printed once.
    Create {
        /// The user.
        #[arg(long)]
        user: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke an API token by id.
    Revoke {
        /// The token id (`cairnctl user list` shows them).
        id: String,
    },
}

/// `cairnctl auth ...`
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign new session tokens with a fresh key (old keys keep verifying
    /// until their tokens expire).
    RotateKey,
}

/// `cairnctl cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes, their states, leader counts, and a health summary of the shards.
    Status,
    /// Move a shard's leadership to another of its voters.
    TransferLeader {
        /// The shard.
        shard: u32,
        /// The node to lead it.
        to: u64,
    },
}

/// `cairnctl rebalance ...`
#[derive(Debug, Subcommand)]
pub enum RebalanceCommand {
    /// Moves done and left, rate, ETA, and whether progress has stalled.
    Status {
        /// Call it stalled when nothing moved for this many seconds.
        #[arg(long, default_value_t = 300)]
        stall_after: u32,
    },
    /// Start no new replica move; moves in flight finish.
    Pause,
    /// Let the balancer start moves again.
    Resume,
    /// Pause, and set every shard whose move is in flight back to the
    /// replicas it has now.
    Cancel,
}

/// `cairnctl node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Move every replica and leadership off a node (it takes no new ones).
    Drain {
        /// The node.
        id: u64,
        /// Follow the drain until the node holds nothing, printing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Move every leadership off a node and keep them off (before a restart).
    EvacuateLeaders {
        /// The node.
        id: u64,
        /// Wait until the node leads no shard.
        #[arg(long)]
        wait: bool,
    },
    /// Let leaderships come back to a node after evacuate-leaders.
    RestoreLeaders {
        /// The node.
        id: u64,
    },
    /// Make a draining node active again.
    CancelDrain {
        /// The node.
        id: u64,
    },
    /// Declare a node lost: fence its id and re-create its replicas on the
    /// other nodes from the surviving ones (then `remove` it).
    Replace {
        /// The node.
        id: u64,
        /// Also when fewer than the replication factor other nodes are
        /// active: its replicas are re-created as a node joins in its place.
        #[arg(long)]
        force: bool,
    },
    /// Remove a drained (or replaced) node for good; its id can never join again.
    Remove {
        /// The node.
        id: u64,
    },
}

/// `cairnctl playground`
#[derive(Debug, Args)]
pub struct PlaygroundArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub nodes: u32,
    /// Hash shards.
    #[arg(long, default_value_t = 64)]
    pub shards: u32,
    /// Node i listens on BASE+10(i-1) (gRPC), +1 (HTTP), +2 (metrics).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Where the nodes keep their data (kept across runs, so a restarted
    /// playground has its data; delete it to start empty).
    #[arg(long, default_value = "cairn-playground")]
    pub data_dir: PathBuf,
    /// The cairn-node binary (default: next to cairnctl, else on PATH).
    #[arg(long)]
    pub node_binary: Option<PathBuf>,
    /// TLS everywhere: a CA made for the playground issues every node's
    /// certificate and an admin client certificate (in DATA_DIR/tls).
    #[arg(long)]
    pub secure: bool,
}

/// Expiry options shared by `put` and `update`.
#[derive(Debug, Args)]
pub struct TtlArgs {
    /// Expire the key after this long (500ms, 30s, 1h30m, 1d; plain number = seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, conflicts_with = "keep_ttl")]
    pub ttl: Option<Duration>,
    /// Keep the key's current expiry instead of clearing it.
    #[arg(long)]
    pub keep_ttl: bool,
}

/// Parses a TTL: a human duration that is at least one millisecond (a TTL of
/// zero would silently mean "never expires").
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = cairn_client::duration::parse(text).map_err(|e| e.to_string())?;
    if ttl.is_zero() {
        return Err("a TTL must be greater than zero; omit it for no expiry".to_string());
    }
    Ok(ttl)
}

const BATCH_HELP: &str = r#"File format:
  {"ops": [
    {"put": {"key": "k", "value": "v", "ttl": "30s", "if_absent": true, "if_revision": 3}},
    {"update": {"key": "k", "value": "v", "ttl": "30s", "if_revision": 3}},
    {"delete": {"key": "k", "if_revision": 3}}
  ]}
Ops also accept "keep_ttl": true, and "encoding": "base64" for base64 keys/values."#;

const TXN_HELP: &str = r#"File format:
  {"compare": [{"key": "k", "target": "value|version|create_revision|mod_revision|exists",
                "op": "==|!=|>|<", "value": "v" | "number": 3 | "exists": true}],
   "success": [ops...],
   "failure": [ops...]}
Ops are those of `batch` plus {"get": {"key": "k"}}."#;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttl_of_zero_is_rejected() {
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("0ms").is_err());
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn endpoints_are_split_on_commas() {
        let cli = Cli::try_parse_from(["cairnctl", "--endpoints", "a:1,b:2", "get", "k"]);
        assert_eq!(
            cli.map(|c| c.endpoints).ok(),
            Some(vec!["a:1".to_string(), "b:2".to_string()])
        );
    }

    #[test]
    fn global_options_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["cairnctl", "get", "k", "--json"]);
        assert!(cli.is_ok_and(|c| c.json));
    }

    #[test]
    fn prefix_and_range_are_mutually_exclusive() {
        let err = Cli::try_parse_from(["cairnctl", "scan", "--prefix", "a", "--start", "b"]);
        assert!(err.is_err_and(|e| e.exit_code() == 2));
    }

    #[test]
    fn ttl_and_keep_ttl_are_mutually_exclusive() {
        let err = Cli::try_parse_from(["cairnctl", "put", "k", "v", "--ttl", "5s", "--keep-ttl"]);
        assert!(err.is_err_and(|e| e.exit_code() == 2));
    }

    #[test]
    fn scan_limit_must_be_positive() {
        let err = Cli::try_parse_from(["cairnctl", "scan", "--limit", "0"]);
        assert!(err.is_err_and(|e| e.exit_code() == 2));
    }
}
