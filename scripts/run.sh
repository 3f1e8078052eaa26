#!/usr/bin/env bash
# Builds Cairn and runs a local 3-node playground cluster (no Kubernetes needed):
# node i serves gRPC on 127.0.0.1:70i0, HTTP on :70i1, metrics on :70i2
# (node 1: 7000/7001/7002). Data and logs go to ./cairn-playground and are kept
# across runs. Extra arguments go to `cairnctl playground` (e.g. --nodes 5).
# SINGLE=1 runs one standalone node instead (data in ./cairn-data).
# Ctrl-C stops every node cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/prereqs.sh
. scripts/env.sh
cargo build --locked --bin cairn-node --bin cairnctl
if [ "${SINGLE:-0}" = 1 ]; then
  exec "$CARGO_TARGET_DIR/debug/cairn-node" --data-dir "${CAIRN_DATA_DIR:-./cairn-data}" "$@"
fi
exec "$CARGO_TARGET_DIR/debug/cairnctl" playground --nodes "${CAIRN_NODES:-3}" \
  --data-dir "${CAIRN_DATA_DIR:-./cairn-playground}" "$@"
