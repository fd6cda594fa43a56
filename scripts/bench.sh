#!/usr/bin/env bash
# Runs the shared load harness (../shared/bench, see its README) with portcullis as two
# contenders beside nginx and HAProxy in ONE run, so every ratio comes from the same minutes:
#   portcullis         no policy (TLS, fingerprints, forwarding only)
#   portcullis-policy  the example policy of config.toml, with the two rules that would reject
#                      a load generator on one address (anonymous-subnet, subnet-budget) raised
#                      to never fire -- every layer is still evaluated on every request, as the
#                      never-firing limit_req / stick-table rules of the nginx and HAProxy configs.
# Usage: scripts/bench.sh [run.sh options, e.g. -r 3 -d 10 -s h1,h2,hs,sse,burst]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${BENCH_DIR:-$ROOT/../shared/bench}
WORK=${BENCH_WORK:-/tmp/bench-work}/portcullis
mkdir -p "$WORK"

(cd "$ROOT" && cargo build --release --locked -q)
cp "$ROOT/target/release/portcullis" "$WORK/portcullis"
: > "$WORK/nopolicy.toml"
python3 - "$ROOT/config.toml" "$WORK/policy.toml" <<'PY'
import sys
text = open(sys.argv[1]).read()
for old, new in [('rate = "60/1m"', 'rate = "50000000/1m"'),
                 ('rate = ["2000/1m", "400000/1d"]', 'rate = ["50000000/1m", "4000000000/1d"]')]:
    assert old in text, f"config.toml changed: {old!r} not found; update scripts/bench.sh"
    text = text.replace(old, new)
open(sys.argv[2], "w").write(text)
PY
"$ROOT/target/release/portcullis" check "$WORK/policy.toml"

"$BENCH/setup.sh"
ARGS='--listen $LISTEN --upstream $UPSTREAM --cert $TLS_CERT --key $TLS_KEY --workers 1 --admin off'
exec "$BENCH/run.sh" "$@" \
  "portcullis=exec $WORK/portcullis run --config $WORK/nopolicy.toml $ARGS" 19450 \
  "portcullis-policy=exec $WORK/portcullis run --config $WORK/policy.toml $ARGS" 19451
