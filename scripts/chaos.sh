#!/usr/bin/env bash
# Seeded chaos runs against real cairn-node processes, each history checked
# for linearizability (crate chaos, binary cairn-chaos; needs root: each node
# gets its own network namespace and a tmpfs disk).
#   scripts/chaos.sh           the long campaign `make chaos` runs: seeds 1..50
#                              on 3 nodes and 1001..1050 on 5 nodes, 60 s each
#   scripts/chaos.sh --smoke   the CI smoke: 6 fixed seeds x 20 s on 3 nodes,
#                              failing unless every fault kind was injected
# Env: CHAOS_SEEDS3 / CHAOS_SEEDS5 (A..B, B excluded; empty skips that size),
# CHAOS_DURATION, CHAOS_PREBUILT, CHAOS_OUT (where failing runs' histories go; default
# $CARGO_TARGET_DIR/chaos). A failing run prints the command that replays it
# and `cairn-chaos check FILE` re-checks its saved history.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
if [ "$(id -u)" != 0 ]; then
  echo "chaos: needs root (network namespaces, iptables, tmpfs mounts)" >&2
  exit 1
fi
# CHAOS_PREBUILT=1 (scripts/test.sh): use the binaries the workspace test
# build made; a per-package build would re-resolve features and rebuild.
if [ "${CHAOS_PREBUILT:-}" != 1 ]; then
  cargo build --locked -p cairn-node -p cairn-chaos
fi
BIN="$CARGO_TARGET_DIR/debug/cairn-chaos"
if [ ! -x "$BIN" ] || [ ! -x "$CARGO_TARGET_DIR/debug/cairn-node" ]; then
  echo "chaos: $BIN or cairn-node is not built (unset CHAOS_PREBUILT to build them)" >&2
  exit 1
fi
OUT="${CHAOS_OUT:-$CARGO_TARGET_DIR/chaos}"
mkdir -p "$OUT"
if [ "${1:-}" = "--smoke" ]; then
  # Seeds 1..6 together inject every kind (kill, pause, partition, delay,
  # churn, disk); --require-every-fault keeps that promise checked.
  exec "$BIN" --seeds 1..7 --duration 20s --nodes 3 --require-every-fault --out "$OUT"
fi
DURATION="${CHAOS_DURATION:-60s}"
SEEDS3="${CHAOS_SEEDS3-1..51}"
SEEDS5="${CHAOS_SEEDS5-1001..1051}"
status=0
for spec in "3 $SEEDS3" "5 $SEEDS5"; do
  set -- $spec
  [ -n "${2:-}" ] || continue
  echo "== $1 nodes, seeds $2, $DURATION each"
  "$BIN" --seeds "$2" --duration "$DURATION" --nodes "$1" --out "$OUT" | tee "$OUT/campaign-n$1.log" || status=1
done
exit $status
