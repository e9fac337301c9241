#!/usr/bin/env bash
# Installs the peers of the PostgreSQL benchmark (`pg-bench`) into one cache
# folder (default: ${WEIR_E2E_CACHE:-$HOME/.cache/weir-e2e}/bench-peers):
#
#   $D/venv/bin/python                                         a Python venv holding dlt[postgres]
#   $D/venv/lib/python3.*/site-packages/sling_linux_amd64/bin/sling-linux-amd64
#                                                              the sling binary (PyPI `sling-linux-amd64`)
#
# and GNU time (`/usr/bin/time`, Debian `time`), which measures the peers'
# peak RSS. Idempotent and silent on a cache hit: the venv is rebuilt only if
# its marker file is missing, and a half-built venv is removed first.
# Concurrent runs wait for each other (flock on $D/.lock).
#
# Why these packages: the PyPI `sling` package downloads its Go binary on first
# use (fails offline); the `sling-linux-amd64` wheel ships it. dlt refuses
# PostgreSQL credentials without a password, even under trust auth (the
# benchmark sets one).
set -euo pipefail
D="${1:-${WEIR_E2E_CACHE:-$HOME/.cache/weir-e2e}/bench-peers}"
SLING_VERSION=1.4.11
DLT_VERSION=1.31.0
mkdir -p "$D"
exec 9>"$D/.lock"
flock 9

is_root() { [ "$(id -u)" = 0 ]; }

if [ ! -x /usr/bin/time ]; then
  if ! is_root; then
    echo "bench-peers: /usr/bin/time is missing; install the Debian package 'time' (apt-get install -y time)" >&2
    exit 2
  fi
  echo "bench-peers: installing GNU time (Debian package 'time')"
  apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
fi

marker="$D/venv/.installed-sling-$SLING_VERSION-dlt-$DLT_VERSION"
if [ ! -f "$marker" ]; then
  echo "bench-peers: installing sling-linux-amd64 $SLING_VERSION and dlt[postgres] $DLT_VERSION into $D/venv"
  start=$(date +%s)
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if ! is_root; then
      echo "bench-peers: python3 cannot create a venv; install the Debian package 'python3-venv'" >&2
      exit 2
    fi
    apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
  fi
  rm -rf "$D/venv"
  python3 -m venv "$D/venv"
  "$D/venv/bin/pip" install --quiet --disable-pip-version-check \
    "sling-linux-amd64==$SLING_VERSION" "dlt[postgres]==$DLT_VERSION"
  # Both must run before the venv counts as installed.
  "$D/venv/bin/python" -c 'import dlt, psycopg2' >/dev/null
  compgen -G "$D/venv/lib/python3*/site-packages/sling_linux_amd64/bin/sling-linux-amd64" >/dev/null
  touch "$marker"
  echo "bench-peers: done in $(( $(date +%s) - start )) s"
fi
