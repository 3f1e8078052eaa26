//! End to end as a platform team installs Cairn: the real `helm` and
//! `kubectl` binaries (scripts/k8s-tools.sh) against kubesim, the operator
//! running as a pod of the chart's Deployment (the real `cairn-operator`
//! binary, image `ghcr.io/cairn-db/cairn-operator`), and real `cairn-node`
//! pods created from `config/samples/minimal.yaml`.
//!
//! - helm: `helm install` → operator pod runs → `helm test` passes → `kubectl apply` the sample →
//!   every shard led with RF 3 → `kubectl get kvc` prints the printer
//!   columns → `kubectl scale kvc --replicas 4` → `helm upgrade` with a new
//!   operator tag replaces the operator pod without restarting data pods →
//!   `helm uninstall` leaves the KVCluster, its pods and its data.
//! - bundle: `kubectl apply --server-side -f deploy/install.yaml`, then the
//!   same sample forms a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use cairn_e2e as e2e;

use cairn_operator::crd::{KVCluster, Phase};
use e2e::{Env, NS, healthy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const OPERATOR_NS: &str = "cairn-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory holding `helm` and `kubectl`, installed by scripts/k8s-tools.sh.
fn tools() -> anyhow::Result<PathBuf> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/k8s-tools.sh"))
        .output()
        .context("running scripts/k8s-tools.sh")?;
    ensure!(
        out.status.success(),
        "scripts/k8s-tools.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        dir.join("helm").exists() && dir.join("kubectl").exists(),
        "no helm/kubectl in {}",
        dir.display()
    );
    Ok(dir)
}

/// kubesim without an operator (the chart brings it), plus the real tools.
struct Cluster {
    env: Env,
    tools: PathBuf,
}

impl Cluster {
    async fn start(subnet: u8) -> anyhow::Result<Self> {
        // RUST_LOG=cairn_kubesim=debug shows every API request.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let tools = tools()?;
        let env = Env::start_without_operator(subnet).await?;
        Ok(Self { env, tools })
    }

