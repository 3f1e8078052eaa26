//! A private network for one run: each node in its own network namespace,
//! joined to a bridge in the caller's namespace by a veth pair, with its
//! own address, its own iptables chain (partitions, packet loss) and its own
//! link (a slow, queueing link for delay). Needs root (`ip`, `iptables`,
//! `tc`, `mount` from iproute2, iptables and util-linux).
//!
//! Dropping the network deletes the namespaces, the bridge and unmounts the
//! nodes' filesystems, so a run cleans up even when it fails.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A network-setup failure: which command, and what it printed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A setup command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr (or why it could not start).
        output: String,
    },
    /// A filesystem operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn run(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The run's network: a bridge and one namespace per node slot.
#[derive(Debug)]
pub struct Network {
    tag: String,
    bridge: String,
    subnet: [u8; 3],
    slots: usize,
    /// Mount points of the nodes' size-limited filesystems.
    mounts: Vec<PathBuf>,
}

/// Name of the chain every namespace's INPUT and OUTPUT jump to.
const CHAIN: &str = "CAIRN_CHAOS";

impl Network {
    /// Creates `slots` namespaces (node `i` in slot `i - 1`) on a new bridge.
    /// The subnet and names derive from this process's id, so runs in
    /// different processes do not collide.
    pub fn create(slots: usize) -> Result<Self, NetworkError> {
        let pid = std::process::id();
        Self::clean_stale();
        let tag = format!("{pid}");
        let net = Self {
            bridge: format!("cbr{pid}"),
            subnet: [10, 201 + ((pid / 250) % 50) as u8, (pid % 250) as u8],
            tag,
            slots,
            mounts: Vec::new(),
        };
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        let host = format!("{}/24", net.host_ip());
        run("ip", &["addr", "add", &host, "dev", &net.bridge])?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for slot in 0..slots {
            net.create_slot(slot)?;
        }
        Ok(net)
    }

    /// The host end of a slot's veth pair.
    fn veth(&self, slot: usize) -> String {
        format!("cv{}n{slot}", self.tag)
    }

    fn create_slot(&self, slot: usize) -> Result<(), NetworkError> {
        let ns = self.namespace(slot);
        let veth = self.veth(slot);
        // Names repeat across the runs of one process: clear what an
        // earlier run's teardown could not (a namespace kept alive by a
        // process still exiting keeps its veth pair).
        let _ = run("ip", &["link", "del", &veth]);
        let _ = run("ip", &["netns", "del", &ns]);
        run("ip", &["netns", "add", &ns])?;
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", &self.bridge, "up"])?;
        let addr = format!("{}/24", self.node_ip(slot));
        self.exec(slot, "ip", &["addr", "add", &addr, "dev", "eth0"])?;
        self.exec(slot, "ip", &["link", "set", "eth0", "up"])?;
        self.exec(slot, "ip", &["link", "set", "lo", "up"])?;
        self.exec(slot, "iptables", &["-N", CHAIN])?;
        self.exec(slot, "iptables", &["-I", "INPUT", "-j", CHAIN])?;
        self.exec(slot, "iptables", &["-I", "OUTPUT", "-j", CHAIN])?;
        Ok(())
    }

