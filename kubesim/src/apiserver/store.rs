//! The API server's state: every object as JSON, one resourceVersion
//! counter, the event log watches replay from, and the registered kinds.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::path::Resource;
use super::selector::{FieldSelector, LabelSelector};

/// What the server knows of a kind of resource.
#[derive(Debug, Clone)]
pub struct Kind {
    /// `kind` of its objects.
    pub kind: String,
    /// The version it is served at (`v1` for built-ins, a CRD's first version).
    pub version: String,
    /// Namespaced (else cluster-scoped).
    pub namespaced: bool,
    /// Has a `/status` subresource (main-resource writes keep `.status`).
    pub status: bool,
    /// `/scale`: JSON pointers of the spec and status replica counts.
    pub scale: Option<(String, String)>,
    /// Singular name, short names and categories, for discovery (`kubectl get kvc`).
    pub singular: String,
    /// See `singular`.
    pub short_names: Vec<String>,
    /// See `singular`.
    pub categories: Vec<String>,
    /// A CRD's `additionalPrinterColumns`: what `kubectl get` shows as a Table.
    pub printer_columns: Vec<PrinterColumn>,
}

/// One column of `kubectl get`'s table for a custom resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: `integer`, `string`, `date`, …
    pub type_: String,
    /// JSON pointer of the value (from the column's `.a.b` JSONPath).
    pub pointer: String,
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Group and plural (version-independent).
    pub resource: (String, String),
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the change (its last state for `DELETED`).
    pub object: Value,
}

/// Why a request failed: an HTTP code, a reason and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes `StatusReason`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(404, "NotFound", format!("{what} not found"))
    }

    /// The `Status` object kube clients parse.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

type Key = (String, String, String, String); // group, plural, namespace, name

/// Every object and the machinery around it.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    kinds: HashMap<(String, String), Kind>,
    log: VecDeque<Change>,
    log_capacity: usize,
    uid: u64,
    /// Live changes for watches.
    pub changes: broadcast::Sender<Change>,
}

fn builtin_kinds() -> HashMap<(String, String), Kind> {
    let mut kinds = HashMap::new();
    let mut add =
        |group: &str, plural: &str, kind: &str, namespaced: bool, status: bool, scale: bool| {
            kinds.insert(
                (group.to_owned(), plural.to_owned()),
                Kind {
                    kind: kind.to_owned(),
                    version: "v1".to_owned(),
                    namespaced,
                    status,
                    scale: scale
                        .then(|| ("/spec/replicas".to_owned(), "/status/replicas".to_owned())),
                    singular: kind.to_lowercase(),
                    short_names: Vec::new(),
                    categories: Vec::new(),
                    printer_columns: Vec::new(),
                },
            );
        };
    add("", "pods", "Pod", true, true, false);
    add("", "services", "Service", true, true, false);
    add("", "configmaps", "ConfigMap", true, false, false);
    add("", "secrets", "Secret", true, false, false);
    add(
        "",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
        false,
    );
    add("", "events", "Event", true, false, false);
    add("", "endpoints", "Endpoints", true, false, false);
    add("", "serviceaccounts", "ServiceAccount", true, false, false);
    add("", "namespaces", "Namespace", false, true, false);
    add("", "nodes", "Node", false, true, false);
    add(
        "",
        "persistentvolumes",
        "PersistentVolume",
        false,
        true,
        false,
    );
    add("apps", "statefulsets", "StatefulSet", true, true, true);
    add("apps", "deployments", "Deployment", true, true, true);
    add(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        true,
        false,
    );
    add("events.k8s.io", "events", "Event", true, false, false);
    add("coordination.k8s.io", "leases", "Lease", true, false, false);
    add(
        "rbac.authorization.k8s.io",
        "roles",
        "Role",
        true,
        false,
        false,
    );
    add(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "RoleBinding",
        true,
        false,
        false,
    );
    add(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "ClusterRole",
        false,
        false,
        false,
    );
    add(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
        false,
    );
    add(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
        false,
    );
    // The short names kubectl users type (`kubectl get po,svc,crd`).
    for (plural, short) in [
        ("pods", "po"),
        ("services", "svc"),
        ("configmaps", "cm"),
        ("persistentvolumeclaims", "pvc"),
        ("persistentvolumes", "pv"),
        ("serviceaccounts", "sa"),
        ("namespaces", "ns"),
        ("nodes", "no"),
        ("events", "ev"),
        ("endpoints", "ep"),
        ("statefulsets", "sts"),
        ("deployments", "deploy"),
        ("poddisruptionbudgets", "pdb"),
        ("customresourcedefinitions", "crd"),
    ] {
        for ((_, p), kind) in kinds.iter_mut() {
            if p == plural {
                kind.short_names = vec![short.to_owned()];
            }
        }
    }
    kinds
}

/// A JSON pointer from a CRD's `.spec.nodes`-style path.
fn pointer_of(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |mut p, s| {
            p.push('/');
            p.push_str(s);
            p
        })
}

