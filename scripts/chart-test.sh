#!/usr/bin/env bash
# Checks the Helm chart and the kubectl bundle with the real tools
# (scripts/k8s-tools.sh installs them): helm lint --strict and helm template
# with the default values and every charts/cairn-operator/ci/*.yaml; the
# rendered manifests and deploy/install.yaml pass kubernetes-validate
# --strict for Kubernetes 1.33 to 1.37; the monitoring objects
# (ServiceMonitors, PrometheusRule) render only where monitoring.coreos.com/v1
# is served and pass the prometheus-operator's CRD schemas, and the Grafana
# dashboard ConfigMaps hold one dashboard file each; values.schema.json
# refuses bad values with a message naming the value; deploy/install.yaml is
# what scripts/gen-install-bundle.sh generates. Run by scripts/test.sh (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(scripts/k8s-tools.sh)"
export PATH="$bin:$PATH"
chart=charts/cairn-operator
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

echo "helm $(helm version --short), kubectl $(kubectl version --client 2>/dev/null | head -1)"

helm lint --strict "$chart" >"$work/lint" 2>&1 || { cat "$work/lint"; fail "helm lint --strict (default values)"; }
for values in "$chart"/ci/*.yaml; do
  helm lint --strict "$chart" -f "$values" >"$work/lint" 2>&1 || { cat "$work/lint"; fail "helm lint --strict -f $values"; }
done

no_schema="Couldn't find schema for kind \(KVCluster\|ServiceMonitor\|PrometheusRule\) "
validate() { # validate FILE LABEL: strict schemas of every supported Kubernetes minor
  local v
  for v in 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0; do
    # Custom resources have no built-in schema: the CRD's own schema tests
    # (operator/tests/samples.rs) check KVClusters, validate_monitoring
    # below the prometheus-operator's ServiceMonitors and PrometheusRules.
    if ! kubernetes-validate --strict --quiet -k "$v" "$1" >"$work/validate" 2>&1; then
      grep -v "$no_schema" "$work/validate" || true
      if grep -v "$no_schema" "$work/validate" | grep -q .; then
        fail "kubernetes-validate --strict -k $v $2"
      fi
    fi
  done
}

i=0
for values in "" "$chart"/ci/*.yaml; do
  i=$((i + 1))
  out="$work/rendered-$i.yaml"
  if helm template cairn-operator "$chart" --namespace cairn-system ${values:+-f "$values"} >"$out" 2>"$work/err"; then
    validate "$out" "helm template ${values:-(default values)}"
    echo "ok   helm template ${values:-(default values)}: $(grep -c '^kind:' "$out") objects"
  else
    cat "$work/err"; fail "helm template ${values:-(default values)}"
  fi
done

# Monitoring. kubernetes-validate knows no prometheus-operator kinds, so
# monitoring.py checks them against cloudcoil-models-prometheus-operator
# (k8s-tools.sh pins it): pydantic models generated from the
# prometheus-operator's CRD schemas, validated in strict JSON mode (types,
# patterns and enums as the API server checks them, no coercion of 7 to "7").
# Pydantic drops fields it does not know where the API server's strict field
# validation refuses them, so every field of a document must also survive the
# round trip through its model. `check` says what the values promise: which
# Services are selected, the job/kvcluster/pod labels, the alerts of
# monitoring/alerts.yaml, one dashboard file per ConfigMap.
cat >"$work/monitoring.py" <<'PY'
import copy, json, os, re, sys, yaml
from pydantic import ValidationError

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def dropped(given, kept, path):
    """Paths of the fields of `given` that the model's dump `kept` lost."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            here = f"{path}.{key}" if path else key
            if key not in kept:
                yield here
            else:
                yield from dropped(value, kept[key], here)
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            yield from dropped(a, b, f"{path}.{i}")

def validate(paths):
    from cloudcoil.models.prometheus_operator import v1
    models = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}
    errors = checked = 0
    for path in paths:
        for doc in docs(path):
            if not str(doc.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
                continue
            what = f"{doc.get('kind')} {(doc.get('metadata') or {}).get('name')}"
            problems = []
            model = models.get(doc.get("kind")) if doc.get("apiVersion") == "monitoring.coreos.com/v1" else None
            if model is None:
                problems.append(f"{doc.get('apiVersion')} {doc.get('kind')}: no model to check it with")
            else:
                try:
                    obj = model.model_validate_json(json.dumps(doc), strict=True)
                except ValidationError as e:
                    problems += [".".join(map(str, err["loc"])) + ": " + err["msg"] for err in e.errors()]
                else:
                    kept = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
                    problems += [f"{p}: no such field in the {doc['kind']} CRD" for p in dropped(doc, kept, "")]
            checked += 1
            for p in problems:
                print(f"{what}: {p}")
            errors += bool(problems)
    if errors:
        sys.exit(1)
    print(f"{checked} object(s) match the prometheus-operator CRD schemas")

def merged(base, over):
    """Helm's merge of a values file over the defaults (null deletes a key)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out

def check(rendered, chart, value_files):
    values = docs(os.path.join(chart, "values.yaml"))[0]
    for f in value_files:
        values = merged(values, (docs(f) or [{}])[0])
    mon = values["monitoring"]
    objs = docs(rendered)
    problems = []
    def expect(cond, msg):
        if not cond:
            problems.append(msg)
    def has_labels(obj, labels):
        got = obj["metadata"].get("labels") or {}
        return all(got.get(k) == v for k, v in labels.items())
    def relabel(ep, target, replacement=None, source=None):
        return any(r.get("targetLabel") == target and r.get("action", "replace") == "replace"
                   and (replacement is None or r.get("replacement") == replacement)
                   and (source is None or r.get("sourceLabels") == [source])
                   for r in ep.get("relabelings") or [])
    sms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceMonitor"}
    metrics_services = [o for o in objs if o["kind"] == "Service"
                        and any(p.get("name") == "metrics" for p in o["spec"]["ports"])]
    for name, sm in sms.items():
        expect(has_labels(sm, mon["serviceMonitor"]["labels"]), f"ServiceMonitor {name}: lacks monitoring.serviceMonitor.labels")
        ep = sm["spec"]["endpoints"][0]
        expect(len(sm["spec"]["endpoints"]) == 1, f"ServiceMonitor {name}: more than one endpoint")
        expect(ep.get("port") == "metrics" and ep.get("path") == "/metrics", f"ServiceMonitor {name}: not port metrics, path /metrics")
        expect(ep.get("interval") == mon["serviceMonitor"]["interval"], f"ServiceMonitor {name}: interval is not monitoring.serviceMonitor.interval")
        if sm["spec"]["selector"].get("matchLabels") == {"app.kubernetes.io/name": "cairn"}:
            # The nodes': every KVCluster's Services, where the operator makes them.
            want = {"matchNames": [values["watchNamespace"]]} if values["watchNamespace"] else {"any": True}
            expect(sm["spec"].get("namespaceSelector") == want, f"ServiceMonitor {name}: namespaceSelector is not {want}")
            expect(relabel(ep, "job", replacement="cairn-node"), f"ServiceMonitor {name}: job is not cairn-node")
            expect(relabel(ep, "kvcluster", source="__meta_kubernetes_service_label_app_kubernetes_io_instance"), f"ServiceMonitor {name}: no kvcluster label")
            expect(relabel(ep, "pod", source="__meta_kubernetes_pod_name"), f"ServiceMonitor {name}: no pod label")
        else:
            # The operator's: exactly the chart's metrics Service.
            names = sm["spec"].get("namespaceSelector", {}).get("matchNames", [])
            picked = [s for s in metrics_services if s["metadata"]["namespace"] in names
                      and all(s["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())]
            expect(len(picked) == 1, f"ServiceMonitor {name}: selects {len(picked)} metrics Service(s), not 1")
            expect(relabel(ep, "job", replacement="cairn-operator"), f"ServiceMonitor {name}: job is not cairn-operator")
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    for rule in rules:
        with open(os.path.join(chart, "monitoring", "alerts.yaml")) as f:
            groups = yaml.safe_load(f)["groups"]
        expect(rule["spec"]["groups"] == groups, f"PrometheusRule {rule['metadata']['name']}: groups differ from monitoring/alerts.yaml")
        expect(has_labels(rule, mon["prometheusRule"]["labels"]), "PrometheusRule: lacks monitoring.prometheusRule.labels")
    dash_dir = os.path.join(chart, "monitoring", "dashboards")
    files = sorted(f for f in os.listdir(dash_dir) if f.endswith(".json")) if os.path.isdir(dash_dir) else []
    cms = [o for o in objs if o["kind"] == "ConfigMap" and "-dashboard-" in o["metadata"]["name"]]
    if mon["dashboards"]["enabled"]:
        keys = sorted(k for cm in cms for k in cm.get("data") or {})
        expect(keys == files, f"dashboard ConfigMaps hold {keys}, the chart has {files}")
        for cm in cms:
            name, data = cm["metadata"]["name"], cm.get("data") or {}
            expect(len(data) == 1, f"ConfigMap {name}: {len(data)} keys, not one dashboard")
            expect(len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), f"ConfigMap {name}: not a valid name")
            expect(has_labels(cm, mon["dashboards"]["labels"]), f"ConfigMap {name}: lacks the sidecar's labels {mon['dashboards']['labels']}")
            expect((cm["metadata"].get("annotations") or {}) == mon["dashboards"]["annotations"], f"ConfigMap {name}: annotations are not monitoring.dashboards.annotations")
            for key, text in data.items():
                with open(os.path.join(dash_dir, key), encoding="utf-8") as f:
                    expect(text == f.read(), f"ConfigMap {name}: {key} differs from the file")
    else:
        expect(not cms, "dashboard ConfigMaps rendered with monitoring.dashboards.enabled false")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{len(sms)} ServiceMonitor(s), {len(rules)} PrometheusRule(s), {len(cms)} dashboard ConfigMap(s) as the values say")

if sys.argv[1] == "validate":
    validate(sys.argv[2:])
else:
    check(sys.argv[2], sys.argv[3], sys.argv[4:])
PY
py() { k8s-tools-python "$work/monitoring.py" "$@"; }
validate_monitoring() { # validate_monitoring FILE LABEL
  if py validate "$1" >"$work/mon" 2>&1; then
    echo "ok   $2: $(cat "$work/mon")"
  else
    cat "$work/mon"; fail "$2: prometheus-operator CRD schemas"
  fi
}
check_monitoring() { # check_monitoring FILE CHART LABEL VALUES-FILES...
  local file="$1" dir="$2" label="$3"; shift 3
  if py check "$file" "$dir" "$@" >"$work/mon" 2>&1; then
    echo "ok   $label: $(cat "$work/mon")"
  else
    cat "$work/mon"; fail "$label: monitoring objects"
  fi
}
count() { grep -c "^kind: $1\$" "$2" || true; }
mon_values="$chart/ci/monitoring-values.yaml"

# The ServiceMonitors and the PrometheusRule render only with both their value
# and the API: by default there are none, nor on a cluster without the
# prometheus-operator (no --api-versions); the dashboards need no API.
monitoring_render() { # monitoring_render OUT LABEL SERVICEMONITORS PROMETHEUSRULES HELM-ARGS...
  local out="$1" label="$2" sms="$3" rules="$4"; shift 4
  if ! helm template cairn-operator "$@" --namespace cairn-system >"$out" 2>"$work/err"; then
    cat "$work/err"; fail "helm template $label"; return 1
  fi
  if [ "$(count ServiceMonitor "$out")" != "$sms" ] || [ "$(count PrometheusRule "$out")" != "$rules" ]; then
    fail "helm template $label: $(count ServiceMonitor "$out") ServiceMonitor(s) and $(count PrometheusRule "$out") PrometheusRule(s), not $sms and $rules"
    return 1
  fi
  echo "ok   helm template $label: $sms ServiceMonitor(s), $rules PrometheusRule(s)"
}
api=(--api-versions monitoring.coreos.com/v1)
monitoring_render "$work/mon-default.yaml" "--api-versions monitoring.coreos.com/v1 (default values)" 0 0 "$chart" "${api[@]}" \
  && check_monitoring "$work/mon-default.yaml" "$chart" "helm template --api-versions monitoring.coreos.com/v1 (default values)"
monitoring_render "$work/mon-noapi.yaml" "-f $mon_values (no monitoring.coreos.com/v1)" 0 0 "$chart" -f "$mon_values" \
  && check_monitoring "$work/mon-noapi.yaml" "$chart" "helm template -f $mon_values (no monitoring.coreos.com/v1)" "$mon_values"
# With and without watchNamespace (production-values.yaml sets it).
for extra in "" "$chart/ci/production-values.yaml"; do
  out="$work/mon-api-$(basename "${extra:-default}")"
  label="${extra:+-f $extra }-f $mon_values --api-versions monitoring.coreos.com/v1"
  if monitoring_render "$out" "$label" 2 1 "$chart" ${extra:+-f "$extra"} -f "$mon_values" "${api[@]}"; then
    validate "$out" "helm template $label"
    validate_monitoring "$out" "helm template $label"
    check_monitoring "$out" "$chart" "helm template $label" ${extra:+"$extra"} "$mon_values"
  fi
done

# Dashboards whatever monitoring/dashboards/ holds today: a copy of the chart
# with two more (one whose name is no DNS name as it is, one that YAML must
# quote) renders one ConfigMap per file, each file's text intact; two files
# that would make the same ConfigMap name are refused.
cp -r "$chart" "$work/chart"
mkdir -p "$work/chart/monitoring/dashboards"
printf '{"title": "Chart test", "panels": []}\n' >"$work/chart/monitoring/dashboards/Chart_Test_Overview.json"
printf '{\n\t"title": "caf\xc3\xa9 \\u00e9 <b>",  \n  "panels": [{"expr": "a: b # c"}]\n}' >"$work/chart/monitoring/dashboards/chart-test-quoting.json"
label="(chart copy with 2 more dashboards) -f $mon_values"
if monitoring_render "$work/mon-dash.yaml" "$label" 0 0 "$work/chart" -f "$mon_values"; then
  validate "$work/mon-dash.yaml" "helm template $label"
  check_monitoring "$work/mon-dash.yaml" "$work/chart" "helm template $label" "$mon_values"
fi
cp "$work/chart/monitoring/dashboards/Chart_Test_Overview.json" "$work/chart/monitoring/dashboards/chart-test-overview.json"
if helm template x "$work/chart" --set monitoring.dashboards.enabled=true >/dev/null 2>"$work/err"; then
  fail "two dashboards making one ConfigMap name were accepted"
elif ! grep -q "rename one" "$work/err"; then
  cat "$work/err"; fail "two dashboards making one ConfigMap name: no message saying so"
else
  echo "ok   refused two dashboards making one ConfigMap name: $(grep -o '[^:]*: rename one' "$work/err" | head -1)"
fi

# The CRD check refuses what the API server would, naming the field.
monitoring_refuses() { # monitoring_refuses NEEDLE LABEL (the document on stdin)
  cat >"$work/bad.yaml"
  if py validate "$work/bad.yaml" >"$work/mon" 2>&1; then
    fail "prometheus-operator CRD schemas accepted $2"
  elif ! grep -q -- "$1" "$work/mon"; then
    cat "$work/mon"; fail "prometheus-operator CRD schemas refused $2 without naming $1"
  else
    echo "ok   refused $2: $(grep -- "$1" "$work/mon" | head -1)"
  fi
}
servicemonitor() { # servicemonitor ENDPOINT
  printf '%s\n' "apiVersion: monitoring.coreos.com/v1" "kind: ServiceMonitor" "metadata: {name: bad, namespace: cairn-system}" \
    "spec:" "  selector: {matchLabels: {app.kubernetes.io/name: cairn}}" "  endpoints: [$1]"
}
rule() { # rule RULE
  printf '%s\n' "apiVersion: monitoring.coreos.com/v1" "kind: PrometheusRule" "metadata: {name: bad, namespace: cairn-system}" \
    "spec:" "  groups: [{name: g, rules: [$1]}]"
}
servicemonitor '{port: metrics}' >"$work/good.yaml"
validate_monitoring "$work/good.yaml" "a minimal ServiceMonitor"
servicemonitor '{port: 7}' | monitoring_refuses "spec.endpoints.0.port" "a ServiceMonitor with port: 7"
servicemonitor '{port: metrics, relabellings: []}' | monitoring_refuses "spec.endpoints.0.relabellings" "a ServiceMonitor with an unknown field"
servicemonitor '{port: metrics, interval: 30 seconds}' | monitoring_refuses "spec.endpoints.0.interval" "a ServiceMonitor with interval: 30 seconds"
servicemonitor '{port: metrics, relabelings: [{targetLabel: job, action: rename}]}' | monitoring_refuses "spec.endpoints.0.relabelings.0.action" "a ServiceMonitor with relabeling action: rename"
rule '{alert: A, expr: up == 0, for: 2 minutes}' | monitoring_refuses "spec.groups.0.rules.0.for" "a PrometheusRule with for: 2 minutes"
rule '{alert: A, expr: up == 0, labels: {severity: 1}}' | monitoring_refuses "spec.groups.0.rules.0.labels.severity" "a PrometheusRule with a number for a label"

# The schema refuses bad values, naming the value.
refuses() { # refuses NEEDLE HELM-ARGS...
  local needle="$1"; shift
  if helm template x "$chart" "$@" >/dev/null 2>"$work/err"; then
    fail "helm template $* was accepted"
  elif ! grep -q -- "$needle" "$work/err"; then
    cat "$work/err"; fail "helm template $*: no message naming $needle"
  else
    echo "ok   refused $*: $(grep -- "$needle" "$work/err" | head -1 | sed 's/^ *//')"
  fi
}
refuses "/replicaCount" --set replicaCount=2
refuses "/image/pullPolicy" --set image.pullPolicy=Sometimes
refuses "/metrics/port" --set metrics.port=70000
refuses "bogus" --set bogus=1
refuses "/cluster/name" --set cluster.create=true --set cluster.name=Not_A_Name
refuses "/monitoring/serviceMonitor/interval" --set monitoring.serviceMonitor.interval=30
refuses "/monitoring/serviceMonitor/interval" --set monitoring.serviceMonitor.interval=thirty
refuses "/monitoring/dashboards/labels/grafana_dashboard" --set monitoring.dashboards.labels.grafana_dashboard=1
refuses "bogus" --set monitoring.prometheusRule.bogus=1

# The bundle is current and valid.
scripts/gen-install-bundle.sh >"$work/install.yaml"
if ! diff -u deploy/install.yaml "$work/install.yaml" >"$work/diff"; then
  head -40 "$work/diff"
  fail "deploy/install.yaml is stale: regenerate it with scripts/gen-install-bundle.sh > deploy/install.yaml"
else
  echo "ok   deploy/install.yaml is current"
fi
validate deploy/install.yaml deploy/install.yaml
if [ "$failures" -ne 0 ]; then
  echo "chart-test: $failures check(s) failed" >&2
  exit 1
fi
echo "chart-test: chart, bundle and samples pass"
