//! The StatefulSet controller and the kubelet together, against the
//! in-memory API server: real `python3 -m http.server` processes as pods,
//! real directories as claims, real name resolution through the hosts file.
//!
//! Each test runs its own API server, controller and kubelet, with its own
//! range of pod addresses so tests can run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cairn_kubesim::apiserver::ApiServer;
use cairn_kubesim::kubelet::{ImageMap, Kubelet, KubeletConfig};
use cairn_kubesim::statefulset::StatefulSetController;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const NS: &str = "kubesim-test";
const DEADLINE: Duration = Duration::from_secs(60);

/// An API server, the controller and a kubelet; dropping it stops all three
/// and kills every pod process.
struct Cluster {
    kubelet: Kubelet,
    _controller: StatefulSetController,
    client: Client,
    _root: tempfile::TempDir,
    _api: ApiServer,
}

impl Cluster {
    /// `subnet` picks the pod addresses: 198.18.<subnet>.10 and up (tests
    /// running side by side need their own).
    async fn start(subnet: u8) -> Result<Self> {
        // Logs of the controller and kubelet, shown for failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "cairn_kubesim=debug".into()),
            )
            .with_test_writer()
            .try_init();
        let api = ApiServer::start().await.context("api server")?;
        let client = api.client();
        let root = tempfile::tempdir()?;
        let mut config = KubeletConfig::new(
            root.path(),
            ImageMap::new().with_repository("python", "python3"),
        );
        config.pod_subnet = std::net::Ipv4Addr::new(198, 18, subnet, 0);
        let kubelet = Kubelet::start(client.clone(), config).await?;
        let controller = StatefulSetController::spawn(client.clone());
        Ok(Self {
            kubelet,
            _controller: controller,
            client,
            _root: root,
            _api: api,
        })
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn ip(&self, pod: &str) -> Result<IpAddr> {
        self.kubelet.pod_ip(NS, pod).context("pod has no IP")
    }

    async fn pod(&self, name: &str) -> Result<Pod> {
        Ok(self.pods().get(name).await?)
    }

    /// Waits until pod `name` is Ready and answers HTTP on its IP.
    async fn wait_ready_and_serving(&self, name: &str) -> Result<()> {
        eventually(&format!("{name} ready and serving"), || async {
            let pod = self.pods().get_opt(name).await?;
            if !pod.as_ref().is_some_and(is_ready) {
                return Ok(false);
            }
            Ok(http_ok(self.ip(name)?).await)
        })
        .await
    }
}

/// Polls `check` until it is true, failing after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(-1, |c| c.restart_count)
}

fn container_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

