#!/usr/bin/env bash
# Starts wsgate in the foreground on the given config and says where to connect. The quick
# start's TLS listener needs its self-signed certificate: made here when missing.
set -euo pipefail
bin=$1
config=$2
root=$(cd "$(dirname "$0")/.." && pwd)
cert=$("$root/scripts/quickstart-cert.sh")
spki=$(openssl x509 -in "$cert" -pubkey -noout | openssl pkey -pubin -outform der |
       openssl dgst -sha256 -binary | base64)
cat <<MSG

  wsgate is starting on $config
    WebSocket echo:  ws://127.0.0.1:8080/echo    (built-in echo upstream)
    Over TLS:        wss://127.0.0.1:8443/echo   (self-signed: $cert)
    Admin:           http://127.0.0.1:9901/metrics  /healthz  /ready
  Try it:
    /usr/bin/python3 -m websockets ws://127.0.0.1:8080/echo
    SSL_CERT_FILE=$cert /usr/bin/python3 -m websockets wss://127.0.0.1:8443/echo
  To trust the certificate elsewhere: curl --cacert $cert ...; Chromium:
    --ignore-certificate-errors-spki-list=$spki
  (that one certificate only), or add $cert to the system's trust store.
  Stop it with Ctrl-C.

MSG
exec "$bin" --config "$config"
