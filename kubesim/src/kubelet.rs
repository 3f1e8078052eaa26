//! The kubelet: runs every pod bound to this node (or to no node — there is
//! no scheduler) as a real local process, and reports its status through the
//! API like the real kubelet does.
//!
//! Each pod gets a network namespace of its own on the kubelet's bridge
//! (addresses .10, .11, … of the configured /24; see `sandbox`), its
//! volumes as host directories (paths in the container's arguments are
//! rewritten to them), its environment with `fieldRef`/ConfigMap/Secret
//! references resolved, readiness from its `httpGet`/`tcpSocket` probe, and
//! cluster DNS names through a hosts file bind-mounted on the process's
//! `/etc/hosts` in a private mount namespace. What is and is not emulated is
//! listed in the crate README (`## Kubelet`).
//!
//! The [`Kubelet`] handle owns everything it starts: dropping it kills every
//! container process.

mod env;
mod image;
mod network;
mod pod_worker;
mod probe;
mod process;
mod sandbox;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use nix::sys::signal::Signal;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use image::ImageMap;
use network::{HostsEntry, IpPool, PodKey, ServiceEntry};
use pod_worker::Worker;
use sandbox::Bridge;
use volumes::PodPaths;

/// Why the kubelet could not start, or could not run a pod.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A call to the API server failed.
    #[error("kubesim:kubelet:api: {0}")]
    Api(#[from] kube::Error),
    /// A file or process operation failed.
    #[error("kubesim:kubelet:io: {0}")]
    Io(#[from] std::io::Error),
    /// No [`ImageMap`] rule matches the container's image.
    #[error("kubesim:kubelet:unknown-image: no executable is mapped for image {0:?}")]
    UnknownImage(String),
    /// An object the pod needs does not exist (yet).
    #[error("kubesim:kubelet:missing: {kind} {name} not found")]
    Missing {
        /// What kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The pod asks for something this kubelet does not emulate.
    #[error("kubesim:kubelet:unsupported: {0}")]
    Unsupported(String),
    /// A pod's network namespace or the node's bridge could not be set up.
    #[error("kubesim:kubelet:network: {0}")]
    Network(String),
}

impl KubeletError {
    fn missing(kind: &'static str, name: &str) -> Self {
        Self::Missing {
            kind,
            name: name.to_owned(),
        }
    }
}

/// How the kubelet runs pods.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Where pod volumes, claims, logs and the hosts file live. The kubelet
    /// owns this directory: claim directories without a claim object are
    /// removed.
    pub root_dir: PathBuf,
    /// Which executable each image runs.
    pub images: ImageMap,
    /// This node's name: pods bound to another node are left alone; unbound
    /// pods are bound here.
    pub node_name: String,
    /// The /24 pods get their addresses from (`.10` to `.254`); the host
    /// holds `.1` on the kubelet's bridge. Kubelets running side by side
    /// need different subnets.
    pub pod_subnet: Ipv4Addr,
    /// Readiness probes run every `periodSeconds`, but at least this often,
    /// so tests do not wait out production periods.
    pub probe_period_cap: Duration,
    /// The longest delay between restarts of a failing container (Kubernetes
    /// uses five minutes; tests want seconds).
    pub max_restart_backoff: Duration,
    /// The API server's URL as pods reach it (the host's bridge address,
    /// see [`KubeletConfig::host_ip`]), for programs that run as pods and talk to
    /// Kubernetes (an operator installed by its Helm chart). When set, each
    /// container gets `KUBECONFIG` naming a kubeconfig for that URL in its
    /// pod's namespace: the stand-in for a service account token and
    /// `KUBERNETES_SERVICE_HOST`, which a plain-HTTP server without
    /// authentication cannot offer.
    pub api_server_for_pods: Option<String>,
}

impl KubeletConfig {
    /// The host's address on the pod bridge (`.1` of `pod_subnet`): pods
    /// reach the host, and an API server listening there, at it.
    pub fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.pod_subnet.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// A config with defaults: node `kubesim-node`, pods in 198.18.0.0/24
    /// (a range reserved for network tests, RFC 2544), probes at least every
    /// second, restarts at most 10 s apart.
    pub fn new(root_dir: impl Into<PathBuf>, images: ImageMap) -> Self {
        Self {
            root_dir: root_dir.into(),
            images,
            node_name: "kubesim-node".into(),
            pod_subnet: Ipv4Addr::new(198, 18, 0, 0),
            probe_period_cap: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(10),
            api_server_for_pods: None,
        }
    }
}

/// Creates the `Node` object named `name`, Ready, unless it exists. Only
/// registration is emulated: no heartbeats or node lease, and deleting the
/// object does not stop the pods bound to it.
async fn register_node(client: &Client, name: &str) -> Result<(), KubeletError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
    }))
    .map_err(|e| KubeletError::Unsupported(format!("node object: {e}")))?;
    match nodes.create(&kube::api::PostParams::default(), &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A running kubelet. Dropping it stops watching and kills every container
/// process it started (SIGKILL to each process group).
#[derive(Debug)]
pub struct Kubelet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Kubelet {
    /// Registers this node's `Node` object (as a kubelet does), then starts
    /// watching pods and claims and running this node's pods.
    ///
    /// # Errors
    ///
    /// The root directory or hosts file cannot be created, the bridge
    /// cannot be set up (not root, no iproute2), or the Node cannot be
    /// registered.
    pub async fn start(client: Client, config: KubeletConfig) -> Result<Kubelet, KubeletError> {
        std::fs::create_dir_all(&config.root_dir)?;
        let hosts_file = config.root_dir.join("hosts");
        network::write_in_place(&hosts_file, &network::render(&[], &[]))?;
        let resolv_conf = config.root_dir.join("resolv.conf");
        std::fs::write(&resolv_conf, network::RESOLV_CONF)?;
        let subnet = config.pod_subnet;
        let bridge = tokio::task::spawn_blocking(move || Bridge::create(subnet))
            .await
            .map_err(|e| KubeletError::Network(format!("bridge setup task: {e}")))??;
        let shared = Arc::new(Shared {
            client,
            bridge,
            state: Mutex::new(State {
                ips: IpPool::new(config.pod_subnet),
                pods: HashMap::new(),
                containers: HashMap::new(),
                services: Vec::new(),
                hosts: String::new(),
            }),
            hosts_file,
            resolv_conf,
            config,
        });
        info!(node = %shared.config.node_name, root = %shared.config.root_dir.display(), "kubelet starting");
        register_node(&shared.client, &shared.config.node_name).await?;
        let tasks = vec![
            tokio::spawn(watch_pods(shared.clone())),
            tokio::spawn(watch_claims(shared.clone())),
            tokio::spawn(watch_services(shared.clone())),
        ];
        Ok(Kubelet { shared, tasks })
    }

    /// The hosts file every container sees as `/etc/hosts`.
    pub fn hosts_file(&self) -> PathBuf {
        self.shared.hosts_file.clone()
    }

    /// The address of pod `namespace/pod`, if it was ever seen. Stable for
    /// the kubelet's lifetime, also across deletion and recreation.
    pub fn pod_ip(&self, namespace: &str, pod: &str) -> Option<IpAddr> {
        self.shared
            .lock()
            .ips
            .get(&key(namespace, pod))
            .map(IpAddr::V4)
    }

    /// The pod's network namespace, as a path for `nsenter --net=`: what
    /// `kubectl exec` or `kubectl port-forward` would reach (the pod's own
    /// loopback, its ports). `None` when the pod has no address or its
    /// namespace is gone.
    pub fn network_namespace(&self, namespace: &str, pod: &str) -> Option<PathBuf> {
        let ip = self.shared.lock().ips.get(&key(namespace, pod))?;
        Some(sandbox::namespace_path(ip)).filter(|p| p.exists())
    }

    /// Kills the pod's process with SIGKILL, as a container crash: the
    /// kubelet restarts it per `restartPolicy`. No-op when it is not running.
    pub fn crash(&self, namespace: &str, pod: &str) {
        let state = self.shared.lock();
        if let Some(pid) = state.pods.get(&key(namespace, pod)).and_then(|r| r.pid) {
            info!(namespace, pod, pid, "crashing container");
            process::signal_group(pid, Signal::SIGKILL);
        }
    }

    /// Kills the pod's process and keeps it down, as if its machine died:
    /// no restart, Ready false, container terminated (reason `NodeStopped`);
    /// a graceful deletion is not completed meanwhile. Lasts until
    /// [`Kubelet::resume_node`] or until this pod object is gone (a new pod
    /// of the same name runs normally).
    pub fn stop_node(&self, namespace: &str, pod: &str) {
        let mut state = self.shared.lock();
        if let Some(record) = state.pods.get_mut(&key(namespace, pod)) {
            info!(namespace, pod, "stopping node");
            record.stopped = true;
            if let Some(pid) = record.pid {
                process::signal_group(pid, Signal::SIGKILL);
            }
            record.resume.notify_one();
        }
    }

    /// Ends [`Kubelet::stop_node`]: the container starts again at once
    /// (counted as a restart).
    pub fn resume_node(&self, namespace: &str, pod: &str) {
        let mut state = self.shared.lock();
        if let Some(record) = state.pods.get_mut(&key(namespace, pod)) {
            info!(namespace, pod, "resuming node");
            record.stopped = false;
            record.resume.notify_one();
        }
    }

    /// The log file of the pod's (first) container: stdout and stderr of
    /// every run, appended, kept after the pod is gone. The file is named
    /// after the container, so the answer is right only once the kubelet has
    /// seen the pod (before that it names `unknown.log`).
    pub fn log_path(&self, namespace: &str, pod: &str) -> PathBuf {
        let container = self
            .shared
            .lock()
            .containers
            .get(&key(namespace, pod))
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        PodPaths::new(&self.shared.config.root_dir, namespace, pod).log_file(&container)
    }

    /// The host directory of claim `namespace/claim`.
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.shared
            .config
            .root_dir
            .join("claims")
            .join(namespace)
            .join(claim)
    }

    /// The host directory of a pod's configMap, secret or emptyDir volume.
    pub fn volume_dir(&self, namespace: &str, pod: &str, volume: &str) -> PathBuf {
        PodPaths::new(&self.shared.config.root_dir, namespace, pod)
            .volumes_dir()
            .join(volume)
    }

    /// The process id of the pod's running container, if it runs.
    pub fn pid(&self, namespace: &str, pod: &str) -> Option<u32> {
        self.shared
            .lock()
            .pods
            .get(&key(namespace, pod))
            .and_then(|r| r.pid)
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Stops the kubelet: kills every container process and waits for the
    /// watch tasks to end.
    pub async fn shutdown(mut self) {
        self.kill_all();
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }

    fn kill_all(&self) {
        let state = self.shared.lock();
        for record in state.pods.values() {
            if let Some(pid) = record.pid {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.kill_all();
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("hosts_file", &self.hosts_file)
            .finish_non_exhaustive()
    }
}

fn key(namespace: &str, pod: &str) -> PodKey {
    (namespace.to_owned(), pod.to_owned())
}

/// State shared by the kubelet handle, its watch tasks and the pod workers.
pub(crate) struct Shared {
    client: Client,
    /// Pod networks; dropped (namespaces and bridge deleted) after the last
    /// worker is gone.
    bridge: Bridge,
    config: KubeletConfig,
    hosts_file: PathBuf,
    /// Every container's `/etc/resolv.conf`.
    resolv_conf: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ips: IpPool,
    pods: HashMap<PodKey, PodRecord>,
    /// First container name per pod, kept after the pod is gone (log paths).
    containers: HashMap<PodKey, String>,
    /// Services with selectors, published in the hosts file.
    services: Vec<ServiceEntry>,
    /// The hosts file's current contents.
    hosts: String,
}

/// What the handle needs to reach a running pod.
#[derive(Debug)]
struct PodRecord {
    uid: String,
    hosts: HostsEntry,
    pid: Option<i32>,
    stopped: bool,
    resume: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a pod's worker, gives it its address and publishes its names.
    ///
    /// # Errors
    ///
    /// Every address of the subnet is taken.
    fn register(
        &self,
        key: &PodKey,
        uid: &str,
        resume: Arc<Notify>,
        pod: Option<&Pod>,
    ) -> Result<Ipv4Addr, KubeletError> {
        let mut state = self.lock();
        let ip = state.ips.assign(key).ok_or_else(|| {
            KubeletError::Network(format!(
                "all 245 pod addresses of {}/24 are taken",
                self.config.pod_subnet
            ))
        })?;
        let hosts = match pod {
            Some(pod) => pod_worker::hosts_entry(pod, ip),
            None => HostsEntry {
                ip,
                namespace: key.0.clone(),
                hostname: None,
                subdomain: None,
                labels: std::collections::BTreeMap::new(),
            },
        };
        if let Some(name) = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
        {
            state.containers.insert(key.clone(), name);
        }
        state.pods.insert(
            key.clone(),
            PodRecord {
                uid: uid.to_owned(),
                hosts,
                pid: None,
                stopped: false,
                resume,
            },
        );
        self.rewrite_hosts(&mut state);
        Ok(ip)
    }

    /// Forgets a pod's worker and withdraws its names.
    fn unregister(&self, key: &PodKey, uid: &str) {
        let mut state = self.lock();
        if state.pods.get(key).is_some_and(|r| r.uid == uid) {
            state.pods.remove(key);
            self.rewrite_hosts(&mut state);
        }
    }

    fn set_pid(&self, key: &PodKey, uid: &str, pid: Option<i32>) {
        if let Some(record) = self.lock().pods.get_mut(key).filter(|r| r.uid == uid) {
            record.pid = pid;
        }
    }

    fn is_stopped(&self, key: &PodKey, uid: &str) -> bool {
        self.lock()
            .pods
            .get(key)
            .is_some_and(|r| r.uid == uid && r.stopped)
    }

    /// The host's address on the pod bridge (the node's `hostIP`).
    fn host_ip(&self) -> Ipv4Addr {
        self.bridge.host_ip()
    }

    fn rewrite_hosts(&self, state: &mut State) {
        let entries: Vec<HostsEntry> = state.pods.values().map(|r| r.hosts.clone()).collect();
        let contents = network::render(&entries, &state.services);
        if contents == state.hosts {
            return;
        }
        match network::write_in_place(&self.hosts_file, &contents) {
            Ok(()) => state.hosts = contents,
            Err(e) => warn!(error = %e, "cannot rewrite the hosts file"),
        }
    }
}

/// Follows Services and republishes their names in the hosts file whenever
/// one with a selector comes, changes or goes (the stand-in for cluster DNS
/// and kube-proxy).
async fn watch_services(shared: Arc<Shared>) {
    let api: Api<Service> = Api::all(shared.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<ServiceEntry> = Vec::new();
    let entry = |svc: &Service| -> Option<ServiceEntry> {
        Some(ServiceEntry {
            namespace: svc.metadata.namespace.clone()?,
            name: svc.metadata.name.clone()?,
            selector: svc.spec.as_ref()?.selector.clone().unwrap_or_default(),
        })
    };
    while let Some(event) = stream.next().await {
        let mut state = shared.lock();
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(svc)) => listing.extend(entry(&svc)),
            Ok(Event::InitDone) => state.services = std::mem::take(&mut listing),
            Ok(Event::Apply(svc)) => {
                if let Some(e) = entry(&svc) {
                    state
                        .services
                        .retain(|s| (&s.namespace, &s.name) != (&e.namespace, &e.name));
                    state.services.push(e);
                }
            }
            Ok(Event::Delete(svc)) => {
                if let Some(e) = entry(&svc) {
                    state
                        .services
                        .retain(|s| (&s.namespace, &s.name) != (&e.namespace, &e.name));
                }
            }
            Err(e) => {
                warn!(error = %e, "service watch error");
                continue;
            }
        }
        shared.rewrite_hosts(&mut state);
    }
}

/// One pod worker as the watch task sees it.
struct WorkerHandle {
    uid: String,
    pods: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Follows all pods and keeps one worker per pod of this node. Dropping this
/// task (kubelet shutdown) drops the channels, which ends every worker and
/// kills its process.
async fn watch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut workers: HashMap<PodKey, WorkerHandle> = HashMap::new();
    let mut finishing: HashMap<PodKey, JoinHandle<()>> = HashMap::new();
    let mut listed: Option<HashSet<PodKey>> = None;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        finishing.retain(|_, task| !task.is_finished());
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let (Some(seen), Some(k)) = (listed.as_mut(), pod_key(&pod)) {
                    seen.insert(k);
                }
                apply(&shared, &mut workers, &mut finishing, pod);
            }
            Ok(Event::Apply(pod)) => apply(&shared, &mut workers, &mut finishing, pod),
            Ok(Event::Delete(pod)) => {
                if let Some(k) = pod_key(&pod) {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if workers.get(&k).is_some_and(|w| w.uid == uid) {
                        retire(&mut workers, &mut finishing, &k);
                    }
                }
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = listed.take() {
                    let gone: Vec<PodKey> = workers
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        retire(&mut workers, &mut finishing, &k);
                    }
                }
            }
            Err(e) => warn!(error = %e, "pod watch failed; retrying"),
        }
    }
}

