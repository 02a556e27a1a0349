#!/usr/bin/env bash
# Starts wsgate in the foreground on the given config and says where to connect.
set -euo pipefail
bin=$1
config=$2
cat <<MSG

  wsgate is starting on $config
    WebSocket echo:  ws://127.0.0.1:8080/echo   (built-in echo upstream)
    Admin:           http://127.0.0.1:9901/metrics  /healthz  /ready
  Try it:  /usr/bin/python3 -m websockets ws://127.0.0.1:8080/echo
  Stop it with Ctrl-C.

MSG
exec "$bin" --config "$config"
