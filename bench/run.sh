#!/usr/bin/env bash
# Side-by-side benchmark of wsgate, nginx, HAProxy mode http and HAProxy mode tcp (the raw relay
# reference): each with one worker, each on its own loopback port, all in front of the same echo
# backend, the same scenarios against each in one run; and the wss scenarios, each proxy
# terminating TLS (a second instance of it with a TLS listener added). See docs/benchmarks.md.
#
# Usage (from the repository root): make bench, or BUILD_DIR=build bench/run.sh
#   BENCH_QUICK=1              ~1 s per scenario and 1,000 idle connections: a smoke run
#   BENCH_DURATION=S           seconds each proxy is measured per scenario and round, in two
#                              mirrored windows of half that (default 5, quick 1)
#   BENCH_IDLE_CONNECTIONS=N   idle connections held per proxy (default 5000, quick 1000)
#   BENCH_PROXIES="wsgate nginx haproxy-http haproxy-tcp"   which proxies, in this order; add
#                              wsgate-twin (a second wsgate of the same binary) to see how far
#                              the machine's noise alone moves a ratio
#   BENCH_TWIN_BIN=PATH        run wsgate-twin from another build (an older checkout): the twin
#                              pairs then compare two builds under the same load at the same time
#   BENCH_PIN=0                do not pin the proxies to CPU 0 and the load to CPU 1
#   BENCH_ROUNDS=N             repeat the load scenarios N times, report medians (default 1)
#   BENCH_PAIRED=0             skip the paired runs (wsgate and its reference loaded at once)
#   BENCH_TLS=auto|1|0         the wss scenarios: each proxy also runs as a second instance with a
#                              TLS listener added (ECDSA P-256 certificate made for the run),
#                              measured with full TLS handshakes. auto (default): on, unless
#                              wsgate is benchmarked and its --check rejects the TLS listener;
#                              1: on (a wsgate that cannot serve TLS is "not measured"); 0: off
#   BENCH_TIMEOUT=S            wall-clock bound of the whole run (default 600 + 300 per round,
#                              and 200 + 150 per round more with the wss scenarios)
#   WSGATE_BIN=PATH            the wsgate binary (default $BUILD_DIR/wsgate)
#
# Loopback only. Every load run is bounded in count and time, every wait has a deadline, and
# only the processes this script started are stopped, by PID. A proxy that fails to start or
# dies is reported in the table; the run goes on with the others.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-build}
[[ $build = /* ]] || build="$root/$build"
quick=${BENCH_QUICK:-0}
if [[ $quick = 1 ]]; then
  duration=${BENCH_DURATION:-1} warmup=0.3 idle_conns=${BENCH_IDLE_CONNECTIONS:-1000}
else
  duration=${BENCH_DURATION:-5} warmup=1 idle_conns=${BENCH_IDLE_CONNECTIONS:-5000}
fi
half=$(awk -v d="$duration" 'BEGIN {print d / 2}')  # each of a scenario's two windows
read -r -a proxies <<<"${BENCH_PROXIES:-wsgate nginx haproxy-http haproxy-tcp}"
rounds=${BENCH_ROUNDS:-1}
paired=${BENCH_PAIRED:-1}
tls_mode=${BENCH_TLS:-auto}
tls_instances=() tls_note=off  # the TLS instances that run; the wss scenarios' state, for the report
# The filter instances: wsgate with the filters of issue 19 on its route (far above the load),
# with utf8 alone, and with keepalive alone (1 s), each a process of its own.
filter_instances=()
if [[ ${BENCH_FILTERS:-1} = 1 && " ${proxies[*]} " = *" wsgate "* ]]; then
  filter_instances=(wsgate-filters wsgate-utf8 wsgate-keepalive)
fi
keepalive_window=${BENCH_KEEPALIVE_WINDOW:-10}  # seconds of keepalive on idle sessions, measured
case $tls_mode in
  0 | 1 | auto) ;;
  *) echo "bench: BENCH_TLS must be auto, 1 or 0 (not '$tls_mode')" >&2; exit 2 ;;
esac
tls_time=0
[[ $tls_mode != 0 ]] && tls_time=$((200 + 150 * rounds))
run_limit=${BENCH_TIMEOUT:-$((600 + 300 * rounds + tls_time))}
results_dir="$root/bench/results"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# --- tools --------------------------------------------------------------------------------------
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null \
    || die "cannot configure $build"
fi
cmake --build "$build" --target wsgate-loadgen wsgate-bench-echo >/dev/null \
  || die "cannot build wsgate-loadgen and wsgate-bench-echo in $build"
loadgen="$build/bench/wsgate-loadgen"
wsgate_bin=${WSGATE_BIN:-$build/wsgate}
echo_bin="$build/bench/wsgate-bench-echo"

missing=()
tools=(nginx haproxy python3)
[[ $tls_mode != 0 ]] && tools+=(openssl)  # the wss scenarios' certificate
for tool in "${tools[@]}"; do
  [[ -x /usr/sbin/$tool || -x /usr/bin/$tool ]] || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]} from Debian"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  # policy-rc.d 101: the packages' install scripts must not start system services.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]/python3/python3-minimal}" >/dev/null
  rc=$?
  [[ $own_policy -eq 1 ]] && "${sudo[@]}" rm -f "$policy"
  [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed"
fi
nginx_bin=$(PATH=/usr/sbin:/usr/bin:$PATH command -v nginx)
openssl_bin=$(PATH=/usr/sbin:/usr/bin:$PATH command -v openssl)
haproxy_bin=$(PATH=/usr/sbin:/usr/bin:$PATH command -v haproxy)
python=$(PATH=/usr/bin:$PATH command -v python3)

# 5,000 idle clients cost the load generator 5,000 descriptors and a proxy 10,000.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 2 * idle_conns + 200)); then
  idle_conns=$((($(ulimit -n) - 200) / 2))
  log "descriptor limit $(ulimit -n): holding $idle_conns idle connections instead"
fi

# One core for the proxy under test, the other for the load generator and the echo backend.
pin_proxy=() pin_load=()
if [[ ${BENCH_PIN:-1} = 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  pin_proxy=(taskset -c 0) pin_load=(taskset -c 1)
fi

# --- processes and cleanup ------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/wsgate-bench.XXXXXX)
started=()  # every PID this script started, stopped by PID at exit
watchdog=
cleanup() {
  trap - EXIT INT TERM
  [[ -n $watchdog ]] && kill "$watchdog" 2>/dev/null
  for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 20); do
    alive=0
    for p in "${started[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [[ -d $tmp ]]; then
    rm -rf "$results_dir/logs"
    mkdir -p "$results_dir/logs"
    cp "$tmp"/*.log "$tmp"/*.yaml "$tmp"/*.cfg "$tmp"/*.conf "$results_dir/logs/" 2>/dev/null
    rm -rf "$tmp"
  fi
}

# --- report -------------------------------------------------------------------------------------
# Also called when the run is stopped early: the table then shows what was measured so far.
write_report() {
  [[ -s ${results:-} ]] || return 0
  mkdir -p "$results_dir"
  meta_args=(rounds:="$rounds" date="$(date -u '+%Y-%m-%d %H:%M UTC')" cores:="$(nproc)"
    duration_s:="$duration" window_s:="$half" warmup_s:="$warmup" idle_connections:="$idle_conns"
    pinned:="$([[ ${#pin_proxy[@]} -gt 0 ]] && echo true || echo false)"
    quick:="$([[ $quick = 1 ]] && echo true || echo false)"
    commit="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
    wsgate="$("$wsgate_bin" --version 2>/dev/null | head -n 1), built $(date -u -r "$wsgate_bin" \
      '+%Y-%m-%d %H:%M UTC' 2>/dev/null)"
    nginx="$("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///')"
    haproxy="$("$haproxy_bin" -v 2>&1 | head -n 1 | awk '{print $3}')" kernel="$(uname -r)")
  for p in "${proxies[@]}" "${tls_instances[@]}"; do
    [[ -n ${status[$p]:-} ]] && meta_args+=("status_$p=${status[$p]}")
  done
  meta_args+=(tls="$tls_note")
  [[ -n $stopped ]] && meta_args+=("stopped=$stopped")
  for i in "${!backend_notes[@]}"; do meta_args+=("backend_$i=${backend_notes[$i]}"); done
  json_obj "${meta_args[@]}" >"$tmp/meta.json"
  cp "$results" "$results_dir/latest.jsonl"
  cp "$tmp/meta.json" "$results_dir/latest.meta.json"
  "$python" "$root/bench/report.py" "$tmp/meta.json" "$results" >"$results_dir/latest.md" \
    || { log "report failed"; return 1; }
  echo
  cat "$results_dir/latest.md"
}

stopped=
trap cleanup EXIT
trap 'stopped="interrupted"; log "$stopped"; write_report; exit 130' INT
trap 'stopped="stopped by SIGTERM (the wall-clock bound is ${run_limit} s)"; log "$stopped"
  write_report; exit 124' TERM
(
  trap 'kill "$timer" 2>/dev/null; exit 0' TERM
  sleep "$run_limit" &
  timer=$!
  wait "$timer" && kill -TERM $$ 2>/dev/null
) &
watchdog=$!

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # port pid: up to 10 s, while pid lives
  for _ in $(seq 100); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime + stime
admin_metric() {  # instance metric: the sum of its series on the instance's admin listener
  "$python" - "http://127.0.0.1:${admin_port[$1]}/metrics" "$2" <<'PY' 2>/dev/null || echo 0
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if l.startswith(sys.argv[2] + "{") or l.startswith(sys.argv[2] + " "))))
PY
}
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
first_child() {  # pid: its first child's PID, waiting up to 5 s for it to appear
  local child
  for _ in $(seq 50); do
    read -r child _ <"/proc/$1/task/$1/children" 2>/dev/null
    [[ -n ${child:-} ]] && { echo "$child"; return 0; }
    sleep 0.1
  done
  return 1
}
json_str() { "$python" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
# json_obj key=text key:=json ...: one JSON object (httpie's notation for strings and raw values).
json_obj() {
  "$python" - "$@" <<'PY'
import json, sys
obj = {}
for arg in sys.argv[1:]:
    key, sep, raw = arg.partition(":=")
    if sep:
        obj[key] = json.loads(raw)
    else:
        key, _, text = arg.partition("=")
        obj[key] = text
print(json.dumps(obj))
PY
}

# --- the echo backend ---------------------------------------------------------------------------
backend_port=0 backend_pid= backend_notes=()
start_backend() {  # on backend_port (0 the first time: any free port)
  local before now
  before=$(grep -c '^listening' "$tmp/echo.log" 2>/dev/null)
  "${pin_load[@]}" "$echo_bin" --port "$backend_port" >>"$tmp/echo.log" 2>&1 &
  backend_pid=$!
  started+=("$backend_pid")
  for _ in $(seq 50); do
    now=$(grep -c '^listening' "$tmp/echo.log" 2>/dev/null)
    ((${now:-0} > ${before:-0})) && break
    sleep 0.1
  done
  backend_port=$(awk -F: '/^listening/ {port = $NF} END {print port}' "$tmp/echo.log")
  [[ -n $backend_port ]] && wait_port "$backend_port" "$backend_pid"
}
backend_alive() {  # after a scenario: restarts a dead backend, returns 1 if it had died
  kill -0 "$backend_pid" 2>/dev/null && return 0
  wait "$backend_pid" 2>/dev/null
  local rc=$?
  backend_notes+=("echo backend exited (status $rc) during $1; restarted")
  log "${backend_notes[-1]}"
  start_backend || die "echo backend does not restart: $(tail -n 3 "$tmp/echo.log")"
  return 1
}
start_backend || die "echo backend did not start: $(cat "$tmp/echo.log")"

# --- the proxies --------------------------------------------------------------------------------
# An instance is one proxy process: the proxy's name (wsgate, nginx, haproxy-http, haproxy-tcp,
# wsgate-twin) for the plain scenarios, and NAME-tls for the wss ones: a second process of the
# same proxy, with the same configuration plus a TLS listener. Separate processes, so that the
# plain figures are those of a proxy with no TLS in it, each idle measurement starts on a fresh
# process, and a TLS listener that fails takes nothing else down. Results carry the proxy's name.
declare -A port plain_port pid watch status rss_of
# port[i]: the port the load goes to (NAME-tls: the TLS listener; plain_port: its plain one).
# status[i]: empty while the instance runs, else why it does not.

# --- wss: certificate and which instances run ---
tls_args=()
if [[ $tls_mode != 0 ]]; then
  # One ECDSA P-256 self-signed certificate for every proxy, made for this run: bench.test as
  # subject and subjectAltName. HAProxy takes the certificate and key in one file.
  if "$openssl_bin" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test -keyout "$tmp/key.pem" \
    -out "$tmp/cert.pem" >"$tmp/openssl.log" 2>&1; then
    cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/cert-key.pem"
    # Verified (chain and name), so every proxy proves it serves this certificate for bench.test;
    # the verification costs the load side, alike for every proxy.
    tls_args=(--tls --server-name bench.test --ca "$tmp/cert.pem")
    tls_note=on
    for p in "${proxies[@]}"; do
      case $p in wsgate | nginx | haproxy-http | haproxy-tcp) tls_instances+=("$p-tls") ;; esac
    done
  else
    tls_note="off: openssl could not make the certificate: $(tail -n 1 "$tmp/openssl.log")"
  fi
else
  tls_note="off (BENCH_TLS=0)"
fi

wsgate_yaml() {  # instance: its configuration; NAME-tls adds the TLS listener
  local name=$1 admin=0
  [[ $name = wsgate-keepalive ]] && admin=${admin_port[$name]}
  cat <<YAML
workers: 1
admin: { address: 127.0.0.1:$admin }
listeners:
  - name: bench
    address: 127.0.0.1:${plain_port[$name]}
    routes:
      - name: echo
        match: { path_prefix: / }
        cluster: backend
YAML
  case $name in
    wsgate-filters) cat <<YAML
        filters:
          - rate_limit:
              client_to_upstream: { messages: 10000000/s, bytes: 10GiB/s, action: throttle }
              upstream_to_client: { messages: 10000000/s, bytes: 10GiB/s, action: close }
          - keepalive: { interval: 20s, timeout: 10s }
          - max_duration: { max: 1h, jitter: 10% }
          - message_size: { max_message_bytes: 1MiB }
YAML
      ;;
    wsgate-utf8) cat <<YAML
        filters:
          - utf8: {}
YAML
      ;;
    wsgate-keepalive) cat <<YAML
        filters:
          - keepalive: { interval: 1s, timeout: 1s }
YAML
      ;;
  esac
  [[ $name = *-tls ]] && cat <<YAML
  - name: bench-tls
    address: 127.0.0.1:${port[$name]}
    tls:
      certificates:
        - { cert: $tmp/cert.pem, key: $tmp/key.pem, server_names: ["bench.test"] }
    routes:
      - name: echo
        match: { path_prefix: / }
        cluster: backend
YAML
  cat <<YAML
clusters:
  - name: backend
    endpoints: ["127.0.0.1:$backend_port"]
YAML
}

start_wsgate() {  # instance: wsgate, wsgate-twin (BENCH_TWIN_BIN: another build) or wsgate-tls
  local name=$1 bin=$wsgate_bin
  [[ $name = wsgate-twin && -n ${BENCH_TWIN_BIN:-} ]] && bin=$BENCH_TWIN_BIN
  if [[ ! -x $bin ]]; then
    status[$name]="not built ($bin missing)"
    return
  fi
  wsgate_yaml "$name" >"$tmp/$name.yaml"
  "${pin_proxy[@]}" "$bin" --config "$tmp/$name.yaml" --log-level warn \
    >"$tmp/$name.log" 2>&1 &
  pid[$name]=$!
  watch[$name]=$!
}

start_nginx() {  # instance: nginx or nginx-tls
  local name=$1 tls_conf=
  # As an operator would write it: TLS 1.2 and 1.3, nginx's defaults otherwise (session tickets
  # on, no shared session cache). The load generator never resumes a session.
  [[ $name = *-tls ]] && tls_conf="
    listen 127.0.0.1:${port[$name]} ssl backlog=4096;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;"
  mkdir -p "$tmp/$name"
  cat >"$tmp/$name.conf" <<CONF
# One worker proxying WebSocket upgrades; everything it writes stays in $tmp.
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $tmp/$name.pid;
error_log $tmp/$name.log warn;
events { worker_connections $((2 * idle_conns + 1000)); }
http {
  access_log off;
  client_body_temp_path $tmp/$name/body;
  proxy_temp_path $tmp/$name/proxy;
  fastcgi_temp_path $tmp/$name/fastcgi;
  uwsgi_temp_path $tmp/$name/uwsgi;
  scgi_temp_path $tmp/$name/scgi;
  server {
    listen 127.0.0.1:${plain_port[$name]} backlog=4096;$tls_conf
    location / {
      proxy_pass http://127.0.0.1:$backend_port;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host \$host;
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
CONF
  "${pin_proxy[@]}" "$nginx_bin" -e "$tmp/$name.log" -p "$tmp/$name/" -c "$tmp/$name.conf" \
    >>"$tmp/$name.log" 2>&1 &
  pid[$name]=$!
}

start_haproxy() {  # mode instance: haproxy-MODE or haproxy-MODE-tls
  local mode=$1 name=$2 tls_bind=
  # TLS 1.2 and 1.3, HAProxy's defaults otherwise (tickets on, its session cache on).
  [[ $name = *-tls ]] && tls_bind="
  bind 127.0.0.1:${port[$name]} ssl crt $tmp/cert-key.pem ssl-min-ver TLSv1.2"
  cat >"$tmp/$name.cfg" <<CONF
global
  nbthread 1
  maxconn $((idle_conns + 1000))
defaults
  mode $mode
  maxconn $((idle_conns + 1000))
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend in
  bind 127.0.0.1:${plain_port[$name]}$tls_bind
  default_backend out
backend out
  server echo 127.0.0.1:$backend_port
CONF
  "${pin_proxy[@]}" "$haproxy_bin" -db -f "$tmp/$name.cfg" -p "$tmp/$name.pid" \
    >"$tmp/$name.log" 2>&1 &
  pid[$name]=$!
  watch[$name]=$!
}

declare -A admin_port
instances=("${proxies[@]}" "${tls_instances[@]}" "${filter_instances[@]}")
for p in "${instances[@]}"; do
  admin_port[$p]=$(free_port)
  plain_port[$p]=$(free_port)
  port[$p]=${plain_port[$p]}
  [[ $p = *-tls ]] && port[$p]=$(free_port)
done

# wsgate's TLS listener: does this wsgate accept it? auto: if not, no wss scenarios at all (the
# run is the plain one); 1: wsgate's wss figures are "not measured", the others' are measured.
if [[ " ${tls_instances[*]} " = *" wsgate-tls "* && -x $wsgate_bin ]]; then
  wsgate_yaml wsgate-tls >"$tmp/wsgate-tls.yaml"
  if ! "$wsgate_bin" --config "$tmp/wsgate-tls.yaml" --check >"$tmp/wsgate-tls-check.log" 2>&1
  then
    why="wsgate --check rejects the TLS listener: $(grep -m 1 -i 'error\|unknown' \
      "$tmp/wsgate-tls-check.log" || head -n 1 "$tmp/wsgate-tls-check.log")"
    if [[ $tls_mode = auto ]]; then
      tls_note="off (BENCH_TLS=auto): $why; BENCH_TLS=1 measures the other proxies over TLS"
      tls_instances=() tls_args=()
      instances=("${proxies[@]}" "${filter_instances[@]}")
    else
      status[wsgate-tls]="not measured: $why"
    fi
  fi
fi
log "wss scenarios: $tls_note"

for p in "${instances[@]}"; do
  [[ -n ${status[$p]:-} ]] && continue
  case ${p%-tls} in
    wsgate | wsgate-twin | wsgate-filters | wsgate-utf8 | wsgate-keepalive) start_wsgate "$p" ;;
    nginx) start_nginx "$p" ;;
    haproxy-http) start_haproxy http "$p" ;;
    haproxy-tcp) start_haproxy tcp "$p" ;;
    *) die "unknown proxy '$p' (wsgate, nginx, haproxy-http, haproxy-tcp, wsgate-twin)" ;;
  esac
  [[ -n ${pid[$p]:-} ]] && started+=("${pid[$p]}")
done
for p in "${instances[@]}"; do
  [[ -n ${status[$p]:-} ]] && { log "$p: ${status[$p]}"; continue; }
  # NAME-tls: its TLS listener is the one that counts, and it opens last.
  if ! wait_port "${plain_port[$p]}" "${pid[$p]}" || ! wait_port "${port[$p]}" "${pid[$p]}"; then
    status[$p]="did not start: $(tail -n 2 "$tmp/$p.log" 2>/dev/null | tr '\n' ' ')"
    log "$p: ${status[$p]}"
    continue
  fi
  rss_of[$p]=${pid[$p]}
  if [[ $p = nginx || $p = nginx-tls ]]; then
    # The worker relays; the master only supervises. Watch both, sample the worker's RSS.
    if ! worker=$(first_child "${pid[$p]}"); then
      status[$p]="no worker process: $(tail -n 2 "$tmp/$p.log" | tr '\n' ' ')"
      log "$p: ${status[$p]}"
      continue
    fi
    watch[$p]="${pid[$p]} $worker"
    started+=("$worker")
    rss_of[$p]=$worker
  fi
  log "$p: pid ${pid[$p]}, port ${port[$p]}"
done
rss_pid() { echo "${rss_of[$1]}"; }

# --- scenarios ----------------------------------------------------------------------------------
results="$tmp/results.jsonl"
: >"$results"
record() {  # instance scenario ok json: recorded under the proxy's name (NAME-tls: NAME)
  printf '{"proxy":"%s","scenario":"%s","round":%d,"window":%d,"ok":%s,"result":%s}\n' "${1%-tls}" \
    "$2" "$round" "$window" "$3" "$4" >>"$results"
}
alive() {  # instance: still serving? Marks it down otherwise.
  local p=$1
  [[ -n ${status[$p]:-} ]] && return 1
  local rc
  for w in ${watch[$p]}; do
    if ! kill -0 "$w" 2>/dev/null; then
      wait "${pid[$p]}" 2>/dev/null
      rc=$?
      status[$p]="exited during the run (status $rc; see logs/$p.log)"
      [[ -s $tmp/$p.log ]] && status[$p]+=": $(tail -n 2 "$tmp/$p.log" | tr '\n' ' ')"
      log "$p: ${status[$p]}"
      return 1
    fi
  done
}
skip() {  # proxy scenario
  record "$1" "$2" false "{\"error\":$(json_str "${status[$1]}")}"
}

load() {  # proxy loadgen-args...: one bounded load generator run against it, watching its CPU
  local p=$1 watch_args=()
  shift
  for w in ${watch[$p]}; do watch_args+=(--watch-pid "$w"); done
  timeout -k 2 "$(awk -v d="$seconds" 'BEGIN {print int(d) + 40}')" \
    "${pin_load[@]}" "$loadgen" "$@" --port "${port[$p]}" --warmup "$warmup" -d "$seconds" \
    "${watch_args[@]}" >"$tmp/out-$p" 2>"$tmp/human-$p"
}
record_load() {  # proxy scenario loadgen-exit-status backend-ok: records what load() wrote
  local p=$1 scenario=$2 rc=$3 out
  out=$(tail -n 1 "$tmp/out-$p")
  [[ $out = '{'* ]] || out="{\"error\":$(json_str "loadgen exit $rc: $(tail -n 2 "$tmp/human-$p")")}"
  alive "$p" || out="{\"error\":$(json_str "${status[$p]}")}"
  $4 || { out="{\"error\":$(json_str "${backend_notes[-1]}")}"; rc=1; }
  record "$p" "$scenario" "$([[ $rc -eq 0 ]] && echo true || echo false)" "$out"
  printf '  %-16s %-18s %s\n' "$p" "$scenario" "$(tail -n 1 "$tmp/human-$p")" >&2
}

measure() {  # proxy scenario loadgen-args...
  local p=$1 scenario=$2 rc backend_ok=true
  shift 2
  alive "$p" || { skip "$p" "$scenario"; return; }
  load "$p" "$@" --backend-pid "$backend_pid"
  rc=$?
  backend_alive "$p $scenario" || backend_ok=false
  record_load "$p" "$scenario" "$rc" "$backend_ok"
  sleep 0.5  # let closes and the backend settle before the next run
}

# wsgate and a reference under the same load at the same time, one load generator each, so that
# the machine's drift between windows (tens of percent here) falls on both alike. Recorded as
# scenario "paired-NAME" for both; the report takes the ratio within each pair.
measure_pair() {  # scenario subject reference loadgen-args...: subject wsgate or wsgate-tls
  local scenario=$1 subject=$2 ref=$3 p q i
  shift 3
  local pair=("$subject" "$ref") lgs=() rcs=()
  ((round % 2 == 0)) && pair=("$ref" "$subject")  # neither side always starts first
  for p in "${pair[@]}"; do
    alive "$p" && continue
    for q in "${pair[@]}"; do
      record "$q" "$scenario" false "{\"error\":$(json_str "not measured: $p is down (${status[$p]})")}"
    done
    return
  done
  for p in "${pair[@]}"; do
    load "$p" "$@" &
    lgs+=($!)
    started+=($!)
  done
  for i in 0 1; do
    wait "${lgs[$i]}"
    rcs[i]=$?
  done
  local backend_ok=true
  backend_alive "paired $scenario" || backend_ok=false
  for i in 0 1; do record_load "${pair[$i]}" "$scenario" "${rcs[$i]}" "$backend_ok"; done
  sleep 0.5
}

echo_scenario() {  # size in bytes: the scenario's name
  case $1 in 4096) echo echo-4k ;; 65536) echo echo-64k ;; *) echo "echo-$1" ;; esac
}

hold() {  # instance scenario [loadgen-args...]: RSS per idle connection
  local p=$1 scenario=$2
  shift 2
  alive "$p" || { skip "$p" "$scenario"; return; }
  local rp rss_before rss_held rss_after fds_before fds_held fds_after lg held failed
  rp=$(rss_pid "$p")
  rss_before=$(rss_kib "$rp")
  fds_before=$(fd_count "$rp")
  timeout -k 2 180 "${pin_load[@]}" "$loadgen" hold --port "${port[$p]}" -c "$idle_conns" \
    --concurrency 100 --hold 120 "$@" >"$tmp/hold.out" 2>"$tmp/human" &
  lg=$!
  started+=("$lg")
  for _ in $(seq 1200); do  # 120 s at most to open them all
    grep -q '^held' "$tmp/hold.out" && break
    kill -0 "$lg" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1  # every upgrade has completed; let the proxy settle
  rss_held=$(rss_kib "$rp")
  fds_held=$(fd_count "$rp")
  local extra=()
  if [[ $p = wsgate-keepalive ]]; then
    # Keepalive on idle sessions: the proxy's CPU over a window, per ping sent and answered.
    local cpu0 cpu1 pings0 pings1 timeouts
    cpu0=$(cpu_ticks "$rp") pings0=$(admin_metric "$p" wsgate_keepalive_pings_total)
    sleep "$keepalive_window"
    cpu1=$(cpu_ticks "$rp") pings1=$(admin_metric "$p" wsgate_keepalive_pings_total)
    timeouts=$(admin_metric "$p" wsgate_keepalive_timeouts_total)
    rss_held=$(rss_kib "$rp")  # after the pings: what keepalive costs an idle session
    extra=(pings:="$((pings1 - pings0))" keepalive_timeouts:="$timeouts"
      window_s:="$keepalive_window" proxy_cpu_us:="$(((cpu1 - cpu0) * 1000000 / $(getconf CLK_TCK)))"
      proxy_cpu_us_per_ping:="$(awk -v c="$((cpu1 - cpu0))" -v n="$((pings1 - pings0))" \
        -v t="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (n > 0 ? c * 1e6 / t / n : 0)}')")
    printf '  %-16s keepalive: %d pings in %d s, %s CPU µs per ping, %d timeouts\n' "$p" \
      "$((pings1 - pings0))" "$keepalive_window" "${extra[-1]#*=}" "$timeouts" >&2
  fi
  read -r _ held _ failed < <(grep '^held' "$tmp/hold.out") || true
  kill -TERM "$lg" 2>/dev/null
  wait "$lg" 2>/dev/null
  # Wait (bounded) until the proxy has closed them all, so the next run starts clean.
  for _ in $(seq 100); do
    (($(fd_count "$rp") <= fds_before + 2)) && break
    sleep 0.1
  done
  rss_after=$(rss_kib "$rp")
  fds_after=$(fd_count "$rp")
  local ok=true per=null
  if [[ -z ${held:-} || ${held:-0} -eq 0 ]]; then
    ok=false held=0 failed=${failed:-$idle_conns}
  else
    per=$(awk -v a="$rss_held" -v b="$rss_before" -v n="$held" 'BEGIN {printf "%.3f", (a - b) / n}')
  fi
  ((failed > 0)) && ok=false
  alive "$p" || ok=false
  backend_alive "$p $scenario" || ok=false
  record "$p" "$scenario" "$ok" "$(json_obj held:="$held" failed:="$failed" \
    rss_before_kib:="$rss_before" rss_held_kib:="$rss_held" rss_after_close_kib:="$rss_after" \
    rss_kib_per_conn:="$per" fds_before:="$fds_before" fds_held:="$fds_held" \
    fds_after_close:="$fds_after" "${extra[@]}")"
  printf '  %-16s %-11s held %d (failed %d): RSS %d -> %d KiB (%s KiB/conn), ' \
    "$p" "$scenario" "$held" "$failed" "$rss_before" "$rss_held" "$per" >&2
  printf 'after close %d KiB; fds %d -> %d -> %d\n' "$rss_after" "$fds_before" "$fds_held" \
    "$fds_after" >&2
  sleep 0.5
}

# Scenario by scenario, every proxy in turn: the runs compared with each other are close in time
# on a noisy machine. Idle memory first, while every proxy is fresh: memory freed by earlier load
# would otherwise be reused and hide the real cost of a connection. With BENCH_ROUNDS > 1 the
# load scenarios repeat, each round starting with the next proxy, and the report takes medians.
#
# Each proxy is measured in two windows of half the duration, the proxies in one order and then
# in the reverse one (A B C D D C B A): the machine's speed drifts by tens of percent within a
# minute here, and with mirrored windows the mean of each proxy's two windows falls on the same
# moment for all, so a steady drift cancels out instead of favouring whoever went first.
mirrored() {  # scenario loadgen-args...: each proxy in order, then in reverse, half a window each
  local scenario=$1 i
  shift
  seconds=$half
  for window in 1 2; do
    for ((i = 0; i < ${#order[@]}; i++)); do
      local p=${order[i]}
      ((window == 2)) && p=${order[${#order[@]} - 1 - i]}
      measure "$p" "$scenario" "$@"
    done
  done
  window=1 seconds=$duration
}
log "$duration s per proxy and scenario (two mirrored windows of $half s) after ${warmup} s of" \
  "warm-up each, $idle_conns idle connections, $rounds round(s), pinned: ${pin_proxy[*]:-no}"
has() { [[ " ${instances[*]} " = *" $1 "* ]]; }  # instance: part of this run?
round=1 window=1 seconds=$duration
log "idle: RSS per idle connection, $idle_conns held"
for p in "${proxies[@]}"; do hold "$p" idle; done
if has wsgate-keepalive; then
  log "keepalive-idle: $idle_conns idle sessions pinged every second on both legs for" \
    "$keepalive_window s"
  hold wsgate-keepalive keepalive-idle
fi
if ((${#tls_instances[@]} > 0)); then
  log "wss-idle: RSS per idle TLS connection, $idle_conns held (each a fresh process)"
  for p in "${tls_instances[@]}"; do hold "$p" wss-idle "${tls_args[@]}"; done
fi
for ((round = 1; round <= rounds; round++)); do
  shift_by=$(((round - 1) % ${#proxies[@]}))
  order=("${proxies[@]:shift_by}" "${proxies[@]:0:shift_by}")
  tls_order=()  # the same rotation
  for p in "${order[@]}"; do has "$p-tls" && tls_order+=("$p-tls"); done
  for size in 64 4096 65536; do
    log "round $round, $(echo_scenario "$size"): 50 connections x 8 messages in flight of $size B"
    mirrored "$(echo_scenario "$size")" echo -c 50 -k 8 -s "$size"
  done
  log "round $round, rate: 5,000 msg/s of 64 B over 50 connections"
  mirrored rate rate -c 50 -r 5000 -s 64
  log "round $round, handshakes: 16 concurrent connect + upgrade + close loops"
  mirrored handshakes handshakes --concurrency 16
  log "round $round, handshakes-abrupt: the same loops, clients closing without awaiting the reply"
  mirrored handshakes-abrupt handshakes --concurrency 16 --abrupt-close
  if [[ $paired = 1 ]] && has wsgate && has haproxy-tcp; then
    for size in 64 4096 65536; do
      name=paired-$(echo_scenario "$size")
      log "round $round, $name: wsgate and haproxy-tcp at the same time, 50 x 8 of $size B each"
      measure_pair "$name" wsgate haproxy-tcp echo -c 50 -k 8 -s "$size"
    done
  fi
  if [[ $paired = 1 ]] && has wsgate && has nginx; then
    log "round $round, paired-handshakes: wsgate and nginx at the same time, 16 loops each"
    measure_pair paired-handshakes wsgate nginx handshakes --concurrency 16
    log "round $round, paired-handshakes-abrupt: the same, clients closing at once"
    measure_pair paired-handshakes-abrupt wsgate nginx handshakes --concurrency 16 --abrupt-close
  fi
  if [[ $paired = 1 ]] && has wsgate && has wsgate-filters; then
    for size in 64 4096; do
      name=paired-filters-$(echo_scenario "$size")
      log "round $round, $name: wsgate with rate_limit, keepalive, max_duration and message_size" \
        "and wsgate without filters at the same time, 50 x 8 of $size B each"
      measure_pair "$name" wsgate-filters wsgate echo -c 50 -k 8 -s "$size"
      if has haproxy-tcp; then
        name=paired-filters-tcp-$(echo_scenario "$size")
        log "round $round, $name: the same filters and haproxy-tcp at the same time"
        measure_pair "$name" wsgate-filters haproxy-tcp echo -c 50 -k 8 -s "$size"
      fi
    done
  fi
  if [[ $paired = 1 ]] && has wsgate && has wsgate-utf8; then
    for size in 64 4096; do
      name=paired-utf8-$(echo_scenario "$size")
      log "round $round, $name: text messages through wsgate with utf8 and without, at the" \
        "same time, 50 x 8 of $size B each"
      measure_pair "$name" wsgate-utf8 wsgate echo -c 50 -k 8 -s "$size" --text
    done
  fi
  if [[ $paired = 1 ]] && has wsgate && has wsgate-twin; then
    log "round $round, twin-paired-echo-64 and twin-paired-handshakes: wsgate and its twin"
    measure_pair twin-paired-echo-64 wsgate wsgate-twin echo -c 50 -k 8 -s 64
    measure_pair twin-paired-handshakes wsgate wsgate-twin handshakes --concurrency 16
  fi
  # wss: the TLS instances, after every plain scenario of the round.
  ((${#tls_order[@]} > 0)) || continue
  order=("${tls_order[@]}")
  for size in 64 4096; do
    name=wss-$(echo_scenario "$size")
    log "round $round, $name: 50 TLS connections x 8 messages in flight of $size B"
    mirrored "$name" echo -c 50 -k 8 -s "$size" "${tls_args[@]}"
  done
  log "round $round, wss-handshakes: 16 concurrent loops of connect + full TLS handshake +" \
    "upgrade + close"
  mirrored wss-handshakes handshakes --concurrency 16 "${tls_args[@]}"
  if [[ $paired = 1 ]] && has wsgate-tls && has haproxy-tcp-tls; then
    for size in 64 4096; do
      name=paired-wss-$(echo_scenario "$size")
      log "round $round, $name: wsgate and haproxy-tcp over TLS at the same time, 50 x 8 of" \
        "$size B each"
      measure_pair "$name" wsgate-tls haproxy-tcp-tls echo -c 50 -k 8 -s "$size" "${tls_args[@]}"
    done
  fi
  if [[ $paired = 1 ]] && has wsgate-tls && has nginx-tls; then
    log "round $round, paired-wss-handshakes: wsgate and nginx over TLS at the same time, 16" \
      "loops each"
    measure_pair paired-wss-handshakes wsgate-tls nginx-tls handshakes --concurrency 16 \
      "${tls_args[@]}"
  fi
done

write_report
log "written to bench/results/latest.md (raw: latest.jsonl and latest.meta.json, configs and" \
  "logs: logs/)"
