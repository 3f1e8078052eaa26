//! A local cluster of real `cairn-node` processes on loopback: the first node
//! bootstraps, the others join it; helpers wait for the shards to settle and
//! read the cluster's own status through the admin API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_client::{Admin, AdminOptions};
use cairn_proto::admin::v1 as apb;

use crate::process::{NodeProcess, NodeSpec, workspace_bin};

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Hash shards.
    pub shards: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// Extra flags for every node.
    pub args: Vec<String>,
    /// Where each node runs (index `i` is node `i + 1`); empty: every node
    /// on loopback with free ports, the data in a temporary directory.
    pub hosts: Vec<NodeHost>,
    /// Run with TLS everywhere: a CA made for the cluster issues every
    /// node's certificate (SAN URI `cairn://cairn/node/<id>`) and an admin
    /// client certificate; the files live in `<data>/tls`.
    pub secure: bool,
    /// Turn authentication on: a random root password is written to
    /// `<data>/root-password` and node 1 starts with
    /// `--auth-root-password-file`; the harness signs in as root.
    pub auth: bool,
}

/// Where one node of a [`LocalCluster`] runs: e.g. inside its own network
/// namespace, through a launcher that enters it, on a filesystem of its own.
#[derive(Debug, Clone)]
pub struct NodeHost {
    /// The program to start (`cairn-node`, or a wrapper that execs it).
    pub binary: std::path::PathBuf,
    /// gRPC, HTTP and metrics listen addresses.
    pub addrs: [std::net::SocketAddr; 3],
    /// Its data directory.
    pub data_dir: std::path::PathBuf,
}

impl ClusterSpec {
    /// `nodes` nodes, `shards` shards, RF 3 (or fewer when fewer nodes).
    pub fn new(nodes: usize, shards: u32) -> Self {
        Self {
            nodes,
            shards,
            replication_factor: 3.min(nodes as u32),
            args: vec![
                "--raft-heartbeat-interval-ms".into(),
                "100".into(),
                "--raft-election-timeout-ms".into(),
                "500".into(),
            ],
            hosts: Vec::new(),
            secure: false,
            auth: false,
        }
    }

    /// The same, with authentication on (see [`ClusterSpec::auth`]).
    pub fn with_auth(mut self) -> Self {
        self.auth = true;
        self
    }

    /// The same, with TLS on (see [`ClusterSpec::secure`]).
    pub fn secure(mut self) -> Self {
        self.secure = true;
        self
    }
}

/// The SAN URI of a secured local cluster's admin client certificate; with
/// authentication on it is mapped to the root user.
pub const ADMIN_CERT_URI: &str = "cairn://cairn/user/admin";

/// The certificate authority of a secured local cluster.
struct LocalCa {
    authority: cairn_tls::authority::Authority,
    dir: PathBuf,
    client: Arc<cairn_tls::TlsContext>,
}

impl LocalCa {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        use cairn_tls::authority::{Authority, CertRequest};
        std::fs::create_dir_all(dir)?;
        let authority = Authority::new("cairn local CA")?;
        let admin = authority.issue(&CertRequest::client(
            "cairn admin",
            Some(ADMIN_CERT_URI),
            365,
        ))?;
        let paths = authority.write(dir, "admin", &admin)?;
        let client = cairn_tls::TlsContext::load(paths, cairn_tls::TlsMetrics::new()?)?;
        Ok(Self {
            authority,
            dir: dir.to_path_buf(),
            client,
        })
    }

    /// Issues node `id`'s certificate; returns its flags.
    fn node_args(&self, id: u64) -> anyhow::Result<Vec<String>> {
        use cairn_tls::authority::CertRequest;
        let identity = cairn_tls::NodeIdentity {
            cluster: "cairn".into(),
            node_id: id,
        };
        let hosts = [
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "::1".to_string(),
        ];
        let issued = self
            .authority
            .issue(&CertRequest::node(&identity, &hosts, 365))?;
        let paths = self
            .authority
            .write(&self.dir, &format!("node{id}"), &issued)?;
        let s = |p: &Path| p.display().to_string();
        Ok(vec![
            "--tls-ca".into(),
            s(&paths.ca),
            "--tls-cert".into(),
            paths.cert.as_deref().map(s).unwrap_or_default(),
            "--tls-key".into(),
            paths.key.as_deref().map(s).unwrap_or_default(),
        ])
    }
}

/// A running local cluster. Dropping it kills every node.
pub struct LocalCluster {
    /// The nodes; index `i` is node id `i + 1`.
    pub nodes: Vec<NodeProcess>,
    spec: ClusterSpec,
    ca: Option<LocalCa>,
    root_password: Option<PathBuf>,
    root_token: std::sync::Mutex<Option<String>>,
    _dir: tempfile::TempDir,
}

/// An admin client for `node` (plaintext, or TLS with `tls`).
pub async fn admin_with(
    node: &NodeProcess,
    tls: Option<&Arc<cairn_tls::TlsContext>>,
) -> anyhow::Result<Admin> {
    let mut options = AdminOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        options = options.tls(tls.clone());
    }
    Admin::connect(&node.grpc.to_string(), options)
        .await
        .with_context(|| format!("connecting to {}", node.grpc))
}

