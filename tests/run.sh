#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, lints, the host's
# unit tests, the end-to-end tests (which build the wasm connectors), and the
# connectors' own unit tests. Needs the wasm32-wasip2 target
# (`rustup target add wasm32-wasip2`; .ci/run installs it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

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
