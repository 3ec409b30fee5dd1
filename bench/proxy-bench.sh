#!/usr/bin/env bash
# switchd against HAProxy and nginx (and the backend directly) on loopback,
# in one run (issue 7, parts 1, 2, 3 and the plots of 5). Run by `make
# bench`; writes bench/out/latest.md and its plots (bench/out/proxy-*.png)
# and prints the Markdown.
#
# usage: bench/proxy-bench.sh [--quick]
#
# Throughput and latency: wrk, 1 thread, against a fast backend (nginx, one
# process, no access log; a 3-byte body at /, a 16 KiB file at /files/16k),
# directly and through each proxy: switchd; HAProxy, nbthread 1, upstream
# keep-alive (http-reuse always); nginx as a proxy, one process, upstream
# keepalive pool of 64. Four cells:
#   small   keep-alive, CONNS connections, the 3-byte body;
#   16k     keep-alive, CONNS connections, the 16 KiB body;
#   one     keep-alive, 1 connection, the 3-byte body: latency without
#           queueing (p50 and p99);
#   close   -H "Connection: close", CONNS connections, the 3-byte body: a new
#           client connection per request (the proxies keep their upstream
#           connections; the backend's count of accepted connections shows
#           whether they do).
# After a warm-up of every cell and target, ROUNDS rounds; each round runs
# every cell, and in each cell every target once (A B C D, with the targets'
# order rotated each round so that none is always first). The report gives
# medians with min-max over the rounds: requests/s, p50 and p99 latency, and
# each proxy's CPU time per request (utime + stime from /proc/PID/stat around
# each run, divided by wrk's request count). The proxy under test runs on
# CPU 0, wrk and the backend on CPU 1, so "÷ direct" is the cost of one
# proxy core; the pinned backend caps requests/s, which is why the CPU time
# per request is the figure that compares the proxies.
#
# Instructions per request: switchd under valgrind --tool=callgrind, one
# client connection making CG_WARMUP + CG_REQUESTS small requests one after
# the other (bench/request-loop.py); a second run makes CG_WARMUP only; the
# difference of the two runs' total instruction counts (Ir, all threads),
# divided by CG_REQUESTS, is the instructions per request without startup
# and shutdown. It does not move with the machine's noise: for spotting
# regressions. Skipped, with a note, when valgrind is missing.
#
# Memory, for each proxy, a fresh instance each time:
#   idle     IDLE_CONNS keep-alive client connections, one request each,
#            held open; VmRSS before and after, divided by the count
#            (bench/idle-clients.py);
#   stream   a STREAM_MIB MiB body (a sparse file on the backend) read
#            through the proxy by a slow client, 16 KiB reads paced to
#            STREAM_RATE MiB/s; VmRSS and VmHWM every 100 ms, the maximum
#            reported (bench/slow-reader.py).
#
# Options: --quick: a smoke test of everything in well under two minutes
# (2 s per run, one round, no warm-up, 500 idle connections, 64 MiB
# streamed, callgrind over 2,000 requests). Either mode exits non-zero when
# switchd did not start, died, served no requests, or had an error (a non-2xx
# response, a socket error, a failed memory or callgrind client); and, as
# before, when a target could not be measured. It never asserts a speed.
#
# Environment (full / --quick): BENCH_DURATION (s per run; 10 / 2),
# BENCH_ROUNDS (3 / 1), BENCH_WARMUP (s per cell and target; 2 / 0),
# BENCH_CONNS (64), BENCH_IDLE_CONNS (5000 / 500), BENCH_STREAM_MIB (1024 /
# 64), BENCH_STREAM_RATE (MiB/s; 100), BENCH_CG_REQUESTS (20000 / 2000; 0
# skips callgrind), BENCH_CG_WARMUP (1000 / 200), BENCH_QUIET_WAIT (s to wait
# at most, at the start, for other processes to use less than 0.2 CPUs; 60 /
# 0), SWITCHD_BIN (build/switchd; copied at the start, so that a rebuild
# during the run does not change what is measured), SWITCHD_REV (what the
# report calls that binary; default: the repository's HEAD, "+dirty" if the
# working tree differs from it), BENCH_KEEP_TMP (1: keep the temporary
# directory, with the logs and the raw measurements, and say where).
#
# Everything listens on 127.0.0.1 only, every step has a time bound, and every
# process started here is stopped on exit, also on an error or Ctrl-C; the
# temporary directory (configs, logs, the sparse file) is removed.
set -euo pipefail