async fn http_ok(ip: IpAddr) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("http://{ip}:8080/"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// `curl`'s HTTP status for `url`, run inside the network namespace `netns`.
fn curl_in(netns: &std::path::Path, url: &str) -> Result<String> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args([
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .context("running nsenter curl")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn process_alive(pid: u32) -> bool {
    // A zombie is as good as gone; the kubelet reaps its children.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
    })
}

fn process_env(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        entry.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

/// A set of `python:3` pods serving HTTP on `0.0.0.0:8080` (every pod on
/// the same port, in its own network namespace), ready by an httpGet probe,
/// with one claim template `data`.
fn web_set(name: &str, replicas: i32, extra_spec: serde_json::Value) -> Result<StatefulSet> {
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web",
                        "image": "python:3",
                        "args": ["-m", "http.server", "--bind", "0.0.0.0", "8080"],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "GREETING", "value": "one"}
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {
                            "httpGet": {"port": "http", "path": "/"},
                            "periodSeconds": 5
                        },
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    });
    if let (Some(spec), Some(extra)) = (set["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    Ok(serde_json::from_value(set)?)
}

#[tokio::test]
async fn parallel_set_gets_ready_pods_and_bound_claims_and_scales_down_gracefully() -> Result<()> {
    let cluster = Cluster::start(1).await?;
    let set = web_set(
        "web",
        2,
        json!({
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"}
        }),
    )?;
    cluster.sets().create(&PostParams::default(), &set).await?;

    for pod in ["web-0", "web-1"] {
        cluster.wait_ready_and_serving(pod).await?;
    }
    // Both bound 0.0.0.0:8080: each pod has a network namespace of its own,
    // with its own loopback, as `kubectl exec`/`port-forward` would see it.
    assert_ne!(cluster.ip("web-0")?, cluster.ip("web-1")?);
    let netns0 = cluster
        .kubelet
        .network_namespace(NS, "web-0")
        .context("web-0 network namespace")?;
    assert_eq!(
        curl_in(&netns0, "http://127.0.0.1:8080/")?,
        "200",
        "web-0 serves on its own localhost"
    );
    assert_eq!(
        curl_in(&netns0, &format!("http://{}:8080/", cluster.ip("web-1")?))?,
        "200",
        "pods reach each other"
    );
    for claim in ["data-web-0", "data-web-1"] {
        let object = cluster.claims().get(claim).await?;
        assert_eq!(
            object.status.and_then(|s| s.phase).as_deref(),
            Some("Bound"),
            "{claim}"
        );
        assert!(cluster.kubelet.claim_dir(NS, claim).is_dir(), "{claim} dir");
    }
    let pod = cluster.pod("web-1").await?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("web-1")
    );
    assert_eq!(
        labels
            .get("apps.kubernetes.io/pod-index")
            .map(String::as_str),
        Some("1")
    );
    assert!(labels.contains_key("controller-revision-hash"));
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.hostname.as_deref()),
        Some("web-1")
    );
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()),
        Some("web")
    );
    eventually("set status readyReplicas 2", || async {
        let status = cluster.sets().get("web").await?.status.unwrap_or_default();
        Ok(status.ready_replicas == Some(2)
            && status.replicas == 2
            && status.updated_replicas == Some(2))
    })
    .await?;

    // Scale to 1: pod 1 goes gracefully with its claim; pod 0 is untouched.
    let pod0 = cluster.pod("web-0").await?;
    let pid0 = cluster.kubelet.pid(NS, "web-0").context("web-0 pid")?;
    let pid1 = cluster.kubelet.pid(NS, "web-1").context("web-1 pid")?;
    cluster
        .sets()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await?;
    eventually("web-1 deleted and its process gone", || async {
        Ok(cluster.pods().get_opt("web-1").await?.is_none() && !process_alive(pid1))
    })
    .await?;
    eventually("web-1's network namespace removed", || async {
        Ok(cluster.kubelet.network_namespace(NS, "web-1").is_none())
    })
    .await?;
    eventually("claim data-web-1 deleted with its directory", || async {
        Ok(cluster.claims().get_opt("data-web-1").await?.is_none()
            && !cluster.kubelet.claim_dir(NS, "data-web-1").exists())
    })
    .await?;
    eventually("set status replicas 1", || async {
        let status = cluster.sets().get("web").await?.status.unwrap_or_default();
        Ok(status.replicas == 1 && status.ready_replicas == Some(1))
    })
    .await?;
    let after = cluster.pod("web-0").await?;
    assert_eq!(after.metadata.uid, pod0.metadata.uid);
    assert_eq!(
        after.status.as_ref().and_then(|s| s.start_time.clone()),
        pod0.status.as_ref().and_then(|s| s.start_time.clone())
    );
    assert_eq!(cluster.kubelet.pid(NS, "web-0"), Some(pid0));
    assert_eq!(restart_count(&after), 0);
    assert!(cluster.claims().get_opt("data-web-0").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn deleted_pod_comes_back_from_the_current_template_and_keeps_its_claim() -> Result<()> {
    let cluster = Cluster::start(2).await?;
    let set = web_set("db", 1, json!({"updateStrategy": {"type": "OnDelete"}}))?;
    cluster.sets().create(&PostParams::default(), &set).await?;
    cluster.wait_ready_and_serving("db-0").await?;
    let old_pid = cluster.kubelet.pid(NS, "db-0").context("pid")?;
    assert_eq!(process_env(old_pid, "GREETING").as_deref(), Some("one"));
    let ip = cluster.ip("db-0")?;
    let marker = cluster.kubelet.claim_dir(NS, "data-db-0").join("marker");
    std::fs::write(&marker, "kept")?;

    // OnDelete: a template change alone does not touch the running pod.
    let mut template = cluster.sets().get("db").await?;
    if let Some(container) = template
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
    {
        for var in container.env.iter_mut().flatten() {
            if var.name == "GREETING" {
                var.value = Some("two".into());
            }
        }
    }
    cluster
        .sets()
        .replace("db", &PostParams::default(), &template)
        .await?;
    eventually("status shows the update revision differs", || async {
        let status = cluster.sets().get("db").await?.status.unwrap_or_default();
        Ok(status.update_revision.is_some() && status.update_revision != status.current_revision)
    })
    .await?;
    assert_eq!(cluster.kubelet.pid(NS, "db-0"), Some(old_pid));

    let old_uid = cluster.pod("db-0").await?.metadata.uid;
    cluster
        .pods()
        .delete("db-0", &DeleteParams::default())
        .await?;
    eventually("db-0 recreated, ready and serving", || async {
        let pod = cluster.pods().get_opt("db-0").await?;
        Ok(
            pod.is_some_and(|p| p.metadata.uid != old_uid && is_ready(&p))
                && http_ok(cluster.ip("db-0")?).await,
        )
    })
    .await?;
    assert!(!process_alive(old_pid));
    let new_pid = cluster.kubelet.pid(NS, "db-0").context("new pid")?;
    assert_eq!(process_env(new_pid, "GREETING").as_deref(), Some("two"));
    assert_eq!(cluster.ip("db-0")?, ip, "a pod keeps its address");
    assert_eq!(std::fs::read_to_string(&marker)?, "kept");
    eventually("status: current revision caught up", || async {
        let status = cluster.sets().get("db").await?.status.unwrap_or_default();
        Ok(status.update_revision == status.current_revision && status.updated_replicas == Some(1))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn crash_restarts_and_stopped_node_stays_down_until_resumed() -> Result<()> {
    let cluster = Cluster::start(3).await?;
    cluster
        .sets()
        .create(&PostParams::default(), &web_set("kv", 1, json!({}))?)
        .await?;
    cluster.wait_ready_and_serving("kv-0").await?;
    let pid = cluster.kubelet.pid(NS, "kv-0").context("pid")?;

    cluster.kubelet.crash(NS, "kv-0");
    eventually("kv-0 restarted once and serving", || async {
        let pod = cluster.pod("kv-0").await?;
        Ok(restart_count(&pod) == 1
            && is_ready(&pod)
            && cluster.kubelet.pid(NS, "kv-0").is_some_and(|p| p != pid)
            && http_ok(cluster.ip("kv-0")?).await)
    })
    .await?;
    assert!(!process_alive(pid));

    let pid = cluster.kubelet.pid(NS, "kv-0").context("pid")?;
    cluster.kubelet.stop_node(NS, "kv-0");
    eventually("kv-0 down and not ready", || async {
        let pod = cluster.pod("kv-0").await?;
        Ok(!is_ready(&pod) && !container_running(&pod) && !process_alive(pid))
    })
    .await?;
    // Still down well past the first restart backoff.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(cluster.kubelet.pid(NS, "kv-0").is_none());
    assert!(!http_ok(cluster.ip("kv-0")?).await);
    assert!(!is_ready(&cluster.pod("kv-0").await?));

    cluster.kubelet.resume_node(NS, "kv-0");
    cluster.wait_ready_and_serving("kv-0").await?;
    assert!(container_running(&cluster.pod("kv-0").await?));
    Ok(())
}

#[tokio::test]
async fn containers_resolve_pod_names_through_the_hosts_file() -> Result<()> {
    let cluster = Cluster::start(4).await?;
    // A resolver pod that asks for web-1 before it exists, then keeps asking:
    // it must see the hosts file rewrite.
    let resolver: Pod = serde_json::from_value(json!({
        "metadata": {"name": "resolver", "namespace": NS},
        "spec": {"containers": [{
            "name": "resolver",
            "image": "python:3",
            "command": ["/bin/sh", "-c",
                "while true; do getent hosts web-1.web.$(NS).svc || echo unresolved; sleep 0.3; done"],
            "env": [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
        }]}
    }))?;
    cluster
        .pods()
        .create(&PostParams::default(), &resolver)
        .await?;
    let log = || cluster.kubelet.log_path(NS, "resolver");
    eventually("resolver reports the name unresolved", || async {
        Ok(std::fs::read_to_string(log())
            .unwrap_or_default()
            .contains("unresolved"))
    })
    .await?;

    cluster
        .sets()
        .create(
            &PostParams::default(),
            &web_set("web", 2, json!({"podManagementPolicy": "Parallel"}))?,
        )
        .await?;
    cluster.wait_ready_and_serving("web-1").await?;
    let ip1 = cluster.ip("web-1")?;
    eventually("resolver resolves web-1 to its IP", || async {
        Ok(std::fs::read_to_string(log())
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ip1.to_string().as_str())))
    })
    .await?;

    // The headless service name lists both pods; the short forms resolve too.
    let hosts = std::fs::read_to_string(cluster.kubelet.hosts_file())?;
    let ip0 = cluster.ip("web-0")?;
    for ip in [ip0, ip1] {
        assert!(
            hosts.contains(&format!("{ip} web.{NS}.svc.cluster.local web.{NS}.svc")),
            "{hosts}"
        );
    }
    assert!(hosts.contains(&format!(
        "{ip0} web-0.web.{NS}.svc.cluster.local web-0.web.{NS}.svc web-0.web.{NS}"
    )));
    Ok(())
}

#[tokio::test]
async fn configmap_volume_reaches_the_translated_path_and_follows_updates() -> Result<()> {
    let cluster = Cluster::start(5).await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), NS);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("greeting".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("greeting".to_owned(), "hello".to_owned()),
            ("ignored".to_owned(), "x".to_owned()),
        ])),
        ..Default::default()
    };
    configmaps.create(&PostParams::default(), &cm).await?;
    // Prints the file at the path it was given whenever its contents change.
    let watcher_script = "import sys, time\nlast = None\nwhile True:\n    try:\n        text = open(sys.argv[1]).read()\n    except OSError as e:\n        text = 'error ' + str(e)\n    if text != last:\n        print('path=' + sys.argv[1] + ' text=' + text, flush=True)\n        last = text\n    time.sleep(0.2)\n";
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "reader", "namespace": NS},
        "spec": {
            "volumes": [{"name": "conf", "configMap": {"name": "greeting", "items": [{"key": "greeting", "path": "greeting.txt"}]}}],
            "containers": [{
                "name": "reader",
                "image": "python:3",
                "args": ["-c", watcher_script, "/etc/demo/greeting.txt"],
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/demo"}]
            }]
        }
    }))?;
    cluster.pods().create(&PostParams::default(), &pod).await?;
    let volume = cluster.kubelet.volume_dir(NS, "reader", "conf");
    let expected_path = volume.join("greeting.txt");
    // The log's name is known once the kubelet has seen the pod: look it up each time.
    let log_has = |needle: String| {
        let log: PathBuf = cluster.kubelet.log_path(NS, "reader");
        async move {
            Ok(std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&needle))
        }
    };
    eventually("reader prints hello from the translated path", || {
        log_has(format!("path={} text=hello", expected_path.display()))
    })
    .await?;
    assert!(
        !volume.join("ignored").exists(),
        "items limit the projected keys"
    );

    configmaps
        .patch(
            "greeting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"greeting": "bye"}})),
        )
        .await?;
    eventually("reader sees the update", || log_has("text=bye".to_owned())).await?;
    Ok(())
}

