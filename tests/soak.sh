#!/usr/bin/env bash
# Soak (not a CI test): `weir run` with two targets (SQLite and PostgreSQL)
# under a paced load of webhooks and publishes, PostgreSQL stopped for a
# while in the middle; then checks that every accepted change is in both
# targets exactly once with its latest value, and prints peak RSS and how
# long the backlog took to drain. Needs PostgreSQL's server binaries
# (Debian's postgresql package, or WEIR_PG_BIN) and the wasm32-wasip2 target.
#
#   bash tests/soak.sh [SECONDS] [EVENTS_PER_SECOND] [OUTAGE_SECONDS]
#
# Defaults: 600 s at 1000 events/s, PostgreSQL stopped for 180 s.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -p weir --bin weir -p weir-tests --bin soak
exec target/release/soak target/release/weir "${1:-600}" "${2:-1000}" "${3:-180}"
