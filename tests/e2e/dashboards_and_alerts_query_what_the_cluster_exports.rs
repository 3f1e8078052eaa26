//! End to end: the shipped Grafana dashboards and alert rules query metrics
//! the code really exports. A KVCluster with `spec.monitoring.enabled` runs
//! on kubesim (without prometheus-operator's CRD the operator records a
//! `MonitoringUnavailable` event; once the CRD exists it creates the
//! cluster's ServiceMonitor), a real Prometheus
//! (Debian's 2.42) scrapes its three nodes and the operator and loads the
//! alert rules, a client drives load, and then every dashboard query,
//! template variable and alert expression is evaluated through
//! Prometheus's HTTP API: each must parse, name only metric families a
//! target exports (the failure names the dashboard and panel), and the
//! panels marked `[core]` must return data. `promtool check metrics` lints
//! a live node's and the operator's `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use cairn_e2e as e2e;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use cairn_operator::builders::monitoring::{NODE_JOB, service_monitor_resource};
use e2e::{Env, NS, healthy};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

const CLUSTER: &str = "mon";

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/cairn-operator/monitoring")
}

/// prometheus-operator's ServiceMonitor kind, as its CRD registers it (the
/// schema left open: the operator's own tests and the chart tests check the
/// object against the real schema).
fn service_monitor_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "servicemonitors.monitoring.coreos.com" },
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": { "plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } }
            }]
        }
    }))
    .unwrap()
}

/// A real Prometheus on a free loopback port; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(nodes: &[String], operator: &str) -> anyhow::Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        std::fs::copy(
            monitoring_dir().join("alerts.yaml"),
            dir.path().join("alerts.yaml"),
        )?;
        let config = json!({
            "global": { "scrape_interval": "1s", "evaluation_interval": "1s" },
            "rule_files": ["alerts.yaml"],
            "scrape_configs": [
                {
                    "job_name": NODE_JOB,
                    "static_configs": [{ "targets": nodes, "labels": { "namespace": NS, "kvcluster": CLUSTER } }]
                },
                {
                    "job_name": "cairn-operator",
                    "static_configs": [{ "targets": [operator], "labels": { "namespace": "cairn-system" } }]
                }
            ]
        });
        // JSON is YAML: Prometheus reads it as is.
        std::fs::write(dir.path().join("prometheus.yml"), config.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting prometheus (scripts/prereqs.sh installs Debian's prometheus)")?;
        Ok(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `query`; the `data` of a success, else the
    /// error Prometheus gave.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await?
            .json()
            .await?;
        if body["status"] != "success" {
            bail!("{}: {}", body["errorType"], body["error"]);
        }
        Ok(body["data"].clone())
    }

    async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

/// The metric names an expression mentions: identifiers starting with
/// `cairn_` or `process_`, outside quoted strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    for token in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if token.starts_with("cairn_") || token.starts_with("process_") {
            names.insert(token.to_owned());
        }
    }
    names
}

/// A dashboard expression with Grafana's variables replaced by what an
/// "All" selection and a short range give.
fn substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1m")
        .replace("${namespace}", ".*")
        .replace("${kvcluster}", ".*")
        .replace("${instance}", ".*")
        .replace("$namespace", ".*")
        .replace("$kvcluster", ".*")
        .replace("$instance", ".*")
}

/// One query a dashboard makes: where it is, what it asks, whether it must
/// return data.
struct PanelQuery {
    place: String,
    expr: String,
    core: bool,
}

fn panel_queries(dashboard: &str, panels: &[Value], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let core = panel["description"]
            .as_str()
            .is_some_and(|d| d.trim_end().ends_with("[core]"));
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(PanelQuery {
                    place: format!("{dashboard}: panel {title:?} ({})", target["refId"]),
                    expr: expr.to_owned(),
                    core,
                });
            }
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_queries(dashboard, nested, out);
        }
    }
}