/// Writes `text` to a new file readable only by its owner.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A plaintext admin client for `node`.
pub async fn admin(node: &NodeProcess) -> anyhow::Result<Admin> {
    admin_with(node, None).await
}

impl LocalCluster {
    /// Starts the nodes (node 1 bootstraps, the rest join it) and waits until
    /// every shard has a leader and its full replica set, and the placement
    /// is balanced.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = if spec.secure {
            let tls_dir = match spec.hosts.first() {
                Some(h) => h.data_dir.parent().unwrap_or(dir.path()).join("tls"),
                None => dir.path().join("tls"),
            };
            Some(LocalCa::new(&tls_dir)?)
        } else {
            None
        };
        let root_password = if spec.auth {
            let path = match spec.hosts.first() {
                Some(h) => h
                    .data_dir
                    .parent()
                    .unwrap_or(dir.path())
                    .join("root-password"),
                None => dir.path().join("root-password"),
            };
            // A restarted playground keeps the password its cluster has.
            if !path.exists() {
                let password: String = (0..24)
                    .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
                    .collect();
                write_private(&path, &password)?;
            }
            Some(path)
        } else {
            None
        };
        let mut cluster = Self {
            nodes: Vec::with_capacity(spec.nodes),
            spec,
            ca,
            root_password,
            root_token: std::sync::Mutex::new(None),
            _dir: dir,
        };
        for _ in 0..cluster.spec.nodes {
            cluster.launch()?;
        }
        if cluster.root_password.is_some() {
            let token = cluster.sign_in(Duration::from_secs(60)).await?;
            if cluster.ca.is_some() {
                cluster.map_admin_certificate(&token).await?;
            }
        }
        cluster.wait_balanced(Duration::from_secs(120)).await?;
        Ok(cluster)
    }

    /// Waits until the cluster is settled (see [`Self::wait_settled`]) and
    /// every shard is on its target nodes with its planned leader (the
    /// rebalance status has nothing left to move).
    pub async fn wait_balanced(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<apb::ClusterStatusResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let settled = self.wait_settled(left).await?;
            let node = self
                .nodes
                .iter()
                .find(|n| n.is_running())
                .context("no node is running")?;
            let r = self.admin(node).await?.rebalance_status(None).await?;
            if r.moves_remaining == 0 && r.shards_without_leader == 0 {
                return Ok(settled);
            }
            if Instant::now() > deadline {
                bail!("placement did not balance within {timeout:?}: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts one more node (the next id) joining the cluster; does not
    /// wait for it to get replicas.
    pub fn add_node(&mut self) -> anyhow::Result<()> {
        self.launch()?;
        self.spec.nodes = self.nodes.len();
        Ok(())
    }

    /// Starts node `len + 1`: the first bootstraps, later ones join node 1.
    fn launch(&mut self) -> anyhow::Result<()> {
        let i = self.nodes.len() + 1;
        let mut args = vec!["--node-id".to_string(), i.to_string()];
        if i == 1 {
            args.extend([
                "--bootstrap".into(),
                "--shards".into(),
                self.spec.shards.to_string(),
                "--replication-factor".into(),
                self.spec.replication_factor.to_string(),
            ]);
        } else {
            args.extend(["--join".into(), self.nodes[0].grpc.to_string()]);
        }
        args.extend(self.spec.args.iter().cloned());
        if let Some(ca) = &self.ca {
            args.extend(ca.node_args(i as u64)?);
        }
        if let (1, Some(p)) = (i, &self.root_password) {
            args.extend(["--auth-root-password-file".into(), p.display().to_string()]);
        }
        let node = match self.spec.hosts.get(i - 1) {
            Some(host) => NodeProcess::start_at(
                NodeSpec {
                    binary: host.binary.clone(),
                    data_dir: host.data_dir.clone(),
                    args,
                },
                Some(host.addrs),
            )?,
            None if self.spec.hosts.is_empty() => NodeProcess::start(NodeSpec {
                binary: workspace_bin("cairn-node"),
                data_dir: self._dir.path().join(format!("node{i}")),
                args,
            })?,
            None => bail!("no host given for node {i}"),
        };
        self.nodes.push(node);
        Ok(())
    }

    /// The client TLS settings of a secured cluster (its CA and an admin
    /// client certificate); `None` without TLS.
    pub fn client_tls(&self) -> Option<Arc<cairn_tls::TlsContext>> {
        self.ca.as_ref().map(|c| c.client.clone())
    }

    /// Where a secured cluster's CA bundle and admin certificate are.
    pub fn tls_dir(&self) -> Option<&Path> {
        self.ca.as_ref().map(|c| c.dir.as_path())
    }

    /// An admin client for `node`, over TLS when the cluster is secured,
    /// signed in as root when authentication is on.
    pub async fn admin(&self, node: &NodeProcess) -> anyhow::Result<Admin> {
        let mut options = AdminOptions::default()
            .connect_timeout(Duration::from_secs(2))
            .call_timeout(Duration::from_secs(10));
        if let Some(tls) = self.client_tls() {
            options = options.tls(tls);
        }
        if let Some(t) = self.root_token() {
            options = options.token(t);
        }
        Admin::connect(&node.grpc.to_string(), options)
            .await
            .with_context(|| format!("connecting to {}", node.grpc))
    }

    /// The root user's password file, when authentication is on.
    pub fn root_password_file(&self) -> Option<&Path> {
        self.root_password.as_deref()
    }

    /// The root user's password, when authentication is on.
    pub fn root_password(&self) -> Option<String> {
        let p = self.root_password.as_ref()?;
        std::fs::read_to_string(p).ok()
    }

    /// A session token of root (from the last sign-in), when
    /// authentication is on.
    pub fn root_token(&self) -> Option<String> {
        self.root_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lets the admin client certificate sign in as root (a changed root
    /// ends its sessions, so this signs in again).
    async fn map_admin_certificate(&self, token: &str) -> anyhow::Result<()> {
        let mut options = AdminOptions::default().token(token);
        if let Some(tls) = self.client_tls() {
            options = options.tls(tls);
        }
        let admin = Admin::connect(&self.nodes[0].grpc.to_string(), options).await?;
        admin
            .access()
            .put_user(cairn_proto::auth::v1::PutUserRequest {
                name: "root".into(),
                roles: vec!["root".into()],
                certificates: vec![ADMIN_CERT_URI.into()],
                ..Default::default()
            })
            .await?;
        self.sign_in(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// Signs in as root (a 24 h session) through node 1, once node 1 has
    /// turned authentication on; polls until `timeout`.
    pub async fn sign_in(&self, timeout: Duration) -> anyhow::Result<String> {
        let password = self.root_password().context("authentication is off")?;
        let deadline = Instant::now() + timeout;
        loop {
            let tried = async {
                let admin = admin_with(&self.nodes[0], self.client_tls().as_ref()).await?;
                let r = admin
                    .access()
                    .login(cairn_proto::auth::v1::LoginRequest {
                        user: "root".into(),
                        password: password.clone(),
                        ttl_ms: 86_400_000,
                    })
                    .await?;
                anyhow::Ok(r.into_inner().token)
            }
            .await;
            match tried {
                Ok(token) => {
                    *self
                        .root_token
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
                    return Ok(token);
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("could not sign in as root within {timeout:?}: {e:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// gRPC endpoints (`http://…`) of every node.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(NodeProcess::grpc_url).collect()
    }

    /// The cluster status as seen from the first running node.
    pub async fn status(&self) -> anyhow::Result<apb::ClusterStatusResponse> {
        let mut last = None;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            match self.admin(n).await {
                Ok(mut c) => match c.cluster_status().await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Some(anyhow::anyhow!("node at {}: {e}", n.grpc)),
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no node is running")))
    }

    /// Waits until every shard has a leader on a running node and as many
    /// voters as the cluster can give it, all caught up.
    pub async fn wait_settled(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<apb::ClusterStatusResponse> {
        let want = (self.spec.replication_factor as usize).min(self.spec.nodes);
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.status().await {
                Ok(s) => {
                    let unsettled: Vec<String> = s
                        .shards
                        .iter()
                        .filter(|sh| {
                            sh.leader_id == 0
                                || sh.replicas.iter().filter(|r| r.voter).count() != want
                                || sh.replicas.iter().any(|r| !r.voter || r.lag > 0)
                        })
                        .map(|sh| format!("{}:{:?}", sh.shard, sh))
                        .collect();
                    if unsettled.is_empty() && s.shards.len() == self.spec.shards as usize {
                        return Ok(s);
                    }
                    last = format!(
                        "{} shards unsettled, e.g. {:?}",
                        unsettled.len(),
                        unsettled.first()
                    );
                }
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!("cluster did not settle within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every shard has a leader (on a running node); returns how long it took.
    pub async fn wait_all_leaders(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < timeout {
            match self.status().await {
                Ok(s) => {
                    let alive: Vec<u64> = s
                        .nodes
                        .iter()
                        .filter(|n| n.reachable)
                        .map(|n| n.id)
                        .collect();
                    let missing = s
                        .shards
                        .iter()
                        .filter(|sh| !alive.contains(&sh.leader_id))
                        .count();
                    if missing == 0 {
                        return Ok(started.elapsed());
                    }
                    last = format!("{missing} shards without a live leader");
                }
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("not every shard had a leader within {timeout:?}: {last}")
    }

    /// The node (index) leading the most shards.
    pub async fn busiest_leader(&self) -> anyhow::Result<usize> {
        let s = self.status().await?;
        let n = s
            .nodes
            .iter()
            .max_by_key(|n| n.leaders)
            .context("no nodes in status")?;
        Ok(n.id as usize - 1)
    }
}
