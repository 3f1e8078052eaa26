//! One pod's life on this node: start its container, restart it per
//! `restartPolicy`, probe readiness, keep configMap volumes fresh, report
//! status, and carry out graceful deletion. One task per pod object (per
//! uid); it receives the latest version of its pod over a watch channel,
//! `None` meaning the pod is gone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::network::{HostsEntry, PodKey};
use super::process::{ContainerProcess, Launch, exit_code};
use super::volumes::{self, HostMount, PodPaths};
use super::{KubeletError, Shared, env, probe};

/// How often the worker looks at its pod when nothing else happens.
const TICK: Duration = Duration::from_millis(200);
/// How often configMap and secret volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(1);
/// First restart delay; doubles up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The end of one container run.
#[derive(Debug, Clone)]
struct Exit {
    code: i32,
    reason: &'static str,
    started: Timestamp,
    finished: Timestamp,
}

/// The state of one pod on this node.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    key: PodKey,
    uid: String,
    ip: Ipv4Addr,
    /// The pod's network namespace, once set up (before its first start).
    netns: Option<PathBuf>,
    paths: PodPaths,
    resume: Arc<Notify>,
    process: Option<ContainerProcess>,
    started: Option<(Timestamp, Instant)>,
    restart_count: i32,
    last_exit: Option<Exit>,
    next_start: Instant,
    backoff: Duration,
    completed: bool,
    ready: bool,
    probe_successes: i32,
    probe_failures: i32,
    next_probe: Instant,
    next_refresh: Instant,
    waiting: (String, String),
    mounts: Vec<HostMount>,
    pod_start: Timestamp,
    transitions: HashMap<&'static str, (bool, Timestamp)>,
    last_status: Option<serde_json::Value>,
    bound: bool,
}

