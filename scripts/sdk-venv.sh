#!/usr/bin/env bash
# Creates target/sdk-venv with the official Anthropic Python SDK pinned in
# tests/clients/requirements.txt (tests/sdk_claims.rs runs it). Idempotent: does nothing when
# the venv already holds exactly those versions. Needs python3 with venv, and PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=target/sdk-venv
req=tests/clients/requirements.txt
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$stamp" 2>/dev/null; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$req"
cp "$req" "$stamp"
echo "sdk-venv: $("$venv/bin/python" -c 'import anthropic; print("anthropic", anthropic.__version__)') in $venv"
