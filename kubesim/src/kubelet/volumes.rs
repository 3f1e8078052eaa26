//! Pod volumes as host directories, and the translation of container paths
//! to them. Processes run on the host filesystem, so a volume is a directory
//! and a container path under a `mountPath` is rewritten to it.
//!
//! Layout under the kubelet's root directory:
//! - `pods/<ns>/<pod>/volumes/<volume>/`: configMap, secret and emptyDir
//!   volumes (emptyDir lives as long as the pod object, across restarts);
//! - `claims/<ns>/<claim>/`: persistentVolumeClaim volumes, kept across pod
//!   restarts and recreation, removed when the claim object is deleted;
//! - `pods/<ns>/<pod>/logs/<container>.log`: the container's output.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::{Api, Client};

use super::KubeletError;

/// Where a pod's files live.
#[derive(Debug, Clone)]
pub(crate) struct PodPaths {
    pub pod_dir: PathBuf,
    pub claims_dir: PathBuf,
}

impl PodPaths {
    pub(crate) fn new(root: &Path, namespace: &str, pod: &str) -> Self {
        Self {
            pod_dir: root.join("pods").join(namespace).join(pod),
            claims_dir: root.join("claims").join(namespace),
        }
    }

    pub(crate) fn volumes_dir(&self) -> PathBuf {
        self.pod_dir.join("volumes")
    }

    pub(crate) fn log_file(&self, container: &str) -> PathBuf {
        self.pod_dir.join("logs").join(format!("{container}.log"))
    }

    /// The host directory of `volume`, by its kind.
    fn host_dir(&self, volume: &Volume) -> PathBuf {
        if let Some(claim) = &volume.persistent_volume_claim {
            self.claims_dir.join(&claim.claim_name)
        } else if let Some(host_path) = &volume.host_path {
            PathBuf::from(&host_path.path)
        } else {
            self.volumes_dir().join(&volume.name)
        }
    }
}

/// One volume mount of the container, on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostMount {
    /// The path inside the "container".
    pub mount_path: String,
    /// Where that is on the host (subPath applied).
    pub host_path: PathBuf,
}

/// Makes every volume of `pod` exist on the host with its current contents
/// and returns the container's mounts, longest mount path first.
///
/// # Errors
///
/// A volume kind that is not emulated, a claim, ConfigMap or Secret that does
/// not exist (and is not optional), an API failure, or an I/O error.
pub(crate) async fn prepare(
    client: &Client,
    paths: &PodPaths,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<HostMount>, KubeletError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        let dir = paths.host_dir(volume);
        if let Some(claim) = &volume.persistent_volume_claim {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
            if claims.get_opt(&claim.claim_name).await?.is_none() {
                return Err(KubeletError::missing(
                    "PersistentVolumeClaim",
                    &claim.claim_name,
                ));
            }
            fs::create_dir_all(&dir)?;
        } else if volume.config_map.is_some() || volume.secret.is_some() {
            sync_projection(client, namespace, volume, &dir).await?;
        } else if volume.empty_dir.is_some() || volume.host_path.is_some() {
            fs::create_dir_all(&dir)?;
        } else {
            return Err(KubeletError::Unsupported(format!(
                "volume {} (only configMap, secret, persistentVolumeClaim, emptyDir and hostPath are emulated)",
                volume.name
            )));
        }
    }

    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .into_iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| {
                KubeletError::Unsupported(format!("mount of unknown volume {}", mount.name))
            })?;
        let mut host_path = paths.host_dir(volume);
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            host_path = host_path.join(safe_relative(sub)?);
            if volume.persistent_volume_claim.is_some() || volume.empty_dir.is_some() {
                fs::create_dir_all(&host_path)?;
            }
        }
        mounts.push(HostMount {
            mount_path: mount.mount_path.trim_end_matches('/').to_owned(),
            host_path,
        });
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    Ok(mounts)
}

/// Brings configMap and secret volumes up to date with their objects, as the
/// real kubelet eventually does while a pod runs.
///
/// # Errors
///
/// As [`prepare`], for configMap and secret volumes only.
pub(crate) async fn refresh(
    client: &Client,
    paths: &PodPaths,
    pod: &Pod,
) -> Result<(), KubeletError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for volume in volumes.into_iter().flatten() {
        if volume.config_map.is_some() || volume.secret.is_some() {
            sync_projection(client, namespace, volume, &paths.host_dir(volume)).await?;
        }
    }
    Ok(())
}

/// Writes the files a configMap or secret volume projects into `dir`,
/// rewriting only changed files and removing files no longer projected.
async fn sync_projection(
    client: &Client,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<(), KubeletError> {
    let (data, items, optional): (Option<BTreeMap<String, Vec<u8>>>, _, _) =
        if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let data = api.get_opt(&source.name).await?.map(|cm| {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                data
            });
            (data, source.items.clone(), source.optional == Some(true))
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let data = api.get_opt(&name).await?.map(|s| {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                data.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                data
            });
            (data, source.items.clone(), source.optional == Some(true))
        } else {
            return Ok(());
        };
    let data = match data {
        Some(data) => data,
        None if optional => BTreeMap::new(),
        None => {
            return Err(KubeletError::missing(
                "ConfigMap or Secret of volume",
                &volume.name,
            ));
        }
    };
    let files = project(&data, items.as_deref(), optional)?;
    write_tree(dir, &files)?;
    Ok(())
}