cd "$(dirname "$0")/.."

QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--quick]" >&2
      exit 2
      ;;
  esac
done

if ((QUICK)); then
  DURATION=${BENCH_DURATION:-2}
  ROUNDS=${BENCH_ROUNDS:-1}
  WARMUP=${BENCH_WARMUP:-0}
  IDLE_CONNS=${BENCH_IDLE_CONNS:-500}
  STREAM_MIB=${BENCH_STREAM_MIB:-64}
  CG_REQUESTS=${BENCH_CG_REQUESTS:-2000}
  CG_WARMUP=${BENCH_CG_WARMUP:-200}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
else
  DURATION=${BENCH_DURATION:-10}
  ROUNDS=${BENCH_ROUNDS:-3}
  WARMUP=${BENCH_WARMUP:-2}
  IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
  STREAM_MIB=${BENCH_STREAM_MIB:-1024}
  CG_REQUESTS=${BENCH_CG_REQUESTS:-20000}
  CG_WARMUP=${BENCH_CG_WARMUP:-1000}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
fi
CONNS=${BENCH_CONNS:-64}
STREAM_RATE=${BENCH_STREAM_RATE:-100}
SWITCHD_SRC=${SWITCHD_BIN:-build/switchd}
PY=/usr/bin/python3
OUT_DIR=bench/out
OUT=$OUT_DIR/latest.md
RUN_START=$(date -u '+%F %H:%M UTC')
RUN_T0=$(date +%s)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for cmd in wrk haproxy nginx taskset curl setsid timeout truncate "$PY"; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is missing; run \`make deps\`"
done
((CONNS <= 64)) || log "warning: $CONNS connections, but the proxies keep at most 64 idle upstream connections"

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
  for pid in "${ALL_PIDS[@]+"${ALL_PIDS[@]}"}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${ALL_PIDS[@]+"${ALL_PIDS[@]}"}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${ALL_PIDS[@]+"${ALL_PIDS[@]}"}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
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

# render TEMPLATE NAME: the template with @DIR@, @PORT@ (NAME's port),
# @BACKEND_PORT@ and @MAXCONN@ filled in, written to $TMP/NAME.conf; prints
# its path.
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

# ready NAME [TRIES [CURL_TIMEOUT]]: waits until NAME answers "ok" through its
# port (TRIES tenths of a second, 5 s by default).
ready() {
  local name=$1 tries=${2:-50} limit=${3:-1} body
  for _ in $(seq "$tries"); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      log "$name exited at startup:"
      tail -n 20 "$TMP/$name.out" >&2 || true
      return 1
    fi
    body=$(curl -s -m "$limit" "http://127.0.0.1:${PORT[$name]}/" 2>/dev/null || true)
    [[ $body == ok ]] && return 0
    sleep 0.1
  done
  log "$name does not answer on port ${PORT[$name]}"
  tail -n 20 "$TMP/$name.out" >&2 || true
  return 1
}

# stop NAME [TENTHS]: SIGTERM, then SIGKILL after TENTHS tenths of a second
# (3 s by default).
stop() {
  local pid=${PID[$1]:-} tenths=${2:-30}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq "$tenths"); do
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

# backend_accepts: connections the backend has accepted so far, not counting
# the one that asks (nginx's stub_status counts it).
backend_accepts() {
  curl -s -m 2 "http://127.0.0.1:${PORT[backend]}/status" |
    awk 'NR == 3 { print $1 - 1; found = 1 } END { if (!found) print -1 }'
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

# bounded SECONDS OUTFILE COMMAND...: runs a client with a time bound and
# waits for it. It runs in the background and is waited for with `wait`,
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

now_ns() { date +%s%N; }

# phase NAME: records when a phase of the run ends, for the report.
PHASES=$TMP/phases.tsv
: >"$PHASES"
PHASE_T0=$(date +%s)
phase() {
  local t
  t=$(date +%s)
  printf '%s\t%s\n' "$1" $((t - PHASE_T0)) >>"$PHASES"
  PHASE_T0=$t
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

# On a shared machine, wait a bounded time for the others to calm down.
BUSY_BEFORE=$(busy_cpus)
WAITED=0
while awk -v b="$BUSY_BEFORE" 'BEGIN { exit !(b > 0.2) }' && ((WAITED < QUIET_WAIT)); do
  log "other processes use $BUSY_BEFORE CPUs; waiting for a quieter machine ($WAITED/$QUIET_WAIT s)"
  sleep 4
  BUSY_BEFORE=$(busy_cpus)
  WAITED=$((WAITED + 5))
done
if awk -v b="$BUSY_BEFORE" 'BEGIN { exit !(b > 0.1) }'; then
  log "warning: other processes use $BUSY_BEFORE CPUs; the figures will be skewed"
fi

# --- setup -------------------------------------------------------------------

# SKIPPED: what could not be measured; SWITCHD_ERRORS: what went wrong with
# switchd. Either makes the run fail.
SKIPPED=()
SWITCHD_ERRORS=()

HAVE_SWITCHD=0
SWITCHD=$TMP/switchd-bin
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
rev=${SWITCHD_REV:-$rev}
SWITCHD_BUILT=-
if [[ -x $SWITCHD_SRC ]]; then
  cp "$SWITCHD_SRC" "$SWITCHD"
  SWITCHD_BUILT=$(date -u -r "$SWITCHD_SRC" '+%F %H:%M UTC')
  HAVE_SWITCHD=1
else
  log "$SWITCHD_SRC not found; switchd is left out (make bench builds it)"
  SWITCHD_ERRORS+=("$SWITCHD_SRC not built")
fi

read -r -a ports < <(free_ports 4)
PORT[backend]=${ports[0]}
PORT[direct]=${ports[0]}
PORT[switchd]=${ports[1]}
PORT[switchd-cg]=${ports[1]}
PORT[haproxy]=${ports[2]}
PORT[nginx-proxy]=${ports[3]}

# The backend's files: a 16 KiB body, and the body streamed to the slow
# reader, sparse (it takes no disk space, and reads of it cost next to
# nothing).
mkdir -p "$TMP/files"
head -c 16384 /dev/zero | tr '\0' 'x' >"$TMP/files/16k"
STREAM_BYTES=$((STREAM_MIB * 1048576))
truncate -s "$STREAM_BYTES" "$TMP/files/stream"

conf=$(render bench/backend-nginx.conf.in backend)
start backend "$LOAD_CPU" nginx -p "$TMP" -e "$TMP/backend-startup.log" -c "$conf"
ready backend || die "the backend nginx did not start"
PID[direct]=${PID[backend]}
[[ $(backend_accepts) -ge 0 ]] || die "the backend's /status does not answer"

PROXIES=(switchd haproxy nginx-proxy)
TARGETS=(direct)
for p in "${PROXIES[@]}"; do
  if [[ $p == switchd ]] && ((!HAVE_SWITCHD)); then
    continue
  fi
  if start_proxy "$p" "$PROXY_CPU"; then
    TARGETS+=("$p")
  else
    stop "$p"
    if [[ $p == switchd ]]; then
      SWITCHD_ERRORS+=("did not start or answer (see its log above)")
    else
      SKIPPED+=("$p: did not start or answer")
    fi
  fi
done

# Every target must serve the 16 KiB body whole.
for t in "${TARGETS[@]}"; do
  size=$(curl -s -m 2 -o /dev/null -w '%{size_download} %{http_code}' \
    "http://127.0.0.1:${PORT[$t]}/files/16k" || true)
  [[ $size == "16384 200" ]] || log "warning: $t answers /files/16k with $size (bytes, status)"
done

phase setup

# --- throughput and latency --------------------------------------------------

CELLS=(small 16k one close)
declare -A CELL_PATH=([small]=/ [16k]=/files/16k [one]=/ [close]=/)
declare -A CELL_CONNS=([small]=$CONNS [16k]=$CONNS [one]=1 [close]=$CONNS)

RESULTS=$TMP/results.tsv
: >"$RESULTS"

# wrk_run CELL TARGET SECONDS OUTFILE
wrk_run() {
  local cell=$1 t=$2 secs=$3 out=$4 extra=()
  [[ $cell == close ]] && extra=(-H "Connection: close")
  bounded $((secs + 30)) "$out" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"${CELL_CONNS[$cell]}" -d"$secs"s --latency "${extra[@]+"${extra[@]}"}" \
    "http://127.0.0.1:${PORT[$t]}${CELL_PATH[$cell]}"
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

# alive TARGET: true while the target runs; otherwise notes it once.
alive() {
  local t=$1
  kill -0 "${PID[$t]}" 2>/dev/null && return 0
  if [[ " ${SKIPPED[*]-} ${SWITCHD_ERRORS[*]-} " != *" $t died during the run "* ]]; then
    log "$t is no longer running; its remaining runs are skipped"
    tail -n 20 "$TMP/$t.out" >&2 || true
    if [[ $t == switchd ]]; then
      SWITCHD_ERRORS+=("switchd died during the run")
    else
      SKIPPED+=("$t died during the run")
    fi
  fi
  return 1
}

if ((WARMUP > 0)); then
  log "warm-up: $WARMUP s per cell and target (${TARGETS[*]})"
  for cell in "${CELLS[@]}"; do
    for t in "${TARGETS[@]}"; do
      alive "$t" || continue
      wrk_run "$cell" "$t" "$WARMUP" "$TMP/warmup-$cell-$t.txt" ||
        log "warm-up of $t ($cell) failed"
    done
  done
fi

ntargets=${#TARGETS[@]}
for round in $(seq "$ROUNDS"); do
  # The targets' order rotates each round, so none is always first or last.
  order=()
  for i in $(seq 0 $((ntargets - 1))); do
    order+=("${TARGETS[$(((i + round - 1) % ntargets))]}")
  done
  for cell in "${CELLS[@]}"; do
    for t in "${order[@]}"; do
      alive "$t" || continue
      log "round $round/$ROUNDS: $cell, $t, ${DURATION}s, ${CELL_CONNS[$cell]} connection(s)"
      out=$TMP/wrk-$cell-$t-$round.txt
      proxy_pid=${PID[$t]}
      a0=$(backend_accepts)
      p0=$(cpu_ticks "$proxy_pid")
      b0=$(cpu_ticks "${PID[backend]}")
      c0=$(cpu_busy_ticks "$PROXY_CPU")
      l0=$(cpu_busy_ticks "$LOAD_CPU")
      children_ms
      w0=$CHILD_MS
      t0=$(now_ns)
      if ! wrk_run "$cell" "$t" "$DURATION" "$out"; then
        log "wrk against $t ($cell) failed:"
        cat "$out" >&2
        [[ $t == switchd ]] && SWITCHD_ERRORS+=("wrk failed in the $cell cell")
        continue
      fi
      t1=$(now_ns)
      p1=$(cpu_ticks "$proxy_pid")
      b1=$(cpu_ticks "${PID[backend]}")
      c1=$(cpu_busy_ticks "$PROXY_CPU")
      l1=$(cpu_busy_ticks "$LOAD_CPU")
      children_ms
      w1=$CHILD_MS
      a1=$(backend_accepts)
      # What else ran during the run (other processes, interrupts): on the
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
      p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
      p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
      non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF }' "$out")
      sockerr=$(awk '/Socket errors:/{ gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
      errors=$((${non2xx:-0} + ${sockerr:-0}))
      upstream=-1
      ((a0 >= 0 && a1 >= 0)) && upstream=$((a1 - a0))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$cell" "$t" "$round" "${rps:-0}" "$p50" "$p99" "${requests:-0}" \
        $((p1 - p0)) $((b1 - b0)) $((l1 - l0)) "$errors" "$other" "$other_load" \
        $((t1 - t0)) "$upstream" >>"$RESULTS"
      log "  $rps req/s, p50 $p50 us, p99 $p99 us, proxy $((p1 - p0)) ticks, $errors errors, $upstream backend connections; other load: $other / $other_load ticks"
      if [[ $t == switchd ]]; then
        ((${requests:-0} > 0)) || SWITCHD_ERRORS+=("served no requests in the $cell cell (round $round)")
        ((errors == 0)) || SWITCHD_ERRORS+=("$errors errors in the $cell cell (round $round)")
      fi
    done
  done
done
phase throughput

for p in "${PROXIES[@]}"; do
  stop "$p"
done

# --- instructions per request (callgrind) -------------------------------------

CALLGRIND=$TMP/callgrind.tsv
: >"$CALLGRIND"
CG_NOTE=
if ((CG_REQUESTS <= 0)); then
  CG_NOTE="BENCH_CG_REQUESTS=0"
elif ! command -v valgrind >/dev/null 2>&1; then
  CG_NOTE="valgrind is missing (this measurement needs the Debian package valgrind)"
  log "valgrind is missing; instructions per request are not measured"
elif ((!HAVE_SWITCHD)); then
  CG_NOTE="no switchd binary"
else
  render bench/switchd.conf.in switchd-cg >/dev/null
  # callgrind_run LABEL REQUESTS: switchd under callgrind serves REQUESTS
  # requests on one connection, then stops; appends LABEL, REQUESTS, total Ir
  # and the wall time to $CALLGRIND.
  callgrind_run() {
    local label=$1 n=$2 cg=$TMP/callgrind-$1.out ir t0 t1
    t0=$(date +%s)
    start switchd-cg "$PROXY_CPU" valgrind --tool=callgrind \
      --callgrind-out-file="$cg" "$SWITCHD" -c "$TMP/switchd-cg.conf"
    if ! ready switchd-cg 150 5; then
      stop switchd-cg
      return 1
    fi
    if ! bounded $((60 + n / 50)) "$TMP/request-loop-$label.json" taskset -c "$LOAD_CPU" \
      "$PY" bench/request-loop.py "${PORT[switchd-cg]}" "$n"; then
      log "the client of the callgrind run failed: $(tail -n 1 "$TMP/request-loop-$label.json")"
      stop switchd-cg 300
      return 1
    fi
    # callgrind writes its counts when the process exits: give it time.
    stop switchd-cg 300
    t1=$(date +%s)
    ir=$(awk '$1 == "totals:" { t = $2 } $1 == "summary:" && !t { t = $2 }
      END { print t + 0 }' "$cg" 2>/dev/null || echo 0)
    if ((ir <= 0)); then
      log "callgrind wrote no counts:"
      tail -n 20 "$TMP/switchd-cg.out" >&2 || true
      return 1
    fi
    printf '%s\t%s\t%s\t%s\n' "$label" "$n" "$ir" $((t1 - t0)) >>"$CALLGRIND"
    log "  callgrind $label: $n requests, $ir Ir, $((t1 - t0)) s"
  }
  log "callgrind: switchd, $CG_WARMUP + $CG_REQUESTS requests, then $CG_WARMUP only"
  if ! callgrind_run full $((CG_WARMUP + CG_REQUESTS)) ||
    ! callgrind_run base "$CG_WARMUP"; then
    CG_NOTE="the callgrind run failed (see the log)"
    SWITCHD_ERRORS+=("the callgrind run failed")
  fi
fi
phase callgrind

# --- memory per idle keep-alive connection -----------------------------------

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
    [[ $t == switchd ]] && SWITCHD_ERRORS+=("did not start for the idle-memory test")
    continue
  fi
  bounded 120 "$TMP/memory-$t.json" taskset -c "$LOAD_CPU" \
    "$PY" bench/idle-clients.py "${PORT[$t]}" "${PID[$t]}" "$IDLE_CONNS" || true
  json=$(tail -n 1 "$TMP/memory-$t.json")
  [[ $json == \{* ]] || json='{"error": "the client failed or timed out"}'
  log "  $json"
  printf '{"target": "%s", %s\n' "$t" "${json#\{}" >>"$MEMORY"
  if [[ $t == switchd && $json == *'"error"'* ]]; then
    SWITCHD_ERRORS+=("the idle-memory client failed")
  fi
  stop "$t"
done
phase idle-memory

# --- memory while a large body streams to a slow reader ----------------------

STREAM=$TMP/stream.jsonl
: >"$STREAM"
STREAM_LIMIT=$((STREAM_MIB * 3 / STREAM_RATE + 30))
for t in "${MEM_TARGETS[@]}"; do
  log "stream: $STREAM_MIB MiB through a fresh $t to a reader paced at $STREAM_RATE MiB/s"
  if ! start_proxy "$t" "$PROXY_CPU"; then
    printf '{"target": "%s", "error": "did not start"}\n' "$t" >>"$STREAM"
    stop "$t"
    [[ $t == switchd ]] && SWITCHD_ERRORS+=("did not start for the stream test")
    continue
  fi
  bounded $((STREAM_LIMIT + 10)) "$TMP/stream-$t.json" taskset -c "$LOAD_CPU" \
    "$PY" bench/slow-reader.py "${PORT[$t]}" "${PID[$t]}" /files/stream \
    "$STREAM_BYTES" "$STREAM_RATE" "$STREAM_LIMIT" || true
  json=$(tail -n 1 "$TMP/stream-$t.json")
  [[ $json == \{* ]] || json='{"error": "the client failed or timed out"}'
  log "  $json"
  printf '{"target": "%s", %s\n' "$t" "${json#\{}" >>"$STREAM"
  if [[ $t == switchd && $json == *'"error"'* ]]; then
    SWITCHD_ERRORS+=("the slow reader failed")
  fi
  stop "$t"
done
phase stream-memory

stop backend
BUSY_AFTER=$(busy_cpus)

# Anything the proxies logged at warn or above during the run.
WARN_LINES=$( {
  [[ -f $TMP/switchd-error.log ]] && sed 's/^/switchd: /' "$TMP/switchd-error.log"
  [[ -f $TMP/nginx-proxy-error.log ]] && sed 's/^/nginx: /' "$TMP/nginx-proxy-error.log"
  sed 's/^/haproxy: /' "$TMP/haproxy.out" 2>/dev/null | grep -v -i 'proxy .* started' || true
} | head -n 8)

# --- report ------------------------------------------------------------------

mkdir -p "$OUT_DIR"
GNUPLOT_TERM=
if command -v gnuplot >/dev/null 2>&1; then
  if gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo; then
    GNUPLOT_TERM=pngcairo
  else
    GNUPLOT_TERM=png
  fi
else
  log "gnuplot is missing; no plots (Debian: gnuplot-nox)"
fi
export BENCH_REV=$rev BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_WARMUP=$WARMUP \
  BENCH_CONNS=$CONNS BENCH_IDLE_CONNS=$IDLE_CONNS BENCH_QUICK=$QUICK PROXY_CPU LOAD_CPU \
  BENCH_STREAM_MIB=$STREAM_MIB BENCH_STREAM_RATE=$STREAM_RATE BENCH_CG_REQUESTS=$CG_REQUESTS \
  BENCH_CG_WARMUP=$CG_WARMUP BENCH_CG_NOTE=$CG_NOTE SWITCHD_SRC SWITCHD_BUILT RUN_START \
  BENCH_WAITED=$WAITED GNUPLOT_TERM RUN_T0
BENCH_CPU_MODEL=$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)
BENCH_KERNEL=$(uname -r)
BENCH_HAPROXY=$(haproxy -v 2>&1 | awk 'NR == 1 { print $3 }')
BENCH_NGINX=$(nginx -v 2>&1 | sed 's|.*nginx/||')
BENCH_WRK=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
BENCH_VALGRIND=$( (valgrind --version 2>/dev/null || echo -) | sed 's/^valgrind-//')
BENCH_CLK_TCK=$CLK_TCK
BENCH_SKIPPED=$(printf '%s\n' "${SKIPPED[@]+"${SKIPPED[@]}"}")
BENCH_SWITCHD_ERRORS=$(printf '%s\n' "${SWITCHD_ERRORS[@]+"${SWITCHD_ERRORS[@]}"}")
BENCH_WARN_LINES=$WARN_LINES
export BUSY_BEFORE BUSY_AFTER BENCH_CPU_MODEL BENCH_KERNEL BENCH_HAPROXY BENCH_NGINX BENCH_WRK \
  BENCH_VALGRIND BENCH_CLK_TCK BENCH_SKIPPED BENCH_SWITCHD_ERRORS BENCH_WARN_LINES

bounded 120 "$TMP/report.out" "$PY" bench/proxy-report.py "$RESULTS" "$CALLGRIND" \
  "$MEMORY" "$STREAM" "$PHASES" "$OUT_DIR" "$TMP" || {
  cat "$TMP/report.out" >&2
  die "the report could not be written"
}
cat "$OUT"
log "written to $OUT"

status=0
if ((${#SWITCHD_ERRORS[@]} > 0)); then
  log "switchd: ${SWITCHD_ERRORS[*]}"
  status=1
fi
if ((${#SKIPPED[@]} > 0)); then
  log "not measured: ${SKIPPED[*]}"
  status=1
fi
log "done in $(($(date +%s) - RUN_T0)) s"
exit "$status"