fn created(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

#[tokio::test]
async fn ordered_ready_creates_in_order_and_rolling_update_replaces_highest_first() -> Result<()> {
    let cluster = Cluster::start(6).await?;
    let mut set = web_set(
        "ord",
        2,
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}),
    )?;
    // Readiness takes two seconds, so ordering is visible.
    if let Some(probe) = set
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
        .and_then(|c| c.readiness_probe.as_mut())
    {
        probe.initial_delay_seconds = Some(2);
    }
    cluster.sets().create(&PostParams::default(), &set).await?;

    // While ord-1 does not exist yet, watch that it never appears before ord-0 is Ready.
    eventually("ord-1 exists", || async {
        let pod0 = cluster.pods().get_opt("ord-0").await?;
        let pod1 = cluster.pods().get_opt("ord-1").await?;
        if pod1.is_some() {
            assert!(
                pod0.as_ref().is_some_and(is_ready),
                "ord-1 created before ord-0 was ready"
            );
        }
        Ok(pod1.is_some())
    })
    .await?;
    cluster.wait_ready_and_serving("ord-1").await?;
    let (old0, old1) = (cluster.pod("ord-0").await?, cluster.pod("ord-1").await?);

    // whenDeleted: Delete — claims are owned by the set.
    let set_uid = cluster.sets().get("ord").await?.metadata.uid;
    for claim in ["data-ord-0", "data-ord-1"] {
        let refs = cluster
            .claims()
            .get(claim)
            .await?
            .metadata
            .owner_references
            .unwrap_or_default();
        assert!(
            refs.iter().any(|r| Some(&r.uid) == set_uid.as_ref()),
            "{claim} owned by the set"
        );
    }

    // RollingUpdate (the default): a template change replaces both pods, ord-1 first.
    cluster
        .sets()
        .patch(
            "ord",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}),
            ),
        )
        .await?;
    eventually("both pods replaced and the set current", || async {
        let status = cluster.sets().get("ord").await?.status.unwrap_or_default();
        let pods = [
            cluster.pods().get_opt("ord-0").await?,
            cluster.pods().get_opt("ord-1").await?,
        ];
        Ok(pods.iter().all(|p| {
            p.as_ref().is_some_and(|p| {
                is_ready(p)
                    && p.metadata.uid != old0.metadata.uid
                    && p.metadata.uid != old1.metadata.uid
            })
        }) && status.current_revision == status.update_revision
            && status.updated_replicas == Some(2)
            && status.ready_replicas == Some(2))
    })
    .await?;
    let (new0, new1) = (cluster.pod("ord-0").await?, cluster.pod("ord-1").await?);
    assert!(
        created(&new1) <= created(&new0),
        "ord-1 is replaced before ord-0"
    );
    assert_eq!(
        new0.metadata
            .annotations
            .unwrap_or_default()
            .get("rev")
            .map(String::as_str),
        Some("2")
    );

    // Deleting the set: garbage collection takes the pods and, per policy, the claims.
    let pids: Vec<u32> = ["ord-0", "ord-1"]
        .iter()
        .filter_map(|p| cluster.kubelet.pid(NS, p))
        .collect();
    cluster
        .sets()
        .delete("ord", &DeleteParams::default())
        .await?;
    eventually("pods, processes and claims gone", || async {
        let pods_gone = cluster.pods().get_opt("ord-0").await?.is_none()
            && cluster.pods().get_opt("ord-1").await?.is_none();
        let claims_gone = cluster.claims().get_opt("data-ord-0").await?.is_none()
            && cluster.claims().get_opt("data-ord-1").await?.is_none();
        Ok(pods_gone && claims_gone && pids.iter().all(|p| !process_alive(*p)))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn graceful_deletion_sigkills_a_process_that_ignores_sigterm_after_the_grace_period()
-> Result<()> {
    let cluster = Cluster::start(7).await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stubborn", "namespace": NS},
        "spec": {
            "terminationGracePeriodSeconds": 3,
            "containers": [{
                "name": "stubborn",
                "image": "python:3",
                "command": ["/bin/sh", "-c", "trap 'echo got TERM' TERM; echo started; while true; do sleep 0.1; done"]
            }]
        }
    }))?;
    cluster.pods().create(&PostParams::default(), &pod).await?;
    eventually("stubborn ready", || async {
        Ok(cluster
            .pods()
            .get_opt("stubborn")
            .await?
            .is_some_and(|p| is_ready(&p)))
    })
    .await?;
    let pid = cluster.kubelet.pid(NS, "stubborn").context("pid")?;
    let start = std::time::Instant::now();
    cluster
        .pods()
        .delete("stubborn", &DeleteParams::default())
        .await?;
    eventually("stubborn deleted and its process gone", || async {
        Ok(cluster.pods().get_opt("stubborn").await?.is_none() && !process_alive(pid))
    })
    .await?;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "killed after {took:?}, before the grace period"
    );
    let log = std::fs::read_to_string(cluster.kubelet.log_path(NS, "stubborn"))?;
    assert!(log.contains("got TERM"), "{log}");
    Ok(())
}
