#!/usr/bin/env bash
# HTTPS termination: switchd against HAProxy (one thread) and nginx (one
# worker) on loopback, in one run (issue 5). Run by `make bench-tls` (QUICK=1
# for --quick); writes
# bench/out/tls-latest.md and prints it; a full run (not --quick) also copies
# it to bench/results/DATE-tls-bench.md.
#
# usage: bench/tls-bench.sh [--quick]
#
# All three proxies terminate TLS with the same certificate (EC P-256, made
# here with the openssl CLI) and are forced, on the server side, to TLS 1.3
# with TLS_AES_128_GCM_SHA256 (HAProxy and nginx are also held to the X25519
# group; switchd has no group setting, and OpenSSL's default, which wrk's
# client offers first, is X25519: the check below shows what each one
# negotiates). Behind them is a fast plain-HTTP backend (nginx, one process,
# fixed "ok\n" body, no access log) reached over keep-alive connections
# (switchd max_idle 64, HAProxy http-reuse always, nginx upstream keepalive
# 64). HAProxy and nginx add X-Forwarded-For and X-Forwarded-Proto, as
# switchd does. Each proxy has two HTTPS listeners with the same settings
# but for resumption: "full", with session tickets and the session cache off
# (no resumption possible) and no TLS 1.3 ticket sent at all (switchd does
# so by itself; nginx is told `ssl_conf_command NumTickets 0`; HAProxy 2.6
# has no such setting, so its "full" listener is a separate instance started
# with an OpenSSL configuration file that says NumTickets = 0), and "resume",
# with tickets on (the cache still off: stateless resumption only, the same
# on all three).
#
# Measurements, one wrk (1 thread, CONNS connections) at a time:
#   keep-alive   requests/s and p99 over keep-alive HTTPS connections (the
#                "full" listener; the handshakes happen once, at the start);
#   handshakes   -H "Connection: close" on the "full" listener: the proxy
#                closes after each response and wrk reconnects, so every
#                request is a new TCP connection and a full TLS handshake;
#   resumed      the same on the "resume" listener: wrk offers the session
#                of the connection it just closed (it keeps the SSL object
#                and calls SSL_clear, which keeps the session), so the
#                handshakes are ticket resumptions.
# Before measuring, a check runs each kind briefly and counts, on the proxy's
# side, how many handshakes were resumed (switchd's metrics, HAProxy's `show
# info`, an access log with $ssl_session_reused in a separate nginx check
# instance), so the report states rather than assumes what wrk does.
#
# Rounds are interleaved (every kind and proxy once per round, the proxies'
# order rotated each round) after a short warm-up of each; the report gives
# medians with min-max: requests/s, p99, and the proxy's CPU time per request
# (utime + stime from /proc/PID/stat around each run, divided by wrk's
# request count), with ratios to the better of HAProxy and nginx. The proxy
# under test runs on CPU 0, wrk and the backend on CPU 1; the load CPU's use
# is reported too: wrk's side of a TLS handshake costs more CPU than the
# server's, so on two cores wrk, not the proxy, limits the handshake rate,
# and the CPU time per handshake is what compares the proxies there.
#
# Environment: BENCH_DURATION (s per run; 8, --quick 3), BENCH_ROUNDS (5,
# --quick 2), BENCH_WARMUP (s per kind and proxy; 2, --quick 1), BENCH_CONNS
# (64), BENCH_QUIET_WAIT (s to wait at most, at the start, for other
# processes to use less than 0.2 CPUs; 60, --quick 10), SWITCHD_BIN
# (build/switchd; copied at the start, so that a rebuild during the run does
# not change what is measured), SWITCHD_REV (what the report calls that
# binary; default: the repository's HEAD, "+dirty" if the working tree
# differs from it).
#
# Everything listens on 127.0.0.1 only, every step has a time bound, and every
# process started here is stopped on exit, also on an error or Ctrl-C; the
# temporary directory (certificate, configs, logs) is removed.
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
  DURATION=${BENCH_DURATION:-3}
  ROUNDS=${BENCH_ROUNDS:-2}
  WARMUP=${BENCH_WARMUP:-1}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
else
  DURATION=${BENCH_DURATION:-8}
  ROUNDS=${BENCH_ROUNDS:-5}
  WARMUP=${BENCH_WARMUP:-2}
  QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
fi
CONNS=${BENCH_CONNS:-64}
SWITCHD_SRC=${SWITCHD_BIN:-build/switchd}
PY=/usr/bin/python3
OUT_DIR=bench/out
OUT=$OUT_DIR/tls-latest.md
RUN_DATE=$(date -u +%F)
RUN_START=$(date -u '+%F %H:%M UTC')
PROTO=TLSv1.3
SUITE=TLS_AES_128_GCM_SHA256
GROUP=X25519

