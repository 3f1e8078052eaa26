//! Request paths of the Kubernetes REST API, parsed.

/// The resource a request is about: group, version and plural name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version (`v1`, `v1alpha1`, …).
    pub version: String,
    /// Plural resource name (`pods`, `kvclusters`).
    pub plural: String,
}

impl Resource {
    /// `apiVersion` of objects of this resource.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// Which resource.
    pub resource: Resource,
    /// Namespace from the path; `None` for cluster-scoped or all-namespace requests.
    pub namespace: Option<String>,
    /// Object name; `None` for collection requests.
    pub name: Option<String>,
    /// `status` or `scale`.
    pub subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` resource paths;
/// `None` for anything else (discovery paths included).
pub fn parse(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    if plural.is_empty() {
        return None;
    }
    Some(ResourcePath {
        resource: Resource {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
        },
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_resource_namespace_name_and_subresource() {
        let p = parse("/apis/apps/v1/namespaces/ns/statefulsets/web/scale").expect("parses");
        assert_eq!(p.resource.plural, "statefulsets");
        assert_eq!(p.resource.api_version(), "apps/v1");
        assert_eq!(p.namespace.as_deref(), Some("ns"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        let p = parse("/api/v1/pods").expect("parses");
        assert_eq!(
            (p.resource.api_version(), p.namespace, p.name),
            ("v1".into(), None, None)
        );
        // The namespace object itself.
        let p = parse("/api/v1/namespaces/ns").expect("parses");
        assert_eq!(
            (p.resource.plural.as_str(), p.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(parse("/apis/apps/v1").is_none());
        assert!(parse("/version").is_none());
    }
}
