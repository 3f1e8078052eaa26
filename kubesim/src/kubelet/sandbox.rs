//! Pod network sandboxes: every pod gets a network namespace of its own, as
//! its pause container would give it, joined to the kubelet's bridge by a
//! veth pair. A pod therefore has its own loopback and its own ports: a
//! program may bind `0.0.0.0` or `[::]` (as it would in a real pod) and two
//! pods may use the same port. Pods reach each other and the host reaches
//! pods at their addresses on the bridge's /24; the host end of the bridge
//! holds `.1`.
//!
//! Everything is done with `ip` (iproute2) and needs CAP_NET_ADMIN (root).
//! Names are derived from addresses, so what a killed test left behind is
//! found and removed by the next kubelet on the same subnet.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use tracing::{debug, warn};

use super::KubeletError;

/// The kubelet's bridge and the pod namespaces attached to it. Dropping it
/// deletes the namespaces and the bridge (processes still inside a deleted
/// namespace keep it alive until they exit; the kubelet kills them first).
#[derive(Debug)]
pub(crate) struct Bridge {
    subnet: Ipv4Addr,
    name: String,
}

impl Bridge {
    /// Creates the bridge for the /24 `subnet` with the host at `.1`,
    /// first removing what an earlier kubelet on this subnet left behind.
    ///
    /// # Errors
    ///
    /// `ip` is missing or refuses (not root).
    pub(crate) fn create(subnet: Ipv4Addr) -> Result<Self, KubeletError> {
        let [a, b, c, _] = subnet.octets();
        let subnet = Ipv4Addr::new(a, b, c, 0);
        let bridge = Self {
            subnet,
            name: format!("ksim{b:02x}{c:02x}"),
        };
        bridge.remove_leftovers();
        let host = Ipv4Addr::new(a, b, c, 1);
        run_ip(&["link", "add", &bridge.name, "type", "bridge"])?;
        run_ip(&["addr", "add", &format!("{host}/24"), "dev", &bridge.name])?;
        run_ip(&["link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    /// The host's address on the bridge.
    pub(crate) fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Whether `ip` is in this bridge's /24 and usable by a pod.
    pub(crate) fn holds(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == self.subnet.octets()[..3] && !matches!(ip.octets()[3], 0 | 1 | 255)
    }

    /// Creates the network namespace of the pod at `ip` (replacing one of
    /// the same name), with `lo` up, `eth0` holding `ip`/24 on the bridge
    /// and the default route through the host. Returns its path, for
    /// `nsenter --net=`.
    ///
    /// # Errors
    ///
    /// `ip` outside the bridge's subnet, or an `ip` command failed.
    pub(crate) fn add_pod(&self, ip: Ipv4Addr) -> Result<PathBuf, KubeletError> {
        if !self.holds(ip) {
            return Err(KubeletError::Unsupported(format!(
                "pod address {ip} is outside the kubelet's subnet {}/24",
                self.subnet
            )));
        }
        let ns = namespace_name(ip);
        let veth = veth_name(ip);
        let mac = mac_address(ip);
        let _ = quiet_ip(&["netns", "del", &ns]);
        let _ = quiet_ip(&["link", "del", &veth]);
        run_ip(&["netns", "add", &ns])?;
        let steps: [&[&str]; 7] = [
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "address", &mac,
                "netns", &ns,
            ],
            &["link", "set", &veth, "master", &self.name],
            &["link", "set", &veth, "up"],
            &["-n", &ns, "link", "set", "lo", "up"],
            &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            &["-n", &ns, "link", "set", "eth0", "up"],
            &[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &self.host_ip().to_string(),
            ],
        ];
        for step in steps {
            if let Err(e) = run_ip(step) {
                let _ = quiet_ip(&["netns", "del", &ns]);
                return Err(e);
            }
        }
        Ok(namespace_path(ip))
    }

    /// Deletes the pod's namespace (and with it its veth pair).
    pub(crate) fn remove_pod(&self, ip: Ipv4Addr) {
        if let Err(e) = quiet_ip(&["netns", "del", &namespace_name(ip)]) {
            debug!(%ip, error = %e, "pod network namespace already gone");
        }
    }

    /// Deletes every pod namespace on this subnet and the bridge.
    fn remove_leftovers(&self) {
        let [a, b, c, _] = self.subnet.octets();
        let prefix = format!("kubesim-{a}-{b}-{c}-");
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.starts_with(&prefix) {
                    let _ = quiet_ip(&["netns", "del", name]);
                }
            }
        }
        let _ = quiet_ip(&["link", "del", &self.name]);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.remove_leftovers();
    }
}

/// Where `ip netns` keeps the namespace of the pod at `ip`.
pub(crate) fn namespace_path(ip: Ipv4Addr) -> PathBuf {
    PathBuf::from("/run/netns").join(namespace_name(ip))
}

/// The pod's MAC address, fixed by its IP: a pod re-created under the same
/// name (and so the same IP) answers at the MAC its peers and the host
/// already cached; a new one would leave them sending to the old one until
/// their neighbour entries expired (tens of seconds).
fn mac_address(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `kubesim-198-18-1-10` for 198.18.1.10.
fn namespace_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("kubesim-{a}-{b}-{c}-{d}")
}

/// The host end of a pod's veth pair: `ks` and the address's last three
/// octets in hex (interface names have at most 15 characters).
fn veth_name(ip: Ipv4Addr) -> String {
    let [_, b, c, d] = ip.octets();
    format!("ks{b:02x}{c:02x}{d:02x}")
}

/// Runs `ip args…`; a failure names the command and what `ip` said.
fn run_ip(args: &[&str]) -> Result<(), KubeletError> {
    quiet_ip(args).map_err(|e| {
        warn!(command = %format!("ip {}", args.join(" ")), error = %e, "pod network setup failed");
        KubeletError::Network(format!(
            "`ip {}` failed: {e} (kubesim gives each pod a network namespace: it needs root and iproute2)",
            args.join(" ")
        ))
    })
}

fn quiet_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_and_namespace_limits() {
        let ip = Ipv4Addr::new(198, 18, 255, 254);
        assert_eq!(namespace_name(ip), "kubesim-198-18-255-254");
        assert_eq!(veth_name(ip), "ks12fffe");
        assert!(veth_name(ip).len() <= 15);
        assert!(format!("ksim{:02x}{:02x}", 18, 255).len() <= 15);
        assert_eq!(mac_address(ip), "02:00:c6:12:ff:fe");
    }
}
