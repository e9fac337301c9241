#!/usr/bin/env bash
# Quick start: builds the connectors and weir, generates the example's data
# (COUNT contacts, default 1000), checks the manifest, syncs twice (the second
# pass writes nothing) and shows the result.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
count="${1:-1000}"

rustup target add wasm32-wasip2
# Building the tests package builds the connectors (tests/build.rs), weir and
# the example's data generator.
cargo build -p weir -p weir-tests --bins

ex=tests/example
target/debug/example-data "$ex/out" "$count"
weir() { target/debug/weir --manifest "$ex/weir.toml" "$@"; }

echo; echo "== weir check"; weir check
echo; echo "== weir sync"; weir sync
echo; echo "== weir sync (again: nothing to write)"; weir sync
echo; echo "== weir status"; weir status
echo; echo "== the result"
target/debug/example-data show "$ex/out"
