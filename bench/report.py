"""Renders one run of bench/run.sh as Markdown: the side-by-side table, the ratios the issue
sets targets on, and every failure. Each figure is the median over the rounds and the two mirrored
windows of each round; each ratio is taken within a round, from the mean of each side's two
windows (which cancels a steady drift of the machine), then the median and range of those are
shown. The wss scenarios (TLS at the proxy, full handshakes) get a table and targets of their own;
a proxy with no wss figures shows "not measured". Usage: report.py META_JSON RESULTS_JSONL."""
import json
import statistics
import sys

PROXIES = ["wsgate", "nginx", "haproxy-http", "haproxy-tcp", "wsgate-twin"]
FILTER_INSTANCES = ["wsgate-filters", "wsgate-utf8", "wsgate-keepalive"]
SIZES = [("echo-64", "64 B"), ("echo-4k", "4 KiB"), ("echo-64k", "64 KiB")]
WSS_SIZES = [("wss-echo-64", "64 B"), ("wss-echo-4k", "4 KiB")]
WSS_SCENARIOS = [s for s, _ in WSS_SIZES] + ["wss-handshakes", "wss-idle"]
WSS_RSS_AIM_KIB = 16

meta = json.load(open(sys.argv[1]))
rounds = {}  # (proxy, scenario) -> [record of each round]
for line in open(sys.argv[2]):
    if line.strip():
        r = json.loads(line)
        rounds.setdefault((r["proxy"], r["scenario"]), []).append(r)
proxies = [p for p in PROXIES if any(k[0] == p for k in rounds)]
wss_proxies = [p for p in PROXIES if any(k[0] == p and k[1] in WSS_SCENARIOS for k in rounds)]


