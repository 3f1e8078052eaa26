//! Node configuration: one struct, settable by TOML file, environment
//! (`CAIRN_*`) and flags, in increasing precedence. Every default is here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cluster::RaftTuning;
use crate::cluster::balancer::RebalanceTuning;
use crate::kv::Limits;
use crate::storage::SyncMode;

/// Configuration of a `cairn-node`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique in the cluster (default 1).
    pub node_id: u64,
    /// Where data lives (default `./cairn-data`).
    pub data_dir: PathBuf,
    /// gRPC listen address (default `127.0.0.1:7000`; port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// HTTP gateway listen address (default `127.0.0.1:7001`).
    pub http_addr: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz` listen address (default `127.0.0.1:7002`).
    pub metrics_addr: SocketAddr,
    /// Address other nodes and clients should use (default: the gRPC address).
    pub advertise_addr: Option<String>,
    /// Create a new cluster with this node as its first member.
    pub bootstrap: bool,
    /// Hash shards of a new data directory (power of two, default 64).
    pub shards: u32,
    /// Replicas per shard of a new cluster (default 3).
    pub replication_factor: u32,
    /// Existing members to join (any of them; `HOST:PORT` gRPC addresses).
    pub join: Vec<String>,
    /// Rack or zone of this node.
    pub rack: Option<String>,
    /// Relative capacity of this node (default 1): placement gives it a
    /// share of replicas and leaderships proportional to its weight.
    pub weight: u32,
    /// Bytes of data this node may hold (0: as much as the disk has room
    /// for). Drains are refused when the other nodes lack room.
    pub capacity_bytes: u64,
    /// Durability of acknowledged writes (default `fsync`).
    pub sync: SyncMode,
    /// RocksDB block cache in bytes (default 256 MiB).
    pub block_cache_bytes: usize,
    /// RocksDB row cache in bytes (default 0 = off).
    pub row_cache_bytes: usize,
    /// How often the reaper removes expired keys, in milliseconds (default 1000).
    pub ttl_reap_interval_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds (default 30000).
    pub shutdown_grace_ms: u64,
    /// Log format: `text` or `json` (default `text`).
    pub log_format: String,
    /// Which logs are written, in `tracing`'s filter syntax (as `RUST_LOG`):
    /// a default level and per-module levels (default `info,openraft=warn`).
    pub log_level: String,
    /// OTLP/gRPC collector to send traces to (`http://HOST:4317`); none
    /// (the default) turns tracing off.
    pub otlp_endpoint: Option<String>,
    /// Share of requests traced, 0 to 1 (default 0.01). A request whose
    /// caller sent a sampled W3C `traceparent` is always traced.
    pub trace_sample_ratio: f64,
    /// Request limits.
    pub limits: Limits,
    /// Raft timing and log compaction (cluster members).
    pub raft: RaftTuning,
    /// How fast replicas move (cluster members).
    pub rebalance: RebalanceTuning,
    /// TLS for the gRPC (client and peer) and HTTP listeners.
    pub tls: TlsSettings,
    /// Authentication, tokens and the audit log.
    pub auth: AuthSettings,
}

/// Access-control settings (`[auth]` in the config file). Whether
/// authentication is on is the cluster's state (the meta group), not a
/// node flag: `root-password-file` turns it on once, cluster-wide.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthSettings {
    /// File holding the root user's password (e.g. a mounted Secret). When
    /// the cluster has no auth configuration yet, this node creates the
    /// `root` user with it and turns authentication on; afterwards the file
    /// is not read again. There is never a default password.
    pub root_password_file: Option<PathBuf>,
    /// Where audit lines go: a file path, or `-` for stderr (the default).
    pub audit_log: PathBuf,
    /// Lifetime of a session token when the login asks for none (ms,
    /// default 10 minutes).
    pub token_ttl_ms: u64,
    /// Longest session-token lifetime a login may ask for (ms, default 24 h);
    /// also how long a rotated-out signing key keeps verifying.
    pub max_token_ttl_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            root_password_file: None,
            audit_log: PathBuf::from("-"),
            token_ttl_ms: 600_000,
            max_token_ttl_ms: 86_400_000,
        }
    }
}