log() { printf '[tls-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for cmd in wrk haproxy nginx openssl taskset curl setsid timeout "$PY"; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is missing; run \`make deps\`"
done
[[ -x $SWITCHD_SRC ]] || die "$SWITCHD_SRC not found; run \`make\`"

# --- processes ---------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchd-tls-bench.XXXXXX")
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
  for _ in $(seq 30); do
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

hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=65536
((hard > 65536)) && hard=65536
ulimit -n "$hard" 2>/dev/null || true

# busy_cpus: how many CPUs' worth of time other processes used over 1 s.
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

# start NAME CPU COMMAND...: starts a server pinned to CPU in a session of its
# own (setsid and taskset both exec, so $! is the server's pid).
start() {
  local name=$1 cpu=$2
  shift 2
  setsid taskset -c "$cpu" "$@" </dev/null >"$TMP/$name.out" 2>&1 &
  PID[$name]=$!
  ALL_PIDS+=("$!")
}

# ready NAME URL...: waits until every URL answers "ok" (5 s at most).
ready() {
  local name=$1 url body ok
  shift
  for _ in $(seq 50); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      log "$name exited at startup:"
      tail -n 20 "$TMP/$name.out" >&2 || true
      return 1
    fi
    ok=1
    for url in "$@"; do
      body=$(curl -sk -m 1 "$url" 2>/dev/null || true)
      [[ $body == ok ]] || ok=0
    done
    ((ok)) && return 0
    sleep 0.1
  done
  log "$name does not answer on $*"
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
  local keep=() p
  for p in "${ALL_PIDS[@]}"; do
    [[ $p == "$pid" ]] || keep+=("$p")
  done
  ALL_PIDS=("${keep[@]+"${keep[@]}"}")
}

# cpu_ticks PID: utime + stime in clock ticks (all threads of the process).
cpu_ticks() {
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

# children_ms: sets CHILD_MS to the CPU time (ms) of the children this shell
# has waited for (must run in this shell, not a subshell).
children_ms() {
  times >"$TMP/times"
  CHILD_MS=$(awk 'NR == 2 {
    split($1, u, /[ms]/); split($2, s, /[ms]/)
    printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' "$TMP/times")
}

# bounded SECONDS OUTFILE COMMAND...: runs a client with a time bound, in the
# background and waited for, so that a signal interrupts the wait at once.
bounded() {
  local secs=$1 out=$2 rc=0
  shift 2
  timeout --kill-after=5 "$secs" "$@" </dev/null >"$out" 2>&1 &
  BG_PID=$!
  wait "$BG_PID" || rc=$?
  BG_PID=
  return "$rc"
}

# --- certificate and configurations ------------------------------------------

log "certificate: EC P-256, self-signed, CN and SAN localhost / 127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>"$TMP/openssl-req.out" ||
  die "openssl req failed: $(cat "$TMP/openssl-req.out")"
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/haproxy.pem"
chmod 600 "$TMP/key.pem" "$TMP/haproxy.pem"

SWITCHD=$TMP/switchd-bin
cp "$SWITCHD_SRC" "$SWITCHD"
SWITCHD_BUILT=$(date -u -r "$SWITCHD_SRC" '+%F %H:%M UTC')
# The repository's state when the binary is taken (it may move on during a
# run on a shared tree).
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
rev=${SWITCHD_REV:-$rev}

PROXIES=(switchd haproxy nginx)
read -r -a ports < <(free_ports 7)
PORT[backend]=${ports[0]}
PORT[switchd-full]=${ports[1]}
PORT[switchd-resume]=${ports[2]}
PORT[haproxy-full]=${ports[3]}
PORT[haproxy-resume]=${ports[4]}
PORT[nginx-full]=${ports[5]}
PORT[nginx-resume]=${ports[6]}

# The backend: bench/proxy-bench.sh's nginx template (read only).
sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|${PORT[backend]}|g" \
  bench/backend-nginx.conf.in >"$TMP/backend.conf"

cat >"$TMP/switchd.conf" <<EOF
global
  live blue
  error_log $TMP/switchd-error.log
  access_log off
  log_level warn
  shutdown_timeout 2s

# No resumption: tickets off, no session cache (switchd then sends no
# TLS 1.3 ticket at all).
listen
  bind 127.0.0.1:${PORT[switchd-full]}
  certificate $TMP/cert.pem $TMP/key.pem
  tls_min_version 1.3
  tls_ciphersuites $SUITE
  tls_session_tickets off
  tls_session_cache 0

# Stateless resumption only: tickets on, no session cache.
listen
  bind 127.0.0.1:${PORT[switchd-resume]}
  certificate $TMP/cert.pem $TMP/key.pem
  tls_min_version 1.3
  tls_ciphersuites $SUITE
  tls_session_tickets on
  tls_session_cache 0

client
  idle_timeout 300s

upstream blue
  server 127.0.0.1:${PORT[backend]}
  max_idle 64
  idle_timeout 10s
  health off

admin
  socket $TMP/admin.sock
EOF

# HAProxy runs as two instances, one per listener, because the number of
# TLS 1.3 tickets it sends is only settable through OpenSSL's configuration
# file, which applies to the whole process: the "full" instance sends none,
# like switchd's and nginx's "full" listeners (it would otherwise send two
# that cannot be used). Only the instance under test has work to do.
cat >"$TMP/openssl-notickets.cnf" <<EOF
openssl_conf = bench_init
[bench_init]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_system_default
[bench_system_default]
NumTickets = 0
EOF

# haproxy_conf NAME LISTENER BIND_OPTIONS
haproxy_conf() {
  cat <<EOF
global
  nbthread 1
  maxconn 4000
  pidfile $TMP/$1.pid
  stats socket $TMP/$1.sock level user
  # No session cache (resumption by tickets only, as on the others).
  tune.ssl.cachesize 0

defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 60s
  timeout http-keep-alive 300s
  timeout http-request 10s

frontend $2
  bind 127.0.0.1:${PORT[haproxy-$2]} ssl crt $TMP/haproxy.pem ssl-min-ver TLSv1.3 ciphersuites $SUITE curves $GROUP $3
  http-request set-header X-Forwarded-Proto https
  default_backend be

backend be
  server backend 127.0.0.1:${PORT[backend]}
EOF
}
haproxy_conf haproxy full no-tls-tickets >"$TMP/haproxy.conf"
haproxy_conf haproxy-resume resume "" >"$TMP/haproxy-resume.conf"

# nginx_conf NAME ACCESS_LOG: the proxy nginx's configuration; the check
# instance logs $ssl_session_reused, the measured one logs nothing.
nginx_conf() {
  cat <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 30000;
pid $TMP/$1.pid;
error_log $TMP/$1-error.log warn;

events {
  worker_connections 20000;
}

http {
  log_format check "\$server_port \$ssl_session_reused \$ssl_protocol \$ssl_cipher \$ssl_curve \$status";
  access_log $2;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  client_body_temp_path $TMP/$1-body;
  proxy_temp_path $TMP/$1-proxy;
  fastcgi_temp_path $TMP/$1-fastcgi;
  uwsgi_temp_path $TMP/$1-uwsgi;
  scgi_temp_path $TMP/$1-scgi;

  upstream backend {
    server 127.0.0.1:${PORT[backend]};
    keepalive 64;
  }

  ssl_certificate $TMP/cert.pem;
  ssl_certificate_key $TMP/key.pem;
  ssl_protocols TLSv1.3;
  ssl_ecdh_curve $GROUP;
  ssl_session_cache off;

  server {
    listen 127.0.0.1:${PORT[nginx-full]} ssl backlog=4096;
    ssl_conf_command Ciphersuites $SUITE;
    # No TLS 1.3 ticket at all (they could not be used), as on the others.
    ssl_conf_command NumTickets 0;
    ssl_session_tickets off;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }

  server {
    listen 127.0.0.1:${PORT[nginx-resume]} ssl backlog=4096;
    ssl_conf_command Ciphersuites $SUITE;
    ssl_session_tickets on;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
}
nginx_conf nginx off >"$TMP/nginx.conf"
nginx_conf nginx-check "$TMP/nginx-check-access.log check" >"$TMP/nginx-check.conf"

# start_proxy NAME: starts switchd, haproxy, nginx or nginx-check on the
# proxy CPU and waits for both its listeners.
start_proxy() {
  local name=$1 base=${1%-check}
  case $name in
    switchd) start switchd "$PROXY_CPU" "$SWITCHD" -c "$TMP/switchd.conf" ;;
    haproxy)
      start haproxy "$PROXY_CPU" env OPENSSL_CONF="$TMP/openssl-notickets.cnf" \
        haproxy -db -f "$TMP/haproxy.conf"
      start haproxy-resume "$PROXY_CPU" haproxy -db -f "$TMP/haproxy-resume.conf"
      ready haproxy "https://127.0.0.1:${PORT[haproxy-full]}/" &&
        ready haproxy-resume "https://127.0.0.1:${PORT[haproxy-resume]}/"
      return
      ;;
    nginx | nginx-check)
      start "$name" "$PROXY_CPU" nginx -p "$TMP" -e "$TMP/$name-startup.log" \
        -c "$TMP/$name.conf"
      ;;
  esac
  ready "$name" "https://127.0.0.1:${PORT[$base-full]}/" \
    "https://127.0.0.1:${PORT[$base-resume]}/"
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

start backend "$LOAD_CPU" nginx -p "$TMP" -e "$TMP/backend-startup.log" -c "$TMP/backend.conf"
PORT[backend-full]=${PORT[backend]}
PORT[backend-resume]=${PORT[backend]}
ready backend "http://127.0.0.1:${PORT[backend]}/" || die "the backend nginx did not start"

# --- wrk ---------------------------------------------------------------------

# wrk_run PORT SECONDS OUTFILE [CONNS [wrk options...]]
wrk_run() {
  local port=$1 secs=$2 out=$3 conns=${4:-$CONNS}
  shift 3
  (($# > 0)) && shift
  bounded $((secs + 30)) "$out" taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$conns" -d"$secs"s --latency "$@" "https://127.0.0.1:$port/"
}

# kind_run KIND PROXY SECONDS OUTFILE [CONNS]: one wrk run of a kind.
kind_run() {
  local kind=$1 proxy=$2 secs=$3 out=$4 conns=${5:-$CONNS}
  case $kind in
    keepalive) wrk_run "${PORT[$proxy-full]}" "$secs" "$out" "$conns" ;;
    handshake) wrk_run "${PORT[$proxy-full]}" "$secs" "$out" "$conns" -H "Connection: close" ;;
    resumed) wrk_run "${PORT[$proxy-resume]}" "$secs" "$out" "$conns" -H "Connection: close" ;;
  esac
}

wrk_requests() { awk '/ requests in /{ print $1 }' "$1"; }

# --- check: what is negotiated, and does wrk resume? ------------------------

CHECK=$TMP/check.tsv
: >"$CHECK"

# s_client_check PROXY LISTENER: protocol, cipher, group and the number of
# TLS 1.3 session tickets the listener sends after a full handshake.
s_client_check() {
  local port=${PORT[$1-$2]} out=$TMP/s_client-$1-$2.txt
  # stdin stays open 0.5 s so that the post-handshake tickets are read.
  { sleep 0.5; } | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
    -servername localhost -msg >"$out" 2>&1 || true
  local proto cipher group tickets
  proto=$(awk '/^New, .*Cipher is/{ sub(",", "", $2); print $2; exit }' "$out")
  cipher=$(awk '/^New, .*Cipher is/{ print $NF; exit }' "$out")
  group=$(awk -F': *' '/^(Server|Peer) Temp Key/{ print $2; exit }' "$out" | cut -d, -f1)
  tickets=$(grep -c 'NewSessionTicket' "$out" || true)
  printf 's_client\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "${proto:-?}" \
    "${cipher:-?}" "${group:-?}" "${tickets:-0}" >>"$CHECK"
  log "  $1 $2: ${proto:-?} ${cipher:-?} ${group:-?}, $tickets session ticket(s) after a full handshake"
}

# resumed_count PROXY: handshakes the proxy has counted as resumed so far.
switchd_metric() {
  curl -s -m 2 --unix-socket "$TMP/admin.sock" http://localhost/metrics |
    awk -v r="result=\"$1\"" 'index($0, "switchd_tls_handshakes_total{" r "}") == 1 { print $2 }'
}
haproxy_info() {
  "$PY" - "$TMP/$1.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"show info\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.decode())
EOF
}

# check_resumption PROXY: brief Connection: close runs on both listeners;
# the proxy's own count of full and resumed handshakes for each.
check_resumption() {
  local p=$1 listener kind out n full resumed a0 r0 a1 r1 inst
  for listener in full resume; do
    kind=handshake
    [[ $listener == resume ]] && kind=resumed
    out=$TMP/check-$p-$listener.txt
    case $p in
      switchd)
        a0=$(switchd_metric ok)
        r0=$(switchd_metric resumed)
        ;;
      haproxy)
        inst=haproxy
        [[ $listener == resume ]] && inst=haproxy-resume
        haproxy_info "$inst" >"$TMP/haproxy-info-0.txt"
        ;;
    esac
    kind_run "$kind" "${p%-check}" 1 "$out" 4 || log "check run against $p failed"
    n=$(wrk_requests "$out")
    case $p in
      switchd)
        a1=$(switchd_metric ok)
        r1=$(switchd_metric resumed)
        full=$((a1 - a0))
        resumed=$((r1 - r0))
        ;;
      haproxy)
        haproxy_info "$inst" >"$TMP/haproxy-info-1.txt"
        # CumSslConns counts every TLS connection, SslFrontendKeyRate only the
        # full handshakes (per second); the cumulative reuse count is not
        # exported by 2.6, so it comes from the two cumulative figures below.
        a0=$(awk -F': ' '$1 == "CumSslConns" { print $2 }' "$TMP/haproxy-info-0.txt")
        a1=$(awk -F': ' '$1 == "CumSslConns" { print $2 }' "$TMP/haproxy-info-1.txt")
        r1=$(awk -F': ' '$1 == "SslFrontendSessionReuse_pct" { print $2 }' "$TMP/haproxy-info-1.txt")
        full=$(((a1 - a0) * (100 - ${r1:-0}) / 100))
        resumed=$(((a1 - a0) - full))
        ;;
      nginx-check)
        local portn=${PORT[nginx-$listener]}
        full=$(awk -v p="$portn" '$1 == p && $2 == "." { n++ } END { print n + 0 }' "$TMP/nginx-check-access.log")
        resumed=$(awk -v p="$portn" '$1 == p && $2 == "r" { n++ } END { print n + 0 }' "$TMP/nginx-check-access.log")
        ;;
    esac
    printf 'resume\t%s\t%s\t%s\t%s\t%s\n' "${p%-check}" "$listener" "${n:-0}" "$full" "$resumed" >>"$CHECK"
    log "  $p $listener: wrk made ${n:-0} requests; the proxy counted $full full and $resumed resumed handshakes"
  done
}