/// Every query of every dashboard, including the template variables'
/// `label_values(selector, label)` selectors.
fn dashboard_queries() -> anyhow::Result<Vec<PanelQuery>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(monitoring_dir().join("dashboards"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no dashboards found");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("{name} is not JSON"))?;
        panel_queries(
            &name,
            dashboard["panels"].as_array().unwrap_or(&vec![]),
            &mut out,
        );
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if var["type"] != "query" {
                continue;
            }
            let query = var["query"]
                .as_str()
                .or_else(|| var["query"]["query"].as_str())
                .unwrap_or_default();
            // label_values(<selector>, <label>): the selector must select.
            if let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
            {
                out.push(PanelQuery {
                    place: format!("{name}: variable {}", var["name"]),
                    expr: inner,
                    core: true,
                });
            }
        }
    }
    Ok(out)
}

/// Every alert expression of the rules file.
fn alert_queries() -> anyhow::Result<Vec<PanelQuery>> {
    let rules: Value = serde_yaml::from_str(&std::fs::read_to_string(
        monitoring_dir().join("alerts.yaml"),
    )?)?;
    let mut out = Vec::new();
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                place: format!("alerts.yaml: {}", rule["alert"].as_str().unwrap_or("?")),
                expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
                core: false,
            });
        }
    }
    ensure!(!out.is_empty(), "no alert rules found");
    Ok(out)
}

/// The family a sample name belongs to: a histogram's `_bucket`, `_sum`
/// and `_count` series are one family.
fn family_of(name: &str, names: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && names.contains(&format!("{base}_bucket"))
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// The `cairn_` names in the first column of the metrics reference table
/// of docs/OPERATIONS.md.
fn documented_families() -> anyhow::Result<BTreeSet<String>> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"),
    )?;
    let section = doc
        .split("#### Metrics reference")
        .nth(1)
        .context("docs/OPERATIONS.md has no metrics reference")?;
    let section = section.split("\n#").next().unwrap_or_default();
    Ok(section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("cairn_"))
        .map(str::to_owned)
        .collect())
}

