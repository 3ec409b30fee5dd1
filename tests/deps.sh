#!/usr/bin/env bash
# Installs the Debian packages that switchd's build, tests, demo and
# benchmarks need, then builds. Run by `make deps`.
#
# Only missing packages are installed, and presence is checked with dpkg-query
# first, so a second run needs no network and takes a fraction of a second.
# Package services (nginx, haproxy, postgresql) are not started by the
# install: the tests and benchmarks start their own instances on free
# loopback ports from temporary directories.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(
  make build-essential pkg-config   # gcc ships ASan+UBSan (libasan8, libubsan1)
  libuv1-dev node-llhttp libpq-dev libssl-dev libjansson-dev
  python3 gunicorn curl procps      # integration tests
  python3-django python3-psycopg2   # the reference Django app (examples/)
  openssl                           # test certificates, s_client (TLS tests)
  wrk haproxy nginx gnuplot-nox     # benchmarks
  valgrind                          # instructions per request (bench)
  postgresql                        # verification tests (later milestones)
  clang-format                      # make format-check
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # "ii " is "installed, configured"; anything else (absent, half-installed,
  # removed with config left) needs apt.
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "ii "* ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "deps: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "deps: not root and no sudo; as root run:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi

  # Keep the packages' own services from starting during the install (port 80
  # for nginx, a system PostgreSQL cluster): nothing here uses them. A
  # policy-rc.d that exits 101 is Debian's documented way; one that is
  # already there is left alone.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# switchd deps.sh: no service starts during install\nexit 101\n' |
      "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  cleanup() {
    if ((made_policy)); then
      "${SUDO[@]}" rm -f "$policy"
    fi
  }
  trap cleanup EXIT

  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"

  cleanup
  trap - EXIT
else
  echo "deps: all ${#PACKAGES[@]} packages present"
fi

# MAKEFLAGS from a parent `make -jN deps` names a jobserver this process does
# not inherit; drop it so the build below is not forced to one job with a
# warning.
unset MAKEFLAGS MFLAGS
exec make -j"$(nproc 2>/dev/null || echo 2)"
