//! A stand-in Kubernetes with the real operator binary and real
//! `cairn-node` processes: the in-repo API server, StatefulSet controller
//! and kubelet of `cairn-kubesim`, the CRD from `crds/`, and
//! `cairn-operator` started as a child process with a kubeconfig pointing at
//! the API server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_kubesim::apiserver::{ApiServer, Options};
use cairn_kubesim::deployment::DeploymentController;
use cairn_kubesim::kubelet::{ImageMap, Kubelet, KubeletConfig};
use cairn_kubesim::statefulset::StatefulSetController;
use cairn_operator::crd::KVCluster;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

/// Namespace every test cluster lives in.
pub const NS: &str = "default";

/// The whole stand-in environment; everything stops on drop.
pub struct Env {
    pub api: ApiServer,
    pub client: kube::Client,
    pub kubelet: Kubelet,
    _statefulsets: StatefulSetController,
    _deployments: DeploymentController,
    operator: Option<Child>,
    /// Where the running operator serves `/metrics`.
    pub operator_metrics: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    operator_starts: u32,
}

/// A binary the workspace built (`cairn-node`, `cairn-operator`), beside
/// this test's `target/<profile>/deps/`.
fn workspace_bin(name: &str) -> PathBuf {
    let path = cairn_local::process::workspace_bin(name);
    assert!(
        path.is_file(),
        "{name} is not built: run these tests through `cargo test --workspace` (or `make test`)"
    );
    path
}

impl Env {
    /// Starts the API server (with the KVCluster CRD), the StatefulSet
    /// controller, the kubelet (pods in 198.18.<100 + subnet>.0/24, so tests
    /// running side by side, kubesim's own included, do not collide) and the
    /// operator.
    pub async fn start(subnet: u8) -> anyhow::Result<Env> {
        let mut env = Self::start_without_operator(100 + subnet).await?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/kvcluster.yaml"),
        )?)?;
        Api::<CustomResourceDefinition>::all(env.client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .context("registering the KVCluster CRD")?;
        env.start_operator()?;
        Ok(env)
    }

    /// The stand-in cluster alone, as `helm install` finds it: no CRD, no
    /// operator; the API server listens on every address so pods (an
    /// operator Deployment) reach it through the bridge, and the kubelet
    /// runs images `cairn` (cairn-node) and `cairn-operator`. Pods get
    /// 198.18.`subnet`.0/24.
    pub async fn start_without_operator(subnet: u8) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let api = ApiServer::start_with(Options {
            listen: std::net::Ipv4Addr::UNSPECIFIED.into(),
            ..Options::default()
        })
        .await?;
        let client = api.client();
        let statefulsets = StatefulSetController::spawn(client.clone());
        let deployments = DeploymentController::spawn(client.clone());
        let images = ImageMap::new()
            .with_repository("cairn", workspace_bin("cairn-node"))
            .with_repository("cairn-operator", workspace_bin("cairn-operator"));
        let mut config = KubeletConfig::new(dir.path().join("kubelet"), images);
        config.pod_subnet = std::net::Ipv4Addr::new(198, 18, subnet, 0);
        config.api_server_for_pods = Some(format!("http://{}:{}", config.host_ip(), api.port()));
        let kubelet = Kubelet::start(client.clone(), config).await?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            cairn_kubesim::apiserver::kubeconfig(&api.url(), NS),
        )?;
        Ok(Env {
            api,
            client,
            kubelet,
            _statefulsets: statefulsets,
            _deployments: deployments,
            operator: None,
            operator_metrics: String::new(),
            kubeconfig,
            dir,
            operator_starts: 0,
        })
    }

    /// Starts `cairn-operator` (its log goes to `operator-<n>.log`).
    pub fn start_operator(&mut self) -> anyhow::Result<()> {
        self.operator_starts += 1;
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("operator-{}.log", self.operator_starts)),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(workspace_bin("cairn-operator"))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,kube=warn,cairn_operator=debug")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting cairn-operator")?;
        self.operator = Some(child);
        self.operator_metrics = format!("http://127.0.0.1:{port}/metrics");
        Ok(())
    }

    /// SIGKILLs the operator (a crash at an arbitrary point).
    pub fn kill_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn clusters(&self) -> Api<KVCluster> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates a KVCluster `name` with `nodes` nodes, 16 shards, RF 3.
    pub async fn create_cluster(
        &self,
        name: &str,
        nodes: u32,
        down_timeout: &str,
    ) -> anyhow::Result<()> {
        let cluster: KVCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "cairn.dev/v1alpha1",
            "kind": "KVCluster",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "nodes": nodes,
                "shards": 16,
                "replicationFactor": 3,
                "image": "cairn",
                "version": "1",
                "storage": {"size": "1Gi"},
                "failover": {"downTimeout": down_timeout, "autoReplace": true},
                "stallTimeout": "5m",
                "config": {"block-cache-bytes": "16777216"},
            }
        }))?;
        self.clusters()
            .create(&PostParams::default(), &cluster)
            .await?;
        Ok(())
    }

    /// Merges `spec` into the cluster's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
        self.clusters()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// Polls the cluster until `done` holds (up to `limit`), and says what
    /// it last saw when it never does.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&KVCluster) -> bool,
    ) -> anyhow::Result<KVCluster> {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < limit {
            if let Some(c) = self.clusters().get_opt(name).await? {
                if done(&c) {
                    eprintln!(
                        "[e2e] {what}: after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(c);
                }
                last = Some(c);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "{what}: not reached within {} s; last status: {}\noperator log tail:\n{}",
            limit.as_secs(),
            serde_json::to_string_pretty(&last.and_then(|c| c.status)).unwrap_or_default(),
            self.operator_log_tail()
        )
    }

    /// The last lines of the current operator log.
    pub fn operator_log_tail(&self) -> String {
        let path = self
            .dir
            .path()
            .join(format!("operator-{}.log", self.operator_starts));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// gRPC endpoints (`IP:7000`) of the cluster's pods.
    /// Runs `curl -s -m 10 ARGS…` inside pod `pod`'s network namespace (as
    /// `kubectl exec` or a port-forward would reach it); returns the body.
    pub fn curl_in_pod(&self, pod: &str, args: &[&str]) -> anyhow::Result<String> {
        let netns = self
            .kubelet
            .network_namespace(NS, pod)
            .with_context(|| format!("pod {pod} has no network namespace"))?;
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["curl", "-s", "-m", "10"])
            .args(args)
            .output()
            .context("running nsenter curl")?;
        anyhow::ensure!(
            out.status.success(),
            "curl {args:?} in {pod} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn endpoints(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await?;
        Ok(pods
            .items
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .map(|ip| format!("{ip}:7000"))
            .collect())
    }

    /// Reasons of the Kubernetes Events the operator published.
    pub async fn event_reasons(&self) -> anyhow::Result<Vec<String>> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect())
    }

    /// The operator's `/metrics` text.
    pub async fn operator_metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(&self.operator_metrics).await?.text().await?)
    }

    /// Names of the cluster's pods.
    pub async fn pod_names(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await?;
        let mut names: Vec<String> = pods.items.iter().map(ResourceExt::name_any).collect();
        names.sort();
        Ok(names)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_operator();
    }
}

/// Every member serving, every shard led and fully replicated.
pub fn healthy(c: &KVCluster, nodes: u32) -> bool {
    let Some(s) = &c.status else {
        return false;
    };
    s.ready_nodes == nodes
        && s.operation.is_none()
        && s.cluster_id.is_some()
        && s.shard_health
            .as_ref()
            .is_some_and(|h| h.total > 0 && h.under_replicated == 0 && h.leaderless == 0)
}
