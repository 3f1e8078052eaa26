#!/usr/bin/env bash
# Checks the Helm chart and the kubectl bundle with the real tools
# (scripts/k8s-tools.sh installs them): helm lint --strict and helm template
# with the default values and every charts/cairn-operator/ci/*.yaml; the
# rendered manifests and deploy/install.yaml pass kubernetes-validate
# --strict for Kubernetes 1.33 to 1.37; values.schema.json refuses bad
# values with a message naming the value; deploy/install.yaml is what
# scripts/gen-install-bundle.sh generates. Run by scripts/test.sh (CI).
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

validate() { # validate FILE LABEL: strict schemas of every supported Kubernetes minor
  local v
  for v in 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0; do
    # Custom resources (KVCluster) have no built-in schema: the CRD's own
    # schema tests (operator/tests/samples.rs) check them.
    if ! kubernetes-validate --strict --quiet -k "$v" "$1" >"$work/validate" 2>&1; then
      grep -v "Couldn't find schema for kind KVCluster" "$work/validate" || true
      if grep -v "Couldn't find schema for kind KVCluster" "$work/validate" | grep -q .; then
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
