#!/usr/bin/env bash
# Builds and runs a local single Cairn node (no Kubernetes needed).
# gRPC on 127.0.0.1:7000, HTTP on 127.0.0.1:7001, metrics on 127.0.0.1:7002.
# Extra arguments are passed to cairn-node. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/prereqs.sh
. scripts/env.sh
cargo build --locked --bin cairn-node --bin cairnctl
exec "$CARGO_TARGET_DIR/debug/cairn-node" --data-dir "${CAIRN_DATA_DIR:-./cairn-data}" "$@"
