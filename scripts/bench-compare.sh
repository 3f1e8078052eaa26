#!/usr/bin/env bash
# Runs the same YCSB workloads (cairn-bench) against Cairn, etcd and Redis on
# loopback and prints one Markdown table: throughput and p99 per system, and
# Cairn's ratio to each peer. See docs/BENCHMARKS.md.
#
# Systems (one at a time, each on a fresh data directory, stopped right after
# its runs so they never share the two cores):
#   single node:  cairn (gRPC), cairn-http (HTTP gateway), etcd (1 member),
#                 redis (appendonly yes, appendfsync everysec),
#                 redis (appendonly yes, appendfsync always)
#   cluster:      etcd (3 members), cairn (3 nodes, RF=3)
#   tracing cost: cairn-traced-1, cairn-traced-100 (single node exporting
#                 OpenTelemetry traces at 1% / 100% sampling to a real OTLP
#                 collector, rotel-agent from PyPI, discarding what it gets;
#                 not in the default SYSTEMS: SYSTEMS="cairn cairn-traced-1 cairn-traced-100")
# The Cairn cluster row runs only when cairn-node replicates: cairn-node must
# offer --join AND a write through node 1 must become readable on node 2;
# otherwise the row says "n/a: replication not built yet".
#
# Parameters (environment):
#   RECORDS=100000 VALUE_SIZE=1024 CLIENTS=256 DURATION=20s WARMUP=5s
#   WORKLOADS="a b c d e f"       workloads, in order (first one loads the data)
#   SYSTEMS="cairn cairn-http etcd redis-everysec redis-always etcd-3 cairn-3"
#   QUICK=1                       small and short (~2 minutes once built):
#                                 RECORDS=10000 CLIENTS=64 DURATION=5s WARMUP=1s WORKLOADS="a c"
#   PROFILE=debug|release         build profile of cairn-node and cairn-bench (default debug: the
#                                 workspace's dev profile, dependencies incl. RocksDB at -O2, shared
#                                 with the test build so a fresh clone reuses it; release compiles
#                                 RocksDB again, ~25 min on 2 cores)
#   SKIP_BUILD=1                  use the binaries already built
#   CAIRN_NODE_BIN, CAIRN_BENCH_BIN  use these binaries (implies no build of that one)
#   BASE_PORT=23000               first of the loopback ports used
#   PERF=1                        record a CPU profile (perf record -g) of the three Cairn
#                                 nodes over their runs; the top symbols go to RESULTS_DIR
#   RESULTS_DIR=dir               keep every JSON report and server log there
# Exit status: 0 when every run succeeded, 1 otherwise (the table still prints).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

if [ "${QUICK:-0}" = 1 ]; then
  : "${RECORDS:=10000}" "${CLIENTS:=64}" "${DURATION:=5s}" "${WARMUP:=1s}" "${WORKLOADS:=a c}"
fi
: "${RECORDS:=100000}" "${VALUE_SIZE:=1024}" "${CLIENTS:=256}" "${DURATION:=20s}" "${WARMUP:=5s}"
: "${WORKLOADS:=a b c d e f}"
: "${SYSTEMS:=cairn cairn-http etcd redis-everysec redis-always etcd-3 cairn-3}"
: "${PROFILE:=debug}" "${BASE_PORT:=23000}"

log() { echo "bench-compare: $*" >&2; }

# --- prerequisites --------------------------------------------------------
need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# rotel-agent (an OTLP collector, PyPI `rotel`) for the tracing rows, in a venv of its own.
ROTEL="/var/tmp/cairn-tools/rotel/bin/python"
case " $SYSTEMS " in
  *" cairn-traced-"*)
    if [ ! -x "$ROTEL" ]; then
      log "installing rotel==0.0.1a15 (OTLP collector) from PyPI"
      python3 -m venv /var/tmp/cairn-tools/rotel
      /var/tmp/cairn-tools/rotel/bin/pip install -q rotel==0.0.1a15
    fi
    ROTEL_AGENT="$("$ROTEL" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
    ;;
esac

# --- build ----------------------------------------------------------------
case "$PROFILE" in
  release) profile_flag=(--release); profile_dir=release ;;
  debug) profile_flag=(); profile_dir=debug ;;
  *) log "PROFILE must be release or debug, not $PROFILE"; exit 2 ;;