fn strip(object: &Value) -> Value {
    let mut v = object.clone();
    if let Value::Object(map) = &mut v {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    v
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

impl Store {
    /// An empty store keeping the last `log_capacity` changes for watches.
    pub fn new(log_capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            kinds: builtin_kinds(),
            log: VecDeque::new(),
            log_capacity,
            uid: 0,
            changes,
        }
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The kind of `resource`, if the server serves it.
    pub fn kind(&self, resource: &Resource) -> Result<Kind, ApiError> {
        self.kinds
            .get(&(resource.group.clone(), resource.plural.clone()))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(&format!(
                    "the server could not find the requested resource {} ({})",
                    resource.plural,
                    resource.api_version()
                ))
            })
    }

    /// The `openAPIV3Schema` of the CRD that registered `group`/`plural`
    /// (its first version), for the OpenAPI documents.
    pub fn crd_schema(&self, group: &str, plural: &str) -> Option<Value> {
        let name = format!("{plural}.{group}");
        self.objects
            .iter()
            .find(|((g, p, _, n), _)| {
                g == "apiextensions.k8s.io" && p == "customresourcedefinitions" && *n == name
            })
            .and_then(|(_, crd)| {
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                    .as_object()
                    .cloned()
            })
            .map(Value::Object)
    }

    /// Every registered resource, for discovery.
    pub fn kinds(&self) -> Vec<((String, String), Kind)> {
        self.kinds
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Changes after `rv` still in the log; `None` when `rv` is older than the log.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Change>> {
        if let Some(first) = self.log.front()
            && rv + 1 < first.rv
        {
            return None;
        }
        Some(self.log.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    fn key(resource: &Resource, ns: &str, name: &str) -> Key {
        (
            resource.group.clone(),
            resource.plural.clone(),
            ns.to_owned(),
            name.to_owned(),
        )
    }

    /// One object.
    pub fn get(&self, resource: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(resource, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&format!("{} \"{name}\"", resource.plural)))
    }

    /// Objects of `resource` (in `ns`, or all namespaces) that match.
    pub fn list(
        &self,
        resource: &Resource,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((g, p, n, _), o)| {
                *g == resource.group
                    && *p == resource.plural
                    && ns.is_none_or(|ns| ns == n)
                    && labels.matches(o)
                    && fields.matches(o)
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn record(&mut self, resource: &Resource, kind: &'static str, object: Value) {
        let change = Change {
            rv: self.rv,
            resource: (resource.group.clone(), resource.plural.clone()),
            kind,
            object,
        };
        self.log.push_back(change.clone());
        while self.log.len() > self.log_capacity {
            self.log.pop_front();
        }
        let _ = self.changes.send(change);
    }

    fn stamp(&mut self, object: &mut Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    fn register_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(plural), Some(kind)) = (
            spec["group"].as_str(),
            spec["names"]["plural"].as_str(),
            spec["names"]["kind"].as_str(),
        ) else {
            return;
        };
        let version = spec["versions"]
            .as_array()
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default();
        let sub = &version["subresources"];
        let scale = sub["scale"].as_object().map(|s| {
            (
                pointer_of(
                    s.get("specReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".spec.replicas"),
                ),
                pointer_of(
                    s.get("statusReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".status.replicas"),
                ),
            )
        });
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let printer_columns = version["additionalPrinterColumns"]
            .as_array()
            .map(|columns| {
                columns
                    .iter()
                    .filter_map(|c| {
                        Some(PrinterColumn {
                            name: c["name"].as_str()?.to_owned(),
                            type_: c["type"].as_str().unwrap_or("string").to_owned(),
                            pointer: pointer_of(c["jsonPath"].as_str()?),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.kinds.insert(
            (group.to_owned(), plural.to_owned()),
            Kind {
                kind: kind.to_owned(),
                version: version["name"].as_str().unwrap_or("v1").to_owned(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                status: sub.get("status").is_some(),
                scale,
                singular: spec["names"]["singular"]
                    .as_str()
                    .map_or_else(|| kind.to_lowercase(), str::to_owned),
                short_names: strings(&spec["names"]["shortNames"]),
                categories: strings(&spec["names"]["categories"]),
                printer_columns,
            },
        );
    }

    /// The status a real API server gives a CRD once it serves it: names
    /// accepted, Established (Helm and `kubectl wait` wait for it).
    fn crd_status(crd: &Value) -> Value {
        let now = now();
        let versions: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|v| v["storage"].as_bool() != Some(false))
                    .filter_map(|v| v["name"].as_str().map(|n| json!(n)))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "acceptedNames": crd["spec"]["names"].clone(),
            "storedVersions": versions,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        })
    }

    /// Creates an object.
    pub fn create(
        &mut self,
        resource: &Resource,
        ns: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let kind = self.kind(resource)?;
        if !object.is_object() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body is not a JSON object",
            ));
        }
        let mut name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name or metadata.generateName is required",
                ));
            };
            self.uid += 1;
            name = format!("{prefix}{:05x}", self.uid);
        }
        let key = Self::key(resource, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.plural),
            ));
        }
        self.uid += 1;
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        if kind.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("kubesim-{:08x}-{}", self.uid, name.len()));
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Value::Object(m) = meta {
            m.remove("deletionTimestamp");
            m.remove("resourceVersion");
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(kind.kind);
        self.stamp(&mut object);
        if resource.plural == "customresourcedefinitions" {
            self.register_crd(&object);
            object["status"] = Self::crd_status(&object);
        }
        self.objects.insert(key, object.clone());
        self.record(resource, "ADDED", object.clone());
        Ok(object)
    }

    /// Writes `new` over the live object. `subresource` `status` changes
    /// only `.status`; otherwise `.status` is kept for kinds that have a
    /// status subresource. Removes the object when it is being deleted and
    /// its last finalizer is gone.
    pub fn update(
        &mut self,
        resource: &Resource,
        ns: &str,
        name: &str,
        mut new: Value,
        subresource: Option<&str>,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        let kind = self.kind(resource)?;
        let old = self.get(resource, ns, name)?;
        if check_rv
            && let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.plural
                ),
            ));
        }
        if subresource == Some("status") {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Value::Object(m) = &mut new {
                        m.remove("status");
                    }
                }
            }
        } else {
            if kind.status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Value::Object(m) = &mut new {
                            m.remove("status");
                        }
                    }
                }
            }
            if !new.is_object() {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the body is not a JSON object",
                ));
            }
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
            ] {
                match old["metadata"].get(field) {
                    Some(v) => new["metadata"][field] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            if strip(&new) != strip(&old) {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = json!(generation + 1);
            }
        }
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(kind.kind);
        if new == old {
            return Ok(old);
        }
        self.stamp(&mut new);
        let key = Self::key(resource, ns, name);
        let deleting = new["metadata"].get("deletionTimestamp").is_some();
        let finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers && resource.plural != "pods" {
            self.objects.remove(&key);
            self.record(resource, "DELETED", new.clone());
            self.collect_garbage();
            return Ok(new);
        }
        if resource.plural == "customresourcedefinitions" {
            self.register_crd(&new);
        }
        self.objects.insert(key, new.clone());
        self.record(resource, "MODIFIED", new.clone());
        Ok(new)
    }

    /// Deletes an object: marks it when finalizers (or, for pods, a grace
    /// period) hold it, removes it otherwise; dependents are collected.
    pub fn delete(
        &mut self,
        resource: &Resource,
        ns: &str,
        name: &str,
        grace_seconds: Option<i64>,
        orphan: bool,
    ) -> Result<Value, ApiError> {
        let mut object = self.get(resource, ns, name)?;
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let grace = if resource.plural == "pods" {
            grace_seconds
                .or_else(|| object["metadata"]["deletionGracePeriodSeconds"].as_i64())
                .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
        } else {
            0
        };
        let key = Self::key(resource, ns, name);
        if orphan {
            let uid = object["metadata"]["uid"].clone();
            self.orphan_dependents(&uid);
        }
        if finalizers || grace > 0 {
            let already = object["metadata"].get("deletionTimestamp").is_some();
            let shorter = object["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| grace < g);
            if !already || shorter {
                if !already {
                    object["metadata"]["deletionTimestamp"] = json!(now());
                }
                if resource.plural == "pods" {
                    object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                }
                self.stamp(&mut object);
                self.objects.insert(key, object.clone());
                self.record(resource, "MODIFIED", object.clone());
            }
            return Ok(object);
        }
        self.stamp(&mut object);
        self.objects.remove(&key);
        self.record(resource, "DELETED", object.clone());
        self.collect_garbage();
        Ok(object)
    }

    fn orphan_dependents(&mut self, uid: &Value) {
        let keys: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(mut object) = self.objects.get(&key).cloned() else {
                continue;
            };
            if let Some(refs) = object["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != *uid);
            }
            self.stamp(&mut object);
            let resource = self.resource_of(&key, &object);
            self.objects.insert(key, object.clone());
            self.record(&resource, "MODIFIED", object);
        }
    }

    fn resource_of(&self, key: &Key, object: &Value) -> Resource {
        let api_version = object["apiVersion"].as_str().unwrap_or("v1");
        let version = api_version.rsplit('/').next().unwrap_or("v1");
        Resource {
            group: key.0.clone(),
            version: version.to_owned(),
            plural: key.1.clone(),
        }
    }

    /// Deletes every object all of whose owners are gone (background
    /// propagation), until nothing more goes.
    fn collect_garbage(&mut self) {
        loop {
            let live: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphaned: Vec<(Key, Value)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"].get("deletionTimestamp").is_none()
                        && o["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|refs| {
                                !refs.is_empty()
                                    && refs.iter().all(|r| {
                                        r["uid"].as_str().is_none_or(|u| !live.contains(u))
                                    })
                            })
                })
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect();
            if orphaned.is_empty() {
                return;
            }
            for (key, object) in orphaned {
                let resource = self.resource_of(&key, &object);
                let _ = self.delete(&resource, &key.2, &key.3, None, false);
            }
        }
    }
}