log "check: negotiated parameters, and whether wrk resumes sessions"
SKIPPED=()
for p in "${PROXIES[@]}"; do
  cp_name=$p
  [[ $p == nginx ]] && cp_name=nginx-check
  if ! start_proxy "$cp_name"; then
    SKIPPED+=("$p: did not start or answer")
    stop "$cp_name"
    [[ $p == haproxy ]] && stop haproxy-resume
    continue
  fi
  s_client_check "${p}" full
  s_client_check "${p}" resume
  check_resumption "$cp_name"
  if [[ $p == nginx ]]; then
    sed -n '1p' "$TMP/nginx-check-access.log" >"$TMP/nginx-check-sample.txt" || true
    stop nginx-check
  fi
done
[[ " ${SKIPPED[*]-} " == *" switchd: "* ]] && die "switchd did not start"

TARGETS=()
for p in "${PROXIES[@]}"; do
  if [[ -n ${PID[$p]:-} ]] || { [[ $p == nginx ]] && start_proxy nginx; }; then
    TARGETS+=("$p")
  elif [[ " ${SKIPPED[*]-} " != *" $p: "* ]]; then
    SKIPPED+=("$p: did not start or answer")
  fi
done

# --- measurements ------------------------------------------------------------

KINDS=(keepalive handshake resumed)
RESULTS=$TMP/results.tsv
: >"$RESULTS"

