#!/usr/bin/env bash
# Instructions per Redis-store evaluation, client (the bench's main thread) and redis-server,
# counted with `perf stat` (user + kernel) for one scenario of benches/redis_cpu.rs. Instruction
# counts barely move with other load on the machine, unlike CPU time. Each scenario runs at two
# lengths; the difference cancels the fixed costs (server start, connection, warm-up).
# Usage: scripts/redis-cpu-instructions.sh [BENCH_BINARY] ["bench policy/64" ...]
# (default binary: the newest target/release/deps/redis_cpu-*; build it with
#  `cargo bench --bench redis_cpu --no-run`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$(ls -t "${CARGO_TARGET_DIR:-$ROOT/target}"/release/deps/redis_cpu-* | grep -v '\.d$' | head -1)}
shift || true
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=("bench policy/64" "bench policy, spread keys/64" "10 ops/64")
SHORT=${SHORT:-10000}
LONG=${LONG:-40000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Prints "<client instructions> <server instructions>" for one run.
count() {
  local evals=$1 scenario=$2
  ONLY="$scenario" EVALS=$evals perf stat -x, -i -e instructions -o "$TMP/client" "$BIN" \
    > "$TMP/out" 2>&1 &
  local perf_pid=$! bench_pid="" server_pid=""
  while [[ -z $server_pid ]]; do
    sleep 0.05
    bench_pid=${bench_pid:-$(pgrep -P "$perf_pid" | head -1 || true)}
    [[ -n $bench_pid ]] && server_pid=$(pgrep -P "$bench_pid" redis-server | head -1 || true)
  done
  perf stat -x, -e instructions -p "$server_pid" -o "$TMP/server" &
  local server_perf=$!
  wait "$perf_pid"
  kill -INT "$server_perf" 2>/dev/null || true
  wait "$server_perf" 2>/dev/null || true
  local c s
  c=$(grep instructions "$TMP/client" | cut -d, -f1)
  s=$(grep instructions "$TMP/server" | cut -d, -f1)
  echo "$c $s"
}

for sc in "${SCENARIOS[@]}"; do
  read -r c1 s1 < <(count "$SHORT" "$sc")
  read -r c2 s2 < <(count "$LONG" "$sc")
  # Each run evaluates EVALS plus a warm-up pass of EVALS/10.
  awk -v c1="$c1" -v c2="$c2" -v s1="$s1" -v s2="$s2" -v a="$SHORT" -v b="$LONG" -v sc="$sc" \
    'BEGIN { n = 1.1 * (b - a); c = (c2 - c1) / n; s = (s2 - s1) / n;
             printf "%-30s client %7.0f  redis-server %7.0f  total %7.0f instructions/eval\n", sc, c, s, c + s }'
done
