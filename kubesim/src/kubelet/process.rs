//! A container as a local process: started in its pod's network namespace
//! and a mount namespace of its own with the kubelet's hosts file
//! bind-mounted on `/etc/hosts`, in its own process group, with stdout and
//! stderr appended to the container's log file.
//!
//! The chain is `nsenter --net=<netns> unshare --mount --propagation private
//! /bin/sh -c 'mount --bind "$0" /etc/hosts && mount --bind "$1"
//! /etc/resolv.conf && shift && exec "$@"' <hosts> <resolv.conf> <exe>
//! <args…>`: `nsenter` and `unshare` (neither with `--fork`) and `sh` all
//! `exec`, so the pid we hold is the container's program itself; signals go
//! to the whole process group, which also reaches anything the program
//! started.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::KubeletError;

/// Binds `$0` on /etc/hosts and `$1` on /etc/resolv.conf (when the host has
/// one to cover), then runs the rest.
const BIND_HOSTS: &str = r#"mount --bind "$0" /etc/hosts && { [ ! -e /etc/resolv.conf ] || mount --bind "$1" /etc/resolv.conf; } && shift && exec "$@""#;

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct Launch<'a> {
    /// Program and arguments, already expanded and translated.
    pub argv: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// The pod's network namespace (a bind-mounted `/run/netns` entry).
    pub netns: &'a Path,
    pub hosts_file: &'a Path,
    /// Seen as `/etc/resolv.conf`.
    pub resolv_conf: &'a Path,
    pub log_file: &'a Path,
    pub working_dir: &'a Path,
}

/// A running container process; dropping it kills its process group.
#[derive(Debug)]
pub(crate) struct ContainerProcess {
    child: Child,
    pgid: Pid,
}

impl ContainerProcess {
    /// Starts the process.
    ///
    /// # Errors
    ///
    /// An empty argv, or the log file, working directory or process cannot
    /// be created.
    pub(crate) fn spawn(launch: &Launch<'_>) -> Result<Self, KubeletError> {
        if launch.argv.is_empty() {
            return Err(KubeletError::Unsupported(
                "a container without a program".into(),
            ));
        }
        if let Some(dir) = launch.log_file.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::create_dir_all(launch.working_dir)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_file)?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", launch.netns.display()))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                BIND_HOSTS,
            ])
            .arg(launch.hosts_file)
            .arg(launch.resolv_conf)
            .args(&launch.argv)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(launch.working_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| {
                KubeletError::Unsupported("a process that exited before it had a pid".into())
            })?;
        Ok(Self {
            child,
            pgid: Pid::from_raw(pid),
        })
    }

    /// The process (group) id.
    pub(crate) fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Waits for the process to exit.
    ///
    /// # Errors
    ///
    /// Waiting failed (the OS lost track of the child).
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends `signal` to the process group.
    pub(crate) fn signal(&self, signal: Signal) {
        signal_group(self.pgid.as_raw(), signal);
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        signal_group(self.pgid.as_raw(), Signal::SIGKILL);
    }
}

/// Sends `signal` to process group `pgid`, ignoring a group that is gone.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// The exit code Kubernetes reports for `status` (128 + signal when killed).
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kubelet::network;

    /// The container sees the hosts file as /etc/hosts, and sees in-place
    /// rewrites of it on its next lookup (glibc rereads the file).
    #[tokio::test]
    async fn container_resolves_through_the_bind_mounted_hosts_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let hosts = dir.path().join("hosts");
        let log = dir.path().join("logs/c.log");
        network::write_in_place(&hosts, "127.0.0.1 localhost\n").unwrap_or_else(|e| panic!("{e}"));
        let mut process = ContainerProcess::spawn(&Launch {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "while true; do getent hosts a.b.ns.svc || echo unresolved; sleep 0.1; done".into(),
            ],
            env: vec![],
            // The test's own network namespace: this test is about /etc/hosts.
            netns: Path::new("/proc/self/ns/net"),
            hosts_file: &hosts,
            resolv_conf: &hosts,
            log_file: &log,
            working_dir: dir.path(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let wait_for = |needle: &'static str| async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !read().contains(needle) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no {needle:?} in {}",
                    read()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        wait_for("unresolved").await;
        network::write_in_place(&hosts, "127.0.0.1 localhost\n127.0.0.77 a.b.ns.svc\n")
            .unwrap_or_else(|e| panic!("{e}"));
        wait_for("127.0.0.77").await;
        // The host's own /etc/hosts is untouched.
        assert!(
            !std::fs::read_to_string("/etc/hosts")
                .unwrap_or_default()
                .contains("a.b.ns.svc")
        );

        process.signal(Signal::SIGKILL);
        let status = process.wait().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exit_code(status), 137);
    }
}