impl AuthSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.token_ttl_ms < 1000 || self.token_ttl_ms > self.max_token_ttl_ms {
            return Err(ConfigError::Invalid(format!(
                "auth token-ttl-ms {} must be at least 1000 and at most max-token-ttl-ms ({})",
                self.token_ttl_ms, self.max_token_ttl_ms
            )));
        }
        Ok(())
    }
}

/// TLS settings (`[tls]` in the config file). Setting `ca`, `cert` and
/// `key` turns TLS on for the gRPC and HTTP listeners and for every
/// connection to peers; the peer API then accepts only certificates naming
/// a node of `cluster-name` (SAN URI `cairn://<cluster-name>/node/<id>`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsSettings {
    /// Trusted CA bundle (PEM, one or more certificates).
    pub ca: Option<PathBuf>,
    /// This node's certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Certificate revocation lists (PEM), optional.
    pub crl: Option<PathBuf>,
    /// The cluster name node certificates carry (default `cairn`).
    pub cluster_name: String,
    /// How often the files are re-read, in milliseconds (default 10000);
    /// SIGHUP re-reads them at once.
    pub reload_interval_ms: u64,
    /// Close client HTTP/2 connections after this many milliseconds so they
    /// re-handshake with current material (0, the default: never).
    pub max_connection_age_ms: u64,
    /// Serve the metrics and health port over TLS too (default off: most
    /// scrapers reach it in-cluster; a client certificate is not required).
    pub metrics: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca: None,
            cert: None,
            key: None,
            crl: None,
            cluster_name: "cairn".into(),
            reload_interval_ms: 10_000,
            max_connection_age_ms: 0,
            metrics: false,
        }
    }
}

