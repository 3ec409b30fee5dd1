#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, from Debian's postgresql package.
#
#   tests/pg-cluster.sh start DIR PORT   initdb in DIR/data, start the server on
#                                        127.0.0.1:PORT with its Unix socket in
#                                        DIR; superuser "postgres", trust auth
#   tests/pg-cluster.sh stop DIR         stop it (if running) and remove DIR
#
# PostgreSQL refuses to run as root. Run as root, the server runs as the
# `postgres` system user that Debian's postgresql package creates (through
# runuser), and DIR is given to that user; otherwise it runs as the caller.
# The cluster is tuned for tests, not for keeping data: fsync is off.
#
# Every wait is bounded (PG_CLUSTER_TIMEOUT seconds, default 30). On failure
# the script says what failed and prints the end of the server's log. `stop`
# removes only a directory that `start` made (it holds .pg-cluster), so a
# wrong argument cannot delete anything else; stopping a cluster that is not
# there is not an error.
#
# Environment: PG_BIN overrides the directory of initdb and pg_ctl (default:
# the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

TIMEOUT=${PG_CLUSTER_TIMEOUT:-30}
MARKER=.pg-cluster

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
}

find_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    [[ -x $PG_BIN/pg_ctl ]] || die "PG_BIN=$PG_BIN has no pg_ctl"
    echo "$PG_BIN"
    return
  fi
  local d best
  # The glob sorts 10 before 9; pick the highest major version.
  best=$(for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
  done | sort -t/ -k5,5V | tail -n 1)
  [[ -n $best ]] ||
    die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; install the postgresql package (make deps)"
  echo "$best"
}

# as_owner CMD...: runs CMD as the user the cluster belongs to.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

show_log() {
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      echo "pg-cluster: last lines of $f:" >&2
      tail -n 20 "$f" | sed 's/^/  | /' >&2
    fi
  done
}

cmd_start() {
  local dir=$1 port=$2 bin
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port: $port"
  bin=$(find_bin)

  if [[ -e $dir ]]; then
    [[ -d $dir ]] || die "$dir exists and is not a directory"
    [[ -z $(ls -A "$dir") ]] || die "$dir is not empty; use a fresh directory"
  else
    mkdir -p "$dir" || die "cannot create $dir"
  fi
  dir=$(cd "$dir" && pwd)
  # A Unix socket path is limited to 107 bytes.
  ((${#dir} + 20 < 108)) || die "$dir is too long for a Unix socket path"
  : >"$dir/$MARKER"

  if [[ $(id -u) -eq 0 ]]; then
    getent passwd postgres >/dev/null ||
      die "running as root needs the 'postgres' system user (install Debian's postgresql package), or run as a non-root user"
    chown -R postgres: "$dir" || die "cannot give $dir to the postgres user"
    runuser -u postgres -- test -w "$dir" ||
      die "the postgres user cannot write to $dir (is a parent directory closed to it? use a directory under /tmp)"
  fi

  if ! as_owner timeout "$TIMEOUT" "$bin/initdb" -D "$dir/data" -U postgres \
    -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    show_log "$dir/initdb.log"
    die "initdb failed in $dir/data"
  fi

  # -w waits until the server accepts connections, -t bounds that wait.
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -t "$TIMEOUT" -o "-c listen_addresses=127.0.0.1 -p $port \
-c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=30 -c shared_buffers=16MB" \
    start >"$dir/pg_ctl.log" 2>&1; then
    show_log "$dir/pg_ctl.log" "$dir/server.log"
    die "the server did not start on 127.0.0.1:$port (data in $dir/data)"
  fi
  echo "pg-cluster: running on 127.0.0.1:$port, socket dir $dir"
}

cmd_stop() {
  local dir=$1 bin pid
  if [[ ! -e $dir ]]; then
    echo "pg-cluster: $dir does not exist; nothing to stop"
    return 0
  fi
  [[ -f $dir/$MARKER ]] || die "$dir was not made by '$0 start' (no $MARKER); not touching it"

  if [[ -f $dir/data/postmaster.pid ]]; then
    bin=$(find_bin)
    # Fast shutdown ends sessions at once; immediate if that hangs.
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t "$TIMEOUT" stop \
      >>"$dir/pg_ctl.log" 2>&1; then
      echo "pg-cluster: fast shutdown failed; trying immediate" >&2
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop \
        >>"$dir/pg_ctl.log" 2>&1 || true
    fi
    # A server that survived both (or a stale pid file) is killed outright.
    if [[ -f $dir/data/postmaster.pid ]]; then
      pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
      if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "pg-cluster: killing postmaster $pid" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
      fi
    fi
  fi
  rm -rf -- "$dir" || die "cannot remove $dir"
}

[[ $# -ge 1 ]] || usage
case $1 in
  start)
    [[ $# -eq 3 ]] || usage
    cmd_start "$2" "$3"
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    cmd_stop "$2"
    ;;
  *) usage ;;
esac