esac
build=()
[ -n "${CAIRN_NODE_BIN:-}" ] || build+=(-p cairn-node)
[ -n "${CAIRN_BENCH_BIN:-}" ] || build+=(-p cairn-bench)
if [ "${SKIP_BUILD:-0}" != 1 ] && [ ${#build[@]} -gt 0 ]; then
  ./scripts/prereqs.sh
  log "building ${build[*]} ($PROFILE) in $CARGO_TARGET_DIR"
  cargo build --locked "${profile_flag[@]}" "${build[@]}"
fi
NODE="${CAIRN_NODE_BIN:-$CARGO_TARGET_DIR/$profile_dir/cairn-node}"
BENCH="${CAIRN_BENCH_BIN:-$CARGO_TARGET_DIR/$profile_dir/cairn-bench}"
for bin in "$NODE" "$BENCH"; do
  [ -x "$bin" ] || { log "missing $bin (build it, or unset SKIP_BUILD)"; exit 1; }
done

# --- servers: started here, always stopped on exit ----------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-compare.XXXXXX")"
RESULTS="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS"
PIDS=()
BENCH_PID=""

stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  local status=$?
  if [ -n "$BENCH_PID" ]; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  stop_servers
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_until PID SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s; fails
# at once if process PID has exited.
wait_until() {
  local pid=$1 secs=$2 what=$3; shift 3
  local tries=$((secs * 5))
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$what exited while starting"
      return 1
    fi
    sleep 0.2
  done
  log "$what did not come up within ${secs}s"
  return 1
}

# start_cairn NAME GRPC_PORT [extra flags...]: HTTP on +1, metrics on +2.
start_cairn() {
  local name=$1 port=$2; shift 2
  local dir="$WORK/data/$name"
  mkdir -p "$dir"
  "$NODE" --data-dir "$dir" --grpc-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$((port + 1))" \
    --metrics-addr "127.0.0.1:$((port + 2))" "$@" >"$RESULTS/$name.stdout" 2>"$RESULTS/$name.log" &
  PIDS+=($!)
  wait_until $! 60 "cairn-node $name" grep -q "cairn-node ready" "$RESULTS/$name.stdout" ||
    { tail -n 20 "$RESULTS/$name.log" >&2; return 1; }
}

# start_etcd COUNT PORT: COUNT members; member i has client port PORT+2i, peer port PORT+2i+1.
start_etcd() {
  local count=$1 port=$2 cluster="" i pids=()
  for ((i = 0; i < count; i++)); do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((port + 2 * i + 1))"
  done
  for ((i = 0; i < count; i++)); do
    local client=$((port + 2 * i)) peer=$((port + 2 * i + 1))
    etcd --name "e$i" --data-dir "$WORK/data/etcd$count-$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench$count" \
      --quota-backend-bytes 8589934592 --auto-compaction-mode revision --auto-compaction-retention 10000 \
      >"$RESULTS/etcd$count-$i.log" 2>&1 &
    PIDS+=($!)
    pids+=($!)
  done
  for ((i = 0; i < count; i++)); do
    wait_until "${pids[$i]}" 60 "etcd member $i" sh -c "curl -sf http://127.0.0.1:$((port + 2 * i))/health | grep -q '\"health\":\"true\"'" ||
      { tail -n 20 "$RESULTS/etcd$count-$i.log" >&2; return 1; }
  done
}

# start_redis NAME PORT FSYNC
start_redis() {
  local name=$1 port=$2 fsync=$3
  mkdir -p "$WORK/data/$name"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/data/$name" --appendonly yes \
    --appendfsync "$fsync" --save "" --daemonize no >"$RESULTS/$name.log" 2>&1 &
  PIDS+=($!)
  wait_until $! 30 "redis $name" sh -c "redis-cli -p $port ping | grep -q PONG" ||
    { tail -n 20 "$RESULTS/$name.log" >&2; return 1; }
}

# Whether three cairn-nodes started with --bootstrap/--join replicate: a
# write through node 1 must become readable on node 2 within 10 s. Leaves
# the cluster running when they do (returns 0), stops it otherwise.
start_cairn_cluster() {
  "$NODE" --help 2>/dev/null | grep -q -- '--join' || return 1
  local p=$1
  start_cairn cairn3-1 "$p" --node-id 1 --bootstrap --replication-factor 3 || return 1
  start_cairn cairn3-2 "$((p + 10))" --node-id 2 --join "127.0.0.1:$p" --replication-factor 3 || return 1
  start_cairn cairn3-3 "$((p + 20))" --node-id 3 --join "127.0.0.1:$p" --replication-factor 3 || return 1
  local probe="cairn-bench-replication-probe"
  curl -sf -X PUT --data-binary x "http://127.0.0.1:$((p + 1))/store/$probe" >/dev/null || return 1
  wait_until "${PIDS[-1]}" 10 "replication to node 2" \
    curl -sf -o /dev/null "http://127.0.0.1:$((p + 11))/store/$probe?consistency=serializable"
}

# --- runs -------------------------------------------------------------------
FAILED=0
declare -A THR P99 LOADRATE
ROWS=()

# bench LABEL TARGET ENDPOINTS: every workload; the first one loads.
bench() {
  local label=$1 target=$2 endpoints=$3 first=1 w slug
  slug=$(printf '%s' "$label" | tr -cs 'A-Za-z0-9=' '-' | sed 's/-$//')
  ROWS+=("$label")
  for w in $WORKLOADS; do
    local out="$RESULTS/$slug-$w.json"
    local args=(--target "$target" --endpoints "$endpoints" --workload "$w" --records "$RECORDS"
      --value-size "$VALUE_SIZE" --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --json)
    [ $first = 1 ] || args+=(--skip-load)
    log "$label: workload $w"
    # Bounded: the run itself plus up to 15 minutes of load. In the
    # background so a signal reaches the trap at once (bash runs traps only
    # between foreground commands, but does interrupt `wait`).
    timeout 1200 "$BENCH" "${args[@]}" >"$out" 2>"$RESULTS/$slug-$w.stderr" &
    BENCH_PID=$!
    local ok=1
    wait "$BENCH_PID" || ok=0
    BENCH_PID=""
    if [ $ok = 1 ]; then
      THR[$label,$w]=$(jq -r '.run.throughput' "$out")
      P99[$label,$w]=$(jq -r '.run.latency_us.p99' "$out")
      [ $first = 1 ] && LOADRATE[$label]=$(jq -r '.load.throughput' "$out")
    else
      FAILED=1
      THR[$label,$w]="failed"
      log "$label workload $w failed: $(tail -n 3 "$RESULTS/$slug-$w.stderr" | tr '\n' ' ')"
    fi
    first=0
  done
}

NA=()
# Group commit: commands per fsync on the single Cairn node, from its metrics.
GROUP_COMMIT=""
# fsyncs per replicated write on the Cairn cluster, from its nodes' metrics.
REPLICATED_SYNCS=""
p=$BASE_PORT
for system in $SYSTEMS; do
  case "$system" in
    cairn)
      start_cairn cairn1 "$p"
      bench "cairn (1 node)" cairn "127.0.0.1:$p"
      GROUP_COMMIT=$(curl -sf "http://127.0.0.1:$((p + 2))/metrics" |
        awk '/^cairn_commit_group_commands_sum/ {s=$2} /^cairn_commit_group_commands_count/ {c=$2}
             /^cairn_commit_write_duration_seconds_sum/ {w=$2}
             END { if (c > 0) printf "%d group commits, %.1f write commands per group commit (one fsync each), %.2f ms per group write+fsync", c, s / c, 1000 * w / c }') || true
      ;;
    cairn-traced-1 | cairn-traced-100)
      ratio_arg=0.01 share="1%"
      [ "$system" = cairn-traced-100 ] && ratio_arg=1 share="100%"
      "$ROTEL_AGENT" start --otlp-grpc-endpoint "127.0.0.1:$((p + 50))" --otlp-http-endpoint "127.0.0.1:$((p + 51))" \
        --exporter blackhole >"$RESULTS/rotel-$system.log" 2>&1 &
      PIDS+=($!)
      wait_until $! 30 "rotel-agent" bash -c "exec 3<>/dev/tcp/127.0.0.1/$((p + 50))" ||
        { tail -n 20 "$RESULTS/rotel-$system.log" >&2; exit 1; }
      start_cairn "cairn1$system" "$p" --otlp-endpoint "http://127.0.0.1:$((p + 50))" --trace-sample-ratio "$ratio_arg"
      bench "cairn, traces at $share (1 node)" cairn "127.0.0.1:$p"
      ;;
    cairn-http)
      start_cairn cairn1http "$p"
      bench "cairn-http (1 node)" cairn-http "127.0.0.1:$((p + 1))"
      ;;
    etcd)
      start_etcd 1 "$p"
      bench "etcd (1 member)" etcd "127.0.0.1:$p"
      ;;
    redis-everysec)
      start_redis redis-everysec "$p" everysec
      bench "redis (AOF everysec)" redis "127.0.0.1:$p"
      ;;
    redis-always)
      start_redis redis-always "$p" always
      bench "redis (AOF always)" redis "127.0.0.1:$p"
      ;;
    etcd-3)
      start_etcd 3 "$p"
      bench "etcd (3 members)" etcd "127.0.0.1:$p,127.0.0.1:$((p + 2)),127.0.0.1:$((p + 4))"
      ;;
    cairn-3)
      if start_cairn_cluster "$p"; then
        PERF_PID=""
        if [ "${PERF:-0}" = 1 ]; then
          perf record -F 199 -g -o "$RESULTS/cairn-3.perf.data" -p "$(IFS=,; echo "${PIDS[*]: -3}")" \
            >"$RESULTS/perf-record.log" 2>&1 &
          PERF_PID=$!
        fi
        bench "cairn (3 nodes, RF=3)" cairn "127.0.0.1:$p,127.0.0.1:$((p + 10)),127.0.0.1:$((p + 20))"
        if [ -n "$PERF_PID" ]; then
          kill -INT "$PERF_PID" 2>/dev/null || true
          wait "$PERF_PID" 2>/dev/null || true
          perf report -i "$RESULTS/cairn-3.perf.data" --stdio --no-children --sort dso,symbol \
            --percent-limit 0.7 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' >"$RESULTS/cairn-3.perf-top.txt" || true
          PERF_SUMMARY="$RESULTS/cairn-3.perf-top.txt"
        fi
        REPLICATED_SYNCS=$(for q in "$p" "$((p + 10))" "$((p + 20))"; do
          curl -sf "http://127.0.0.1:$((q + 2))/metrics" || true
        done | awk '/^cairn_rocksdb_wal_syncs_total / {f += $2}
             /^cairn_raft_proposals_total\{.*result="committed"/ {w += $2}
             END { if (w > 0) printf "%d WAL fsyncs on the three nodes for %d committed proposals: %.2f fsyncs per replicated write (all nodes together)", f, w, f / w }') || true
      else
        ROWS+=("cairn (3 nodes, RF=3)")
        NA+=("cairn (3 nodes, RF=3)")
      fi
      ;;
    *) log "unknown system $system"; exit 2 ;;
  esac
  stop_servers
  rm -rf "$WORK/data"
  p=$((p + 100))
done

# --- table --------------------------------------------------------------------
is_na() { local x; for x in "${NA[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
# reference row of a row: the single node for single-node rows, the cluster for cluster rows.
reference() { case "$1" in *"3 "*) echo "cairn (3 nodes, RF=3)" ;; *) echo "cairn (1 node)" ;; esac; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

echo
echo "Workloads $WORKLOADS; RECORDS=$RECORDS VALUE_SIZE=$VALUE_SIZE CLIENTS=$CLIENTS DURATION=$DURATION WARMUP=$WARMUP PROFILE=$PROFILE; $(nproc) cores, $(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB."
echo "Cairn ÷ peer: throughput > 1 means Cairn is faster; p99 > 1 means Cairn's p99 is higher (worse)."
echo
echo "| workload | system | ops/s | p99 ms | Cairn ÷ peer, ops/s | Cairn ÷ peer, p99 |"
echo "|---|---|---:|---:|---:|---:|"
for w in $WORKLOADS; do
  for row in "${ROWS[@]}"; do
    if is_na "$row"; then
      echo "| $w | $row | n/a: replication not built yet | | | |"
      continue
    fi
    thr=${THR[$row,$w]:-n/a}
    p99=${P99[$row,$w]:-}
    ref=$(reference "$row")
    if ! [[ "$thr" =~ ^[0-9.]+$ ]]; then
      echo "| $w | $row | $thr | | | |"
      continue
    fi
    p99ms=$(awk -v u="$p99" 'BEGIN { printf "%.2f", u / 1000 }')
    case "$row" in
      cairn\ \(*) r_thr="—"; r_p99="—" ;;
      *)
        r_thr=$(ratio "${THR[$ref,$w]:-}" "$thr")
        r_p99=$(ratio "${P99[$ref,$w]:-}" "$p99")
        ;;
    esac
    printf '| %s | %s | %.0f | %s | %s | %s |\n' "$w" "$row" "$thr" "$p99ms" "$r_thr" "$r_p99"
  done
done
echo
echo "Load phase (records/s, first workload's load):"
for row in "${ROWS[@]}"; do
  is_na "$row" && continue
  rate=${LOADRATE[$row]:-failed}
  if [[ "$rate" =~ ^[0-9.]+$ ]]; then printf -- '- %s: %.0f\n' "$row" "$rate"; else echo "- $row: $rate"; fi
done
[ -z "$GROUP_COMMIT" ] || echo "Cairn single node, group commit over all its runs: $GROUP_COMMIT."
[ -z "$REPLICATED_SYNCS" ] || echo "Cairn 3 nodes, over all its runs: $REPLICATED_SYNCS."
[ -z "${PERF_SUMMARY:-}" ] || echo "CPU profile of the three Cairn nodes over all their runs (perf, self time by symbol): $PERF_SUMMARY"
[ -z "${RESULTS_DIR:-}" ] || echo "Reports and server logs: $RESULTS_DIR"
exit "$FAILED"
