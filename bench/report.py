"""Renders one run of bench/run.sh as Markdown: the side-by-side table, the ratios the issue
sets targets on, and every failure. Usage: report.py META_JSON RESULTS_JSONL."""
import json
import sys

PROXIES = ["wsgate", "nginx", "haproxy-http", "haproxy-tcp"]
SIZES = [("echo-64", "64 B"), ("echo-4k", "4 KiB"), ("echo-64k", "64 KiB")]

meta = json.load(open(sys.argv[1]))
runs = {}
for line in open(sys.argv[2]):
    if line.strip():
        r = json.loads(line)
        runs[(r["proxy"], r["scenario"])] = r
proxies = [p for p in PROXIES if any(k[0] == p for k in runs)]


def result(proxy, scenario):
    return runs.get((proxy, scenario), {}).get("result", {})


def cpu_per_unit(proxy, scenario):
    """Proxy CPU µs per echoed message or per handshake, inside the measurement window."""
    return result(proxy, scenario).get("proxy_cpu_us_per_unit")


def num(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f}"


def flag(proxy, scenario):
    """A dagger on figures whose run had failures, so that no broken run reads as a result."""
    r = runs.get((proxy, scenario))
    if r is None:
        return ""
    res = r["result"]
    bad = not r["ok"] or res.get("errors") or res.get("connect_failures") or res.get("failed")
    return " †" if bad else ""


def ratio(a, b):
    return a / b if a and b else None


print(f"Run {meta['date']}, commit {meta['commit']}: {meta['cores']}-core shared machine, "
      f"loopback, one worker per proxy, {meta['duration_s']} s per scenario after "
      f"{meta['warmup_s']} s of warm-up, {meta['idle_connections']:,} idle connections; "
      f"proxy pinned to one core and load generator + echo backend to the other: "
      f"{'yes' if meta['pinned'] else 'no'}. nginx {meta['nginx']}, HAProxy {meta['haproxy']}, "
      f"Linux {meta['kernel']}."
      + (" **Quick smoke run (BENCH_QUICK=1): figures are indicative only.**"
         if meta.get("quick") else ""))
print()

head = ["proxy"]
for _, label in SIZES:
    head += [f"{label} msgs/s", "p99 ms", "CPU µs/msg"]
head += ["5k msg/s p50 ms", "p99 ms", "handshakes/s", "CPU µs/handshake", "RSS KiB/idle conn"]
print("| " + " | ".join(head) + " |")
print("|---" + "|--:" * (len(head) - 1) + "|")
for p in proxies:
    cells = [p]
    for scenario, _ in SIZES:
        r, f = result(p, scenario), flag(p, scenario)
        cells += [num(r.get("msgs_per_s")) + f, ms(r.get("p99_us")),
                  num(cpu_per_unit(p, scenario), 2)]
    r, f = result(p, "rate"), flag(p, "rate")
    cells += [ms(r.get("p50_us")) + f, ms(r.get("p99_us"))]
    r, f = result(p, "handshakes"), flag(p, "handshakes")
    cells += [num(r.get("handshakes_per_s")) + f, num(cpu_per_unit(p, "handshakes"), 1)]
    cells.append(num(result(p, "idle").get("rss_kib_per_conn"), 2) + flag(p, "idle"))
    print("| " + " | ".join(cells) + " |")
print()

print("Ratios, wsgate / reference (lower is better for wsgate):")
print()
for scenario, label in SIZES:
    v = ratio(cpu_per_unit("wsgate", scenario), cpu_per_unit("haproxy-tcp", scenario))
    print(f"- CPU per echoed {label} message, wsgate / haproxy-tcp: {num(v, 2)} "
          f"(target ≤ 1.00, aim 0.75){' ✓' if v is not None and v <= 1 else ''}")
v = ratio(cpu_per_unit("wsgate", "handshakes"), cpu_per_unit("nginx", "handshakes"))
print(f"- CPU per handshake, wsgate / nginx: {num(v, 2)} (target ≤ 1.00)"
      f"{' ✓' if v is not None and v <= 1 else ''}")
v = result("wsgate", "idle").get("rss_kib_per_conn")
print(f"- RSS per idle connection, wsgate: {num(v, 2)} KiB (target ≤ 4 KiB)"
      f"{' ✓' if v is not None and v <= 4 else ''}")
print()

# Whether the load side kept up: with one core for load generator and backend, the msgs/s of the
# echo scenarios are bounded by that core long before a proxy saturates its own.
busy = []
for scenario, label in SIZES:
    shares = []
    for p in proxies:
        r = result(p, scenario)
        cpu, secs = r.get("cpu", {}), r.get("seconds")
        if secs and "proxy_us" in cpu:
            shares.append(f"{p} {cpu['proxy_us'] / secs / 1e4:.0f}% / "
                          f"{(cpu.get('loadgen_us', 0) + cpu.get('backend_us', 0)) / secs / 1e4:.0f}%")
    if shares:
        busy.append(f"- {label}: " + ", ".join(shares))
if busy:
    print("CPU busy during the echo windows, proxy / load generator + echo backend (100% = one "
          "core):")
    print()
    print("\n".join(busy))
    print()

notes = []
for p in PROXIES:
    if meta.get(f"status_{p}"):
        notes.append(f"- {p}: {meta[f'status_{p}']}")
for (p, scenario), r in sorted(runs.items()):
    res = r["result"]
    parts = []
    if "error" in res:
        parts.append(res["error"])
    for key in ["connect_failures", "errors", "failed"]:
        if res.get(key):
            parts.append(f"{key.replace('_', ' ')}: {res[key]}")
    if res.get("first_error"):
        parts.append(f"first error: {res['first_error']}")
    if res.get("timed_out"):
        parts.append("timed out")
    if parts:
        notes.append(f"- {p} {scenario}: " + "; ".join(parts))
if notes:
    print("† Failures in this run:")
    print()
    print("\n".join(notes))
    print()
