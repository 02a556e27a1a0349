#!/usr/bin/env bash
# Runs the profile-instrumented gateway of BUILD_DIR (scripts/build.sh) under the bench's
# load on loopback: polite and abrupt handshakes, echoes of 64 B, 4 KiB and 64 KiB, echoes
# through the bench's filters and idle sessions they ping, in front of the bench's echo backend.
# The profile is written when the gateway stops. Every step is bounded in time; only the
# processes started here are stopped, by PID.
# Usage: scripts/pgo-train.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: scripts/pgo-train.sh BUILD_DIR}
tmp=$(mktemp -d /tmp/wsgate-pgo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "pgo-train: $*" >&2
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port nothing listens on, from a range the kernel does not hand out as ephemeral ports.
quiet_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 10000))
    port_open "$p" || { echo "$p"; return 0; }
  done
  return 1
}

"$build/bench/wsgate-bench-echo" -p 0 >"$tmp/echo.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^listening on' "$tmp/echo.out" 2>/dev/null && break
  sleep 0.1
done
echo_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$tmp/echo.out")
[[ -n $echo_port ]] || fail "the echo backend did not start: $(cat "$tmp/echo.out")"
port_open "$echo_port" ||
  fail "cannot connect to 127.0.0.1:$echo_port, where the echo backend listens (no loopback?)"

port=$(quiet_port) || fail "no free port in 20000-29999"
cat >"$tmp/pgo.yaml" <<YAML
workers: 1
listeners:
  - name: train
    address: 127.0.0.1:$port
    routes:
      - name: filtered
        match: { path_prefix: /filtered }
        cluster: backend
        filters:
          - rate_limit:
              client_to_upstream: { messages: 10000000/s, bytes: 10GiB/s, action: throttle }
              upstream_to_client: { messages: 10000000/s, bytes: 10GiB/s, action: close }
          - keepalive: { interval: 1s, timeout: 1s }
          - max_duration: { max: 1h, jitter: 10% }
          - message_size: { max_message_bytes: 1MiB }
          - utf8: {}
      - name: echo
        match: { path_prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: ["127.0.0.1:$echo_port"]
YAML
"$build/wsgate" --config "$tmp/pgo.yaml" --log-level warn >"$tmp/wsgate.log" 2>&1 &
gateway=$!
pids+=("$gateway")
for _ in $(seq 100); do
  port_open "$port" && break
  kill -0 "$gateway" 2>/dev/null || fail "the gateway did not start: $(cat "$tmp/wsgate.log")"
  sleep 0.1
done
port_open "$port" || fail "the gateway is not listening on $port after 10 s"

load() {  # loadgen arguments
  timeout -k 2 30 "$build/bench/wsgate-loadgen" "$@" --port "$port" --warmup 0.2 \
    >"$tmp/load.out" 2>&1 || fail "wsgate-loadgen $*: $(tail -n 2 "$tmp/load.out")"
}
load handshakes --concurrency 16 -d 3
load handshakes --concurrency 16 -d 4 --abrupt-close
load echo -c 50 -k 8 -s 64 -d 2
load echo -c 50 -k 8 -s 4096 -d 1
load echo -c 50 -k 8 -s 65536 -d 1
# The filters of the bench's filtered instances, on text messages, then idle sessions pinged.
load echo -c 50 -k 8 -s 64 -d 1 --text --path /filtered
load echo -c 50 -k 8 -s 4096 -d 1 --text --path /filtered
load hold -c 500 --concurrency 50 --hold 3 --path /filtered

kill -TERM "$gateway"
for _ in $(seq 300); do
  kill -0 "$gateway" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$gateway" 2>/dev/null && fail "the gateway did not stop within 30 s of SIGTERM"
wait "$gateway" || fail "the gateway exited with status $?: $(tail -n 3 "$tmp/wsgate.log")"
echo "pgo-train: trained on 127.0.0.1:$port"