/// The files (relative path → contents) a projection of `data` yields:
/// every key as a file, or, with `items`, each listed key at its path.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<BTreeMap<PathBuf, Vec<u8>>, KubeletError> {
    let mut files = BTreeMap::new();
    match items {
        None => {
            for (key, value) in data {
                files.insert(safe_relative(key)?, value.clone());
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        files.insert(safe_relative(&item.path)?, value.clone());
                    }
                    None if optional => {}
                    None => return Err(KubeletError::missing("key", &item.key)),
                }
            }
        }
    }
    Ok(files)
}

/// Makes `dir` hold exactly `files`. A changed file is written to a temporary
/// name and renamed over, so a reader sees the old or the new contents.
fn write_tree(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for (relative, contents) in files {
        let path = dir.join(relative);
        if fs::read(&path).ok().as_deref() == Some(contents.as_slice()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("kubesim-tmp");
        fs::write(&tmp, contents)?;
        fs::rename(&tmp, &path)?;
    }
    let wanted: HashSet<PathBuf> = files.keys().map(|p| dir.join(p)).collect();
    remove_unwanted(dir, &wanted)
}

fn remove_unwanted(dir: &Path, wanted: &HashSet<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !wanted.iter().any(|w| w.starts_with(&path)) {
                fs::remove_dir_all(&path)?;
            } else {
                remove_unwanted(&path, wanted)?;
            }
        } else if !wanted.contains(&path) {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// `path` as a relative path that cannot leave its directory.
fn safe_relative(path: &str) -> Result<PathBuf, KubeletError> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(p.to_path_buf())
    } else {
        Err(KubeletError::Unsupported(format!(
            "path {path:?} (must be relative, without ..)"
        )))
    }
}

/// Rewrites a container path to the host: an argument equal to a mount path,
/// or starting with it followed by `/`, is rewritten to the volume's host
/// directory; so is the value of a `--flag=<path>` argument. Other arguments
/// are returned unchanged.
pub(crate) fn translate(arg: &str, mounts: &[HostMount]) -> String {
    if let Some(host) = translate_path(arg, mounts) {
        return host;
    }
    if arg.starts_with('-')
        && let Some((flag, value)) = arg.split_once('=')
        && let Some(host) = translate_path(value, mounts)
    {
        return format!("{flag}={host}");
    }
    arg.to_owned()
}

fn translate_path(path: &str, mounts: &[HostMount]) -> Option<String> {
    mounts.iter().find_map(|m| {
        let rest = path.strip_prefix(m.mount_path.as_str())?;
        if rest.is_empty() {
            Some(m.host_path.to_string_lossy().into_owned())
        } else if rest.starts_with('/') || m.mount_path.is_empty() {
            Some(format!("{}{rest}", m.host_path.to_string_lossy()))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<HostMount> {
        vec![
            HostMount {
                mount_path: "/etc/cairn/tls".into(),
                host_path: "/h/tls".into(),
            },
            HostMount {
                mount_path: "/etc/cairn".into(),
                host_path: "/h/conf".into(),
            },
        ]
    }

    #[test]
    fn translates_exact_nested_and_flag_values_only() {
        let m = mounts();
        assert_eq!(translate("/etc/cairn", &m), "/h/conf");
        assert_eq!(translate("/etc/cairn/a.toml", &m), "/h/conf/a.toml");
        assert_eq!(translate("/etc/cairn/tls/ca.pem", &m), "/h/tls/ca.pem");
        assert_eq!(translate("/etc/cairnx", &m), "/etc/cairnx");
        assert_eq!(
            translate("--config=/etc/cairn/a.toml", &m),
            "--config=/h/conf/a.toml"
        );
        assert_eq!(translate("x=/etc/cairn", &m), "x=/etc/cairn");
        assert_eq!(translate("8080", &m), "8080");
    }

    #[test]
    fn projects_items_and_refuses_escapes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]
        .into();
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: None,
        }];
        let files = project(&data, Some(&items), false).unwrap_or_default();
        assert_eq!(files.len(), 1);
        assert_eq!(files[Path::new("sub/b.txt")], b"2");
        let bad = [KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
        }];
        assert!(project(&data, Some(&bad), false).is_err());
    }

    #[test]
    fn write_tree_removes_stale_files() {
        let dir = std::env::temp_dir().join(format!("kubesim-tree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let one: BTreeMap<PathBuf, Vec<u8>> = [
            (PathBuf::from("a"), b"1".to_vec()),
            (PathBuf::from("d/b"), b"2".to_vec()),
        ]
        .into();
        write_tree(&dir, &one).unwrap_or_else(|e| panic!("{e}"));
        let two: BTreeMap<PathBuf, Vec<u8>> = [(PathBuf::from("a"), b"3".to_vec())].into();
        write_tree(&dir, &two).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read(dir.join("a")).unwrap_or_default(), b"3");
        assert!(!dir.join("d").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
