//! Pod addresses and the DNS stand-in. Every pod gets its own loopback
//! address (all of 127.0.0.0/8 reaches this machine), and the kubelet keeps
//! one hosts file with the names cluster DNS would serve for those pods. Each
//! container sees that file as its `/etc/hosts`, so the ordinary resolver
//! finds cluster names without a DNS server.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::Path;

/// A pod's namespace and name.
pub(crate) type PodKey = (String, String);

/// Hands out pod addresses: each namespace/name keeps the first address it
/// got for the kubelet's lifetime, so a recreated pod comes back on the same
/// IP, as a StatefulSet pod keeps its DNS name.
#[derive(Debug)]
pub(crate) struct IpPool {
    next: u32,
    assigned: HashMap<PodKey, Ipv4Addr>,
}

impl IpPool {
    /// A pool whose first address is `first` (within 127.0.0.0/8).
    pub(crate) fn new(first: Ipv4Addr) -> Self {
        Self {
            next: u32::from(first),
            assigned: HashMap::new(),
        }
    }

    /// The address of `key`, assigned now if it has none. Addresses ending
    /// in .0 or .255 are skipped, for readability only.
    pub(crate) fn assign(&mut self, key: &PodKey) -> Ipv4Addr {
        if let Some(ip) = self.assigned.get(key) {
            return *ip;
        }
        while matches!(self.next & 0xff, 0 | 255) {
            self.next += 1;
        }
        let ip = Ipv4Addr::from(self.next);
        self.next += 1;
        self.assigned.insert(key.clone(), ip);
        ip
    }

    /// The address of `key`, if it ever had one.
    pub(crate) fn get(&self, key: &PodKey) -> Option<Ipv4Addr> {
        self.assigned.get(key).copied()
    }
}

/// What the hosts file needs to know about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostsEntry {
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
}

/// The hosts file for `entries`: `localhost`, each pod with a hostname and
/// subdomain under its `<host>.<sub>.<ns>.svc[.cluster.local]` names, and each
/// subdomain (the headless service) with one line per pod address — all
/// pods, ready or not, as with `publishNotReadyAddresses: true`.
pub(crate) fn render(entries: &[HostsEntry]) -> String {
    let mut out = String::from("127.0.0.1 localhost\n");
    let mut services: BTreeMap<(String, String), Vec<Ipv4Addr>> = BTreeMap::new();
    let mut sorted: Vec<&HostsEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.ip);
    for entry in sorted {
        let (Some(host), Some(sub)) = (entry.hostname.as_deref(), entry.subdomain.as_deref())
        else {
            continue;
        };
        let ns = &entry.namespace;
        out.push_str(&format!(
            "{ip} {host}.{sub}.{ns}.svc.cluster.local {host}.{sub}.{ns}.svc {host}.{sub}.{ns}\n",
            ip = entry.ip
        ));
        services
            .entry((sub.to_owned(), ns.clone()))
            .or_default()
            .push(entry.ip);
    }
    for ((sub, ns), ips) in services {
        for ip in ips {
            out.push_str(&format!(
                "{ip} {sub}.{ns}.svc.cluster.local {sub}.{ns}.svc\n"
            ));
        }
    }
    out
}

/// Replaces the contents of the file at `path` without replacing the file:
/// containers see it through a bind mount of its inode, which a rename would
/// leave behind. Writes first and truncates after, so a reader never sees an
/// empty file, at worst a moment of old tail after new head.
pub(crate) fn write_in_place(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(contents.as_bytes())?;
    file.set_len(contents.len() as u64)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_stable_and_skips_network_and_broadcast() {
        let mut pool = IpPool::new(Ipv4Addr::new(127, 0, 0, 254));
        let a = pool.assign(&("ns".into(), "a".into()));
        let b = pool.assign(&("ns".into(), "b".into()));
        assert_eq!(a, Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(b, Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(pool.assign(&("ns".into(), "a".into())), a);
    }

    #[test]
    fn renders_pod_and_service_names() {
        let entries = vec![
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 11),
                namespace: "ns".into(),
                hostname: Some("web-1".into()),
                subdomain: Some("web".into()),
            },
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 10),
                namespace: "ns".into(),
                hostname: Some("web-0".into()),
                subdomain: Some("web".into()),
            },
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 12),
                namespace: "ns".into(),
                hostname: None,
                subdomain: None,
            },
        ];
        assert_eq!(
            render(&entries),
            "127.0.0.1 localhost\n\
             127.0.0.10 web-0.web.ns.svc.cluster.local web-0.web.ns.svc web-0.web.ns\n\
             127.0.0.11 web-1.web.ns.svc.cluster.local web-1.web.ns.svc web-1.web.ns\n\
             127.0.0.10 web.ns.svc.cluster.local web.ns.svc\n\
             127.0.0.11 web.ns.svc.cluster.local web.ns.svc\n"
        );
    }
}
