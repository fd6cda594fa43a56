#!/usr/bin/env bash
# Generates a sample evidence log, builds the HTML report from it with `portcullis investigate
# --html`, and screenshots the report with headless Chromium (Debian's `chromium` package),
# writing docs/report.png. Proves that the charts render offline in a real browser.
#
#   scripts/screenshot-report.sh [OUT.png]      (default: docs/report.png)
#
# The sample comes from the generator in src/investigate/sample.rs, run through an ignored test
# (`portcullis investigate` reads evidence; it never makes it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-docs/report.png}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! command -v chromium >/dev/null; then
  echo "screenshot-report.sh: installing chromium"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi

echo "== sample evidence"
PORTCULLIS_SAMPLE_OUT="$work/evidence.jsonl" PORTCULLIS_SAMPLE_RECORDS="${SAMPLE_RECORDS:-20000}" \
  cargo test --quiet --test investigate write_sample -- --ignored --nocapture

echo "== report"
if cargo run --quiet -- investigate --help >/dev/null 2>&1; then
  cargo run --quiet -- investigate "$work/evidence.jsonl" --html "$work/report.html" --top 10 \
    >"$work/report.txt"
else
  # Before the subcommand is wired into main.rs: the same library entry point via a test.
  PORTCULLIS_REPORT_IN="$work/evidence.jsonl" PORTCULLIS_REPORT_HTML="$work/report.html" \
    cargo test --quiet --test investigate write_report -- --ignored --nocapture >"$work/report.txt"
fi
head -n 5 "$work/report.txt"

echo "== screenshot"
# As root Chromium needs --no-sandbox; every background fetch is off (this machine is offline).
profile="$(mktemp -d)"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$work/report.png" --window-size=1400,2200 "file://$work/report.html" \
  >"$work/chromium.log" 2>&1 || { cat "$work/chromium.log"; exit 1; }
rm -rf "$profile"
mkdir -p "$(dirname "$out")"
cp "$work/report.png" "$out"
echo "wrote $out"