def value(proxy, scenario, key, round_index=None):
    """The median over the rounds and windows of a result's field, or that of one round: the mean
    of its two mirrored windows."""
    records = rounds.get((proxy, scenario), [])
    if round_index is not None:
        records = [r for r in records if r.get("round") == round_index]
    values = [r["result"][key] for r in records if r["result"].get(key) is not None]
    if not values:
        return None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return statistics.median(values)
    return values[len(values) // 2]  # text, flags, nested objects: one of the rounds


def result(proxy, scenario):
    keys = {k for r in rounds.get((proxy, scenario), []) for k in r["result"]}
    return {k: value(proxy, scenario, k) for k in keys}


def cpu_per_unit(proxy, scenario, round_index=None):
    """Proxy CPU µs per echoed message or per handshake, inside the measurement window."""
    return value(proxy, scenario, "proxy_cpu_us_per_unit", round_index)


def num(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


NOT_MEASURED = "not measured"


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f}"


def flag(proxy, scenario):
    """A dagger on figures whose run had failures, so that no broken run reads as a result."""
    for r in rounds.get((proxy, scenario), []):
        res = r["result"]
        if (not r["ok"] or res.get("errors") or res.get("connect_failures") or res.get("failed")
                or res.get("tls_resumed")):
            return " †"
    return " ‡" if stalled(proxy, scenario) else ""


def block(title, items):
    """A titled list of lines, left out when it has none."""
    if items:
        print(title)
        print()
        print("\n".join(items))
        print()


def ratio(a, b):
    return a / b if a and b else None


STALL_US = 200_000  # the shortest TCP retransmission timeout


def stalled(proxy, scenario):
    """Rounds in which no echo at all arrived for 200 ms or more."""
    return [r for r in rounds.get((proxy, scenario), [])
            if r["result"].get("longest_gap_us", 0) >= STALL_US]


def round_ratios(scenario, proxy, reference):
    """wsgate / reference, taken within each round; the median and the range over the rounds."""
    values = [ratio(cpu_per_unit(proxy, scenario, i), cpu_per_unit(reference, scenario, i))
              for i in range(1, meta.get("rounds", 1) + 1)]
    values = [v for v in values if v is not None]
    if not values:
        return None, ""
    spread = f", rounds {min(values):.2f}–{max(values):.2f}" if len(values) > 1 else ""
    return statistics.median(values), spread


rounds_note = f"{meta['rounds']} rounds (figures: medians), " if meta.get("rounds", 1) > 1 else ""
window_note = (f" (two mirrored windows of {meta['window_s']} s)" if meta.get("window_s") else "")
quick_note = (" **Quick smoke run (BENCH_QUICK=1): figures are indicative only.**"
              if meta.get("quick") else "")
if meta.get("stopped"):
    quick_note += f" **Run {meta['stopped']}: what is missing was not measured.**"
if meta.get("tls") and meta["tls"] != "on":
    quick_note += f" wss scenarios {meta['tls']}."
print(f"Run {meta['date']}, checkout {meta['commit']}, {meta.get('wsgate', 'wsgate ?')}: "
      f"{meta['cores']}-core shared machine, "
      f"loopback, one worker per proxy, {rounds_note}{meta['duration_s']} s per scenario"
      f"{window_note} after "
      f"{meta['warmup_s']} s of warm-up, {meta['idle_connections']:,} idle connections; "
      f"proxy pinned to one core and load generator + echo backend to the other: "
      f"{'yes' if meta['pinned'] else 'no'}. nginx {meta['nginx']}, HAProxy {meta['haproxy']}, "
      f"Linux {meta['kernel']}.{quick_note}")
print()

head = ["proxy"]
for _, label in SIZES:
    head += [f"{label} msgs/s", "p99 ms", "CPU µs/msg"]
head += ["5k msg/s p50 ms", "p99 ms", "CPU µs/msg", "handshakes/s", "CPU µs/handshake",
         "abrupt closers/s", "CPU µs/abrupt", "RSS KiB/idle conn"]
print("| " + " | ".join(head) + " |")
print("|---" + "|--:" * (len(head) - 1) + "|")
for p in proxies:
    cells = [p]
    for scenario, _ in SIZES:
        r, f = result(p, scenario), flag(p, scenario)
        cells += [num(r.get("msgs_per_s")) + f, ms(r.get("p99_us")),
                  num(cpu_per_unit(p, scenario), 2)]
    r, f = result(p, "rate"), flag(p, "rate")
    cells += [ms(r.get("p50_us")) + f, ms(r.get("p99_us")), num(cpu_per_unit(p, "rate"), 2)]
    for scenario in ["handshakes", "handshakes-abrupt"]:
        r, f = result(p, scenario), flag(p, scenario)
        cells += [num(r.get("handshakes_per_s")) + f, num(cpu_per_unit(p, scenario), 1)]
    cells.append(num(result(p, "idle").get("rss_kib_per_conn"), 2) + flag(p, "idle"))
    print("| " + " | ".join(cells) + " |")
print()

# The targets are judged on the paired runs when there are any: there the machine's drift falls on
# wsgate and its reference alike, while one after the other it moves a ratio by more than what is
# left between the proxies (docs/benchmarks.md, "Targets").
TARGETS = [(s, f"echoed {size} message", "haproxy-tcp", "≤ 1.00, aim 0.75") for s, size in SIZES]
TARGETS.append(("handshakes", "handshake", "nginx", "≤ 1.00"))
TARGETS.append(("handshakes-abrupt", "handshake with a client closing at once", "nginx", "≤ 1.00"))
judged_paired = any(round_ratios(f"paired-{s}", "wsgate", ref)[0] is not None
                    for s, _, ref, _ in TARGETS)


# How far the machine alone moves a paired ratio: the same binary paired with itself stays within
# this of 1.00 (docs/benchmarks.md, "How far the machine alone moves a ratio"). A paired median
# above its target by less than this does not tell whether the target is missed.
PAIRED_NOISE_FLOOR = 0.025


def verdict(v, target, pairs):
    if v <= target:
        return " ✓"
    if pairs and v <= target * (1 + PAIRED_NOISE_FLOOR):
        return " ≈ (within the pairs' noise floor of the target)"
    return " ✗"


def ratio_line(scenario, label, reference, target, judged, pairs=False):
    v, spread = round_ratios(scenario, "wsgate", reference)
    if v is None:
        return None
    met = verdict(v, 1, pairs) if judged else ""
    what = f"target {target}" if judged else "for comparison"
    if pairs:
        what, spread = "same load, same time, " + what, spread.replace("rounds", "pairs")
    return (f"- CPU per {label}, wsgate / {reference}: {num(v, 2)} ({what}{spread}){met}"
            f"{flag('wsgate', scenario) or flag(reference, scenario) if pairs else ''}")


sequential = [ratio_line(s, label, ref, target, not judged_paired)
              for s, label, ref, target in TARGETS[:3]]
rate = ratio_line("rate", "echoed 64 B message at 5k msg/s", "haproxy-tcp", "", False)
sequential.append(rate and rate.replace("for comparison", "same offered load"))
sequential += [ratio_line(*target, not judged_paired) for target in TARGETS[3:]]
v = result("wsgate", "idle").get("rss_kib_per_conn")
sequential.append(f"- RSS per idle connection, wsgate: {num(v, 2)} KiB (target ≤ 4 KiB)"
                  f"{' ✓' if v is not None and v <= 4 else ' ✗'}" if v is not None else
                  f"- RSS per idle connection, wsgate: {NOT_MEASURED} (target ≤ 4 KiB)")
block("Ratios from the table, wsgate / reference (lower is better for wsgate)"
      + (":" if not judged_paired else "; the CPU targets are judged on the paired runs below:"),
      [line for line in sequential if line])

# wsgate and the reference under the same load at the same moment, one pair per round.
paired = [ratio_line(f"paired-{s}", label, ref, target, True, pairs=True)
          for s, label, ref, target in TARGETS]
block("The CPU targets, from the paired runs (wsgate and the reference loaded at the same time, "
      "one load generator each, both proxies on the proxy core; one ratio per pair, the median "
      "over the pairs):", [line for line in paired if line])

# A second instance of the same binary: how far a ratio moves when the proxies do not differ.
twin = []
for s, label in [(s, f"{size} message") for s, size in SIZES] + [("handshakes", "handshake")]:
    for scenario, how in [(s, "one after the other"), (f"twin-paired-{s}", "at the same time")]:
        v, spread = round_ratios(scenario, "wsgate-twin", "wsgate")
        if v is not None:
            spread = spread.replace("rounds", "pairs") if "paired" in scenario else spread
            spread = f" ({spread.lstrip(', ')})" if spread else ""
            twin.append(f"- CPU per {label}, {how}: {num(v, 2)}{spread}"
                        f"{flag('wsgate-twin', scenario)}")
block("Noise floor: wsgate-twin / wsgate, the same binary twice (no difference but the "
      "machine's):", twin)

# --- wss: TLS terminated at the proxy -------------------------------------------------------------
# Each proxy's TLS instance: the same configuration plus a TLS listener, in a process of its own.
WSS_TARGETS = [(s, f"wss {size} message", "haproxy-tcp", "≤ 1.00") for s, size in WSS_SIZES]
WSS_TARGETS.append(("wss-handshakes", "full TLS handshake", "nginx", "≤ 1.00"))
WSS_RSS_REFERENCE = "haproxy-tcp"


def first_cell(v, digits, proxy, scenario):
    """A figure, or "not measured" when the scenario has none for this proxy."""
    return (NOT_MEASURED if v is None else num(v, digits)) + flag(proxy, scenario)


if wss_proxies:
    negotiated = {}
    for (p, scenario), records in rounds.items():
        if scenario in WSS_SCENARIOS or scenario.startswith("paired-wss-"):
            for r in records:
                res = r["result"]
                if res.get("tls_version"):
                    what = ", ".join(res[k] for k in ["tls_version", "tls_cipher", "tls_group"]
                                     if res.get(k))
                    negotiated.setdefault(what, set()).add(p)
    resumed = sum(r["result"].get("tls_resumed") or 0 for (_, scenario), records in rounds.items()
                  if scenario.startswith(("wss-", "paired-wss-")) for r in records)
    verified = any(r["result"].get("tls_verified") for (_, scenario), records in rounds.items()
                   if scenario.startswith(("wss-", "paired-wss-")) for r in records)
    if len(negotiated) == 1:
        how = f"negotiated {next(iter(negotiated))} with every proxy"
    else:
        how = "negotiated " + "; ".join(f"{what} ({', '.join(sorted(ps))})"
                                        for what, ps in sorted(negotiated.items()))
    print(f"wss: TLS terminated at each proxy (a second process of it: the same configuration "
          f"plus a TLS listener), one ECDSA P-256 certificate for all, the same plain echo "
          f"backend; {how or 'nothing negotiated'}; the certificate "
          f"{'verified (chain and name) by' if verified else 'not verified by'} the load "
          f"generator; every handshake a full one ({resumed} sessions resumed).")
    print()
    head = ["proxy (wss)"]
    for _, label in WSS_SIZES:
        head += [f"{label} msgs/s", "p99 ms", "CPU µs/msg"]
    head += ["full handshakes/s", "CPU µs/handshake", "RSS KiB/idle TLS conn"]
    print("| " + " | ".join(head) + " |")
    print("|---" + "|--:" * (len(head) - 1) + "|")
    for p in wss_proxies:
        cells = [p]
        for scenario, _ in WSS_SIZES:
            r = result(p, scenario)
            cells += [first_cell(r.get("msgs_per_s"), 0, p, scenario), ms(r.get("p99_us")),
                      num(cpu_per_unit(p, scenario), 2)]
        r = result(p, "wss-handshakes")
        cells += [first_cell(r.get("handshakes_per_s"), 0, p, "wss-handshakes"),
                  num(cpu_per_unit(p, "wss-handshakes"), 1)]
        cells.append(first_cell(result(p, "wss-idle").get("rss_kib_per_conn"), 2, p, "wss-idle"))
        print("| " + " | ".join(cells) + " |")
    print()

    if "wsgate" in wss_proxies:
        judged_wss_paired = any(round_ratios(f"paired-{s}", "wsgate", ref)[0] is not None
                                for s, _, ref, _ in WSS_TARGETS)
        lines = []
        for s, label, ref, target in WSS_TARGETS:
            line = ratio_line(s, label, ref, target, not judged_wss_paired)
            if line is None and ref in wss_proxies:
                line = f"- CPU per {label}, wsgate / {ref}: {NOT_MEASURED} (target {target})"
            lines.append(line)
        v = value("wsgate", "wss-idle", "rss_kib_per_conn")
        ref = value(WSS_RSS_REFERENCE, "wss-idle", "rss_kib_per_conn")
        others = ", ".join(f"{p} {num(x, 2)} KiB" for p in wss_proxies if p != "wsgate"
                           for x in [value(p, "wss-idle", "rss_kib_per_conn")] if x is not None)
        others = f"; {others}" if others else ""
        if v is None:
            lines.append(f"- RSS per idle TLS connection, wsgate: {NOT_MEASURED}{others} (target "
                         f"≤ {WSS_RSS_REFERENCE}'s, aim {WSS_RSS_AIM_KIB} KiB)")
        else:
            r = ratio(v, ref)
            met = "" if r is None else (" ✓" if r <= 1 else " ✗")
            aim = "✓" if v <= WSS_RSS_AIM_KIB else "not yet"
            lines.append(f"- RSS per idle TLS connection, wsgate: {num(v, 2)} KiB{others}: "
                         f"wsgate / {WSS_RSS_REFERENCE} {num(r, 2)} (target ≤ 1.00){met}; aim "
                         f"{WSS_RSS_AIM_KIB} KiB: {aim}")
        block("wss ratios from the table, wsgate / reference (lower is better for wsgate)"
              + (":" if not judged_wss_paired else
                 "; the CPU targets are judged on the paired runs below:"),
              [line for line in lines if line])
        paired_wss = []
        for s, label, ref, target in WSS_TARGETS:
            line = ratio_line(f"paired-{s}", label, ref, target, True, pairs=True)
            if line is None and (("wsgate", f"paired-{s}") in rounds):
                line = (f"- CPU per {label}, wsgate / {ref}: {NOT_MEASURED} (same load, same "
                        f"time, target {target}){flag('wsgate', f'paired-{s}')}")
            paired_wss.append(line)
        block("The wss CPU targets, from the paired runs (as above: wsgate and the reference over "
              "TLS, loaded at the same time):", [line for line in paired_wss if line])

# Segments on the wire: what a relay cannot save by spending less CPU, but can by knowing where
# the bytes of a connection begin and end.
segments = []
for scenario, label in [("handshakes", "handshake"), ("echo-64", "64 B echo"),
                        ("wss-handshakes", "full TLS handshake"), ("wss-echo-64", "wss 64 B echo")]:
    cells = [f"{p} {num(value(p, scenario, 'tcp_segments_per_unit'), 2)}" for p in proxies
             if value(p, scenario, "tcp_segments_per_unit") is not None]
    if cells:
        segments.append(f"- per {label}: " + ", ".join(cells))
block("TCP segments sent on loopback per unit, by every process (load generator, proxy, "
      "backend), in the sequential runs:", segments)

# --- filters (issue 19): their cost on the relay, and keepalive on idle sessions -----------------
filters = []
for s_, size in SIZES[:2]:
    for scenario, reference, target, label in [
            (f"paired-filters-{s_}", "wsgate", 1.10, "wsgate without filters"),
            (f"paired-filters-tcp-{s_}", "haproxy-tcp", 1.00, "haproxy-tcp")]:
        v, spread = round_ratios(scenario, "wsgate-filters", reference)
        if v is not None:
            met = verdict(v, target, True)
            filters.append(f"- CPU per {size} message, wsgate with rate_limit, keepalive, "
                           f"max_duration, message_size / {label}: {num(v, 2)} (same load, same "
                           f"time, target ≤ {target:.2f}{spread.replace('rounds', 'pairs')}){met}"
                           f"{flag('wsgate-filters', scenario) or flag(reference, scenario)}")
    v, spread = round_ratios(f"paired-utf8-{s_}", "wsgate-utf8", "wsgate")
    if v is not None:
        filters.append(f"- CPU per {size} text message, wsgate with utf8 / without: {num(v, 2)} "
                       f"(same load, same time{spread.replace('rounds', 'pairs')})"
                       f"{flag('wsgate-utf8', f'paired-utf8-{s_}')}")
k = result("wsgate-keepalive", "keepalive-idle")
if k:
    per = k.get("rss_kib_per_conn")
    filters.append(f"- keepalive every 1 s on both legs of {k.get('held', 0):,} idle sessions: "
                   f"{num(k.get('pings'))} pings in {num(k.get('window_s'))} s, "
                   f"{num(k.get('proxy_cpu_us_per_ping'), 2)} CPU µs per ping sent and answered, "
                   f"{num(k.get('keepalive_timeouts'))} timeouts; RSS per idle session "
                   f"{num(per, 2)} KiB (target ≤ 4 KiB)"
                   f"{(' ✓' if per <= 4 else ' ✗') if per is not None else ''}"
                   f"{flag('wsgate-keepalive', 'keepalive-idle')}")
block("Filters (issue 19), each wsgate with filters a process of its own:", filters)

# Whether the load side kept up: with one core for load generator and backend, the msgs/s of the
# echo scenarios are bounded by that core long before a proxy saturates its own.
busy = []
for scenario, label in SIZES + [(s, f"wss {label}") for s, label in WSS_SIZES]:
    shares = []
    for p in proxies:
        r = result(p, scenario)
        cpu, secs = r.get("cpu", {}), r.get("seconds")
        if secs and "proxy_us" in cpu:
            load = cpu.get("loadgen_us", 0) + cpu.get("backend_us", 0)
            shares.append(f"{p} {cpu['proxy_us'] / secs / 1e4:.0f}% / {load / secs / 1e4:.0f}%")
    if shares:
        busy.append(f"- {label}: " + ", ".join(shares))
block("CPU busy during the echo windows, proxy / load generator + echo backend (100% = one "
      "core):", busy)

notes = []
statuses = {}  # instance -> why it did not run or stopped: said once, not again for every run
for p in PROXIES + [f"{p}-tls" for p in PROXIES] + FILTER_INSTANCES:
    if meta.get(f"status_{p}"):
        statuses[p] = meta[f"status_{p}"]
        notes.append(f"- {p}: {statuses[p]}")
notes += [f"- {v}" for k, v in sorted(meta.items()) if k.startswith("backend_")]
grouped = {}  # (proxy, what went wrong) -> where: a proxy down is one line, not one per run
for (p, scenario), records in sorted(rounds.items()):
    for r in records:
        res, parts = r["result"], []
        if "error" in res and res["error"] not in statuses.values():
            error = res["error"]
            for instance, why in statuses.items():
                error = error.replace(f" ({why})", f" (see {instance} above)")
            parts.append(error)
        for key in ["connect_failures", "errors", "failed"]:
            if res.get(key):
                parts.append(f"{key.replace('_', ' ')}: {res[key]}")
        if res.get("first_error"):
            parts.append(f"first error: {res['first_error']}")
        if res.get("timed_out"):
            parts.append("timed out")
        if res.get("tls_resumed"):
            parts.append(f"{res['tls_resumed']} TLS sessions resumed (full handshakes only)")
        if res.get("longest_gap_us", 0) >= STALL_US:
            parts.append(f"no echo at all for {res['longest_gap_us'] / 1e6:.2f} s (a stall of "
                         "the machine or a TCP retransmission timeout)")
        if parts:
            several = meta.get("rounds", 1) > 1 and scenario != "idle"
            where = f" round {r['round']}" if several else ""
            where += f" window {r['window']}" if r.get("window", 1) > 1 else ""
            grouped.setdefault((p, "; ".join(parts)), []).append(f"{scenario}{where}")
notes += [f"- {p} {', '.join(wheres)}: {what}" for (p, what), wheres in grouped.items()]
block("† Failures, ‡ stalls in this run:", notes)
