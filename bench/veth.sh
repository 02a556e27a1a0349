#!/usr/bin/env bash
# Two wsgate binaries' CPU per echoed message, loaded at the same time (one load generator each),
# off loopback: client, gateway and backend in network namespaces of their own, joined by veth
# pairs (MTU 1500); then the same on loopback, all three in one namespace. See "Held reads
# removed" in docs/benchmarks.md.
#
# Usage (root, from the repository root): bench/veth.sh OLD_BIN NEW_BIN [BUILD_DIR]
#   BUILD_DIR holds bench/wsgate-loadgen and bench/wsgate-bench-echo (default build)
#   VETH_ROUNDS=N      pairs per size and network (default 3); the start order alternates
#   VETH_SECONDS=S     measurement window per pair (default 10), after 1 s of warm-up
#   VETH_SIZES="64 4096"
#   VETH_PAIRED=0      load one gateway at a time instead (order alternating per round), and also
#                      report TCP segments sent per message: by the gateway alone on veth (its
#                      namespace holds nothing else), by client, gateway and backend on loopback
#
# Only the namespaces and veth pairs this script creates are used and removed at exit; only the
# processes it started are stopped, by PID. Every load run is bounded in time.
set -uo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 OLD_BIN NEW_BIN [BUILD_DIR]" >&2; exit 2; }
old_bin=$(realpath "$1") new_bin=$(realpath "$2") build=$(realpath "${3:-build}")
rounds=${VETH_ROUNDS:-3} seconds=${VETH_SECONDS:-10} paired=${VETH_PAIRED:-1}
read -r -a sizes <<<"${VETH_SIZES:-64 4096}"
loadgen=$build/bench/wsgate-loadgen echo_bin=$build/bench/wsgate-bench-echo
for f in "$old_bin" "$new_bin" "$loadgen" "$echo_bin"; do
  [[ -x $f ]] || { echo "veth: $f missing (build wsgate-loadgen wsgate-bench-echo)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "veth: needs root (network namespaces)" >&2; exit 1; }

tag=wsv$$
cl=$tag-cl gw=$tag-gw be=$tag-be lo=$tag-lo
tmp=$(mktemp -d)
started=()
cleanup() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null; done
  # Deleting a namespace deletes the veth ends inside it.
  for ns in "$cl" "$gw" "$be" "$lo"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pin_gateway=(taskset -c 0) pin_load=(taskset -c 1)
(($(nproc) >= 2)) || pin_gateway=() pin_load=()

for ns in "$cl" "$gw" "$be" "$lo"; do
  ip netns add "$ns" || exit 1
  ip -n "$ns" link set lo up
done
ip link add c0 netns "$cl" type veth peer name g0 netns "$gw" || exit 1
ip link add g1 netns "$gw" type veth peer name b0 netns "$be" || exit 1
ip -n "$cl" addr add 10.77.1.1/24 dev c0
ip -n "$gw" addr add 10.77.1.2/24 dev g0
ip -n "$gw" addr add 10.77.2.1/24 dev g1
ip -n "$be" addr add 10.77.2.2/24 dev b0
for link in "$cl c0" "$gw g0" "$gw g1" "$be b0"; do
  set -- $link
  ip -n "$1" link set "$2" mtu 1500 up
done

listening() {  # namespace port: up to 10 s
  for _ in $(seq 100); do
    ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q . && return 0
    sleep 0.1
  done
  echo "veth: nothing listens on port $2 in $1" >&2
  return 1
}

declare -A gateway_pid
# net: veth or loopback. Starts the echo backend and both gateways (old on 18080, new on 18081).
start_net() {
  local net=$1 gw_ns be_ns listen_on backend
  if [[ $net = veth ]]; then
    gw_ns=$gw be_ns=$be listen_on=10.77.1.2 backend=10.77.2.2
  else
    gw_ns=$lo be_ns=$lo listen_on=127.0.0.1 backend=127.0.0.1
  fi
  ip netns exec "$be_ns" "${pin_load[@]}" "$echo_bin" --address "$backend" --port 19000 \
    >"$tmp/echo-$net.log" 2>&1 &
  started+=($!)
  listening "$be_ns" 19000 || return 1
  local which port=18080
  for which in old new; do
    cat >"$tmp/$which-$net.yaml" <<YAML
workers: 1
admin: { address: 127.0.0.1:0 }
listeners:
  - name: bench
    address: $listen_on:$port
    routes:
      - name: echo
        match: { path_prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: ["$backend:19000"]
YAML
    local bin=$old_bin
    [[ $which = new ]] && bin=$new_bin
    ip netns exec "$gw_ns" "${pin_gateway[@]}" "$bin" --config "$tmp/$which-$net.yaml" \
      --log-level warn >"$tmp/$which-$net.log" 2>&1 &
    gateway_pid[$which]=$!
    started+=($!)
    listening "$gw_ns" "$port" || return 1
    port=$((port + 1))
  done
}
stop_net() {
  for p in "${started[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null; done
  started=()
}

out_segs() {  # namespace: TCP segments it has sent (/proc/net/snmp is per namespace)
  ip netns exec "$1" awk '/^Tcp:/ {if (!n++) {for (i = 1; i <= NF; i++) if ($i == "OutSegs") c = i}
                                   else print $c}' /proc/net/snmp
}

# Both gateways under the same load at the same time (or one after the other, VETH_PAIRED=0).
# Prints "old_us new_us old_rate new_rate old_segs new_segs": CPU µs per message, messages/s,
# segments sent per message (nan when paired).
pair() {  # net size round
  local net=$1 size=$2 round=$3 client_ns=$cl gw_ns=$gw host=10.77.1.2 order=(old new) lgs=()
  local which before
  [[ $net = loopback ]] && client_ns=$lo gw_ns=$lo host=127.0.0.1
  ((round % 2 == 1)) && order=(new old)
  for which in "${order[@]}"; do
    local port=18080
    [[ $which = new ]] && port=18081
    before=$(out_segs "$gw_ns")
    timeout -k 2 $((seconds + 40)) ip netns exec "$client_ns" "${pin_load[@]}" "$loadgen" echo \
      --host "$host" -p "$port" -c 50 -k 8 -s "$size" --warmup 1 -d "$seconds" \
      --watch-pid "${gateway_pid[$which]}" >"$tmp/out-$which" 2>"$tmp/human-$which" &
    lgs+=($!)
    if [[ $paired = 0 ]]; then
      wait "${lgs[-1]}"
      echo $(($(out_segs "$gw_ns") - before)) >"$tmp/segs-$which"
    else
      echo nan >"$tmp/segs-$which"
    fi
  done
  for p in "${lgs[@]}"; do wait "$p"; done
  /usr/bin/python3 - "$tmp" <<'PY'
import json, sys
cpu, rate, segs = [], [], []
for which in ("old", "new"):
    try:
        r = json.loads(open(f"{sys.argv[1]}/out-{which}").read().strip().splitlines()[-1])
        assert not r.get("errors") and not r.get("timed_out"), r
        cpu.append(r["proxy_cpu_us_per_unit"])
        rate.append(r["msgs_per_s"])
        # Over the whole run (warm-up and handshakes too): the counter is read around it.
        segs.append(float(open(f"{sys.argv[1]}/segs-{which}").read()) / r["messages_total"])
    except Exception as e:  # a failed run shows as a missing figure, not a wrong one
        print(f"veth: {which}: {e}", file=sys.stderr)
        cpu.append(float("nan")), rate.append(0), segs.append(float("nan"))
print(f"{cpu[0]:.3f} {cpu[1]:.3f} {rate[0]:.0f} {rate[1]:.0f} {segs[0]:.3f} {segs[1]:.3f}")
PY
}

results=$tmp/results
for net in veth loopback; do
  start_net "$net" || exit 1
  for size in "${sizes[@]}"; do
    for ((round = 0; round < rounds; round++)); do
      read -r old_us new_us old_rate new_rate old_segs new_segs < <(pair "$net" "$size" "$round")
      echo "$net $size $round $old_us $new_us $old_rate $new_rate $old_segs $new_segs" >>"$results"
      printf '%-8s %5d B round %d: old %s µs/msg, %s msgs/s, %s segs/msg; new %s, %s, %s\n' \
        "$net" "$size" "$round" "$old_us" "$old_rate" "$old_segs" "$new_us" "$new_rate" \
        "$new_segs" >&2
    done
  done
  stop_net
done

/usr/bin/python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    net, size, _, *figures = line.split()
    rows.setdefault((net, int(size)), []).append([float(f) for f in figures])
print("| network | size | old µs/msg (median) | new µs/msg (median) | new / old per round "
      "| median | segments sent per msg, old / new (median) |")
print("|---|--:|--:|--:|---|--:|--:|")
for (net, size), runs in rows.items():
    ratios = [r[1] / r[0] for r in runs if r[0] == r[0] and r[1] == r[1] and r[0] > 0]
    median = lambda i: statistics.median(r[i] for r in runs)
    print(f"| {net} | {size} B | {median(0):.2f} | {median(1):.2f} "
          f"| {', '.join(f'{r:.3f}' for r in ratios)} "
          f"| {statistics.median(ratios) if ratios else float('nan'):.2f} "
          f"| {median(4):.2f} / {median(5):.2f} |")
PY
