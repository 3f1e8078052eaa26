//! A container's environment and the `$(VAR)` expansion Kubernetes applies
//! to env values, `command` and `args`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::{Api, Client};

use super::KubeletError;

/// The pod facts `fieldRef` can select.
#[derive(Debug, Clone)]
pub(crate) struct PodFields {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
}

impl PodFields {
    fn get(&self, path: &str) -> Option<&str> {
        Some(match path {
            "metadata.name" => &self.name,
            "metadata.namespace" => &self.namespace,
            "metadata.uid" => &self.uid,
            "spec.nodeName" => &self.node_name,
            "spec.serviceAccountName" => &self.service_account,
            "status.podIP" | "status.podIPs" => &self.pod_ip,
            "status.hostIP" | "status.hostIPs" => &self.host_ip,
            _ => return None,
        })
    }
}

/// The container's environment, in order: `envFrom` sources, then `env`
/// entries (later entries win). Env values are expanded against the
/// variables defined before them, as in Kubernetes.
///
/// # Errors
///
/// A referenced ConfigMap, Secret or key that is missing and not optional,
/// an unsupported `fieldRef`, or an API failure.
pub(crate) async fn resolve(
    client: &Client,
    container: &Container,
    fields: &PodFields,
) -> Result<Vec<(String, String)>, KubeletError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &fields.namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &fields.namespace);
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, name: String, value: String| {
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
    };

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            match configmaps.get_opt(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(KubeletError::missing("ConfigMap", &r.name)),
            }
        }
        if let Some(r) = &source.secret_ref {
            match secrets.get_opt(&r.name).await? {
                Some(secret) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        set(&mut vars, format!("{prefix}{k}"), bytes_to_string(v.0));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(KubeletError::missing("Secret", &r.name)),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            let known: HashMap<&str, &str> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand(value, |name| known.get(name).map(|v| (*v).to_owned()))
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                fields
                    .get(&field.field_path)
                    .ok_or_else(|| {
                        KubeletError::Unsupported(format!("fieldRef {}", field.field_path))
                    })?
                    .to_owned()
            } else if let Some(key) = &from.config_map_key_ref {
                let value = configmaps
                    .get_opt(&key.name)
                    .await?
                    .and_then(|cm| cm.data.and_then(|mut d| d.remove(&key.key)));
                match value {
                    Some(v) => v,
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(KubeletError::missing(
                            "ConfigMap key",
                            &format!("{}/{}", key.name, key.key),
                        ));
                    }
                }
            } else if let Some(key) = &from.secret_key_ref {
                let value = secrets
                    .get_opt(&key.name)
                    .await?
                    .and_then(|s| s.data.and_then(|mut d| d.remove(&key.key)));
                match value {
                    Some(v) => bytes_to_string(v.0),
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(KubeletError::missing(
                            "Secret key",
                            &format!("{}/{}", key.name, key.key),
                        ));
                    }
                }
            } else {
                return Err(KubeletError::Unsupported(format!(
                    "valueFrom of env var {}",
                    var.name
                )));
            }
        } else {
            String::new()
        };
        set(&mut vars, var.name.clone(), value);
    }
    Ok(vars)
}

fn bytes_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Kubernetes variable expansion: `$(NAME)` becomes the value of `NAME` when
/// `lookup` knows it and stays as written otherwise; `$$` is a literal `$`
/// (so `$$(NAME)` yields `$(NAME)`).
pub(crate) fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(close) => {
                    let name = &tail[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn look(name: &str) -> Option<String> {
        match name {
            "A" => Some("1".into()),
            "POD_IP" => Some("127.0.0.10".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_and_keeps_unknown_and_escapes() {
        assert_eq!(expand("--bind=$(POD_IP)", look), "--bind=127.0.0.10");
        assert_eq!(expand("$(A)$(A)", look), "11");
        assert_eq!(expand("$(B)", look), "$(B)");
        assert_eq!(expand("$$(A)", look), "$(A)");
        assert_eq!(expand("$$$(A)", look), "$1");
        assert_eq!(expand("cost $5 $(A", look), "cost $5 $(A");
        assert_eq!(expand("end$", look), "end$");
    }
}