    /// Runs `tool args…` (helm or kubectl) from the repository root with this
    /// cluster's kubeconfig; returns stdout, fails with stderr.
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let home = self.env.dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let out = Command::new(self.tools.join(tool))
            .args(args)
            .current_dir(repo())
            .env("KUBECONFIG", &self.env.kubeconfig)
            .env("HOME", &home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .with_context(|| format!("running {tool}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("[e2e] {tool} {}\n{stdout}", args.join(" "));
        ensure!(
            out.status.success(),
            "{tool} {} failed ({}):\n{}\n{stdout}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.env.client.clone(), ns)
    }

    /// Polls `check` every half second until it returns `Some` (up to `limit`).
    async fn wait<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let started = Instant::now();
        let mut last_error = String::new();
        while started.elapsed() < limit {
            match check().await {
                Ok(Some(v)) => {
                    eprintln!(
                        "[e2e] {what}: after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => last_error = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "{what}: not reached within {} s (last error: {last_error})\n{}",
            limit.as_secs(),
            self.operator_logs()
        )
    }

    /// The operator pods' logs and what the API holds, for failure messages.
    fn operator_logs(&self) -> String {
        let state = self
            .run("kubectl", &["get", "deployments,pods", "-A", "-o", "wide"])
            .unwrap_or_else(|e| format!("{e:#}"));
        let status = self
            .run(
                "kubectl",
                &[
                    "get",
                    "deployments,pods",
                    "-n",
                    OPERATOR_NS,
                    "-o",
                    "jsonpath={.items[*].status}",
                ],
            )
            .unwrap_or_else(|e| format!("{e:#}"));
        let mut text = format!("{state}\ndeployment status: {status}\n");
        let dir = self.env.dir.path().join("kubelet/pods").join(OPERATOR_NS);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let log = entry.path().join("logs/operator.log");
            if let Ok(body) = std::fs::read_to_string(&log) {
                let lines: Vec<&str> = body.lines().collect();
                text.push_str(&format!(
                    "--- {}\n{}\n",
                    log.display(),
                    lines[lines.len().saturating_sub(30)..].join("\n")
                ));
            }
        }
        text
    }

    /// The running, ready operator pod (exactly one, not terminating).
    async fn operator_pod(&self) -> anyhow::Result<Option<Pod>> {
        let pods = self
            .pods(OPERATOR_NS)
            .list(&ListParams::default().labels("app.kubernetes.io/name=cairn-operator"))
            .await?
            .items;
        let live: Vec<Pod> = pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        Ok(match live.as_slice() {
            [one] if ready(one) => Some(one.clone()),
            _ => None,
        })
    }

    /// The KVCluster once every shard has a leader and RF voters on `nodes` ready nodes.
    async fn formed(&self, name: &str, nodes: u32) -> anyhow::Result<KVCluster> {
        self.env
            .wait_for(
                name,
                &format!("{nodes} nodes, every shard led with RF 3"),
                Duration::from_secs(300),
                |c| {
                    healthy(c, nodes)
                        && c.status
                            .as_ref()
                            .is_some_and(|s| s.phase == Some(Phase::Running))
                },
            )
            .await
            .map_err(|e| e.context(self.operator_logs()))
    }

    /// Node pods of cluster `name`: pod name → (uid, restarts).
    async fn node_pods(&self, name: &str) -> anyhow::Result<BTreeMap<String, (String, i32)>> {
        let pods = self
            .pods(NS)
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
            .await?;
        Ok(pods
            .items
            .iter()
            .map(|p| {
                let restarts = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .map_or(0, |c| c.restart_count);
                (p.name_any(), (p.uid().unwrap_or_default(), restarts))
            })
            .collect())
    }
}

impl Cluster {
    /// `kubectl apply --server-side -f config/samples/minimal.yaml`, as the README says.
    fn apply_minimal_sample(&self) -> anyhow::Result<String> {
        self.run(
            "kubectl",
            &[
                "apply",
                "--server-side",
                "-f",
                "config/samples/minimal.yaml",
            ],
        )
    }

    /// `curl -s URL` inside an operator pod's network namespace.
    fn curl_in_operator_pod(&self, pod: &str, url: &str) -> anyhow::Result<String> {
        let netns = self
            .env
            .kubelet
            .network_namespace(OPERATOR_NS, pod)
            .with_context(|| format!("{pod} has no network namespace"))?;
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["curl", "-s", "-m", "10", url])
            .output()?;
        ensure!(
            out.status.success(),
            "curl {url} in {pod}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_apply_scale_upgrade_and_uninstall() -> anyhow::Result<()> {
    let k = Cluster::start(110).await?;
    k.run(
        "helm",
        &[
            "install",
            "cairn-operator",
            "charts/cairn-operator",
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
        ],
    )?;
    let first = k
        .wait("operator pod ready", Duration::from_secs(120), || {
            k.operator_pod()
        })
        .await?;
    assert_eq!(image_of(&first), "ghcr.io/cairn-db/cairn-operator:0.1.0");
    // The chart's test hook: a pod of the operator image asks /healthz through the Service.
    let tested = k
        .run(
            "helm",
            &[
                "test",
                "cairn-operator",
                "--namespace",
                OPERATOR_NS,
                "--timeout",
                "120s",
            ],
        )
        .map_err(|e| e.context(k.operator_logs()))?;
    assert!(tested.contains("Succeeded"), "{tested}");

    k.apply_minimal_sample()?;
    let formed = k.formed("demo", 3).await?;
    assert_eq!(
        formed.status.and_then(|s| s.shard_health).map(|h| h.total),
        Some(16)
    );

    let table = k.run("kubectl", &["get", "kvc"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in ["NAME", "NODES", "READY", "SHARDS", "PHASE", "AGE"] {
        assert!(
            header.contains(&column),
            "kubectl get kvc has no {column} column:\n{table}"
        );
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("demo"))
        .context("no demo row")?;
    assert!(row.contains("Running"), "{table}");

    // A write through the cluster survives everything below.
    let put = k.env.curl_in_pod(
        "demo-default-0",
        &[
            "-X",
            "PUT",
            "--data-binary",
            "installed",
            "http://127.0.0.1:7001/store/helm",
        ],
    )?;
    assert!(put.contains("revision"), "{put}");

    k.run("kubectl", &["scale", "kvc", "demo", "--replicas", "4"])?;
    k.formed("demo", 4).await?;
    let before = k.node_pods("demo").await?;
    assert_eq!(before.len(), 4, "{before:?}");

    // A new operator image: the operator pod is replaced, the data pods are not touched.
    k.run(
        "helm",
        &[
            "upgrade",
            "cairn-operator",
            "charts/cairn-operator",
            "--namespace",
            OPERATOR_NS,
            "--reuse-values",
            "--set",
            "image.tag=0.1.1",
        ],
    )?;
    let second = k
        .wait(
            "operator pod on the new tag",
            Duration::from_secs(120),
            || async {
                Ok(k.operator_pod()
                    .await?
                    .filter(|p| image_of(p).ends_with(":0.1.1")))
            },
        )
        .await?;
    assert_ne!(second.uid(), first.uid());
    let deployment: Deployment = Api::namespaced(k.env.client.clone(), OPERATOR_NS)
        .get("cairn-operator")
        .await?;
    assert_eq!(
        deployment
            .spec
            .and_then(|s| s.strategy)
            .and_then(|s| s.type_)
            .as_deref(),
        Some("Recreate")
    );
    // The new operator reconciles the cluster as it is and changes nothing.
    let new_pod = second.name_any();
    k.wait(
        "the new operator reconciled",
        Duration::from_secs(120),
        || async {
            let metrics = k.curl_in_operator_pod(&new_pod, "http://127.0.0.1:8080/metrics")?;
            Ok(metrics
                .lines()
                .any(|l| l.starts_with("cairn_operator_reconciles_total") && !l.ends_with(" 0"))
                .then_some(()))
        },
    )
    .await?;
    k.formed("demo", 4).await?;
    assert_eq!(
        k.node_pods("demo").await?,
        before,
        "data pods were restarted by the operator upgrade"
    );

    k.run(
        "helm",
        &["uninstall", "cairn-operator", "--namespace", OPERATOR_NS],
    )?;
    k.wait("operator pods gone", Duration::from_secs(120), || async {
        let left = k
            .pods(OPERATOR_NS)
            .list(&ListParams::default())
            .await?
            .items;
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    let kept: Api<KVCluster> = Api::namespaced(k.env.client.clone(), NS);
    assert!(
        kept.get_opt("demo").await?.is_some(),
        "helm uninstall removed the KVCluster"
    );
    assert_eq!(
        k.node_pods("demo").await?,
        before,
        "helm uninstall touched the data pods"
    );
    let got = k
        .env
        .curl_in_pod("demo-default-3", &["http://127.0.0.1:7001/store/helm"])?;
    assert_eq!(got, "installed");
    let crds = k.run("kubectl", &["get", "crd", "-o", "name"])?;
    assert!(
        crds.contains("kvclusters.cairn.dev"),
        "the CRD was removed: {crds}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_the_install_bundle_runs_the_operator() -> anyhow::Result<()> {
    let k = Cluster::start(111).await?;
    k.run(
        "kubectl",
        &["apply", "--server-side", "-f", "deploy/install.yaml"],
    )?;
    let pod = k
        .wait("operator pod ready", Duration::from_secs(120), || {
            k.operator_pod()
        })
        .await?;
    assert_eq!(
        pod.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("kubectl")
    );
    k.apply_minimal_sample()?;
    k.formed("demo", 3).await?;
    let table = k.run("kubectl", &["get", "kvc", "demo"])?;
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("demo") && l.contains("Running")),
        "{table}"
    );
    Ok(())
}
