#!/usr/bin/env bash
# switchd against HAProxy (and the backend directly) on loopback, in one run.
# Run by `make bench`; writes bench/out/latest.md and prints it.
#
# Throughput: wrk, keep-alive, 64 connections, 1 thread, against a fast
# backend (nginx, one process, fixed "ok\n" body, no access log). Targets are
# interleaved round by round (direct, switchd, haproxy; ROUNDS rounds of
# DURATION seconds after a short warm-up) and the medians are reported:
# requests/s, p99 latency, and CPU time per request of the proxy (utime +
# stime from /proc/PID/stat around each round, divided by wrk's request
# count). The proxy under test runs on CPU 0; wrk and the backend on CPU 1.
#
# Memory: a fresh instance of each proxy (switchd, HAProxy, nginx as a proxy;
# one process or thread each) gets IDLE_CONNS keep-alive client connections,
# one request each, held open; VmRSS before and after, divided by the count.
#
# Environment: BENCH_DURATION (s, default 10), BENCH_ROUNDS (3), BENCH_WARMUP
# (s per target, 5), BENCH_CONNS (64), BENCH_IDLE_CONNS (5000), SWITCHD_BIN
# (build/switchd).
#
# Everything listens on 127.0.0.1 only, every step has a time bound, and every
# process started here is stopped on exit, also on an error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-5}
CONNS=${BENCH_CONNS:-64}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
SWITCHD=${SWITCHD_BIN:-build/switchd}
PY=/usr/bin/python3
OUT_DIR=bench/out
OUT=$OUT_DIR/latest.md

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for cmd in wrk haproxy nginx taskset curl "$PY"; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is missing; run \`make deps\`"
done

# --- processes ---------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchd-bench.XXXXXX")
declare -A PID=() PORT=()
ALL_PIDS=()
BG_PID=

cleanup() {
  local pid
  if [[ -n $BG_PID ]]; then
    kill -TERM "$BG_PID" 2>/dev/null || true
  fi
  for pid in "${ALL_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    local alive=0
    for pid in "${ALL_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${ALL_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
if ((NCPU >= 2)); then
  PROXY_CPU=0
  LOAD_CPU=1
else
  log "warning: one CPU only; the proxy, wrk and the backend share it"
  PROXY_CPU=0
  LOAD_CPU=0
fi

# Idle connections need a descriptor each in the client and in the proxy, and
# HAProxy reserves two per connection of its maxconn: raise the open-file
# limit as far as allowed.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
((hard > 1048576)) && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
nofile=$(ulimit -n)
if ((nofile < 2 * (IDLE_CONNS + 1000) + 100)); then
  IDLE_CONNS=$(((nofile - 100) / 2 - 1000))
  ((IDLE_CONNS > 0)) || die "the open-file limit ($nofile) is too low"
  log "warning: open-file limit is $nofile; idle connections lowered to $IDLE_CONNS"
fi
MAXCONN=$((IDLE_CONNS + 1000))

# busy_cpus: how many CPUs' worth of time other processes used over 1 s.
# Anything else running skews every figure, so the report says so.
busy_cpus() {
  local a b
  a=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    busy = y[1] - x[1]; idle = y[2] - x[2]
    printf "%.2f\n", (busy + idle) ? n * busy / (busy + idle) : 0 }'
}

# free_ports N: N currently free loopback ports.
free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# render TEMPLATE NAME: the template with @DIR@, @PORT@ (NAME's port) and
# @BACKEND_PORT@ filled in, written to $TMP/NAME.conf; prints its path.
render() {
  local out="$TMP/$2.conf"
  sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|${PORT[$2]}|g" \
    -e "s|@BACKEND_PORT@|${PORT[backend]}|g" -e "s|@MAXCONN@|$MAXCONN|g" \
    "$1" >"$out"
  echo "$out"
}

# start NAME CPU COMMAND...: starts a server pinned to CPU. setsid and taskset
# both exec, so $! is the server's own pid; the session of its own keeps a
# Ctrl-C at the terminal from reaching it (switchd, nginx and HAProxy all
# handle SIGINT): this script stops it, with everything else, on the way out.
start() {
  local name=$1 cpu=$2
  shift 2
  setsid taskset -c "$cpu" "$@" </dev/null >"$TMP/$name.out" 2>&1 &
  PID[$name]=$!
  ALL_PIDS+=("$!")
}

# ready NAME: waits until NAME answers "ok" through its port (5 s at most).
ready() {
  local name=$1 body
  for _ in $(seq 50); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      log "$name exited at startup:"
      tail -n 20 "$TMP/$name.out" >&2 || true
      return 1
    fi
    body=$(curl -s -m 1 "http://127.0.0.1:${PORT[$name]}/" 2>/dev/null || true)
    [[ $body == ok ]] && return 0
    sleep 0.1
  done
  log "$name does not answer on port ${PORT[$name]}"
  tail -n 20 "$TMP/$name.out" >&2 || true
  return 1
}

stop() {
  local pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$1]"
  # Forget the pid, so that the final cleanup never signals a process that
  # later reused the number.
  local keep=() p
  for p in "${ALL_PIDS[@]}"; do
    [[ $p == "$pid" ]] || keep+=("$p")
  done
  ALL_PIDS=("${keep[@]+"${keep[@]}"}")
}

# cpu_ticks PID: utime + stime in clock ticks (all threads of the process).
cpu_ticks() {
  # Fields after the parenthesised command name; utime and stime are fields
  # 14 and 15 of the whole line, 12 and 13 after it.
  local stat
  if ! stat=$(cat "/proc/$1/stat" 2>/dev/null); then
    echo 0
    return
  fi
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}

# cpu_busy_ticks CPU: non-idle ticks of one CPU since boot (/proc/stat).
cpu_busy_ticks() {
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# children_ms: sets CHILD_MS to the CPU time (user + system, ms) of all the
# children this shell has waited for; the difference around a wrk run is
# wrk's own CPU time. `times` must run in this shell, not in a subshell,
# whose children are its own.
children_ms() {
  times >"$TMP/times"
  CHILD_MS=$(awk 'NR == 2 {
    split($1, u, /[ms]/); split($2, s, /[ms]/)
    printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' "$TMP/times")
}

# start_proxy NAME CPU: starts one of switchd, haproxy, nginx-proxy.
start_proxy() {
  local name=$1 cpu=$2 conf
  case $name in
    switchd)
      conf=$(render bench/switchd.conf.in switchd)
      start switchd "$cpu" "$SWITCHD" -c "$conf"
      ;;
    haproxy)
      conf=$(render bench/haproxy.cfg.in haproxy)
      start haproxy "$cpu" haproxy -db -f "$conf"
      ;;
    nginx-proxy)
      conf=$(render bench/nginx-proxy.conf.in nginx-proxy)
      start nginx-proxy "$cpu" nginx -p "$TMP" -e "$TMP/nginx-proxy-startup.log" -c "$conf"
      ;;
  esac
  ready "$name"
}

BUSY_BEFORE=$(busy_cpus)
if awk -v b="$BUSY_BEFORE" 'BEGIN { exit !(b > 0.1) }'; then
  log "warning: other processes use $BUSY_BEFORE CPUs; the figures will be skewed"
fi

# --- setup -------------------------------------------------------------------

read -r -a ports < <(free_ports 4)
PORT[backend]=${ports[0]}
PORT[direct]=${ports[0]}
PORT[switchd]=${ports[1]}
PORT[haproxy]=${ports[2]}
PORT[nginx-proxy]=${ports[3]}

conf=$(render bench/backend-nginx.conf.in backend)
start backend "$LOAD_CPU" nginx -p "$TMP" -e "$TMP/backend-startup.log" -c "$conf"
ready backend || die "the backend nginx did not start"
PID[direct]=${PID[backend]}

TARGETS=(direct)
SKIPPED=()
HAVE_SWITCHD=0
[[ -x $SWITCHD ]] && HAVE_SWITCHD=1
if ((!HAVE_SWITCHD)); then
  log "$SWITCHD not found; switchd is left out (make bench builds it)"
  SKIPPED+=("switchd: $SWITCHD not built")
elif start_proxy switchd "$PROXY_CPU"; then
  TARGETS+=(switchd)
else
  SKIPPED+=("switchd: did not start or answer (see its log above)")
fi
if start_proxy haproxy "$PROXY_CPU"; then
  TARGETS+=(haproxy)
else
  SKIPPED+=("haproxy: did not start or answer")
fi

# --- throughput --------------------------------------------------------------

RESULTS=$TMP/results.tsv
: >"$RESULTS"

# bounded SECONDS OUTFILE COMMAND...: runs a load client with a time bound
# and waits for it. It runs in the background and is waited for with `wait`,
# which a signal interrupts at once (a foreground command would make the
# INT/TERM trap wait for it); the trap's cleanup then ends it through BG_PID.
bounded() {
  local secs=$1 out=$2 rc=0
  shift 2
  timeout --kill-after=5 "$secs" "$@" </dev/null >"$out" 2>&1 &
  BG_PID=$!
  wait "$BG_PID" || rc=$?
  BG_PID=
  return "$rc"
}

# wrk_run TARGET SECONDS OUTFILE
wrk_run() {
  bounded $(($2 + 30)) "$3" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$CONNS" -d"$2"s --latency "http://127.0.0.1:${PORT[$1]}/"
}

# to_us VALUE: wrk's "850.00us" / "1.23ms" / "1.02s" in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n
    else if (v ~ /ms$/) print n * 1000
    else if (v ~ /m$/) print n * 60000000
    else if (v ~ /s$/) print n * 1000000
    else print "nan" }'
}

log "warm-up: $WARMUP s per target (${TARGETS[*]})"
for t in "${TARGETS[@]}"; do
  wrk_run "$t" "$WARMUP" "$TMP/warmup-$t.txt" || log "warm-up of $t failed"
done

for round in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    log "round $round/$ROUNDS: $t, ${DURATION}s, $CONNS connections"
    out=$TMP/wrk-$t-$round.txt
    proxy_pid=${PID[$t]}
    if ! kill -0 "$proxy_pid" 2>/dev/null; then
      log "$t is no longer running; its remaining rounds are skipped"
      tail -n 20 "$TMP/$t.out" >&2 || true
      [[ " ${SKIPPED[*]} " == *" $t: died during the run "* ]] ||
        SKIPPED+=("$t: died during the run")
      continue
    fi
    p0=$(cpu_ticks "$proxy_pid")
    b0=$(cpu_ticks "${PID[backend]}")
    c0=$(cpu_busy_ticks "$PROXY_CPU")
    l0=$(cpu_busy_ticks "$LOAD_CPU")
    children_ms
    w0=$CHILD_MS
    if ! wrk_run "$t" "$DURATION" "$out"; then
      log "wrk against $t failed:"
      cat "$out" >&2
      continue
    fi
    p1=$(cpu_ticks "$proxy_pid")
    b1=$(cpu_ticks "${PID[backend]}")
    c1=$(cpu_busy_ticks "$PROXY_CPU")
    l1=$(cpu_busy_ticks "$LOAD_CPU")
    children_ms
    w1=$CHILD_MS
    # What else ran during the round (other processes, interrupts): on the
    # proxy's CPU, all but the proxy; on the load CPU, all but wrk and the
    # backend. Both should be near zero on an idle machine.
    other=$((c1 - c0))
    [[ $t == direct ]] || other=$((other - (p1 - p0)))
    ((other < 0)) && other=0
    if ((LOAD_CPU != PROXY_CPU)); then
      other_load=$((l1 - l0 - (b1 - b0) - (w1 - w0) * CLK_TCK / 1000))
      ((other_load < 0)) && other_load=0
    else
      other_load=0
    fi
    requests=$(awk '/ requests in /{ print $1 }' "$out")
    rps=$(awk '/^Requests\/sec:/{ print $2 }' "$out")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF }' "$out")
    sockerr=$(awk '/Socket errors:/{ gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
    errors=$((${non2xx:-0} + ${sockerr:-0}))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" "${rps:-0}" \
      "$p99" "${requests:-0}" $((p1 - p0)) $((b1 - b0)) "$errors" "$other" "$other_load" >>"$RESULTS"
    log "  $rps req/s, p99 ${p99} us, $errors errors; other load: CPU $PROXY_CPU $other, CPU $LOAD_CPU $other_load ticks"
  done
done

# --- memory per idle keep-alive connection -----------------------------------

stop switchd
stop haproxy
MEMORY=$TMP/memory.jsonl
: >"$MEMORY"

MEM_TARGETS=()
((HAVE_SWITCHD)) && MEM_TARGETS+=(switchd)
MEM_TARGETS+=(haproxy nginx-proxy)
for t in "${MEM_TARGETS[@]}"; do
  log "memory: $IDLE_CONNS idle keep-alive connections to a fresh $t"
  if ! start_proxy "$t" "$PROXY_CPU"; then
    printf '{"target": "%s", "error": "did not start"}\n' "$t" >>"$MEMORY"
    stop "$t"
    continue
  fi
  bounded 120 "$TMP/memory-$t.json" taskset -c "$LOAD_CPU" \
    "$PY" bench/idle-clients.py "${PORT[$t]}" "${PID[$t]}" "$IDLE_CONNS" || true
  json=$(tail -n 1 "$TMP/memory-$t.json")
  [[ $json == \{* ]] || json='{"error": "the client failed or timed out"}'
  log "  $json"
  printf '{"target": "%s", %s\n' "$t" "${json#\{}" >>"$MEMORY"
  stop "$t"
done

stop backend
BUSY_AFTER=$(busy_cpus)

# --- report ------------------------------------------------------------------

mkdir -p "$OUT_DIR"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
export BENCH_REV=$rev BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_WARMUP=$WARMUP \
  BENCH_CONNS=$CONNS BENCH_IDLE_CONNS=$IDLE_CONNS PROXY_CPU LOAD_CPU
BENCH_CPU_MODEL=$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)
BENCH_KERNEL=$(uname -r)
BENCH_HAPROXY=$(haproxy -v 2>&1 | awk 'NR == 1 { print $3 }')
BENCH_NGINX=$(nginx -v 2>&1 | sed 's|.*nginx/||')
BENCH_CLK_TCK=$CLK_TCK
BENCH_SKIPPED=$(printf '%s\n' "${SKIPPED[@]+"${SKIPPED[@]}"}")
export BUSY_BEFORE BUSY_AFTER BENCH_CPU_MODEL BENCH_KERNEL BENCH_HAPROXY BENCH_NGINX BENCH_CLK_TCK \
  BENCH_SKIPPED

"$PY" - "$RESULTS" "$MEMORY" "$OUT" <<'EOF'
import json, os, statistics, sys, time

results_path, memory_path, out_path = sys.argv[1:4]
env = os.environ
tck = int(env["BENCH_CLK_TCK"])

rows = {}
for line in open(results_path):
    t, rnd, rps, p99, reqs, pticks, bticks, errs, other, other_load = \
        line.rstrip("\n").split("\t")
    reqs = int(reqs)
    rows.setdefault(t, []).append({
        "rps": float(rps), "p99": float(p99), "reqs": reqs,
        "cpu": int(pticks) * 1e6 / tck / reqs if reqs else float("nan"),
        "bcpu": int(bticks) * 1e6 / tck / reqs if reqs else float("nan"),
        "busy": int(pticks) / tck / int(env["BENCH_DURATION"]),
        "other": max(int(other), int(other_load)) / tck
                 / int(env["BENCH_DURATION"]),
        "errors": int(errs)})

def med(t, key):
    return statistics.median(r[key] for r in rows[t])

names = {"direct": "direct to the backend",
         "switchd": "switchd " + env["BENCH_REV"],
         "haproxy": "HAProxy %s, nbthread 1" % env["BENCH_HAPROXY"]}
out = []
out.append("# Proxy benchmark, %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
out.append("")
out.append("%s, %d CPUs, Linux %s. Loopback only. wrk: keep-alive, %s "
           "connections, 1 thread; %s interleaved rounds of %s s per target "
           "after a %s s warm-up; medians. Backend: nginx %s, one process, "
           "fixed 3-byte body, no access log. Proxy on CPU %s, wrk and backend "
           "on CPU %s."
           % (env["BENCH_CPU_MODEL"], os.cpu_count(), env["BENCH_KERNEL"],
              env["BENCH_CONNS"], env["BENCH_ROUNDS"], env["BENCH_DURATION"],
              env["BENCH_WARMUP"],
              env["BENCH_NGINX"], env["PROXY_CPU"], env["LOAD_CPU"]))
out.append("")
out.append("| target | req/s | vs direct | p99 (ms) | proxy CPU µs/req "
           "| proxy core busy | backend CPU µs/req | errors "
           "| req/s per round (other load) |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
direct = med("direct", "rps") if "direct" in rows else None
for t in ("direct", "switchd", "haproxy"):
    if t not in rows:
        continue
    rps = med(t, "rps")
    ratio = "%.2f" % (rps / direct) if direct else "-"
    cpu = "-" if t == "direct" else "%.1f" % med(t, "cpu")
    busy = "-" if t == "direct" else "%.0f %%" % (100 * med(t, "busy"))
    out.append("| %s | %.0f | %s | %.3f | %s | %s | %.1f | %d | %s |" % (
        names[t], rps, ratio, med(t, "p99") / 1000, cpu, busy, med(t, "bcpu"),
        sum(r["errors"] for r in rows[t]),
        " / ".join("%.0f (%.0f %%)" % (r["rps"], 100 * r["other"])
                   for r in rows[t])))
if "switchd" in rows and "haproxy" in rows:
    out.append("")
    out.append("switchd ÷ HAProxy: req/s %.2f, p99 %.2f, CPU per request %.2f "
               "(target: req/s ≥ 1, p99 ≤ 1)." % (
                   med("switchd", "rps") / med("haproxy", "rps"),
                   med("switchd", "p99") / med("haproxy", "p99"),
                   med("switchd", "cpu") / med("haproxy", "cpu")))

out.append("")
out.append("Proxy core busy: the proxy's CPU time over the round's wall time; "
           "below about 95 % the proxy was not CPU-bound: it waited, or something "
           "else ran on its CPU. Other load: the most CPU that anything but the "
           "processes under test used on either CPU during the round (0 % on a "
           "quiet machine).")
worst = max((r["other"] for t in rows for r in rows[t]), default=0)
if worst > 0.05:
    out.append("")
    out.append("**Warning:** something other than the processes under test "
               "(other processes, interrupts) used up to %.0f %% of a CPU "
               "during a round; rounds so disturbed are slower than the "
               "machine allows." % (100 * worst))
out.append("")
out.append("## Memory per idle keep-alive client connection")
out.append("")
out.append("A fresh instance of each proxy; %s client connections, one "
           "request each, response read, kept open; VmRSS of the proxy "
           "process before and after, after 1 s to settle."
           % env["BENCH_IDLE_CONNS"])
out.append("")
out.append("| proxy | connections held | RSS before (KiB) | RSS after (KiB) "
           "| per connection (KiB) |")
out.append("|---|---:|---:|---:|---:|")
mnames = {"switchd": "switchd", "haproxy": "HAProxy, nbthread 1",
          "nginx-proxy": "nginx as a proxy, one process"}
for line in open(memory_path):
    m = json.loads(line)
    name = mnames.get(m["target"], m["target"])
    if "error" in m:
        out.append("| %s | failed: %s | | | |" % (name, m["error"]))
        continue
    out.append("| %s | %d of %d | %d | %d | %.2f |" % (
        name, m["alive"], m["n"], m["before_kb"], m["after_kb"],
        m["per_conn_bytes"] / 1024))

busy = max(float(env["BUSY_BEFORE"]), float(env["BUSY_AFTER"]))
if busy > 0.1:
    out.append("")
    out.append("**Warning:** other processes used %.2f CPUs just before or after "
               "this run; the figures above are skewed by them." % busy)

skipped = [s for s in env.get("BENCH_SKIPPED", "").splitlines() if s]
if skipped:
    out.append("")
    out.append("Not measured: " + "; ".join(skipped) + ".")

text = "\n".join(out) + "\n"
with open(out_path, "w") as f:
    f.write(text)
print(text)
EOF

log "written to $OUT"
# A run that could not measure switchd is not a successful benchmark.
((${#SKIPPED[@]} == 0))
