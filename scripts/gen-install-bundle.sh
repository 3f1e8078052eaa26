#!/usr/bin/env bash
# Generates deploy/install.yaml, the `kubectl apply` bundle, from the Helm
# chart: the CRDs, the cairn-system namespace, RBAC and the operator, with
# the chart's default values. scripts/chart-test.sh fails when the committed
# bundle differs from what this prints.
#
#   scripts/gen-install-bundle.sh > deploy/install.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
helm="${HELM:-helm}"
cat <<'HEADER'
# Cairn operator: CRDs, namespace cairn-system, RBAC and the operator Deployment.
#   kubectl apply --server-side -f deploy/install.yaml
# Generated from charts/cairn-operator by scripts/gen-install-bundle.sh; do not edit.
HEADER
# --skip-tests: the `helm test` pod is for Helm users only.
"$helm" template cairn-operator charts/cairn-operator --namespace cairn-system \
  --include-crds --skip-tests --set createNamespace=true \
  | sed -e '/^# Source: /d' -e 's/^\( *\)app.kubernetes.io\/managed-by: Helm$/\1app.kubernetes.io\/managed-by: kubectl/'
