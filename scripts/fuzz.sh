#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder (cargo-fuzz / libFuzzer).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 300)
# Runs each target in fuzz/fuzz_targets for that long and prints a summary:
# target, execs, corpus size, crashes. Works on stable: cargo-fuzz needs
# nightly -Z flags, which RUSTC_BOOTSTRAP=1 unlocks.
# Env: TARGETS="a b" (a subset), FUZZ_SANITIZER (default none; address
# also works on stable, at about half the speed), FUZZ_JOBS (parallel
# targets, default 1), FUZZ_TARGET_DIR (default /var/tmp/cairn-fuzz-target).
# New corpus entries go to $FUZZ_TARGET_DIR/corpus/<target> (the committed
# seeds in fuzz/corpus stay as they are); crash inputs to
# fuzz/artifacts/<target>/ - copy them to fuzz/regressions/<target>/ once
# fixed, so the replay test (node/tests/fuzz_corpus.rs) keeps checking them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-300}"
SAN="${FUZZ_SANITIZER:-none}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/cairn-fuzz-target}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
TARGETS="${TARGETS:-$(cd fuzz/fuzz_targets && ls ./*.rs | sed 's|^\./||; s|\.rs$||' | sort)}"
( cd fuzz && cargo fuzz build --sanitizer "$SAN" )
LOGS="$CARGO_TARGET_DIR/fuzz-logs"
mkdir -p "$LOGS"

run_one() {
  local t="$1" work="$CARGO_TARGET_DIR/corpus/$1"
  mkdir -p "$work" "fuzz/artifacts/$t"
  ( cd fuzz && cargo fuzz run --sanitizer "$SAN" "$t" "$work" "corpus/$t" -- \
      -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 ) >"$LOGS/$t.log" 2>&1 || true
}

pids=()
for t in $TARGETS; do
  run_one "$t" &
  pids+=($!)
  if (( ${#pids[@]} >= ${FUZZ_JOBS:-1} )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

status=0
printf '%-18s %14s %8s %8s\n' target execs corpus crashes
for t in $TARGETS; do
  log="$LOGS/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  corpus=$(find "$CARGO_TARGET_DIR/corpus/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
  (( crashes == 0 )) || status=1
  printf '%-18s %14s %8s %8s\n' "$t" "${execs:-?}" "$corpus" "$crashes"
done
echo "logs: $LOGS"
exit $status
