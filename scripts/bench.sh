#!/usr/bin/env bash
# Runs the shared load harness (../shared/bench, see its README) with portcullis as two
# contenders beside nginx and HAProxy in ONE run, so every ratio comes from the same minutes:
#   portcullis         no policy (TLS, fingerprints, forwarding only)
#   portcullis-policy  the example policy of config.toml, with the three rules that would fire
#                      on a load generator on one address (anonymous-subnet, subnet-budget reject;
#                      ja4-budget flags, writing evidence for every request) raised to never
#                      fire -- every layer is still evaluated on every request, as the
#                      never-firing limit_req / stick-table rules of the nginx and HAProxy configs.
#   portcullis-redis   (only with BENCH_REDIS=1) the same policy on Redis counters: a
#                      redis-server started inside the contender's command, so it shares the
#                      proxy's CPU and its CPU time is charged to this contender.
#   portcullis-bare    (only with BENCH_BARE=1) no policy and no fingerprint headers for the
#                      upstream (every [headers] name ""): what the eight headers cost the
#                      upstream, which shares CPU 0 with the proxy (docs/benchmarks.md).
# Usage: [BENCH_REDIS=1] [BENCH_BARE=1] scripts/bench.sh [run.sh options, e.g. -r 3 -d 10 -s h1,h2]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${BENCH_DIR:-$ROOT/../shared/bench}
WORK=${BENCH_WORK:-/tmp/bench-work}/portcullis
mkdir -p "$WORK"

(cd "$ROOT" && cargo build --release --locked -q)
cp "$ROOT/target/release/portcullis" "$WORK/portcullis"
: > "$WORK/nopolicy.toml"
printf '[headers]\n%s\n' "$(printf '%s = ""\n' ja3 ja3_hash ja4 ja4_r header_fp h2 tcp_rtt tls_rtt)" \
  > "$WORK/bare.toml"
python3 - "$ROOT/config.toml" "$WORK/policy.toml" <<'PY'
import sys
text = open(sys.argv[1]).read()
for old, new in [('rate = "60/1m"', 'rate = "50000000/1m"'),
                 ('rate = "100000/1d"', 'rate = "4000000000/1d"'),
                 ('rate = ["2000/1m", "400000/1d"]', 'rate = ["50000000/1m", "4000000000/1d"]')]:
    assert old in text, f"config.toml changed: {old!r} not found; update scripts/bench.sh"
    text = text.replace(old, new)
open(sys.argv[2], "w").write(text)
# The same policy on Redis. Timeout 1 s (the maximum): under saturation Redis shares one CPU
# with the proxy, and a call that timed out would fail open and flatter the numbers.
redis = text.replace('kind = "local"', 'kind = "redis"', 1)
redis = redis.replace('url = "redis://127.0.0.1:6379/0"', 'url = "redis://127.0.0.1:19461/0"', 1)
redis = redis.replace('timeout = "20ms"', 'timeout = "1s"', 1)
assert 'kind = "local"' not in redis and "19461" in redis, "config.toml [store] changed; update scripts/bench.sh"
open(sys.argv[2].replace("policy.toml", "redis.toml"), "w").write(redis)
PY
"$ROOT/target/release/portcullis" check "$WORK/policy.toml"

"$BENCH/setup.sh"
ARGS='--listen $LISTEN --upstream $UPSTREAM --cert $TLS_CERT --key $TLS_KEY --workers 1 --admin off'
EXTRA=()
if [[ ${BENCH_REDIS:-0} == 1 ]]; then
  command -v redis-server >/dev/null || { echo "bench.sh: redis-server not installed"; exit 1; }
  REDIS="redis-server --port 19461 --save '' --appendonly no --dir $WORK --logfile $WORK/redis.log"
  EXTRA=("portcullis-redis=$REDIS & sleep 0.5; exec $WORK/portcullis run --config $WORK/redis.toml $ARGS" 19452)
fi
if [[ ${BENCH_BARE:-0} == 1 ]]; then
  "$ROOT/target/release/portcullis" check "$WORK/bare.toml"
  EXTRA+=("portcullis-bare=exec $WORK/portcullis run --config $WORK/bare.toml $ARGS" 19453)
fi
exec "$BENCH/run.sh" "$@" \
  "portcullis=exec $WORK/portcullis run --config $WORK/nopolicy.toml $ARGS" 19450 \
  "portcullis-policy=exec $WORK/portcullis run --config $WORK/policy.toml $ARGS" 19451 \
  "${EXTRA[@]}"
