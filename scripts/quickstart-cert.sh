#!/usr/bin/env bash
# Makes the quick start's self-signed TLS certificate (127.0.0.1 and localhost, ECDSA P-256,
# 30 days) in run/tls/ unless a valid one is there. run/ is ignored by git: keys are never
# committed. Prints the certificate's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/run/tls
cert=$dir/quickstart.pem
key=$dir/quickstart.key
if [[ -s $cert && -s $key ]] && openssl x509 -in "$cert" -noout -checkend 86400 >/dev/null 2>&1; then
  echo "$cert"
  exit 0
fi
mkdir -p "$dir"
chmod 700 "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=wsgate quick start" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$key.new" -out "$cert.new" 2>/dev/null
chmod 600 "$key.new"
mv "$key.new" "$key"
mv "$cert.new" "$cert"
echo "$cert"