/// `promtool check metrics` on one `/metrics` body: Prometheus's own lint of
/// names, units, types and help texts.
fn promtool_check(what: &str, text: &str) -> anyhow::Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool")?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics on {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_reads_exported_metrics() -> anyhow::Result<()> {
    let env = Env::start(4).await?;
    env.create_cluster(CLUSTER, 3, "5m").await?;
    env.patch_spec(
        CLUSTER,
        json!({ "monitoring": { "enabled": true, "interval": "10s", "labels": { "release": "prometheus" } } }),
    )
    .await?;
    // No prometheus-operator yet: the cluster still forms, and the operator
    // says why nothing scrapes it.
    env.wait_for(CLUSTER, "3 nodes formed", Duration::from_secs(180), |c| {
        healthy(c, 3)
    })
    .await?;
    let started = Instant::now();
    while !env
        .event_reasons()
        .await?
        .iter()
        .any(|r| r == "MonitoringUnavailable")
    {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no MonitoringUnavailable event without the ServiceMonitor CRD; operator log:\n{}",
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // prometheus-operator's CRD arrives: the next reconcile applies the monitor.
    Api::<CustomResourceDefinition>::all(env.client.clone())
        .create(&PostParams::default(), &service_monitor_crd())
        .await?;

    // The operator made the ServiceMonitor Prometheus would follow.
    let monitors: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), NS, &service_monitor_resource());
    let started = Instant::now();
    let monitor = loop {
        if let Some(m) = monitors.get_opt(CLUSTER).await? {
            break m;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no ServiceMonitor {CLUSTER} after 60 s; operator log:\n{}",
            env.operator_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor.data["spec"]["endpoints"][0]["interval"], "10s");
    assert_eq!(
        monitor.metadata.labels.as_ref().unwrap()["release"],
        "prometheus"
    );

    let grpc = env.endpoints(CLUSTER).await?;
    let scrape: Vec<String> = grpc.iter().map(|e| e.replace(":7000", ":7002")).collect();
    let operator = env
        .operator_metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();

    // Load: writes and linearizable reads through the smart client, all
    // through the evaluation below (rates need recent samples).
    let client = e2e::writer::client(&grpc).await?;
    let load = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let key = format!("mon/{}", n % 200).into_bytes();
            let _ = client
                .put(cairn_client::pb::PutRequest {
                    key: key.clone(),
                    value: n.to_string().into_bytes(),
                    ..Default::default()
                })
                .await;
            let _ = client
                .get(key, cairn_client::pb::ReadOptions::default())
                .await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    for target in &scrape {
        let text = reqwest::get(format!("http://{target}/metrics"))
            .await?
            .text()
            .await?;
        promtool_check(&format!("node {target}"), &text)?;
    }
    promtool_check("the operator", &env.operator_metrics().await?)?;

    let prom = Prometheus::start(&scrape, &operator)?;
    // Up, scraped a few times, and serving requests.
    let started = Instant::now();
    loop {
        let ready = prom
            .query(r#"count(up{job="cairn-node"} == 1) == 3 and on() count(up{job="cairn-operator"} == 1) == 1"#)
            .await
            .unwrap_or_default();
        let traffic = prom
            .query(r#"sum(rate(cairn_requests_total{job="cairn-node"}[1m])) > 0"#)
            .await
            .unwrap_or_default();
        if !ready.is_empty() && !traffic.is_empty() {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "Prometheus did not scrape 3 nodes and the operator with traffic in 120 s:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Enough samples for 1m rates and histogram quantiles.
    tokio::time::sleep(Duration::from_secs(15)).await;

    let exported: BTreeSet<String> = prom
        .api("label/__name__/values", &[])
        .await?
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    eprintln!("[e2e] {} metric names exported", exported.len());

    let mut failures = Vec::new();
    // The metrics reference in docs/OPERATIONS.md lists exactly the
    // families the code exports.
    let families: BTreeSet<String> = exported
        .iter()
        .filter(|n| n.starts_with("cairn_"))
        .map(|n| family_of(n, &exported))
        .collect();
    let documented = documented_families()?;
    for f in families.difference(&documented) {
        failures.push(format!(
            "{f} is exported but not in docs/OPERATIONS.md's metrics reference"
        ));
    }
    for f in documented.difference(&families) {
        failures.push(format!(
            "{f} is in docs/OPERATIONS.md's metrics reference but nothing exports it"
        ));
    }
    let mut queries = dashboard_queries()?;
    let panels = queries.len();
    queries.extend(alert_queries()?);
    let mut core = 0;
    for q in &queries {
        let expr = substituted(&q.expr);
        let unknown: Vec<String> = metric_names(&expr)
            .into_iter()
            .filter(|n| !exported.contains(n))
            .collect();
        if !unknown.is_empty() {
            failures.push(format!(
                "{}: names metrics no target exports: {unknown:?}",
                q.place
            ));
        }
        match prom.query(&expr).await {
            Err(e) => failures.push(format!("{}: {expr:?} does not evaluate: {e}", q.place)),
            Ok(result) if q.core && result.is_empty() => {
                failures.push(format!("{}: core query {expr:?} returned no data", q.place))
            }
            Ok(_) => core += usize::from(q.core),
        }
    }
    eprintln!(
        "[e2e] {panels} dashboard queries ({core} core, with data) and {} alert expressions evaluated",
        queries.len() - panels
    );

    // The real server loaded the rules and evaluates every one cleanly.
    let rules = prom.api("rules", &[]).await?;
    let mut evaluated = 0;
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            evaluated += 1;
            if rule["health"] != "ok" && rule["health"] != "unknown" {
                failures.push(format!(
                    "Prometheus evaluates rule {}: health {} ({})",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    assert_eq!(
        evaluated,
        alert_queries()?.len(),
        "Prometheus loaded every alert rule"
    );
    // Nothing is wrong with this cluster: no alert may fire.
    let firing = prom.query(r#"ALERTS{alertstate="firing"}"#).await?;
    if !firing.is_empty() {
        failures.push(format!("alerts fire on a healthy cluster: {firing:?}"));
    }
    load.abort();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn metric_names_skip_label_values_and_find_every_family() {
    let names = metric_names(
        r#"sum(rate(cairn_requests_total{job="cairn-node", code=~"cairn_fake"}[5m])) / process_open_fds"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["cairn_requests_total", "process_open_fds"]
    );
}
