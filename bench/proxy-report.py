#!/usr/bin/python3
"""The report of bench/proxy-bench.sh: Markdown and gnuplot plots.

usage: proxy-report.py RESULTS CALLGRIND MEMORY STREAM PHASES OUT_DIR TMP

Reads what bench/proxy-bench.sh measured (its files and environment, see
there), writes OUT_DIR/latest.md and, when gnuplot is there (GNUPLOT_TERM is
pngcairo or png), OUT_DIR/proxy-rps.png and OUT_DIR/proxy-cpu.png, with the
plots' data and scripts in TMP. It only formats: every figure comes from the
files. Standard library only.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

env = os.environ
(results_path, callgrind_path, memory_path, stream_path, phases_path,
 out_dir, tmp) = sys.argv[1:8]
tck = int(env["BENCH_CLK_TCK"])
quick = env.get("BENCH_QUICK") == "1"
conns = env["BENCH_CONNS"]

TARGETS = ("direct", "switchd", "haproxy", "nginx-proxy")
PROXIES = ("switchd", "haproxy", "nginx-proxy")
CELLS = ("small", "16k", "one", "close")
NAMES = {"direct": "direct to the backend",
         "switchd": "switchd " + env["BENCH_REV"],
         "haproxy": "HAProxy %s, nbthread 1" % env["BENCH_HAPROXY"],
         "nginx-proxy": "nginx %s as a proxy, one worker" % env["BENCH_NGINX"]}
SHORT = {"direct": "direct", "switchd": "switchd", "haproxy": "HAProxy",
         "nginx-proxy": "nginx"}
CELL_TITLES = {
    "small": "3-byte body, %s keep-alive connections" % conns,
    "16k": "16 KiB body, %s keep-alive connections" % conns,
    "one": "3-byte body, 1 keep-alive connection (latency without queueing)",
    "close": "3-byte body, a new connection per request, %s connections"
             % conns}
CELL_NOTES = {
    "one": "One request at a time. Directly, wrk and the backend share a CPU; "
           "through a proxy each request crosses between the two CPUs four "
           "times (wrk, proxy, backend, proxy, wrk), each time waking an idle "
           "CPU, so ÷ direct here is mostly the cost of those wake-ups, and "
           "the proxies' CPU per request includes theirs.",
    "close": "`-H \"Connection: close\"`: the proxy closes each client "
             "connection after its response and wrk opens a new one. Through "
             "a proxy the backend keeps its connections (see backend "
             "connections opened), so the proxy takes the connection work off "
             "the pinned backend and ÷ direct can exceed 1."}
COLOURS = {"direct": "#999999", "switchd": "#1b9e77", "haproxy": "#d95f02",
           "nginx-proxy": "#7570b3"}
CELL_LABELS = {"small": "3 B, %s conns" % conns,
               "16k": "16 KiB, %s conns" % conns,
               "one": "3 B, 1 conn",
               "close": "3 B, new conn per req"}

# --- the measurements --------------------------------------------------------

rows = {}
for line in open(results_path):
    (cell, t, rnd, rps, p50, p99, reqs, pticks, bticks, lticks, errs, other,
     other_load, wall_ns, upstream) = line.rstrip("\n").split("\t")
    reqs = int(reqs)
    wall = int(wall_ns) / 1e9
    nan = float("nan")
    rows.setdefault((cell, t), []).append({
        "rps": float(rps), "p50": float(p50) / 1000, "p99": float(p99) / 1000,
        "reqs": reqs,
        "cpu": int(pticks) * 1e6 / tck / reqs if reqs else nan,
        "bcpu": int(bticks) * 1e6 / tck / reqs if reqs else nan,
        "busy": int(pticks) / tck / wall,
        "load": int(lticks) / tck / wall,
        "other": max(int(other), int(other_load)) / tck / wall,
        "errors": int(errs), "upstream": int(upstream)})


def vals(cell, t, key):
    return [r[key] for r in rows.get((cell, t), [])]


def med(cell, t, key):
    v = vals(cell, t, key)
    return statistics.median(v) if v else None


def spread(cell, t, key, fmt):
    v = vals(cell, t, key)
    if len(v) < 2:
        return ""
    return " (%s–%s)" % (fmt % min(v), fmt % max(v))


def ratio(a, b, fmt="%.2f"):
    return fmt % (a / b) if a is not None and b else "-"


callgrind = {}
for line in open(callgrind_path):
    label, n, ir, secs = line.rstrip("\n").split("\t")
    callgrind[label] = (int(n), int(ir), int(secs))



def annotate(path):
    """Exclusive Ir per function of one callgrind output, as a dict keyed by
    (function, object), from callgrind_annotate; empty if it fails."""
    try:
        r = subprocess.run(["callgrind_annotate", "--threshold=100",
                            "--auto=no", path],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    counts = {}
    listing = False
    for line in r.stdout.splitlines():
        # The per-function listing follows its header line.
        if line.rstrip().endswith("file:function"):
            listing = True
            continue
        m = listing and re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not m or m.group(2) == "PROGRAM TOTALS":
            continue
        where = m.group(2)
        obj = ""
        o = re.search(r" \[(.*)\]$", where)
        if o:
            obj = os.path.basename(o.group(1))
            where = where[:o.start()]
        fn = where.rsplit(":", 1)[-1] if ":" in where else where
        if obj == "switchd-bin":
            obj = "switchd"
        key = (fn, obj)
        counts[key] = counts.get(key, 0) + int(m.group(1).replace(",", ""))
    return counts


def callgrind_top(n, count=12):
    """The functions that take the most instructions per request: the
    difference of the two runs' profiles, divided by the request count."""
    full = annotate(os.path.join(tmp, "callgrind-full.out"))
    base = annotate(os.path.join(tmp, "callgrind-base.out"))
    if not full:
        return []
    diff = [(fn, obj, (ir - base.get((fn, obj), 0)) / n)
            for (fn, obj), ir in full.items()]
    diff.sort(key=lambda x: -x[2])
    return diff[:count]


