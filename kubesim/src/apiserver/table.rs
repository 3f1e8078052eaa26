//! Server-side printing: `kubectl get` asks for `application/json;as=Table`
//! and prints the columns the server chose. A custom resource's columns are
//! its CRD's `additionalPrinterColumns` (plus Name), which is how `kubectl
//! get kvc` shows nodes, readiness and phase; other kinds get Name and Age.

use serde_json::{Value, json};

use super::store::{Kind, PrinterColumn};

/// Whether an `Accept` header asks for a Table (`as=Table`).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let part = part.trim();
        part.starts_with("application/json") && part.split(';').any(|p| p.trim() == "as=Table")
    })
}

/// `value` (one object or a List) as a `meta.k8s.io/v1` Table.
pub fn to_table(kind: &Kind, value: &Value, now: jiff::Timestamp) -> Value {
    let age = PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        pointer: "/metadata/creationTimestamp".into(),
    };
    let columns: Vec<PrinterColumn> = if kind.printer_columns.is_empty() {
        vec![age]
    } else {
        kind.printer_columns.clone()
    };
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": if c.type_ == "date" { "date" } else { c.type_.as_str() },
               "format": "", "priority": 0, "description": ""})
    }));
    let items: Vec<&Value> = match value["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![value],
    };
    let rows: Vec<Value> = items
        .into_iter()
        .map(|item| {
            let mut cells = vec![item["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|c| cell(c, item, now)));
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": item["metadata"].clone()},
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": value["metadata"]["resourceVersion"].clone()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// One cell: the value at the column's path (null when absent, which
/// kubectl prints as `<none>`); a `date` as an age such as `5m`.
fn cell(column: &PrinterColumn, item: &Value, now: jiff::Timestamp) -> Value {
    let Some(v) = item.pointer(&column.pointer) else {
        return Value::Null;
    };
    if column.type_ == "date"
        && let Some(t) = v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok())
    {
        return json!(age(now.as_second() - t.as_second()));
    }
    v.clone()
}

/// An age the way Kubernetes prints it: `45s`, `12m`, `3h`, `2d`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(columns: Vec<PrinterColumn>) -> Kind {
        Kind {
            kind: "KVCluster".into(),
            version: "v1alpha1".into(),
            namespaced: true,
            status: true,
            scale: None,
            singular: "kvcluster".into(),
            short_names: vec!["kvc".into()],
            categories: Vec::new(),
            printer_columns: columns,
        }
    }

    #[test]
    fn accept_headers_that_ask_for_a_table() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table("application/yaml;as=Table"));
    }

    #[test]
    fn printer_columns_become_cells_and_dates_ages() {
        let k = kind(vec![
            PrinterColumn {
                name: "Nodes".into(),
                type_: "integer".into(),
                pointer: "/spec/nodes".into(),
            },
            PrinterColumn {
                name: "Phase".into(),
                type_: "string".into(),
                pointer: "/status/phase".into(),
            },
            PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                pointer: "/metadata/creationTimestamp".into(),
            },
        ]);
        let list = json!({"metadata": {"resourceVersion": "7"}, "items": [
            {"metadata": {"name": "kv", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodes": 3}},
        ]});
        let now: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        let table = to_table(&k, &list, now);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "Nodes", "Phase", "Age"]);
        assert_eq!(table["rows"][0]["cells"], json!(["kv", 3, null, "5m"]));
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "kv");
    }

    #[test]
    fn kinds_without_columns_show_name_and_age() {
        let table = to_table(
            &kind(Vec::new()),
            &json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
            "2026-01-03T00:00:00Z".parse().expect("time"),
        );
        assert_eq!(table["rows"][0]["cells"], json!(["p", "2d"]));
    }
}
