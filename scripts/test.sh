#!/usr/bin/env bash
# The one test command: prerequisites, formatting, lints, then every test.
# `make test` and `.ci/run` both run this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/prereqs.sh
. scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first: nextest's summary line is the run's closing line.
  cargo test --workspace --locked --doc
  cargo nextest run --workspace --locked --profile ci
else
  cargo test --workspace --locked
fi