memory = [json.loads(line) for line in open(memory_path)]
stream = [json.loads(line) for line in open(stream_path)]
phases = [line.rstrip("\n").split("\t") for line in open(phases_path)]

# --- plots -------------------------------------------------------------------

plots = {}


def plot(name, title, ylabel, key, targets):
    """A clustered bar chart, one cluster per cell and one bar per target:
    the median, with the min-max over the rounds as an error bar."""
    path = os.path.join(out_dir, name)
    if os.path.exists(path):
        os.remove(path)
    term = env.get("GNUPLOT_TERM", "")
    present = [t for t in targets if any(k[1] == t for k in rows)]
    if not term or not present:
        return
    dat = os.path.join(tmp, name + ".dat")
    with open(dat, "w") as f:
        for cell in CELLS:
            cols = ['"%s"' % CELL_LABELS[cell]]
            for t in present:
                v = vals(cell, t, key)
                if v:
                    cols += ["%g" % statistics.median(v), "%g" % min(v),
                             "%g" % max(v)]
                else:
                    cols += ["NaN"] * 3
            f.write(" ".join(cols) + "\n")
    series = []
    for i, t in enumerate(present):
        c = 2 + 3 * i
        using = "%d:%d:%d%s" % (c, c + 1, c + 2, ":xtic(1)" if i == 0 else "")
        series.append("'%s' using %s title '%s' linecolor rgb '%s'" % (
            dat, using, SHORT[t], COLOURS[t]))
    font = "Sans,10" if term == "pngcairo" else "small"
    script = os.path.join(tmp, name + ".gp")
    with open(script, "w") as f:
        f.write("""set terminal %s size 960,540 font "%s"
set output '%s'
set title "%s"
set ylabel "%s"
set datafile missing NaN
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xrange [-0.6:%d.6]
set yrange [0:*]
set grid ytics
set key top right
set xtics nomirror
plot %s
""" % (term, font, path, title, ylabel, len(CELLS) - 1,
       ", \\\n     ".join(series)))
    try:
        r = subprocess.run(["gnuplot", script], capture_output=True,
                           timeout=60, text=True)
        if r.returncode == 0 and os.path.exists(path):
            plots[name] = path
        else:
            sys.stderr.write("gnuplot failed on %s:\n%s" % (script, r.stderr))
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("gnuplot failed on %s: %s\n" % (script, e))


plot("proxy-rps.png", "Requests/s per target (median; bars: min-max over "
     "the rounds)", "requests/s", "rps", TARGETS)
plot("proxy-cpu.png", "Proxy CPU time per request (median; bars: min-max "
     "over the rounds)", "CPU µs per request", "cpu", PROXIES)

# --- the report --------------------------------------------------------------

out = []
w = out.append
elapsed = int(time.time()) - int(env["RUN_T0"])
w("# Proxy benchmark, %s%s" % (
    env["RUN_START"], " (quick mode: a smoke test; the figures are only "
    "indicative)" if quick else ""))
