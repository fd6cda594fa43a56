#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs every check and test.
# This is the one test command (README.md); .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null && need+=(python3-venv)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v cargo >/dev/null || { echo "test.sh: cargo not found; install Rust (rustup)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

echo "== SDK venv (tests/sdk_claims.rs)"
scripts/sdk-venv.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
echo "== cargo test --features ja4h (JA4H, FoxIO License, off by default)"
cargo test --locked --features ja4h --lib --test ja4h ja4h
echo "== cargo test --doc"
cargo test --locked --doc
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -q