impl TlsSettings {
    /// The files to load, when TLS is on.
    pub fn paths(&self) -> Option<cairn_tls::TlsPaths> {
        Some(cairn_tls::TlsPaths {
            ca: self.ca.clone()?,
            cert: Some(self.cert.clone()?),
            key: Some(self.key.clone()?),
            crl: self.crl.clone(),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let set = [&self.ca, &self.cert, &self.key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if set != 0 && set != 3 {
            return Err(ConfigError::Invalid(
                "tls needs ca, cert and key together (tls-ca, tls-cert, tls-key)".into(),
            ));
        }
        if set == 0 && self.metrics {
            return Err(ConfigError::Invalid(
                "tls-metrics without tls-ca, tls-cert and tls-key".into(),
            ));
        }
        if set == 0 && self.crl.is_some() {
            return Err(ConfigError::Invalid(
                "tls-crl without tls-ca, tls-cert and tls-key".into(),
            ));
        }
        if self.cluster_name.is_empty() || self.cluster_name.contains(['/', ' ']) {
            return Err(ConfigError::Invalid(format!(
                "tls cluster-name {:?} must be non-empty, without '/' or spaces",
                self.cluster_name
            )));
        }
        if self.reload_interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "tls reload-interval-ms must be at least 100".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("cairn-data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 7002)),
            advertise_addr: None,
            bootstrap: false,
            shards: 64,
            replication_factor: 3,
            join: Vec::new(),
            rack: None,
            weight: 1,
            capacity_bytes: 0,
            sync: SyncMode::Fsync,
            block_cache_bytes: 256 << 20,
            row_cache_bytes: 0,
            ttl_reap_interval_ms: 1000,
            shutdown_grace_ms: 30_000,
            log_format: "text".into(),
            log_level: "info,openraft=warn".into(),
            otlp_endpoint: None,
            trace_sample_ratio: 0.01,
            limits: Limits::default(),
            raft: RaftTuning::default(),
            rebalance: RebalanceTuning::default(),
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
        }
    }
}

/// Command line of `cairn-node`; every flag also reads a `CAIRN_*` variable.
#[derive(Debug, Parser, Default)]
#[command(name = "cairn-node", version, about = "Cairn storage node")]
pub struct Cli {
    /// TOML file with any of the settings below (kebab-case keys).
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node id, unique in the cluster.
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: Option<u64>,
    /// Data directory.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address HOST:PORT (`[::]:PORT` listens on every
    /// interface, IPv6 and IPv4; a cluster member then needs
    /// `--advertise-addr`).
    #[arg(long, env = "CAIRN_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP gateway listen address HOST:PORT.
    #[arg(long, env = "CAIRN_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Metrics and health listen address HOST:PORT.
    #[arg(long, env = "CAIRN_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Address advertised to peers and clients.
    #[arg(long, env = "CAIRN_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Create a new cluster.
    #[arg(long, env = "CAIRN_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Hash shards (power of two) for a new data directory.
    #[arg(long, env = "CAIRN_SHARDS")]
    pub shards: Option<u32>,
    /// Replicas per shard.
    #[arg(long, env = "CAIRN_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// Members to join, HOST:PORT,...
    #[arg(long, env = "CAIRN_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Rack or zone name.
    #[arg(long, env = "CAIRN_RACK")]
    pub rack: Option<String>,
    /// Relative capacity of this node (default 1).
    #[arg(long, env = "CAIRN_WEIGHT")]
    pub weight: Option<u32>,
    /// Bytes of data this node may hold (default 0: the disk's free space).
    #[arg(long, env = "CAIRN_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,
    /// Most replica moves in flight at once, cluster-wide (the meta
    /// leader's setting applies).
    #[arg(long, env = "CAIRN_REBALANCE_MAX_MOVES")]
    pub rebalance_max_moves: Option<u32>,
    /// Most snapshot bytes per second this node sends to replicas being
    /// created (0 = unlimited).
    #[arg(long, env = "CAIRN_REBALANCE_RATE_BYTES")]
    pub rebalance_rate_bytes: Option<u64>,
    /// Write durability: fsync (default) or buffered.
    #[arg(long, env = "CAIRN_SYNC")]
    pub sync: Option<SyncMode>,
    /// Block cache size in bytes.
    #[arg(long, env = "CAIRN_BLOCK_CACHE_BYTES")]
    pub block_cache_bytes: Option<usize>,
    /// Row cache size in bytes (0 = off).
    #[arg(long, env = "CAIRN_ROW_CACHE_BYTES")]
    pub row_cache_bytes: Option<usize>,
    /// Largest value in bytes.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Log format: text or json.
    #[arg(long, env = "CAIRN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info,cairn_node=debug` (default `info,openraft=warn`).
    #[arg(long, env = "CAIRN_LOG")]
    pub log_level: Option<String>,
    /// OTLP/gRPC collector for traces, e.g. http://otel-collector:4317
    /// (unset: no tracing).
    #[arg(long, env = "CAIRN_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of requests traced, 0 to 1 (default 0.01).
    #[arg(long, env = "CAIRN_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "CAIRN_RAFT_HEARTBEAT_INTERVAL_MS")]
    pub raft_heartbeat_interval_ms: Option<u64>,
    /// Raft election timeout (lower bound) in milliseconds.
    #[arg(long, env = "CAIRN_RAFT_ELECTION_TIMEOUT_MS")]
    pub raft_election_timeout_ms: Option<u64>,
    /// Log entries between snapshots of a shard.
    #[arg(long, env = "CAIRN_RAFT_SNAPSHOT_LOGS")]
    pub raft_snapshot_logs: Option<u64>,
    /// How linearizable reads confirm leadership: lease (default; assumes
    /// bounded clock-rate drift, falls back to read-index) or read-index (a
    /// quorum round per read batch, no clock assumption).
    #[arg(long, env = "CAIRN_READ_MODE")]
    pub read_mode: Option<crate::cluster::ReadMode>,
    /// Trusted CA bundle (PEM); with --tls-cert and --tls-key turns TLS on.
    #[arg(long, env = "CAIRN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM).
    #[arg(long, env = "CAIRN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Certificate revocation lists (PEM).
    #[arg(long, env = "CAIRN_TLS_CRL")]
    pub tls_crl: Option<PathBuf>,
    /// The cluster name in node certificates' SAN URI cairn://NAME/node/ID.
    #[arg(long, env = "CAIRN_TLS_CLUSTER_NAME")]
    pub tls_cluster_name: Option<String>,
    /// How often TLS files are re-read, in milliseconds.
    #[arg(long, env = "CAIRN_TLS_RELOAD_INTERVAL_MS")]
    pub tls_reload_interval_ms: Option<u64>,
    /// Close client connections after this many milliseconds (0: never).
    #[arg(long, env = "CAIRN_TLS_MAX_CONNECTION_AGE_MS")]
    pub tls_max_connection_age_ms: Option<u64>,
    /// Serve the metrics port over TLS too.
    #[arg(long, env = "CAIRN_TLS_METRICS")]
    pub tls_metrics: bool,
    /// File with the root password: turns authentication on, once, for the
    /// whole cluster (creates user root).
    #[arg(long, env = "CAIRN_AUTH_ROOT_PASSWORD_FILE")]
    pub auth_root_password_file: Option<PathBuf>,
    /// Audit log file, or - for stderr.
    #[arg(long, env = "CAIRN_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Default session-token lifetime in milliseconds.
    #[arg(long, env = "CAIRN_AUTH_TOKEN_TTL_MS")]
    pub auth_token_ttl_ms: Option<u64>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this struct.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<toml::de::Error>,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// I/O and parse errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses the text of a config file (unset keys keep their defaults;
    /// unknown keys are refused). Ranges are checked by [`Config::validate`].
    ///
    /// # Errors
    /// Text that is not TOML, or not TOML for this struct.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// File (if any) overlaid with flags and environment.
    ///
    /// # Errors
    /// File errors or invalid values.
    pub fn load(cli: Cli) -> Result<Self, ConfigError> {
        let mut c = match &cli.config {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        macro_rules! overlay {
            ($($f:ident),*) => { $( if let Some(v) = cli.$f { c.$f = v; } )* };
        }
        overlay!(
            node_id,
            data_dir,
            grpc_addr,
            http_addr,
            metrics_addr,
            shards,
            replication_factor,
            join,
            weight,
            capacity_bytes,
            sync,
            block_cache_bytes,
            row_cache_bytes,
            log_format,
            log_level,
            trace_sample_ratio
        );
        // Settings whose flag is optional and whose value sits deeper in
        // the struct, or is itself optional (a flag only replaces it).
        macro_rules! overlay_into {
            ($($src:ident => $($dst:ident).+),* $(,)?) => {
                $( if let Some(v) = cli.$src { c.$($dst).+ = v; } )*
            };
        }
        macro_rules! replace_if_set {
            ($($src:ident => $($dst:ident).+),* $(,)?) => {
                $( if cli.$src.is_some() { c.$($dst).+ = cli.$src; } )*
            };
        }
        overlay_into!(
            max_value_bytes => limits.max_value_bytes,
            raft_heartbeat_interval_ms => raft.heartbeat_interval_ms,
            raft_election_timeout_ms => raft.election_timeout_ms,
            rebalance_max_moves => rebalance.max_moves,
            rebalance_rate_bytes => rebalance.rate_bytes_per_sec,
            raft_snapshot_logs => raft.snapshot_logs,
            read_mode => raft.read_mode,
            tls_cluster_name => tls.cluster_name,
            tls_reload_interval_ms => tls.reload_interval_ms,
            tls_max_connection_age_ms => tls.max_connection_age_ms,
            audit_log => auth.audit_log,
            auth_token_ttl_ms => auth.token_ttl_ms,
        );
        replace_if_set!(
            otlp_endpoint => otlp_endpoint,
            advertise_addr => advertise_addr,
            rack => rack,
            tls_ca => tls.ca,
            tls_cert => tls.cert,
            tls_key => tls.key,
            tls_crl => tls.crl,
            auth_root_password_file => auth.root_password_file,
        );
        c.bootstrap |= cli.bootstrap;
        c.tls.metrics |= cli.tls_metrics;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::partition::ShardCount::new(self.shards).map_err(ConfigError::Invalid)?;
        self.tls.validate()?;
        self.auth.validate()?;
        if self.node_id == 0 {
            return Err(ConfigError::Invalid("node-id must be at least 1".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(ConfigError::Invalid(format!(
                "log-level {:?}: {e}; expected a filter such as info or info,cairn_node=debug",
                self.log_level
            )));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log-format {:?}; expected text or json",
                self.log_format
            )));
        }
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "trace-sample-ratio {} is out of range (0 to 1)",
                self.trace_sample_ratio
            )));
        }
        if let Some(e) = &self.otlp_endpoint
            && !e.starts_with("http://")
        {
            return Err(ConfigError::Invalid(format!(
                "otlp-endpoint {e:?} must be http://HOST:PORT (TLS to the collector is not built yet)"
            )));
        }
        if self.replication_factor == 0 || self.replication_factor > 7 {
            return Err(ConfigError::Invalid(format!(
                "replication-factor {} is out of range (1 to 7)",
                self.replication_factor
            )));
        }
        if self.raft.heartbeat_interval_ms == 0
            || self.raft.election_timeout_ms < self.raft.heartbeat_interval_ms.saturating_mul(2)
        {
            return Err(ConfigError::Invalid(format!(
                "raft election-timeout-ms ({}) must be at least twice heartbeat-interval-ms ({}), which must be above 0",
                self.raft.election_timeout_ms, self.raft.heartbeat_interval_ms
            )));
        }
        if self.weight == 0 || self.weight > 1000 {
            return Err(ConfigError::Invalid(format!(
                "weight {} is out of range (1 to 1000)",
                self.weight
            )));
        }
        if self.rebalance.max_moves == 0 {
            return Err(ConfigError::Invalid(
                "rebalance max-moves must be at least 1".into(),
            ));
        }
        if self.raft.snapshot_logs < 10 {
            return Err(ConfigError::Invalid(
                "raft snapshot-logs must be at least 10".into(),
            ));
        }
        if self.limits.max_value_bytes > cairn_proto::MAX_MESSAGE_BYTES {
            return Err(ConfigError::Invalid(format!(
                "max-value-bytes above {} MiB (the gRPC message limit) is not supported",
                cairn_proto::MAX_MESSAGE_BYTES >> 20
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_hold() {
        let dir = std::env::temp_dir().join(format!("cairn-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            "node-id = 7\nshards = 16\n[limits]\nmax-value-bytes = 1024\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "cairn-node",
            "--config",
            file.to_str().unwrap(),
            "--shards",
            "32",
        ])
        .unwrap();
        let c = Config::load(cli).unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.shards, 32);
        assert_eq!(c.limits.max_value_bytes, 1024);
        assert_eq!(c.limits.max_key_bytes, 4096);
        assert_eq!(c.sync, SyncMode::Fsync);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = std::env::temp_dir().join(format!("cairn-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(&file, "nodeid = 7\n").unwrap();
        assert!(matches!(
            Config::from_file(&file),
            Err(ConfigError::Parse { .. })
        ));
        let cli = Cli::try_parse_from(["cairn-node", "--shards", "3"]).unwrap();
        assert!(matches!(Config::load(cli), Err(ConfigError::Invalid(_))));
    }

    /// The configuration `cairn-node ARGS` would run with.
    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["cairn-node"];
        all.extend_from_slice(args);
        Config::load(Cli::try_parse_from(all).unwrap())
    }

    #[test]
    fn tls_settings_come_together_or_not_at_all() {
        assert_eq!(load(&[]).unwrap().tls.paths(), None);
        let c = load(&[
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "n.pem",
            "--tls-key",
            "n.key",
            "--tls-cluster-name",
            "prod",
        ])
        .unwrap();
        let p = c.tls.paths().unwrap();
        assert_eq!(p.cert.as_deref(), Some(Path::new("n.pem")));
        assert_eq!(c.tls.cluster_name, "prod");
        let all_three = ["--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c"];
        let with = |more: [&'static str; 2]| [&all_three[..], &more[..]].concat();
        for bad in [
            vec!["--tls-ca", "ca.pem"],
            vec!["--tls-cert", "n.pem", "--tls-key", "n.key"],
            vec!["--tls-crl", "crl.pem"],
            vec!["--tls-metrics"],
            with(["--tls-cluster-name", "a/b"]),
            with(["--tls-reload-interval-ms", "5"]),
        ] {
            let bad = &bad[..];
            let e = load(bad).unwrap_err();
            assert!(e.to_string().contains("tls"), "{bad:?}: {e}");
        }
        let toml = Config::from_toml("[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n")
            .unwrap();
        assert!(toml.tls.paths().is_some());
    }

    #[test]
    fn tracing_settings_are_checked() {
        let c = load(&[
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
            "--trace-sample-ratio",
            "0.5",
        ])
        .unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(c.trace_sample_ratio, 0.5);
        assert_eq!(
            Config::default().otlp_endpoint,
            None,
            "tracing is off by default"
        );
        for bad in [
            &["--trace-sample-ratio", "1.5"][..],
            &["--trace-sample-ratio", "NaN"],
            &["--otlp-endpoint", "collector:4317"],
        ] {
            match load(bad) {
                Err(ConfigError::Invalid(m)) => {
                    assert!(m.contains(bad[0].trim_start_matches("--")), "{m}")
                }
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        let file =
            Config::from_toml("otlp-endpoint = \"http://c:4317\"\ntrace-sample-ratio = 1.0\n")
                .unwrap();
        assert_eq!(file.trace_sample_ratio, 1.0);
    }

    #[test]
    fn read_mode_defaults_to_lease_and_is_settable_by_flag_and_file() {
        use crate::cluster::ReadMode;
        assert_eq!(Config::default().raft.read_mode, ReadMode::Lease);
        let flag =
            Config::load(Cli::try_parse_from(["cairn-node", "--read-mode", "read-index"]).unwrap())
                .unwrap();
        assert_eq!(flag.raft.read_mode, ReadMode::ReadIndex);
        let file = Config::from_toml("[raft]\nread-mode = \"read-index\"\n").unwrap();
        assert_eq!(file.raft.read_mode, ReadMode::ReadIndex);
        let bad = Cli::try_parse_from(["cairn-node", "--read-mode", "stale"]).unwrap_err();
        assert!(
            bad.to_string().contains("expected lease or read-index"),
            "{bad}"
        );
        assert!(Config::from_toml("[raft]\nread-mode = \"stale\"\n").is_err());
    }

    /// Found by the `config_toml` fuzz target: twice a huge heartbeat
    /// interval overflowed (a panic in debug builds) instead of being refused.
    #[test]
    fn huge_raft_timings_are_refused_not_overflowed() {
        let c = Config::from_toml(
            "[raft]\nheartbeat-interval-ms = 9223372036854775887\nelection-timeout-ms = 9223372036854775807\n",
        )
        .unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));
    }
}
