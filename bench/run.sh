#!/usr/bin/env bash
# Side-by-side benchmark: wsgate, nginx, HAProxy (mode http) and HAProxy (mode tcp, the raw
# relay reference), each with one worker, in front of the same echo backend, in one run.
# Loopback only; every scenario is bounded in time. BENCH_QUICK=1 for a ~1 s smoke run.
# Usage (from the repository root): BUILD_DIR=build bench/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"
duration=5
[[ ${BENCH_QUICK:-0} = 1 ]] && duration=1
idle_conns=${BENCH_IDLE_CONNECTIONS:-5000}
[[ ${BENCH_QUICK:-0} = 1 ]] && idle_conns=500

cmake --build "$build" --target wsgate wsgate-loadgen wsgate-bench-echo >/dev/null
loadgen="$build/bench/wsgate-loadgen"
command -v nginx >/dev/null && command -v haproxy >/dev/null \
  || "$root/scripts/install-deps.sh" bench
ulimit -n "$(ulimit -Hn)"  # 5,000 idle clients need ~10,000 descriptors per proxy

tmp=$(mktemp -d /tmp/wsgate-bench.XXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on port $1; logs:" >&2
  tail -n 5 "$tmp"/*.log "$tmp"/nginx/error.log >&2 2>/dev/null || true
  return 1
}
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- the echo backend -------------------------------------------------------------------------
backend_port=$(free_port)
"$build/bench/wsgate-bench-echo" --port "$backend_port" >"$tmp/echo.log" 2>&1 &
pids+=($!)
wait_port "$backend_port"

# --- the proxies --------------------------------------------------------------------------------
declare -A port pid
port[wsgate]=$(free_port)
cat >"$tmp/wsgate.yaml" <<YAML
workers: 1
admin: { address: 127.0.0.1:0 }
listeners:
  - name: bench
    address: 127.0.0.1:${port[wsgate]}
    routes:
      - name: echo
        match: { path_prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: ["127.0.0.1:$backend_port"]
YAML
"$build/wsgate" --config "$tmp/wsgate.yaml" --log-level warn 2>"$tmp/wsgate.log" &
pid[wsgate]=$!
pids+=($!)

port[nginx]=$(free_port)
mkdir -p "$tmp/nginx/logs"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 15000; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:${port[nginx]};
    location / {
      proxy_pass http://127.0.0.1:$backend_port;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
CONF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
nginx_master=$!
pids+=($nginx_master)

haproxy_conf() {  # mode, port
  cat <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode $1
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend in
  bind 127.0.0.1:$2
  default_backend out
backend out
  server echo 127.0.0.1:$backend_port
CONF
}
for mode in http tcp; do
  port[haproxy-$mode]=$(free_port)
  haproxy_conf "$mode" "${port[haproxy-$mode]}" >"$tmp/haproxy-$mode.cfg"
  haproxy -db -f "$tmp/haproxy-$mode.cfg" >"$tmp/haproxy-$mode.log" 2>&1 &
  pid[haproxy-$mode]=$!
  pids+=($!)
done

for p in wsgate nginx haproxy-http haproxy-tcp; do wait_port "${port[$p]}"; done
pid[nginx]=$(pgrep -P "$nginx_master" | head -1)  # the worker does the relaying

# --- scenarios ----------------------------------------------------------------------------------
results="$tmp/results.jsonl"
record() {  # proxy scenario cpu_us json
  echo "{\"proxy\":\"$1\",\"scenario\":\"$2\",\"cpu_us\":$3,\"result\":$4}" >>"$results"
}
measure() {  # proxy scenario loadgen-args...
  local proxy=$1 scenario=$2; shift 2
  local before after out
  before=$(cpu_ticks "${pid[$proxy]}")
  if ! out=$(timeout $((duration + 30)) "$loadgen" "$@" --port "${port[$proxy]}" | tail -1); then
    echo "bench: $proxy $scenario failed" >&2
    out='{"error":"failed"}'
  fi
  after=$(cpu_ticks "${pid[$proxy]}")
  record "$proxy" "$scenario" $(( (after - before) * 1000000 / tck )) "$out"
  echo "  $proxy $scenario: $out" >&2
}
hold() {  # proxy
  local proxy=$1 before after held
  before=$(rss_kib "${pid[$proxy]}")
  "$loadgen" hold -c "$idle_conns" --concurrency 50 --hold 60 --port "${port[$proxy]}" \
    >"$tmp/hold.out" 2>&1 &
  local lg=$!
  for _ in $(seq 600); do grep -q '^held' "$tmp/hold.out" && break; sleep 0.1; done
  sleep 1
  after=$(rss_kib "${pid[$proxy]}")
  held=$(awk '/^held/ {print $2}' "$tmp/hold.out")
  kill "$lg" 2>/dev/null; wait "$lg" 2>/dev/null || true
  sleep 2
  record "$proxy" idle 0 "{\"held\":${held:-0},\"rss_before_kib\":$before,\"rss_after_kib\":$after}"
  echo "  $proxy idle: held ${held:-0}, RSS $before -> $after KiB" >&2
}

for proxy in wsgate nginx haproxy-http haproxy-tcp; do
  echo "bench: $proxy" >&2
  measure "$proxy" echo-64 echo -c 50 -k 8 -s 64 -d "$duration"
  measure "$proxy" echo-4k echo -c 50 -k 8 -s 4096 -d "$duration"
  measure "$proxy" echo-64k echo -c 50 -k 2 -s 65536 -d "$duration"
  measure "$proxy" rate rate -c 50 -r 5000 -s 64 -d "$duration"
  measure "$proxy" handshakes handshakes --concurrency 16 -d "$duration"
  hold "$proxy"
done

mkdir -p "$root/bench/results"
/usr/bin/python3 "$root/bench/report.py" "$results" "$duration" "$idle_conns" \
  | tee "$root/bench/results/latest.md"
cp "$results" "$root/bench/results/latest.jsonl"