to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n
    else if (v ~ /ms$/) print n * 1000
    else if (v ~ /m$/) print n * 60000000
    else if (v ~ /s$/) print n * 1000000
    else print "nan" }'
}

now_ns() { date +%s%N; }

log "warm-up: $WARMUP s per kind and proxy (${TARGETS[*]})"
for kind in "${KINDS[@]}"; do
  for p in "${TARGETS[@]}"; do
    kind_run "$kind" "$p" "$WARMUP" "$TMP/warmup-$kind-$p.txt" || log "warm-up of $p ($kind) failed"
  done
done

ntargets=${#TARGETS[@]}
for round in $(seq "$ROUNDS"); do
  # The proxies' order rotates each round, so none is always first or last.
  order=()
  for i in $(seq 0 $((ntargets - 1))); do
    order+=("${TARGETS[$(((i + round - 1) % ntargets))]}")
  done
  for kind in "${KINDS[@]}"; do
    for p in "${order[@]}"; do
      log "round $round/$ROUNDS: $kind, $p, ${DURATION}s, $CONNS connections"
      out=$TMP/wrk-$kind-$p-$round.txt
      inst=$p
      [[ $p == haproxy && $kind == resumed ]] && inst=haproxy-resume
      proxy_pid=${PID[$inst]}
      if ! kill -0 "$proxy_pid" 2>/dev/null; then
        log "$p is no longer running; its remaining runs are skipped"
        tail -n 20 "$TMP/$inst.out" >&2 || true
        [[ " ${SKIPPED[*]-} " == *" $p: died during the run "* ]] ||
          SKIPPED+=("$p: died during the run")
        continue
      fi
      p0=$(cpu_ticks "$proxy_pid")
      b0=$(cpu_ticks "${PID[backend]}")
      c0=$(cpu_busy_ticks "$PROXY_CPU")
      l0=$(cpu_busy_ticks "$LOAD_CPU")
      children_ms
      w0=$CHILD_MS
      t0=$(now_ns)
      if ! kind_run "$kind" "$p" "$DURATION" "$out"; then
        log "wrk against $p ($kind) failed:"
        cat "$out" >&2
        continue
      fi
      t1=$(now_ns)
      p1=$(cpu_ticks "$proxy_pid")
      b1=$(cpu_ticks "${PID[backend]}")
      c1=$(cpu_busy_ticks "$PROXY_CPU")
      l1=$(cpu_busy_ticks "$LOAD_CPU")
      children_ms
      w1=$CHILD_MS
      other=$((c1 - c0 - (p1 - p0)))
      ((other < 0)) && other=0
      if ((LOAD_CPU != PROXY_CPU)); then
        other_load=$((l1 - l0 - (b1 - b0) - (w1 - w0) * CLK_TCK / 1000))
        ((other_load < 0)) && other_load=0
      else
        other_load=0
      fi
      requests=$(wrk_requests "$out")
      rps=$(awk '/^Requests\/sec:/{ print $2 }' "$out")
      p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
      non2xx=$(awk '/Non-2xx or 3xx responses:/{ print $NF }' "$out")
      sockerr=$(awk '/Socket errors:/{ gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
      errors=$((${non2xx:-0} + ${sockerr:-0}))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$p" "$round" \
        "${rps:-0}" "$p99" "${requests:-0}" $((p1 - p0)) $((b1 - b0)) $((l1 - l0)) \
        "$errors" "$other" "$other_load" $((t1 - t0)) >>"$RESULTS"
      log "  $rps req/s, p99 $p99 us, proxy $((p1 - p0)) ticks, load CPU $((l1 - l0)) ticks, $errors errors; other: $other / $other_load ticks"
    done
  done
done

# The proxies' logs: anything logged at warn or above during the run.
for p in "${TARGETS[@]}"; do
  stop "$p"
done
stop haproxy-resume
stop backend
BUSY_AFTER=$(busy_cpus)
WARN_LINES=$( {
  [[ -f $TMP/switchd-error.log ]] && sed 's/^/switchd: /' "$TMP/switchd-error.log"
  [[ -f $TMP/nginx-error.log ]] && sed 's/^/nginx: /' "$TMP/nginx-error.log"
  cat "$TMP/haproxy.out" "$TMP/haproxy-resume.out" 2>/dev/null | sed 's/^/haproxy: /' |
    grep -v -i 'proxy .* started' || true
} | head -n 8)

# --- report ------------------------------------------------------------------

mkdir -p "$OUT_DIR"
export BENCH_REV=$rev BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_WARMUP=$WARMUP \
  BENCH_CONNS=$CONNS PROXY_CPU LOAD_CPU BENCH_QUICK=$QUICK BENCH_PROTO=$PROTO \
  BENCH_SUITE=$SUITE BENCH_GROUP=$GROUP SWITCHD_BUILT SWITCHD_SRC BENCH_WAITED=$WAITED RUN_START
BENCH_CPU_MODEL=$(awk -F': ' '/^model name/{ print $2; exit }' /proc/cpuinfo)
BENCH_KERNEL=$(uname -r)
BENCH_HAPROXY=$(haproxy -v 2>&1 | awk 'NR == 1 { print $3 }')
BENCH_NGINX=$(nginx -v 2>&1 | sed 's|.*nginx/||')
BENCH_OPENSSL=$(openssl version | awk '{ print $2 }')
BENCH_WRK=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
BENCH_CLK_TCK=$CLK_TCK
BENCH_SKIPPED=$(printf '%s\n' "${SKIPPED[@]+"${SKIPPED[@]}"}")
BENCH_WARN_LINES=$WARN_LINES
export BUSY_BEFORE BUSY_AFTER BENCH_CPU_MODEL BENCH_KERNEL BENCH_HAPROXY BENCH_NGINX \
  BENCH_OPENSSL BENCH_WRK BENCH_CLK_TCK BENCH_SKIPPED BENCH_WARN_LINES

"$PY" - "$RESULTS" "$CHECK" "$OUT" <<'EOF'
import os, statistics, sys, time

results_path, check_path, out_path = sys.argv[1:4]
env = os.environ
tck = int(env["BENCH_CLK_TCK"])

rows = {}
for line in open(results_path):
    (kind, p, rnd, rps, p99, reqs, pticks, bticks, lticks, errs, other,
     other_load, wall_ns) = line.rstrip("\n").split("\t")
    reqs = int(reqs)
    wall = int(wall_ns) / 1e9
    rows.setdefault((kind, p), []).append({
        "rps": float(rps), "p99": float(p99) / 1000, "reqs": reqs,
        "cpu": int(pticks) * 1e6 / tck / reqs if reqs else float("nan"),
        "busy": int(pticks) / tck / wall,
        "load": int(lticks) / tck / wall,
        "other": max(int(other), int(other_load)) / tck / wall,
        "errors": int(errs)})

def vals(kind, p, key):
    return [r[key] for r in rows.get((kind, p), [])]

def med(kind, p, key):
    v = vals(kind, p, key)
    return statistics.median(v) if v else None

def spread(kind, p, key, fmt):
    v = vals(kind, p, key)
    if len(v) < 2:
        return ""
    return " (%s–%s)" % (fmt % min(v), fmt % max(v))

checks_s, checks_r = {}, {}
for line in open(check_path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "s_client":
        checks_s[(f[1], f[2])] = f[3:]
    else:
        checks_r[(f[1], f[2])] = [int(x) for x in f[3:]]

names = {"switchd": "switchd " + env["BENCH_REV"],
         "haproxy": "HAProxy %s, nbthread 1" % env["BENCH_HAPROXY"],
         "nginx": "nginx %s, one worker" % env["BENCH_NGINX"]}
proxies = [p for p in ("switchd", "haproxy", "nginx")
           if any(k[1] == p for k in rows)]

out = []
w = out.append
w("# HTTPS benchmark, %s to %s%s" % (env["RUN_START"], time.strftime("%H:%M"),
                                " (quick mode)" if env["BENCH_QUICK"] == "1" else ""))
w("")
w("%s, %d CPUs, Linux %s; OpenSSL %s (all three proxies and wrk use the "
  "system's libssl 3), wrk %s. Loopback only. %s %s, group %s, certificate "
  "EC P-256 (self-signed, made by the run), forced on the proxies' side. "
  "wrk: 1 thread, %s connections; %s interleaved rounds of %s s per kind "
  "and proxy (proxies' order rotated each round) after a %s s warm-up of "
  "each; medians, with min–max over the rounds. Backend: nginx %s, one "
  "process, fixed 3-byte body, no access log, reached over keep-alive. "
  "Proxy on CPU %s, wrk and backend on CPU %s. switchd: %s, built %s; "
  "the binary: %s."
  % (env["BENCH_CPU_MODEL"], os.cpu_count(), env["BENCH_KERNEL"],
     env["BENCH_OPENSSL"], env["BENCH_WRK"], env["BENCH_PROTO"],
     env["BENCH_SUITE"], env["BENCH_GROUP"], env["BENCH_CONNS"],
     env["BENCH_ROUNDS"], env["BENCH_DURATION"], env["BENCH_WARMUP"],
     env["BENCH_NGINX"], env["PROXY_CPU"], env["LOAD_CPU"],
     env["SWITCHD_SRC"], env["SWITCHD_BUILT"], env["BENCH_REV"]))
if int(env.get("BENCH_WAITED", "0")) > 0:
    w("")
    w("The run waited %s s at the start for other processes to quieten."
      % env["BENCH_WAITED"])
w("")

summary = []
titles = {
    "keepalive": ("## Keep-alive HTTPS requests", "req/s",
                  "Keep-alive connections to the listener without "
                  "resumption; the 64 handshakes happen once, at the start."),
    "handshake": ("## Full handshakes (a new connection per request)",
                  "handshakes/s",
                  "`-H \"Connection: close\"` on the listener with session "
                  "tickets and the cache off, which sends no session ticket "
                  "(nginx: `ssl_conf_command NumTickets 0`; HAProxy: a "
                  "separate instance for this listener, with NumTickets = 0 "
                  "in an OpenSSL configuration file): every request is a new "
                  "TCP connection and a full TLS 1.3 handshake (ECDHE X25519, "
                  "ECDSA P-256 signature), then one proxied request."),
    "resumed": ("## Resumed handshakes (a new connection per request, "
                "session tickets)", "handshakes/s",
                "The same on the listener with session tickets on: wrk "
                "offers the session of its previous connection, so the "
                "handshakes are TLS 1.3 ticket resumptions (PSK with "
                "X25519), see the check below."),
}
for kind in ("keepalive", "handshake", "resumed"):
    if not any(k[0] == kind for k in rows):
        continue
    title, unit, text = titles[kind]
    w(title)
    w("")
    w(text)
    w("")
    others = [p for p in ("haproxy", "nginx") if (kind, p) in rows]
    best_rps = max((med(kind, p, "rps") for p in others), default=None)
    best_cpu = min((med(kind, p, "cpu") for p in others), default=None)
    per = "req" if kind == "keepalive" else "handshake"
    w("| proxy | %s | ÷ best of HAProxy/nginx | p99 (ms) | proxy CPU µs/%s "
      "| ÷ best | %s per proxy core (1 s ÷ CPU) | ÷ best | proxy core busy "
      "| load core busy | errors |" % (unit, per, unit))
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in proxies:
        if (kind, p) not in rows:
            continue
        rps, cpu = med(kind, p, "rps"), med(kind, p, "cpu")
        w("| %s | %.0f%s | %s | %.2f%s | %.1f%s | %s | %.0f | %s | %.0f %% "
          "| %.0f %% | %d |" % (
            names[p], rps, spread(kind, p, "rps", "%.0f"),
            "%.2f" % (rps / best_rps) if best_rps else "-",
            med(kind, p, "p99"), spread(kind, p, "p99", "%.2f"),
            cpu, spread(kind, p, "cpu", "%.1f"),
            "%.2f" % (cpu / best_cpu) if best_cpu else "-",
            1e6 / cpu, "%.2f" % (best_cpu / cpu) if best_cpu else "-",
            100 * med(kind, p, "busy"), 100 * med(kind, p, "load"),
            sum(vals(kind, p, "errors"))))
    if ("switchd" in proxies and best_rps and (kind, "switchd") in rows):
        r = med(kind, "switchd", "rps") / best_rps
        c = best_cpu / med(kind, "switchd", "cpu")
        summary.append((kind, r, c))
        w("")
        w("switchd ÷ the better of HAProxy and nginx: measured %s %.2f; "
          "%s per proxy core (the inverse of CPU per %s) %.2f. Target: "
          "≥ 0.90." % (unit, r, unit, per, c))
    w("")

w("## Summary")
w("")
w("switchd ÷ the better of HAProxy (one thread) and nginx (one worker); "
  "the target is 0.90 or more.")
w("")
w("| measurement | measured rate | rate per proxy core (1 s ÷ CPU time) |")
w("|---|---:|---:|")
labels = {"keepalive": "keep-alive requests/s", "handshake": "full handshakes/s",
          "resumed": "resumed handshakes/s (optional)"}
def verdict(x):
    return "%.2f" % x if x >= 0.90 else "**%.2f**" % x
for kind, r, c in summary:
    w("| %s | %s | %s |" % (labels[kind], verdict(r), verdict(c)))
w("")
w("Measured rate: what wrk got; it compares the proxies only when the "
  "proxy's core is the one that is full. Rate per proxy core: 1 s divided "
  "by the proxy's CPU time per request, the rate one core would give if "
  "nothing else limited it; it compares the proxies' cost whichever side "
  "is the bottleneck. A ratio below 0.90 is in bold.")
w("")
w("p99: wrk's latency, from the request's first byte (after the TLS "
  "handshake, for a new connection) to the response's last; with 64 "
  "connections on one wrk thread that is at 100 %, mostly wrk's own "
  "queueing in the handshake runs.")
w("")
w("Proxy core busy: the proxy's CPU time over the run's wall time; below "
  "about 95 % the proxy was not what limited the rate (wrk, on the load "
  "core, was, or something else ran on the proxy's core). Load core busy: "
  "the whole load CPU (wrk, the backend, anything else) over the wall time. "
  "When the load core is the one at 100 %, the rate mostly measures wrk, "
  "and CPU per handshake is the figure that compares the proxies.")
worst = max((r["other"] for k in rows for r in rows[k]), default=0)
if worst > 0.05:
    w("")
    w("**Warning:** something other than the processes under test used up "
      "to %.0f %% of a CPU during a run (%d of %d runs above 10 %%); the "
      "runs so disturbed are slower than the machine allows, which the "
      "medians only partly absorb; CPU time per request is the least "
      "affected figure." % (
          100 * worst,
          sum(1 for k in rows for r in rows[k] if r["other"] > 0.10),
          sum(len(rows[k]) for k in rows)))
busy = max(float(env["BUSY_BEFORE"]), float(env["BUSY_AFTER"]))
if busy > 0.1:
    w("")
    w("**Warning:** other processes used %.2f CPUs just before or after "
      "this run; the figures are skewed by them." % busy)

w("")
w("## Check: what is negotiated, and does wrk resume?")
w("")
w("`openssl s_client` (default client settings, like wrk's) against each "
  "listener; then a 1 s wrk run with `Connection: close` (4 connections) "
  "against each, with the handshakes counted on the proxy's side "
  "(switchd's `switchd_tls_handshakes_total` metric; HAProxy's `show "
  "info` CumSslConns and SslFrontendSessionReuse_pct; for nginx, a "
  "separate check instance of the same configuration plus an access log of "
  "`$ssl_session_reused`, stopped before the measurements). HAProxy 2.6 "
  "exports no cumulative count of resumptions, only a reuse percentage over "
  "the last second, so its split is approximate.")
w("")
w("| proxy | listener | negotiated | tickets sent after a full handshake "
  "| wrk requests | full handshakes | resumed |")
w("|---|---|---|---:|---:|---:|---:|")
for p in proxies:
    for listener in ("full", "resume"):
        s = checks_s.get((p, listener), ["?"] * 4)
        r = checks_r.get((p, listener), [0, 0, 0])
        w("| %s | %s | %s %s %s | %s | %d | %d | %d |" % (
            p, listener, s[0], s[1], s[2], s[3], r[0], r[1], r[2]))
wrk_resumes = any(checks_r.get((p, "resume"), [0, 0, 0])[2] > 0 for p in proxies)
w("")
if wrk_resumes:
    w("wrk does reuse TLS sessions on reconnection when the server offers "
      "tickets (it keeps one SSL object per connection slot and SSL_clear "
      "keeps the session): the handshake measurement therefore uses "
      "listeners with tickets and the cache off, and the resumed one "
      "measures resumption on purpose.")
else:
    w("wrk resumed no session in the check, even where tickets are on.")

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

text = "\n".join(out) + "\n"
with open(out_path, "w") as f:
    f.write(text)
print(text)
EOF

log "written to $OUT"
if ((!QUICK)) && ((${#SKIPPED[@]} == 0)); then
  mkdir -p bench/results
  cp "$OUT" "bench/results/$RUN_DATE-tls-bench.md"
  log "copied to bench/results/$RUN_DATE-tls-bench.md"
fi
((${#SKIPPED[@]} == 0))
