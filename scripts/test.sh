#!/usr/bin/env bash
# The one test command: prerequisites, formatting, lints, then every test.
# `make test` and `.ci/run` both run this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/prereqs.sh
. scripts/env.sh

echo "== prerequisite detection against fake roots"
./scripts/prereqs-test.sh
echo "== Helm chart, kubectl bundle and samples (real helm, kubernetes-validate)"
./scripts/chart-test.sh

echo "== alert rules (promtool check/test rules), runbooks, dashboards"
./scripts/monitoring-test.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (warnings are errors: broken links, missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== build the tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci --no-run
else
  cargo test --workspace --locked --no-run
fi
echo "== container images (buildah, from the binaries the tests run)"
PREBUILT=1 PROFILE=debug OUT="$CARGO_TARGET_DIR/images-ci" ./scripts/build-image.sh
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first: nextest's summary line is the run's closing line.
  cargo test --workspace --locked --doc
  cargo nextest run --workspace --locked --profile ci
else
  cargo test --workspace --locked
fi
echo "== chaos smoke (6 fixed seeds x 20 s, every fault kind, histories checked for linearizability)"
CHAOS_PREBUILT=1 ./scripts/chaos.sh --smoke
