#!/usr/bin/env bash
# Capture the first decrypted request bytes of real HTTP clients into tests/fixtures/http/
# (see the README there). Usage, from anywhere: scripts/capture-http.sh [OUTDIR]
#
# Every client is pointed at https://localhost:PORT/ where scripts/capture-http.py completes the
# TLS handshake (ALPN h2, http/1.1), reads the client's bytes up to the end of its first request
# head, saves them and hangs up; the client's error is expected and ignored. Each client runs
# twice, as two separate processes, so the tests can check that a fingerprint is stable across
# connections. Clients that are not installed are skipped (chromium: `apt-get install -y
# chromium`; httpx: `pip install 'httpx[http2]'`). The hyper (Rust) capture comes from the
# ignored generator test in tests/http_fingerprints.rs. Existing files are kept: delete one, or
# set FORCE=1, to capture again (the tests pin the fingerprints of the files on disk).
# Afterwards check a new capture by hand (scripts/capture-http.py --decode OUTDIR/<name>.bin) and
# update OUTDIR/expected.json: the Akamai string from the decode, the header raw form from the
# decoded header list, its id from `printf '<raw>' | sha256sum` (see the README there).
set -u
cd "$(dirname "$0")/.."
OUT=${1:-tests/fixtures/http}
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# cap NAME COMMAND [ALPN]: run COMMAND (a string that uses $PORT) against a one-shot capture
# listener that offers ALPN (default h2,http/1.1; `http/1.1` makes browsers speak HTTP/1.1).
cap() {
    local name=$1 cmd=$2 alpn=${3:-h2,http/1.1} ready="$TMP/$1.port" pid
    if [ -e "$OUT/$name.bin" ] && [ -z "${FORCE:-}" ]; then echo "== $name: kept"; return; fi
    python3 scripts/capture-http.py 0 "$OUT/$name.bin" --ready "$ready" --timeout 60 --alpn "$alpn" &
    pid=$!
    while [ ! -s "$ready" ]; do sleep 0.1; done
    PORT=$(cat "$ready")
    echo "== $name: ${cmd//\$PORT/$PORT}"
    eval "$cmd" >"$TMP/$name.log" 2>&1 || true   # the failed request is expected
    wait "$pid" || echo "!! $name: nothing captured (see $TMP/$name.log)"
}

# httpx speaks HTTP/2 only with http2=True (argv[2] == "h2"), else HTTP/1.1.
HTTPX='import sys, httpx
try:
    with httpx.Client(http2=sys.argv[2] == "h2", verify=False, timeout=10) as c:
        c.get("https://localhost:%s/" % sys.argv[1])
except httpx.HTTPError:
    pass'

for n in 1 2; do
    cap curl-h2-$n 'curl -sk --max-time 10 --http2 https://localhost:$PORT/'
    cap curl-h1-$n 'curl -sk --max-time 10 --http1.1 https://localhost:$PORT/'
    if python3 -c 'import httpx, h2' 2>/dev/null; then
        cap httpx-h2-$n 'python3 -c "$HTTPX" $PORT h2'
        cap httpx-h1-$n 'python3 -c "$HTTPX" $PORT h1'
    fi
    if command -v nghttp >/dev/null; then
        cap nghttp-$n 'timeout 10 nghttp https://localhost:$PORT/'
    fi
    if command -v chromium >/dev/null; then
        CHROMIUM='timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu \
            --disable-quic --no-first-run --disable-background-networking \
            --disable-component-update --disable-sync --ignore-certificate-errors \
            --user-data-dir="$(mktemp -d -p "$TMP")" --dump-dom https://localhost:$PORT/'
        cap chromium-h2-$n "$CHROMIUM"
        cap chromium-h1-$n "$CHROMIUM" http/1.1
    fi
done
if [ -e "$OUT/hyper-h2-1.bin" ] && [ -z "${FORCE:-}" ]; then echo "== hyper-h2: kept"; else
    echo "== hyper-h2 (generator test)"
    HTTP_FIXTURE_OUT="$(cd "$OUT" && pwd)" \
        cargo test -q --test http_fingerprints -- --ignored --exact generate_hyper_fixtures \
        >/dev/null || echo "!! hyper-h2: generator failed"
fi

echo "== versions"
curl --version | head -1
python3 -c 'import sys, httpx, h2; print("Python", sys.version.split()[0], "httpx", httpx.__version__, "h2", h2.__version__)' 2>/dev/null
command -v nghttp >/dev/null && nghttp --version
command -v chromium >/dev/null && chromium --version 2>/dev/null
grep -A1 -E '^name = "(hyper|h2|rustls)"$' Cargo.lock | grep -v '^--' | paste - - | tr -s ' \t' ' '
date -u +%Y-%m-%d