    /// Deletes namespaces and bridges left by runs whose process is gone.
    fn clean_stale() {
        let alive = |pid: &str| Path::new("/proc").join(pid).exists();
        if let Ok(list) = run("ip", &["netns", "list"]) {
            for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if let Some(pid) = name
                    .strip_prefix("chaos-")
                    .and_then(|r| r.split('-').next())
                    && !alive(pid)
                {
                    let _ = run("ip", &["netns", "del", name]);
                }
            }
        }
        if let Ok(list) = run("ip", &["-o", "link", "show", "type", "bridge"]) {
            for name in list.lines().filter_map(|l| l.split(':').nth(1)) {
                let name = name.trim();
                if let Some(pid) = name.strip_prefix("cbr")
                    && !alive(pid)
                {
                    let _ = run("ip", &["link", "del", name]);
                }
            }
        }
    }

    /// How many node slots the network has.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The namespace of a slot.
    pub fn namespace(&self, slot: usize) -> String {
        format!("chaos-{}-n{slot}", self.tag)
    }

    /// The address of the bridge (where clients run).
    pub fn host_ip(&self) -> IpAddr {
        let [a, b, c] = self.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, 1))
    }

    /// The address of the node in `slot`.
    pub fn node_ip(&self, slot: usize) -> IpAddr {
        let [a, b, c] = self.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, 10 + slot as u8))
    }

    /// Runs a command inside a slot's namespace.
    fn exec(&self, slot: usize, program: &str, args: &[&str]) -> Result<String, NetworkError> {
        let ns = self.namespace(slot);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Writes a launcher that runs `node_binary` inside the slot's
    /// namespace (`ip netns exec` execs it, so the pid is the node's).
    pub fn launcher(
        &self,
        slot: usize,
        node_binary: &Path,
        dir: &Path,
    ) -> Result<PathBuf, NetworkError> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("launch-n{slot}.sh"));
        let script = format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            self.namespace(slot),
            node_binary.display()
        );
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| NetworkError::Io { what, source }
        };
        std::fs::write(&path, script).map_err(io("writing"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io("making executable"))?;
        Ok(path)
    }

    /// Mounts a tmpfs of `bytes` at `dir`, a node's own small disk (so it
    /// can be filled without filling the machine's).
    pub fn mount_disk(&mut self, dir: &Path, bytes: u64) -> Result<(), NetworkError> {
        std::fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let size = format!("size={bytes}");
        let d = dir.display().to_string();
        run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &d])?;
        self.mounts.push(dir.to_path_buf());
        Ok(())
    }

    /// Cuts traffic between every node of `a` and every node of `b` (both
    /// directions). Clients on the bridge still reach everyone.
    pub fn cut(&self, a: &[usize], b: &[usize]) -> Result<(), NetworkError> {
        for &x in a {
            for &y in b {
                for (from, to) in [(x, y), (y, x)] {
                    let peer = self.node_ip(to).to_string();
                    self.exec(from, "iptables", &["-A", CHAIN, "-s", &peer, "-j", "DROP"])?;
                    self.exec(from, "iptables", &["-A", CHAIN, "-d", &peer, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Drops this share of a node's packets, both ways.
    pub fn lose(&self, slot: usize, probability: f64) -> Result<(), NetworkError> {
        let p = format!("{probability:.2}");
        self.exec(
            slot,
            "iptables",
            &[
                "-A",
                CHAIN,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )?;
        Ok(())
    }

    /// Gives a node a slow link: a token bucket of `kbit` per second whose
    /// queue holds up to `latency_ms` of traffic, so packets wait (delay)
    /// and, past that, are dropped. (This kernel has no netem; a shaped
    /// link delays by queueing instead of by a fixed amount.)
    pub fn slow(&self, slot: usize, kbit: u32, latency_ms: u32) -> Result<(), NetworkError> {
        let rate = format!("{kbit}kbit");
        let latency = format!("{latency_ms}ms");
        self.exec(
            slot,
            "tc",
            &[
                "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "32kbit",
                "latency", &latency,
            ],
        )?;
        Ok(())
    }

    /// Removes every partition, loss and slow link.
    pub fn heal(&self) -> Result<(), NetworkError> {
        for slot in 0..self.slots {
            self.exec(slot, "iptables", &["-F", CHAIN])?;
            // Fails when no qdisc was added: nothing to remove.
            let _ = self.exec(slot, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for slot in 0..self.slots {
            // Deleting the host end removes the pair even while the
            // namespace lingers.
            let _ = run("ip", &["link", "del", &self.veth(slot)]);
            let _ = run("ip", &["netns", "del", &self.namespace(slot)]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        for m in self.mounts.drain(..) {
            let _ = run("umount", &["-l", &m.display().to_string()]);
        }
    }
}

/// Writes zeros into `path` until its filesystem is full (the disk fault);
/// returns the bytes written. Deleting the file gives the space back.
pub fn fill_disk(path: &Path) -> u64 {
    use std::io::Write as _;
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    // The last partial megabyte too.
    while f.write_all(&chunk[..4096]).is_ok() {
        n += 4096;
    }
    let _ = f.sync_all();
    n
}