impl Worker {
    /// Runs the pod until it is gone, then removes its record and volumes.
    /// `previous` is the worker of an earlier pod with the same name, which
    /// must finish its cleanup first.
    pub(crate) async fn run(
        shared: Arc<Shared>,
        key: PodKey,
        uid: String,
        mut pods: watch::Receiver<Option<Pod>>,
        previous: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let resume = Arc::new(Notify::new());
        let first = pods.borrow().clone();
        let ip = match shared.register(&key, &uid, resume.clone(), first.as_ref()) {
            Ok(ip) => ip,
            Err(e) => {
                warn!(namespace = %key.0, pod = %key.1, error = %e, "cannot run pod");
                return;
            }
        };
        let paths = PodPaths::new(&shared.config.root_dir, &key.0, &key.1);
        let now = Instant::now();
        let mut worker = Worker {
            shared,
            key,
            uid,
            ip,
            netns: None,
            paths,
            resume,
            process: None,
            started: None,
            restart_count: 0,
            last_exit: None,
            next_start: now,
            backoff: FIRST_BACKOFF,
            completed: false,
            ready: false,
            probe_successes: 0,
            probe_failures: 0,
            next_probe: now,
            next_refresh: now,
            waiting: ("ContainerCreating".into(), String::new()),
            mounts: Vec::new(),
            pod_start: Timestamp::now(),
            transitions: HashMap::new(),
            last_status: None,
            bound: false,
        };
        worker.run_until_gone(&mut pods).await;
        worker.process = None;
        if worker.netns.take().is_some() {
            let shared = worker.shared.clone();
            let _ = tokio::task::spawn_blocking(move || shared.bridge.remove_pod(ip)).await;
        }
        worker.shared.unregister(&worker.key, &worker.uid);
        let volumes_dir = worker.paths.volumes_dir();
        if let Err(e) = std::fs::remove_dir_all(&volumes_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %volumes_dir.display(), error = %e, "cannot remove pod volumes");
        }
        info!(namespace = %worker.key.0, pod = %worker.key.1, "pod gone");
    }

    async fn run_until_gone(&mut self, pods: &mut watch::Receiver<Option<Pod>>) {
        loop {
            let Some(pod) = pods.borrow_and_update().clone() else {
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate(&pod, pods).await;
                return;
            }
            self.step(&pod).await;
            let resume = self.resume.clone();
            tokio::select! {
                changed = pods.changed() => {
                    if changed.is_err() {
                        // The kubelet is gone.
                        return;
                    }
                }
                exit = wait_for(&mut self.process) => self.on_exit(exit, &pod),
                () = resume.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    fn stopped(&self) -> bool {
        self.shared.is_stopped(&self.key, &self.uid)
    }

    /// One look at the pod: start the container if due, probe, refresh
    /// volumes, report status.
    async fn step(&mut self, pod: &Pod) {
        self.bind(pod).await;
        let Some(container) = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
        else {
            self.waiting = ("InvalidPod".into(), "the pod has no container".into());
            self.write_status(pod, None).await;
            return;
        };
        let now = Instant::now();
        if self.process.is_none() && !self.completed && !self.stopped() && now >= self.next_start {
            match self.start(pod, &container).await {
                Ok(()) => {}
                Err(e) => {
                    let message = e.to_string();
                    if self.waiting.1 != message {
                        warn!(namespace = %self.key.0, pod = %self.key.1, error = %message, "cannot start container");
                    }
                    let reason = match e {
                        KubeletError::Missing { .. } => "ContainerCreating",
                        _ => "CreateContainerError",
                    };
                    self.waiting = (reason.into(), message);
                    self.next_start = now + Duration::from_secs(1);
                }
            }
        }
        if self.process.is_some() {
            self.probe(&container).await;
            if Instant::now() >= self.next_refresh {
                self.next_refresh = Instant::now() + VOLUME_REFRESH;
                if let Err(e) = volumes::refresh(&self.shared.client, &self.paths, pod).await {
                    debug!(pod = %self.key.1, error = %e, "volume refresh failed");
                }
            }
        }
        self.write_status(pod, Some(&container)).await;
    }

    /// Sets `spec.nodeName` of an unbound pod to this node (the scheduler's
    /// job; there is no scheduler). Best effort: the status says where the
    /// pod runs either way.
    async fn bind(&mut self, pod: &Pod) {
        if self.bound {
            return;
        }
        self.bound = true;
        let unbound = pod
            .spec
            .as_ref()
            .is_none_or(|s| s.node_name.as_deref().is_none_or(str::is_empty));
        if unbound {
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.0);
            let patch = json!({ "spec": { "nodeName": self.shared.config.node_name } });
            if let Err(e) = api
                .patch(&self.key.1, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                debug!(pod = %self.key.1, error = %e, "cannot set spec.nodeName");
            }
        }
    }

    /// The pod's network namespace, set up now if it has none yet (the
    /// pause container's job).
    async fn sandbox(&mut self) -> Result<PathBuf, KubeletError> {
        if let Some(path) = &self.netns {
            return Ok(path.clone());
        }
        let shared = self.shared.clone();
        let ip = self.ip;
        let path = tokio::task::spawn_blocking(move || shared.bridge.add_pod(ip))
            .await
            .map_err(|e| KubeletError::Network(format!("pod network setup task: {e}")))??;
        debug!(namespace = %self.key.0, pod = %self.key.1, %ip, netns = %path.display(), "pod network ready");
        self.netns = Some(path.clone());
        Ok(path)
    }

    async fn start(&mut self, pod: &Pod, container: &Container) -> Result<(), KubeletError> {
        let netns = self.sandbox().await?;
        let spec = pod.spec.clone().unwrap_or_default();
        self.mounts = volumes::prepare(&self.shared.client, &self.paths, pod, container).await?;
        let fields = env::PodFields {
            name: self.key.1.clone(),
            namespace: self.key.0.clone(),
            uid: self.uid.clone(),
            node_name: self.shared.config.node_name.clone(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod_ip: self.ip.to_string(),
            host_ip: self.shared.host_ip().to_string(),
        };
        let vars = env::resolve(&self.shared.client, container, &fields).await?;
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut argv: Vec<String> = match container.command.as_deref() {
            Some(command) if !command.is_empty() => command.to_vec(),
            _ => {
                let image = container.image.as_deref().unwrap_or_default();
                let exe = self
                    .shared
                    .config
                    .images
                    .resolve(image)
                    .ok_or_else(|| KubeletError::UnknownImage(image.to_owned()))?;
                vec![exe.to_string_lossy().into_owned()]
            }
        };
        argv.extend(container.args.iter().flatten().cloned());
        let argv: Vec<String> = argv
            .iter()
            .map(|a| volumes::translate(&env::expand(a, lookup), &self.mounts))
            .collect();
        let working_dir = container
            .working_dir
            .as_deref()
            .map(|w| PathBuf::from(volumes::translate(w, &self.mounts)))
            .filter(|w| w.is_dir())
            .unwrap_or_else(|| self.paths.pod_dir.clone());
        let mut process_env = vars.clone();
        process_env.push((
            "HOSTNAME".into(),
            spec.hostname.clone().unwrap_or_else(|| self.key.1.clone()),
        ));
        if let Some(url) = &self.shared.config.api_server_for_pods
            && !process_env.iter().any(|(k, _)| k == "KUBECONFIG")
        {
            std::fs::create_dir_all(&self.paths.pod_dir)?;
            let path = self.paths.pod_dir.join("kubeconfig");
            let ns = &self.key.0;
            std::fs::write(&path, crate::apiserver::kubeconfig(url, ns))
                .map_err(KubeletError::Io)?;
            process_env.push(("KUBECONFIG".into(), path.to_string_lossy().into_owned()));
        }
        let log_file = self.paths.log_file(&container.name);
        let process = ContainerProcess::spawn(&Launch {
            argv: argv.clone(),
            env: process_env,
            netns: &netns,
            hosts_file: &self.shared.hosts_file,
            resolv_conf: &self.shared.resolv_conf,
            log_file: &log_file,
            working_dir: &working_dir,
        })?;
        info!(namespace = %self.key.0, pod = %self.key.1, pid = process.pid(), ?argv, "container started");
        self.shared
            .set_pid(&self.key, &self.uid, Some(process.pid()));
        if self.last_exit.is_some() {
            self.restart_count += 1;
        }
        self.process = Some(process);
        self.started = Some((Timestamp::now(), Instant::now()));
        self.ready = false;
        self.probe_successes = 0;
        self.probe_failures = 0;
        let delay = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.initial_delay_seconds)
            .unwrap_or(0)
            .max(0)
            .unsigned_abs();
        self.next_probe = Instant::now() + Duration::from_secs(delay.into());
        Ok(())
    }

    async fn probe(&mut self, container: &Container) {
        let Some(probe_spec) = container.readiness_probe.as_ref() else {
            self.ready = true;
            return;
        };
        if Instant::now() < self.next_probe {
            return;
        }
        let period = Duration::from_secs(
            probe_spec
                .period_seconds
                .unwrap_or(10)
                .max(1)
                .unsigned_abs()
                .into(),
        )
        .min(self.shared.config.probe_period_cap);
        let ok = probe::check(probe_spec, container, IpAddr::V4(self.ip)).await;
        self.next_probe = Instant::now() + period;
        if ok {
            self.probe_failures = 0;
            self.probe_successes += 1;
            if self.probe_successes >= probe_spec.success_threshold.unwrap_or(1).max(1) {
                self.ready = true;
            }
        } else {
            self.probe_successes = 0;
            self.probe_failures += 1;
            if self.probe_failures >= probe_spec.failure_threshold.unwrap_or(3).max(1) {
                self.ready = false;
            }
        }
    }

    fn on_exit(&mut self, exit: std::io::Result<std::process::ExitStatus>, pod: &Pod) {
        let code = exit.map_or(-1, exit_code);
        self.process = None;
        self.shared.set_pid(&self.key, &self.uid, None);
        self.ready = false;
        let (started, ran) = self
            .started
            .take()
            .map_or((Timestamp::now(), Duration::ZERO), |(t, i)| {
                (t, i.elapsed())
            });
        let stopped = self.stopped();
        self.last_exit = Some(Exit {
            code,
            reason: if stopped {
                "NodeStopped"
            } else if code == 0 {
                "Completed"
            } else {
                "Error"
            },
            started,
            finished: Timestamp::now(),
        });
        info!(namespace = %self.key.0, pod = %self.key.1, code, stopped, "container exited");
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let restart = match policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if stopped {
            // Starts again as soon as the node resumes, without backoff.
            self.next_start = Instant::now();
            return;
        }
        if !restart {
            self.completed = true;
            return;
        }
        if ran >= self.shared.config.max_restart_backoff * 2 {
            self.backoff = FIRST_BACKOFF;
        }
        self.next_start = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.shared.config.max_restart_backoff);
        self.waiting = ("CrashLoopBackOff".into(), String::new());
    }

    /// Graceful deletion: SIGTERM, up to the grace period, SIGKILL, then the
    /// final DELETE (grace 0). A stopped node cannot do any of this, so the
    /// pod stays terminating until the node resumes or the pod is removed.
    async fn terminate(&mut self, pod: &Pod, pods: &mut watch::Receiver<Option<Pod>>) {
        while self.stopped() {
            let resume = self.resume.clone();
            tokio::select! {
                changed = pods.changed() => {
                    if changed.is_err() || pods.borrow().is_none() {
                        return;
                    }
                }
                () = resume.notified() => {}
            }
        }
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0)
            .unsigned_abs();
        if let Some(mut process) = self.process.take() {
            info!(namespace = %self.key.0, pod = %self.key.1, grace, "stopping container");
            process.signal(Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(grace), process.wait())
                .await
                .is_err()
            {
                process.signal(Signal::SIGKILL);
                let _ = process.wait().await;
            }
            self.shared.set_pid(&self.key, &self.uid, None);
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        loop {
            match api.delete(&self.key.1, &params).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => break,
                Err(e) => {
                    if pods.has_changed().is_err() {
                        // The kubelet is gone; nobody is left to retry for.
                        return;
                    }
                    warn!(pod = %self.key.1, error = %e, "final delete failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        // Wait for the watch to confirm; a pod held by finalizers stays.
        while pods.borrow_and_update().is_some() {
            if pods.changed().await.is_err() {
                return;
            }
        }
    }

    /// Writes the pod's status through /status when it changed.
    async fn write_status(&mut self, pod: &Pod, container: Option<&Container>) {
        let status = self.status(pod, container);
        let value = json!({ "status": status });
        if self.last_status.as_ref() == Some(&value) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        match api
            .patch_status(&self.key.1, &PatchParams::default(), &Patch::Merge(&value))
            .await
        {
            Ok(_) => self.last_status = Some(value),
            Err(e) => debug!(pod = %self.key.1, error = %e, "status write failed; retrying"),
        }
    }

    fn condition(&mut self, kind: &'static str, value: bool) -> PodCondition {
        let now = Timestamp::now();
        let entry = self.transitions.entry(kind).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        PodCondition {
            type_: kind.into(),
            status: if value { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(entry.1)),
            ..PodCondition::default()
        }
    }

    fn status(&mut self, pod: &Pod, container: Option<&Container>) -> PodStatus {
        let running = self.process.is_some();
        let ready = running && self.ready;
        let state = if let Some((started, _)) = self.started.filter(|_| running) {
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started)),
                }),
                ..ContainerState::default()
            }
        } else if let (Some(exit), true) = (&self.last_exit, self.completed || self.stopped()) {
            ContainerState {
                terminated: Some(terminated(exit)),
                ..ContainerState::default()
            }
        } else {
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(self.waiting.0.clone()),
                    message: Some(self.waiting.1.clone()).filter(|m| !m.is_empty()),
                }),
                ..ContainerState::default()
            }
        };
        let last_state = self
            .last_exit
            .as_ref()
            .filter(|_| state.terminated.is_none())
            .map(|exit| ContainerState {
                terminated: Some(terminated(exit)),
                ..ContainerState::default()
            });
        let phase = match (&self.last_exit, self.completed) {
            (Some(exit), true) if exit.code == 0 => "Succeeded",
            (Some(_), true) => "Failed",
            _ if running || self.last_exit.is_some() => "Running",
            _ => "Pending",
        };
        let conditions = vec![
            self.condition("PodScheduled", true),
            self.condition("Initialized", true),
            self.condition("ContainersReady", ready),
            self.condition("Ready", ready),
        ];
        let container_statuses = container.map(|c| {
            vec![ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: self
                    .process
                    .as_ref()
                    .map(|p| format!("kubesim://{}", p.pid())),
                ready,
                restart_count: self.restart_count,
                started: Some(running),
                state: Some(state),
                last_state,
                ..ContainerStatus::default()
            }]
        });
        let ip = self.ip.to_string();
        let _ = pod;
        PodStatus {
            phase: Some(phase.into()),
            host_ip: Some(self.shared.host_ip().to_string()),
            host_ips: Some(vec![HostIP {
                ip: self.shared.host_ip().to_string(),
            }]),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            start_time: Some(Time(self.pod_start)),
            conditions: Some(conditions),
            container_statuses,
            qos_class: Some("BestEffort".into()),
            ..PodStatus::default()
        }
    }
}

fn terminated(exit: &Exit) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.code,
        reason: Some(exit.reason.into()),
        started_at: Some(Time(exit.started)),
        finished_at: Some(Time(exit.finished)),
        ..ContainerStateTerminated::default()
    }
}

async fn wait_for(
    process: &mut Option<ContainerProcess>,
) -> std::io::Result<std::process::ExitStatus> {
    match process {
        Some(p) => p.wait().await,
        None => std::future::pending().await,
    }
}

/// The hosts-file entry of a pod at `ip`.
pub(crate) fn hosts_entry(pod: &Pod, ip: Ipv4Addr) -> HostsEntry {
    let spec = pod.spec.as_ref();
    HostsEntry {
        ip,
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        hostname: spec
            .and_then(|s| s.hostname.clone())
            .filter(|s| !s.is_empty()),
        subdomain: spec
            .and_then(|s| s.subdomain.clone())
            .filter(|s| !s.is_empty()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
    }
}