fn pod_key(pod: &Pod) -> Option<PodKey> {
    Some((
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone()?,
    ))
}

/// Hands a new version of a pod to its worker, starting one if needed.
fn apply(
    shared: &Arc<Shared>,
    workers: &mut HashMap<PodKey, WorkerHandle>,
    finishing: &mut HashMap<PodKey, JoinHandle<()>>,
    pod: Pod,
) {
    let Some(k) = pod_key(&pod) else {
        return;
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if !node.is_empty() && node != shared.config.node_name {
        return;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match workers.get(&k) {
        Some(worker) if worker.uid == uid => {
            worker.pods.send_replace(Some(pod));
            return;
        }
        Some(_) => retire(workers, finishing, &k),
        None => {}
    }
    if pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0)
    {
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let previous = finishing.remove(&k);
    let task = tokio::spawn(Worker::run(
        shared.clone(),
        k.clone(),
        uid.clone(),
        rx,
        previous,
    ));
    workers.insert(
        k,
        WorkerHandle {
            uid,
            pods: tx,
            task,
        },
    );
}

/// Tells a worker its pod is gone; keeps its task so that a successor of
/// the same name waits for its cleanup.
fn retire(
    workers: &mut HashMap<PodKey, WorkerHandle>,
    finishing: &mut HashMap<PodKey, JoinHandle<()>>,
    k: &PodKey,
) {
    if let Some(worker) = workers.remove(k) {
        worker.pods.send_replace(None);
        finishing.insert(k.clone(), worker.task);
    }
}

/// Follows claims and removes the host directory of each deleted claim
/// (and, after each full list, of claims that no longer exist).
async fn watch_claims(shared: Arc<Shared>) {
    let api: Api<PersistentVolumeClaim> = Api::all(shared.client.clone());
    let claims_root = shared.config.root_dir.join("claims");
    let mut listed: Option<HashSet<PodKey>> = None;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(claim)) => {
                if let (Some(seen), Some(k)) = (listed.as_mut(), claim_key(&claim)) {
                    seen.insert(k);
                }
            }
            Ok(Event::Apply(_)) => {}
            Ok(Event::Delete(claim)) => {
                if let Some((ns, name)) = claim_key(&claim) {
                    remove_claim_dir(&claims_root.join(ns).join(name));
                }
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = listed.take() {
                    remove_unlisted_claims(&claims_root, &seen);
                }
            }
            Err(e) => warn!(error = %e, "claim watch failed; retrying"),
        }
    }
}

fn claim_key(claim: &PersistentVolumeClaim) -> Option<PodKey> {
    Some((
        claim
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        claim.metadata.name.clone()?,
    ))
}

fn remove_claim_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => info!(dir = %dir.display(), "claim deleted; removed its directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove claim directory"),
    }
}

fn remove_unlisted_claims(claims_root: &Path, listed: &HashSet<PodKey>) {
    let Ok(namespaces) = std::fs::read_dir(claims_root) else {
        return;
    };
    for ns in namespaces.flatten() {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        let Ok(claims) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for claim in claims.flatten() {
            let name = claim.file_name().to_string_lossy().into_owned();
            if !listed.contains(&(ns_name.clone(), name)) {
                remove_claim_dir(&claim.path());
            }
        }
    }
}
