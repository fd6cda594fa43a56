#!/usr/bin/env bash
# Capture real ClientHellos into tests/fixtures/captured/<client>.bin (see its README.md).
#
# Usage: scripts/capture-fixtures.sh [OUTDIR]      (from the repository root)
#
# Each client is pointed at https://localhost:PORT/ where scripts/capture-hello.py takes one
# connection, saves the hello and hangs up; the client's handshake failure is expected and
# ignored. Clients that are not installed are skipped (chromium: `apt-get install -y chromium`).
# The rustls hello comes from the ignored generator test in tests/captured_clients.rs.
# Existing fixtures are kept (tests pin byte offsets in some): delete a .bin, or set FORCE=1,
# to capture it again.
# Afterwards: python3 scripts/ja4_ref.py --expected OUTDIR > OUTDIR/expected.json
set -u
cd "$(dirname "$0")/.."
OUT=${1:-tests/fixtures/captured}
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# cap NAME COMMAND: run COMMAND (a string that uses $PORT) against a one-shot capture listener.
cap() {
    local name=$1 cmd=$2 ready="$TMP/$1.port" pid
    if [ -e "$OUT/$name.bin" ] && [ -z "${FORCE:-}" ]; then echo "== $name: kept"; return; fi
    python3 scripts/capture-hello.py 0 "$OUT/$name.bin" --ready "$ready" --timeout 60 &
    pid=$!
    while [ ! -s "$ready" ]; do sleep 0.1; done
    PORT=$(cat "$ready")
    echo "== $name: ${cmd//\$PORT/$PORT}"
    eval "$cmd" >"$TMP/$name.log" 2>&1 || true   # the failed handshake is expected
    wait "$pid" || echo "!! $name: no hello captured (see $TMP/$name.log)"
}

# s_client sends no SNI for a host name without a dot (such as localhost): JA4 part a has 'i'.
# Python's ssl module with its default context (OpenSSL underneath), with and without ALPN.
PYCLIENT='import socket, ssl, sys
ctx = ssl.create_default_context()
if len(sys.argv) > 2: ctx.set_alpn_protocols(["h2", "http/1.1"])
try: ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
except (ssl.SSLError, OSError): pass'

# curl built with nghttp2 offers h2,http/1.1 by default; --http1.1 offers only http/1.1.
cap curl-default     'curl -sk --max-time 10 https://localhost:$PORT/'
cap curl-http1.1     'curl -sk --max-time 10 --http1.1 https://localhost:$PORT/'
cap curl-http2       'curl -sk --max-time 10 --http2 https://localhost:$PORT/'
cap openssl          'openssl s_client -connect localhost:$PORT </dev/null'
cap openssl-alpn     'openssl s_client -connect localhost:$PORT -alpn h2,http/1.1 </dev/null'
cap python-ssl       'python3 -c "$PYCLIENT" $PORT'
cap python-ssl-alpn  'python3 -c "$PYCLIENT" $PORT alpn'
if command -v wget >/dev/null; then
    cap wget 'wget -q -O /dev/null --tries=1 --timeout=10 --no-check-certificate https://localhost:$PORT/'
fi
if command -v chromium >/dev/null; then
    # Two separate browser runs: Chromium shuffles its extension order per connection.
    for n in 1 2; do
        cap chromium-$n 'timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu \
            --disable-quic --no-first-run --disable-background-networking \
            --disable-component-update --disable-sync --user-data-dir="$(mktemp -d -p "$TMP")" \
            --dump-dom https://localhost:$PORT/'
    done
fi
if [ -e "$OUT/rustls.bin" ] && [ -z "${FORCE:-}" ]; then echo "== rustls: kept"; else
echo "== rustls (generator test)"
RUSTLS_HELLO_OUT="$(cd "$OUT" && pwd)/rustls.bin" \
    cargo test -q --test captured_clients -- --ignored --exact generate_rustls_fixture >/dev/null \
    || echo "!! rustls: generator failed"
fi

echo "== versions"
curl --version | head -1
openssl version
python3 -c 'import ssl, sys; print("Python", sys.version.split()[0], ssl.OPENSSL_VERSION)'
command -v wget >/dev/null && wget --version | head -1
command -v chromium >/dev/null && chromium --version 2>/dev/null
grep -A1 '^name = "rustls"$' Cargo.lock | tr '\n' ' '; echo
date -u +%Y-%m-%d
