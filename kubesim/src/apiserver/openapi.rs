//! OpenAPI v3 documents, as far as clients need them: the root
//! (`/openapi/v3`) lists one document per group-version, and each document
//! has the resource paths with their operations, each tagged with
//! `x-kubernetes-group-version-kind` and listing the `fieldValidation`
//! query parameter. That is how `kubectl apply` and `helm install` decide the
//! server validates fields itself (they then send `fieldValidation=Strict`
//! instead of downloading schemas to validate on the client). A custom
//! resource's document carries its CRD's schema; built-in kinds have none.

use serde_json::{Map, Value, json};

use super::store::Kind;

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The root document: every served group-version and where its document is.
/// `hash` changes whenever the set of kinds may have (the store's
/// resourceVersion), so clients' caches are refreshed.
pub fn root(kinds: &[((String, String), Kind)], hash: u64) -> Value {
    let mut paths = Map::new();
    for ((group, _), kind) in kinds {
        let gv = gv_path(group, &kind.version);
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// The document of `gv` (`api/v1`, `apis/apps/v1`, …), or `None` when no
/// kind is served there. `schemas` maps a custom kind to its CRD schema.
pub fn group_version(
    kinds: &[((String, String), Kind)],
    gv: &str,
    schemas: &dyn Fn(&str, &str) -> Option<Value>,
) -> Option<Value> {
    let mut paths = Map::new();
    let mut components = Map::new();
    for ((group, plural), kind) in kinds {
        if gv_path(group, &kind.version) != gv {
            continue;
        }
        let gvk = json!({"group": group, "version": kind.version, "kind": kind.kind});
        let schema_name = format!("{}.{}.{}", reversed(group), kind.version, kind.kind);
        if let Some(schema) = schemas(group, plural) {
            let mut schema = schema;
            schema["x-kubernetes-group-version-kind"] = json!([gvk.clone()]);
            components.insert(schema_name.clone(), schema);
        }
        let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema_name}")}}}});
        let op = |action: &str| {
            json!({
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk.clone(),
                "responses": {"200": {"description": "OK", "content": body["content"].clone()}},
            })
        };
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
        // As in Kubernetes' own documents: the write options are parameters
        // of each write operation, the path's own parameters name the object.
        let writes = json!([
            query("dryRun"),
            query("fieldManager"),
            query("fieldValidation")
        ]);
        let base = if kind.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{plural}")
        } else {
            format!("/{gv}/{plural}")
        };
        let mut collection_params = Vec::new();
        if kind.namespaced {
            collection_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        let mut item_params = collection_params.clone();
        item_params.push(
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}),
        );
        let write = |action: &str, extra: Option<Value>| {
            let mut o = op(action);
            let mut params = writes.clone();
            if let (Some(list), Some(extra)) = (params.as_array_mut(), extra) {
                list.push(extra);
            }
            o["parameters"] = params;
            if action != "patch" {
                o["requestBody"] = body.clone();
            }
            o
        };
        paths.insert(
            base.clone(),
            json!({"get": op("list"), "post": write("post", None), "parameters": collection_params}),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get"), "put": write("put", None), "patch": write("patch", Some(query("force"))),
                   "delete": op("delete"), "parameters": item_params}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-kubesim"},
        "paths": paths,
        "components": {"schemas": components},
    }))
}

/// `cairn.dev` → `dev.cairn`, as Kubernetes names definitions.
fn reversed(group: &str) -> String {
    if group.is_empty() {
        return "io.k8s.api.core".into();
    }
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<((String, String), Kind)> {
        let kind = |k: &str, v: &str, namespaced| Kind {
            kind: k.into(),
            version: v.into(),
            namespaced,
            status: true,
            scale: None,
            singular: k.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            printer_columns: Vec::new(),
        };
        vec![
            (
                ("cairn.dev".into(), "kvclusters".into()),
                kind("KVCluster", "v1alpha1", true),
            ),
            (("".into(), "nodes".into()), kind("Node", "v1", false)),
        ]
    }

    #[test]
    fn the_root_lists_every_group_version() {
        let root = root(&kinds(), 7);
        let paths = root["paths"].as_object().expect("paths");
        assert!(paths.contains_key("apis/cairn.dev/v1alpha1"));
        assert!(paths.contains_key("api/v1"));
        assert!(
            root["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash="))
        );
    }

    #[test]
    fn patch_operations_name_their_kind_and_accept_field_validation() {
        let schema = |g: &str, _: &str| (g == "cairn.dev").then(|| json!({"type": "object"}));
        let doc = group_version(&kinds(), "apis/cairn.dev/v1alpha1", &schema).expect("served");
        let item =
            &doc["paths"]["/apis/cairn.dev/v1alpha1/namespaces/{namespace}/kvclusters/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "KVCluster"
        );
        let params: Vec<&str> = item["patch"]["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"), "{params:?}");
        assert!(doc["components"]["schemas"]["dev.cairn.v1alpha1.KVCluster"].is_object());
        let nodes = group_version(&kinds(), "api/v1", &schema).expect("core");
        assert!(
            nodes["paths"]["/api/v1/nodes/{name}"]["patch"].is_object(),
            "cluster-scoped path"
        );
        assert!(group_version(&kinds(), "apis/nope/v1", &schema).is_none());
    }
}
