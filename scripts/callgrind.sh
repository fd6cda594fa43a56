#!/usr/bin/env bash
# Instructions per request of the release proxy under callgrind: repeatable on a shared,
# noisy machine where wall-clock numbers are not (docs/benchmarks.md, section 5).
#
#   scripts/callgrind.sh [h1|h2|burst] [N1 N2]
#
# Runs the proxy (no policy, --workers 1) in front of the harness's bench-upstream
# (../shared/bench/setup.sh builds it), sends N1 and then N2 requests with h2load from 16
# connections, and prints (Ir(N2) - Ir(N1)) / (N2 - N1): startup and the 16 handshakes cancel
# out. Needs valgrind, h2load, and a release build (cargo build --release).
# CONFIG=FILE runs the proxy with that configuration instead (e.g. the harness's policy.toml,
# which scripts/bench.sh writes to /tmp/bench-work/portcullis/).
# WHO=nginx measures the harness's nginx contender the same way instead (its conf/nginx.conf,
# one worker, master process off), for a like-for-like instruction count.
# KEEP=DIR copies the two callgrind outputs there (cg.N1, cg.N2) for callgrind_annotate.
# VG_ARGS adds callgrind options: VG_ARGS=--dump-instr=yes with KEEP= for scripts/cg-atomics.py.
# CACHE_SIM=1 also simulates the caches and branch predictors (valgrind's models, not this
# CPU's) and prints, per request, data reads and writes, cache misses, branches and mispredicts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/nginx-conf.sh
source scripts/lib/nginx-conf.sh

MODE=${1:-h1}
N1=${2:-500}
N2=${3:-2500}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}
TOOLS=${BENCH_WORK:-/tmp/bench-work}
UP_PORT=${UP_PORT:-29080}
PORT=${PORT:-29450}
WORK=$(mktemp -d)
trap 'kill "$UP" 2>/dev/null || true; rm -rf "$WORK"' EXIT

case $MODE in
  h1) H2LOAD=(--h1 -m 1); REQ_PATH=/v1/json ;;
  h2) H2LOAD=(-m 10); REQ_PATH=/v1/json ;;
  burst) H2LOAD=(--h1 -m 1); REQ_PATH='/v1/stream?n=50&delay_ms=0' ;;
  *) echo "mode: h1, h2 or burst" >&2; exit 2 ;;
esac

"$TOOLS/target/release/bench-upstream" "127.0.0.1:$UP_PORT" > "$WORK/upstream.log" 2>&1 &
UP=$!
: > "$WORK/nopolicy.toml"
CONFIG=${CONFIG:-$WORK/nopolicy.toml}

WHO=${WHO:-portcullis}
if [[ $WHO == nginx ]]; then
  write_nginx_conf
fi

SIM=()
[[ ${CACHE_SIM:-0} == 1 ]] && SIM=(--cache-sim=yes --branch-sim=yes)
read -r -a EXTRA <<< "${VG_ARGS:-}"
SIM+=("${EXTRA[@]}")

# The event totals of the proxy for $1 requests (Ir first).
instructions() {
  if [[ $WHO == nginx ]]; then
    valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$WORK/cg.$1" \
      nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" > "$WORK/proxy.log" 2>&1 &
  else
    valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$WORK/cg.$1" "$BIN" run \
      --config "$CONFIG" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UP_PORT" \
      --cert "$TOOLS/certs/server.pem" --key "$TOOLS/certs/server.key" --workers 1 --admin off \
      > "$WORK/proxy.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 100); do
    ss -ltn | grep -q ":$PORT " && break
    sleep 0.2
  done
  h2load "${H2LOAD[@]}" -n "$1" -c 16 -t 1 "https://127.0.0.1:$PORT$REQ_PATH" | grep "$1 succeeded" > /dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$WORK/cg.$1"
}

A=$(instructions "$N1")
B=$(instructions "$N2")
echo "$WHO $MODE: $(((${B%% *} - ${A%% *}) / (N2 - N1))) instructions per request ($N1: ${A%% *}, $N2: ${B%% *})"
if [[ ${CACHE_SIM:-0} == 1 ]]; then
  events=$(sed -n 's/^events: //p' "$WORK/cg.$N2")
  paste <(tr ' ' '\n' <<< "$events") <(tr ' ' '\n' <<< "$A") <(tr ' ' '\n' <<< "$B") |
    awk -v n=$((N2 - N1)) '{printf "  %-5s %8.1f per request\n", $1, ($3 - $2) / n}'
fi
if [[ -n ${KEEP:-} ]]; then
  mkdir -p "$KEEP"
  cp "$WORK/cg.$N1" "$WORK/cg.$N2" "$KEEP/"
fi