w("")
w("%s, %d CPUs, Linux %s. HAProxy %s, nginx %s, wrk %s, valgrind %s. "
  "switchd: %s, built %s; the binary: %s. The run took %d min %02d s."
  % (env["BENCH_CPU_MODEL"], os.cpu_count(), env["BENCH_KERNEL"],
     env["BENCH_HAPROXY"], env["BENCH_NGINX"], env["BENCH_WRK"],
     env["BENCH_VALGRIND"], env["SWITCHD_SRC"], env["SWITCHD_BUILT"],
     env["BENCH_REV"], elapsed // 60, elapsed % 60))
w("")
w("Loopback only. Backend: nginx %s, one process, no access log, a fixed "
  "3-byte body at / and a 16 KiB file (descriptor cached), reached by the "
  "proxies over keep-alive connections: switchd (pool of 64 idle), HAProxy "
  "(nbthread 1, http-reuse always), nginx (one worker, upstream keepalive "
  "64, HTTP/1.1). wrk: 1 thread; %s of %s s per cell and target (each "
  "round runs every cell, and in each every target, the targets' order "
  "rotated each round)%s; medians, with min–max over the rounds. The proxy "
  "under test on CPU %s, wrk and the backend on CPU %s."
  % (env["BENCH_NGINX"],
     "one round" if env["BENCH_ROUNDS"] == "1"
     else "%s interleaved rounds" % env["BENCH_ROUNDS"],
     env["BENCH_DURATION"],
     " after a %s s warm-up of each" % env["BENCH_WARMUP"]
     if env["BENCH_WARMUP"] != "0" else ", no warm-up",
     env["PROXY_CPU"], env["LOAD_CPU"]))
if int(env.get("BENCH_WAITED", "0")) > 0:
    w("")
    w("The run waited %s s at the start for other processes to quieten."
      % env["BENCH_WAITED"])

switchd_errors = [s for s in env.get("BENCH_SWITCHD_ERRORS", "").splitlines()
                  if s]
if switchd_errors:
    w("")
    w("**switchd failed:** " + "; ".join(switchd_errors) + ".")

# The targets of issue 7.
w("")
w("## Targets (issue 7)")
w("")
w("| target | switchd | HAProxy | nginx | met? |")
w("|---|---:|---:|---:|---|")


def verdict(ok):
    if ok is None:
        return "not measured"
    return "yes" if ok else "**no**"


def fmt(v, f):
    return f % v if v is not None else "-"


s_cpu, h_cpu, n_cpu = (med("small", t, "cpu") for t in PROXIES)
w("| CPU per request, 3-byte body, %s connections: at most HAProxy's "
  "| %s | %s | %s | %s |" % (
      conns, fmt(s_cpu, "%.1f µs"), fmt(h_cpu, "%.1f µs"),
      fmt(n_cpu, "%.1f µs"),
      verdict(s_cpu <= h_cpu if s_cpu is not None and h_cpu else None)))
s_p99, h_p99, n_p99 = (med("small", t, "p99") for t in PROXIES)
w("| p99 latency, 3-byte body, %s connections: at most HAProxy's "
  "| %s | %s | %s | %s |" % (
      conns, fmt(s_p99, "%.3f ms"), fmt(h_p99, "%.3f ms"),
      fmt(n_p99, "%.3f ms"),
      verdict(s_p99 <= h_p99 if s_p99 is not None and h_p99 else None)))
per_conn = {m["target"]: m["per_conn_bytes"] / 1024 for m in memory
            if "error" not in m}
s_mem = per_conn.get("switchd")
w("| RSS per idle keep-alive connection (%s connections): at most 0.5 KiB "
  "| %s | %s | %s | %s |" % (
      env["BENCH_IDLE_CONNS"], fmt(s_mem, "%.2f KiB"),
      fmt(per_conn.get("haproxy"), "%.2f KiB"),
      fmt(per_conn.get("nginx-proxy"), "%.2f KiB"),
      verdict(s_mem <= 0.5 if s_mem is not None else None)))
w("")
w("The issue's reference, measured on this machine with the same method: "
  "HAProxy 2.6 about 15 µs of CPU per request at about 0.9 of direct, "
  "nginx 1.22 about 17 µs; HAProxy 1.1 KiB and nginx 0.5 KiB per idle "
  "connection.")

# Throughput and latency, one table per cell.
w("")
w("## Throughput and latency")
w("")
if "proxy-rps.png" in plots:
    w("![requests/s per target and cell](proxy-rps.png)")
    w("")
if "proxy-cpu.png" in plots:
    w("![proxy CPU µs per request, per cell](proxy-cpu.png)")
    w("")
for cell in CELLS:
    if not any(k[0] == cell for k in rows):
        continue
    w("### " + CELL_TITLES[cell])
    w("")
    if cell in CELL_NOTES:
        w(CELL_NOTES[cell])
        w("")
    w("| target | req/s | ÷ direct | p50 (ms) | p99 (ms) | proxy CPU µs/req "
      "| proxy core busy | backend CPU µs/req | backend connections opened "
      "| errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    direct = med(cell, "direct", "rps")
    for t in TARGETS:
        if (cell, t) not in rows:
            continue
        rps = med(cell, t, "rps")
        cpu = "-" if t == "direct" else "%.1f%s" % (
            med(cell, t, "cpu"), spread(cell, t, "cpu", "%.1f"))
        busy = "-" if t == "direct" else "%.0f %%" % (100 * med(cell, t, "busy"))
        ups = vals(cell, t, "upstream")
        w("| %s | %.0f%s | %s | %.3f | %.3f%s | %s | %s | %.1f | %s | %d |" % (
            NAMES[t], rps, spread(cell, t, "rps", "%.0f"), ratio(rps, direct),
            med(cell, t, "p50"), med(cell, t, "p99"),
            spread(cell, t, "p99", "%.3f"), cpu, busy, med(cell, t, "bcpu"),
            "-" if min(ups) < 0 else "%d" % statistics.median(ups),
            sum(vals(cell, t, "errors"))))
    w("")

# switchd against the others, per cell.
if any(k[1] == "switchd" for k in rows):
    w("### switchd ÷ HAProxy and switchd ÷ nginx")
    w("")
    w("Medians; below 1 is better for p50, p99 and CPU, above 1 for req/s.")
    w("")
    w("| cell | ÷ HAProxy: req/s | p50 | p99 | CPU/req "
      "| ÷ nginx: req/s | p50 | p99 | CPU/req |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in CELLS:
        if (cell, "switchd") not in rows:
            continue
        cols = []
        for other in ("haproxy", "nginx-proxy"):
            for key in ("rps", "p50", "p99", "cpu"):
                cols.append(ratio(med(cell, "switchd", key),
                                  med(cell, other, key)))
        w("| %s | %s |" % (CELL_LABELS[cell], " | ".join(cols)))
    w("")

w("Proxy CPU µs/req: the proxy's utime + stime (/proc/PID/stat) over the "
  "run, divided by wrk's request count; it compares the proxies whichever "
  "side limits the rate. Proxy core busy: that CPU time over the run's wall "
  "time; below about 95 % the proxy was not what limited the rate (the "
  "pinned backend and wrk, on the other core, were). Backend connections "
  "opened: the backend's count of accepted connections over the run (median "
  "of the rounds): through a proxy that keeps its upstream connections, at "
  "most about one pool (64), opened again when the idle ones timed out "
  "while the other targets ran (switchd's pool here closes them after 10 s "
  "idle); one per request when wrk reconnects to the backend itself. "
  "Errors: non-2xx responses and socket errors, all rounds.")
worst = max((r["other"] for k in rows for r in rows[k]), default=0)
if worst > 0.05:
    w("")
    w("**Warning:** something other than the processes under test (other "
      "processes, interrupts) used up to %.0f %% of a CPU during a run (%d of "
      "%d runs above 10 %%); the runs so disturbed are slower than the "
      "machine allows, which the medians only partly absorb; CPU time per "
      "request is the least affected figure." % (
          100 * worst,
          sum(1 for k in rows for r in rows[k] if r["other"] > 0.10),
          sum(len(rows[k]) for k in rows)))

# Instructions per request.
w("")
w("## Instructions per request (callgrind)")
w("")
cg_note = env.get("BENCH_CG_NOTE", "")
if "full" in callgrind and "base" in callgrind:
    n_full, ir_full, s_full = callgrind["full"]
    n_base, ir_base, s_base = callgrind["base"]
    n = n_full - n_base
    per_req = (ir_full - ir_base) / n
    w("switchd under `valgrind --tool=callgrind`, one client connection, "
      "one request at a time (3-byte body): %d requests after %d of "
      "warm-up, less a run of the warm-up alone; all threads' instructions "
      "(Ir), startup and shutdown cancelled out. User space only: the "
      "kernel's side of the system calls is not counted. The count depends "
      "on the code and the libraries, not on the machine's load: a change "
      "of more than a few tenths of a per cent is a change in the code "
      "path." % (n, n_base))
    w("")
    w("**%.0f instructions per request.**" % per_req)
    w("")
    w("| run | requests | Ir (total) | wall time (s) |")
    w("|---|---:|---:|---:|")
    w("| warm-up + measured | %d | %d | %d |" % (n_full, ir_full, s_full))
    w("| warm-up only | %d | %d | %d |" % (n_base, ir_base, s_base))
    top = callgrind_top(n)
    if top:
        w("")
        w("Where they go: each function's own instructions (callgrind_annotate,"
          " exclusive), the same difference of the two runs, per request; "
          "the first %d." % len(top))
        w("")
        w("| function | object | Ir/request | share |")
        w("|---|---|---:|---:|")
        for fn, obj, ir in top:
            w("| `%s` | %s | %.0f | %.1f %% |" % (fn, obj, ir,
                                                 100 * ir / per_req))
else:
    w("Not measured: %s." % (cg_note or "no result"))

# Memory: idle connections.
w("")
w("## Memory per idle keep-alive client connection")
w("")
w("A fresh instance of each proxy; %s client connections, one request each, "
  "response read, kept open; VmRSS of the proxy process before and after, "
  "after 1 s to settle." % env["BENCH_IDLE_CONNS"])
w("")
w("| proxy | connections held | RSS before (KiB) | RSS after (KiB) "
  "| per connection (KiB) |")
w("|---|---:|---:|---:|---:|")
for m in memory:
    name = NAMES.get(m["target"], m["target"])
    if "error" in m:
        w("| %s | failed: %s | | | |" % (name, m["error"]))
        continue
    w("| %s | %d of %d | %d | %d | %.2f |" % (
        name, m["alive"], m["n"], m["before_kb"], m["after_kb"],
        m["per_conn_bytes"] / 1024))

# Memory: a large body to a slow reader.
w("")
w("## Memory while %s MiB stream to a slow reader"
  % env["BENCH_STREAM_MIB"])
w("")
w("A fresh instance of each proxy; one client connection makes a small "
  "request, then asks for a %s MiB body (a sparse file on the backend) and "
  "reads it in 16 KiB reads paced to %s MiB/s; the proxy's VmRSS and VmHWM "
  "are read every 100 ms. Growth: the largest VmRSS less the VmRSS after "
  "the first, small request. nginx is set not to spool responses to a "
  "temporary file (proxy_max_temp_file_size 0), so that, like the others, "
  "it reads its upstream at the client's pace."
  % (env["BENCH_STREAM_MIB"], env["BENCH_STREAM_RATE"]))
w("")
w("| proxy | MiB read | read at (MiB/s) | RSS before (KiB) | max RSS (KiB) "
  "| growth (KiB) | VmHWM (KiB) | samples |")
w("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in stream:
    name = NAMES.get(m["target"], m["target"])
    if "error" in m:
        w("| %s | failed: %s | | | | | | |" % (name, m["error"]))
        continue
    w("| %s | %.0f | %.1f | %d | %d | %d | %d | %d |" % (
        name, m["bytes"] / 1048576, m["mib_per_s"], m["before_kb"],
        m["max_rss_kb"], m["max_rss_kb"] - m["before_kb"], m["hwm_kb"],
        m["samples"]))

busy = max(float(env["BUSY_BEFORE"]), float(env["BUSY_AFTER"]))
if busy > 0.1:
    w("")
    w("**Warning:** other processes used %.2f CPUs just before or after "
      "this run; the figures are skewed by them." % busy)

warn = env.get("BENCH_WARN_LINES", "").strip()
if warn:
    w("")
    w("Logged by the proxies during the run (first lines):")
    w("")
    w("```")
    w(warn)
    w("```")

skipped = [s for s in env.get("BENCH_SKIPPED", "").splitlines() if s]
if skipped:
    w("")
    w("Not measured: " + "; ".join(skipped) + ".")

w("")
w("Durations: " + ", ".join("%s %d s" % (p, int(s)) for p, s in phases)
  + "; all %d min %02d s." % (elapsed // 60, elapsed % 60))

text = "\n".join(out) + "\n"
with open(os.path.join(out_dir, "latest.md"), "w") as f:
    f.write(text)
