#!/usr/bin/env bash
# Regenerates the bundled development certificate (CN=localhost; SAN localhost, 127.0.0.1, ::1;
# ECDSA P-256, 10 years). Development only: the key is public in this repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout dev-key.pem -out dev-cert.pem
