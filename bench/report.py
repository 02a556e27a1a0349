"""Turns bench/run.sh's results (one JSON line per proxy and scenario) into a Markdown table."""
import json
import sys
import datetime

rows = [json.loads(line) for line in open(sys.argv[1])]
duration, idle = sys.argv[2], sys.argv[3]
proxies = ["wsgate", "nginx", "haproxy-http", "haproxy-tcp"]
by = {(r["proxy"], r["scenario"]): r for r in rows}


def res(p, s, key, default=None):
    return by.get((p, s), {}).get("result", {}).get(key, default)


def cpu_per(p, s, count_key):
    r = by.get((p, s))
    n = res(p, s, count_key, 0)
    return r["cpu_us"] / n if r and n else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


print(f"Run {datetime.date.today()}, 2-core shared machine, loopback, one worker per proxy, "
      f"{duration} s per scenario, {idle} idle connections.\n")
print("| proxy | 64 B msgs/s | p99 ms | CPU µs/msg | 4 KiB msgs/s | p99 ms | CPU µs/msg "
      "| 64 KiB msgs/s | p99 ms | CPU µs/msg | 5k msg/s p50 ms | p99 ms | handshakes/s "
      "| CPU µs/handshake | RSS KiB/idle conn |")
print("|---" * 16 + "|")
for p in proxies:
    cells = []
    for s in ["echo-64", "echo-4k", "echo-64k"]:
        cells += [fmt(res(p, s, "msgs_per_s"), 0), fmt((res(p, s, "p99_us") or 0) / 1000, 2),
                  fmt(cpu_per(p, s, "messages"), 2)]
    cells += [fmt((res(p, "rate", "p50_us") or 0) / 1000, 2),
              fmt((res(p, "rate", "p99_us") or 0) / 1000, 2),
              fmt(res(p, "handshakes", "handshakes_per_s"), 0),
              fmt(cpu_per(p, "handshakes", "handshakes"), 1)]
    idle_r = by.get((p, "idle"), {}).get("result", {})
    held = idle_r.get("held", 0)
    rss = (idle_r["rss_after_kib"] - idle_r["rss_before_kib"]) / held if held else None
    cells.append(fmt(rss, 2))
    print(f"| {p} | " + " | ".join(cells) + " |")

print("\nRatios (lower is better for wsgate):\n")
for s, label in [("echo-64", "64 B"), ("echo-4k", "4 KiB"), ("echo-64k", "64 KiB")]:
    a, b = cpu_per("wsgate", s, "messages"), cpu_per("haproxy-tcp", s, "messages")
    if a and b:
        print(f"- CPU per echoed {label} message, wsgate / haproxy-tcp: {a / b:.2f}")
a, b = cpu_per("wsgate", "handshakes", "handshakes"), cpu_per("nginx", "handshakes", "handshakes")
if a and b:
    print(f"- CPU per handshake, wsgate / nginx: {a / b:.2f}")
