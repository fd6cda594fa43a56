#!/usr/bin/env bash
# User and system CPU per request, of the proxy and of the upstream behind it, read from
# /proc/PID/stat around one h2load run (docs/benchmarks.md, section 1). The proxy and the
# harness's bench-upstream share CPU 0, h2load runs on CPU 1, as in ../shared/bench.
#
#   [WHO=portcullis|nginx] [PERF=FILE] scripts/cpu-split.sh [h1|h2] [N]
#
# CONFIG=FILE runs portcullis with that configuration instead of an empty one (no policy).
# PERF=FILE also samples the proxy with `perf record -e cpu-clock` (a software clock: works
# without hardware counters) into FILE, for `perf report -i FILE`; the CPU numbers of that
# run include perf's own overhead.
#
# Needs ../shared/bench/setup.sh (bench-upstream, certificates, nginx, h2load) and, for
# portcullis, a release build. Clock ticks are 10 ms: use N of 100000 or more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/nginx-conf.sh
source scripts/lib/nginx-conf.sh

WHO=${WHO:-portcullis}
MODE=${1:-h2}
N=${2:-200000}
TOOLS=${BENCH_WORK:-/tmp/bench-work}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}
PORT=${PORT:-29461}
UP_PORT=${UP_PORT:-29091}
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

taskset -c 0 "$TOOLS/target/release/bench-upstream" "127.0.0.1:$UP_PORT" > /dev/null 2>&1 &
UP=$!
PIDS+=("$UP")
if [[ $WHO == nginx ]]; then
  write_nginx_conf
  taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" > /dev/null 2>&1 &
else
  : > "$WORK/nopolicy.toml"
  taskset -c 0 "$BIN" run --config "${CONFIG:-$WORK/nopolicy.toml}" --listen "127.0.0.1:$PORT" \
    --upstream "127.0.0.1:$UP_PORT" --cert "$TOOLS/certs/server.pem" \
    --key "$TOOLS/certs/server.key" --workers 1 --admin off > /dev/null 2>&1 &
fi
PROXY=$!
PIDS+=("$PROXY")
for _ in $(seq 100); do
  ss -ltn | grep -q ":$PORT " && break
  sleep 0.1
done
case $MODE in
  h1) LOAD=(--h1 -m 1 -c 64) ;;
  h2) LOAD=(-m 10 -c 16) ;;
  *) echo "mode: h1 or h2" >&2; exit 2 ;;
esac
url="https://127.0.0.1:$PORT/v1/json"
taskset -c 1 h2load "${LOAD[@]}" -n 20000 -t 1 "$url" > /dev/null # warm-up
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# Read- and write-like system calls (/proc/PID/io), and voluntary and forced context switches
# of the process's main thread (both proxies serve from it with one worker).
calls() {
  awk '/^sysc[rw]:/ {printf "%s ", $2}' "/proc/$1/io"
  awk '/ctxt_switches/ {printf "%s ", $2} END {print ""}' "/proc/$1/status"
}
read -r pu1 ps1 < <(ticks "$PROXY")
read -r uu1 us1 < <(ticks "$UP")
read -r pr1 pw1 pv1 pn1 < <(calls "$PROXY")
if [[ -n ${PERF:-} ]]; then
  perf record -q -e cpu-clock -F 9999 ${PERF_ARGS:-} -p "$PROXY" -o "$PERF" 2> /dev/null &
  PERF_PID=$!
  sleep 0.5
fi
taskset -c 1 h2load "${LOAD[@]}" -n "$N" -t 1 "$url" | grep -E "^finished"
if [[ -n ${PERF:-} ]]; then
  kill -INT "$PERF_PID"
  wait "$PERF_PID" || true
fi
read -r pu2 ps2 < <(ticks "$PROXY")
read -r uu2 us2 < <(ticks "$UP")
read -r pr2 pw2 pv2 pn2 < <(calls "$PROXY")
hz=$(getconf CLK_TCK)
awk -v pu=$((pu2 - pu1)) -v ps=$((ps2 - ps1)) -v uu=$((uu2 - uu1)) -v us=$((us2 - us1)) \
  -v n="$N" -v hz="$hz" -v who="$WHO" -v mode="$MODE" \
  -v pr=$((pr2 - pr1)) -v pw=$((pw2 - pw1)) -v pv=$((pv2 - pv1)) -v pn=$((pn2 - pn1)) 'BEGIN {
    f = 1e6 / hz / n
    printf "%s %s, us per request: proxy user %.2f sys %.2f; upstream user %.2f sys %.2f\n",
      who, mode, pu * f, ps * f, uu * f, us * f
    printf "  proxy per request: %.2f reads, %.2f writes, %.3f voluntary and %.3f forced switches\n",
      pr / n, pw / n, pv / n, pn / n
  }'
