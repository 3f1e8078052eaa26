//! Runs `cairn-node` as a real child process: start, wait until ready, stop
//! with SIGTERM or SIGKILL, restart on the same data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Path of a binary built in the same target directory as the running
/// program (e.g. `cairn-node` beside `cairnctl`, or beside a test's
/// `target/<profile>/deps/` directory); the bare name, looked up on `PATH`,
/// when there is no such file.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let candidates = [
        dir.map(|d| d.join(name)),
        // target/<profile>/deps/<test> -> target/<profile>/<name>
        dir.and_then(Path::parent).map(|d| d.join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The `cairn-node` binary.
    pub binary: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Extra flags.
    pub args: Vec<String>,
}

/// A running `cairn-node` child.
#[derive(Debug)]
pub struct NodeProcess {
    spec: NodeSpec,
    child: Option<Child>,
    /// Bound gRPC address.
    pub grpc: SocketAddr,
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Bound metrics address.
    pub metrics: SocketAddr,
    stderr_log: PathBuf,
    /// The ready line, while not yet seen (see [`Self::spawn_again`]).
    ready_line: Option<Receiver<String>>,
    ready: bool,
}

/// A child just spawned, its ready line not waited for.
struct Spawned {
    child: Child,
    ready_line: Receiver<String>,
    stderr_log: PathBuf,
}

fn spawn(spec: &NodeSpec, addrs: Option<[SocketAddr; 3]>) -> anyhow::Result<Spawned> {
    let addrs = addrs.map_or_else(
        || {
            [
                "127.0.0.1:0".to_string(),
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
            ]
        },
        |a| a.map(|x| x.to_string()),
    );
    let stderr_log = spec.data_dir.with_extension("stderr.log");
    std::fs::create_dir_all(&spec.data_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_log)?;
    let mut child = Command::new(&spec.binary)
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args([
            "--grpc-addr",
            &addrs[0],
            "--http-addr",
            &addrs[1],
            "--metrics-addr",
            &addrs[2],
        ])
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {}", spec.binary.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, ready_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    Ok(Spawned {
        child,
        ready_line,
        stderr_log,
    })
}

impl NodeProcess {
    /// Starts a node on free loopback ports and waits (up to 60 s) for its
    /// ready line.
    pub fn start(spec: NodeSpec) -> anyhow::Result<Self> {
        Self::start_at(spec, None)
    }

    /// Starts a node on the given gRPC, HTTP and metrics addresses (free
    /// loopback ports when `None`).
    pub fn start_at(spec: NodeSpec, addrs: Option<[SocketAddr; 3]>) -> anyhow::Result<Self> {
        let Spawned {
            mut child,
            ready_line: rx,
            stderr_log,
        } = spawn(&spec, addrs)?;
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "cairn-node did not become ready; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        let addr = |name: &str| -> anyhow::Result<SocketAddr> {
            let prefix = format!("{name}=");
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix))
                .with_context(|| format!("no {name}= in ready line {line:?}"))?
                .parse()
                .context("parsing address")
        };
        Ok(Self {
            grpc: addr("grpc")?,
            http: addr("http")?,
            metrics: addr("metrics")?,
            spec,
            child: Some(child),
            stderr_log,
            ready_line: None,
            ready: true,
        })
    }

    /// The flags the node is started with (after the data directory and the
    /// listen addresses).
    pub fn args(&self) -> &[String] {
        &self.spec.args
    }

    /// Changes the flags for the next start (e.g. to restart a member
    /// without `--join`); the running process is not touched.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.spec.args = args;
    }

    /// Starts the node again on its previous addresses without waiting for
    /// it to become ready: for a node expected to refuse to start or to stop
    /// by itself. Poll [`Self::exited`] and [`Self::became_ready`].
    pub fn spawn_again(&mut self) -> anyhow::Result<()> {
        self.kill();
        let addrs = [self.grpc, self.http, self.metrics];
        let spawned = spawn(&self.spec, Some(addrs))?;
        self.child = Some(spawned.child);
        self.stderr_log = spawned.stderr_log;
        self.ready_line = Some(spawned.ready_line);
        self.ready = false;
        Ok(())
    }

    /// Whether the current process printed its ready line (so far).
    pub fn became_ready(&mut self) -> bool {
        if !self.ready
            && let Some(rx) = &self.ready_line
            && rx.try_recv().is_ok()
        {
            self.ready = true;
            self.ready_line = None;
        }
        self.ready
    }

    /// `http://` URL of the gRPC endpoint.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://` URL of the HTTP gateway.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The node's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The child's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (up to `timeout`) for exit; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut c = self.child.take().context("node is not running")?;
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("cairn-node did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new process with the same spec (same data directory) on the
    /// same addresses, so peers that stored them reach it again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start_again()
    }

    /// Starts a stopped node again on its previous addresses (retrying for a
    /// while if a port is still held by the old process's sockets).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let addrs = [self.grpc, self.http, self.metrics];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Self::start_at(self.spec.clone(), Some(addrs)) {
                Ok(fresh) => {
                    *self = fresh;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart failed, retrying: {e:#}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The program this node runs.
    pub fn binary(&self) -> &Path {
        &self.spec.binary
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The exit status, once the process has ended by itself (`None` while
    /// it runs or after it was killed through this handle).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
