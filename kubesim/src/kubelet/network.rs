//! Pod addresses and the DNS stand-in. Every pod gets an address of its own
//! on the kubelet's bridge (see `sandbox`), and the kubelet keeps one hosts
//! file with the names cluster DNS would serve for those pods. Each container
//! sees that file as its `/etc/hosts`, so the ordinary resolver finds cluster
//! names without a DNS server.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::Path;

/// A pod's namespace and name.
pub(crate) type PodKey = (String, String);

/// Hands out pod addresses from one /24, `.10` to `.254`: each
/// namespace/name keeps the first address it got for the kubelet's lifetime,
/// so a recreated pod comes back on the same IP, as a StatefulSet pod keeps
/// its DNS name.
#[derive(Debug)]
pub(crate) struct IpPool {
    subnet: [u8; 3],
    next: u8,
    assigned: HashMap<PodKey, Ipv4Addr>,
}

impl IpPool {
    /// A pool over the /24 that holds `subnet`.
    pub(crate) fn new(subnet: Ipv4Addr) -> Self {
        let [a, b, c, _] = subnet.octets();
        Self {
            subnet: [a, b, c],
            next: 10,
            assigned: HashMap::new(),
        }
    }

    /// The address of `key`, assigned now if it has none; `None` once all
    /// 245 addresses are taken.
    pub(crate) fn assign(&mut self, key: &PodKey) -> Option<Ipv4Addr> {
        if let Some(ip) = self.assigned.get(key) {
            return Some(*ip);
        }
        if self.next == 255 {
            return None;
        }
        let [a, b, c] = self.subnet;
        let ip = Ipv4Addr::new(a, b, c, self.next);
        self.next += 1;
        self.assigned.insert(key.clone(), ip);
        Some(ip)
    }

    /// The address of `key`, if it ever had one.
    pub(crate) fn get(&self, key: &PodKey) -> Option<Ipv4Addr> {
        self.assigned.get(key).copied()
    }
}

/// Every container's `/etc/resolv.conf`. There is no cluster DNS server:
/// names resolve through the hosts file, and a name that is not there must
/// fail at once. The host's resolver would be unreachable from a pod's
/// network namespace and each lookup would wait out its timeouts; a
/// nameserver on the pod's own loopback, where nothing listens, refuses
/// immediately.
pub(crate) const RESOLV_CONF: &str = "# kubesim: no cluster DNS; names resolve through /etc/hosts only\n\
nameserver 127.0.0.1\n\
options attempts:1 timeout:1\n";

/// What the hosts file needs to know about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostsEntry {
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    /// The pod's labels, matched against Service selectors.
    pub labels: BTreeMap<String, String>,
}

/// A Service with a selector, as the hosts file publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
}

/// The hosts file for `entries`: `localhost`, each pod with a hostname and
/// subdomain under its `<host>.<sub>.<ns>.svc[.cluster.local]` names, and each
/// subdomain (the headless service) with one line per pod address — all
/// pods, ready or not, as with `publishNotReadyAddresses: true`. Then each
/// Service with a selector under `<svc>.<ns>.svc[.cluster.local]`, one line
/// per pod of its namespace whose labels match (no virtual IP: a client
/// reaches one of the pods directly, as through kube-proxy).
pub(crate) fn render(entries: &[HostsEntry], services_by_selector: &[ServiceEntry]) -> String {
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
    for ((sub, ns), ips) in &services {
        for ip in ips {
            out.push_str(&format!(
                "{ip} {sub}.{ns}.svc.cluster.local {sub}.{ns}.svc\n"
            ));
        }
    }
    let mut by_ip: Vec<&HostsEntry> = entries.iter().collect();
    by_ip.sort_by_key(|e| e.ip);
    for svc in services_by_selector {
        if svc.selector.is_empty()
            || services.contains_key(&(svc.name.clone(), svc.namespace.clone()))
        {
            continue; // no endpoints of its own, or already published as a headless subdomain
        }
        for entry in &by_ip {
            let selected = entry.namespace == svc.namespace
                && svc
                    .selector
                    .iter()
                    .all(|(k, v)| entry.labels.get(k) == Some(v));
            if selected {
                out.push_str(&format!(
                    "{ip} {name}.{ns}.svc.cluster.local {name}.{ns}.svc\n",
                    ip = entry.ip,
                    name = svc.name,
                    ns = svc.namespace
                ));
            }
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
    fn pool_is_stable_and_stays_in_its_subnet() {
        let mut pool = IpPool::new(Ipv4Addr::new(198, 18, 3, 0));
        let a = pool.assign(&("ns".into(), "a".into()));
        let b = pool.assign(&("ns".into(), "b".into()));
        assert_eq!(a, Some(Ipv4Addr::new(198, 18, 3, 10)));
        assert_eq!(b, Some(Ipv4Addr::new(198, 18, 3, 11)));
        assert_eq!(pool.assign(&("ns".into(), "a".into())), a);
        for i in 0..243 {
            assert!(pool.assign(&("ns".into(), format!("p{i}"))).is_some());
        }
        assert_eq!(
            pool.get(&("ns".into(), "p242".into())),
            Some(Ipv4Addr::new(198, 18, 3, 254))
        );
        assert_eq!(pool.assign(&("ns".into(), "one-too-many".into())), None);
        assert_eq!(
            pool.assign(&("ns".into(), "a".into())),
            a,
            "known pods keep theirs"
        );
    }

    #[test]
    fn renders_pod_and_service_names() {
        let entries = vec![
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 11),
                namespace: "ns".into(),
                hostname: Some("web-1".into()),
                subdomain: Some("web".into()),
                labels: BTreeMap::new(),
            },
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 10),
                namespace: "ns".into(),
                hostname: Some("web-0".into()),
                subdomain: Some("web".into()),
                labels: BTreeMap::new(),
            },
            HostsEntry {
                ip: Ipv4Addr::new(127, 0, 0, 12),
                namespace: "ns".into(),
                hostname: None,
                subdomain: None,
                labels: BTreeMap::from([("app".to_owned(), "api".to_owned())]),
            },
        ];
        assert_eq!(
            render(&entries, &[]),
            "127.0.0.1 localhost\n\
             127.0.0.10 web-0.web.ns.svc.cluster.local web-0.web.ns.svc web-0.web.ns\n\
             127.0.0.11 web-1.web.ns.svc.cluster.local web-1.web.ns.svc web-1.web.ns\n\
             127.0.0.10 web.ns.svc.cluster.local web.ns.svc\n\
             127.0.0.11 web.ns.svc.cluster.local web.ns.svc\n"
        );
    }

    #[test]
    fn services_name_the_pods_their_selector_matches() {
        let pod = |last: u8, ns: &str, app: &str| HostsEntry {
            ip: Ipv4Addr::new(127, 0, 0, last),
            namespace: ns.into(),
            hostname: None,
            subdomain: None,
            labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        };
        let entries = vec![
            pod(21, "ns", "api"),
            pod(20, "ns", "api"),
            pod(22, "ns", "db"),
            pod(23, "other", "api"),
        ];
        let service = |name: &str, selector: &[(&str, &str)]| ServiceEntry {
            namespace: "ns".into(),
            name: name.into(),
            selector: selector
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let rendered = render(
            &entries,
            &[service("api", &[("app", "api")]), service("manual", &[])],
        );
        assert_eq!(
            rendered,
            "127.0.0.1 localhost\n\
             127.0.0.20 api.ns.svc.cluster.local api.ns.svc\n\
             127.0.0.21 api.ns.svc.cluster.local api.ns.svc\n",
            "other namespaces, other labels and selector-less Services are not published"
        );
    }
}
