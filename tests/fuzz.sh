#!/usr/bin/env bash
# Runs the property tests of the input parsers (the manifest parser and
# validator, the mapping's conversions, the publish API body, CSV scanning
# and reading, the rest connector's webhook payloads) for as long as asked:
# each target in rounds of PROPTEST_CASES cases with a fresh seed, until
# its time is up or a case fails (the failing case is printed, shrunk, and
# kept by proptest under proptest-regressions/). The tests' own short runs
# are part of `cargo test`.
#
#   bash tests/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets: manifest mapping publish csv-scan csv-read rest-webhook (all by
# default). Prints, per target, the rounds, cases run and failures.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(manifest mapping publish csv-scan csv-read rest-webhook)
fi
cases="${PROPTEST_CASES:-2000}"

# The cargo command and test filter of a target.
command_of() {
  case "$1" in
    manifest) echo "cargo test --release -p weir --lib manifest::props" ;;
    mapping) echo "cargo test --release -p weir --lib mapping::props" ;;
    publish) echo "cargo test --release -p weir --lib service::publish::tests::props" ;;
    csv-scan) echo "cd connectors && cargo test --release -p weir-connector-csv --target-dir ../target/connectors-host scan::tests::props" ;;
    csv-read) echo "cd connectors && cargo test --release -p weir-connector-csv --target-dir ../target/connectors-host reader::tests::props" ;;
    rest-webhook) echo "cd connectors && cargo test --release -p weir-connector-rest --target-dir ../target/connectors-host webhook::tests::props" ;;
    *) echo "unknown target '$1' (targets: manifest mapping publish csv-scan csv-read rest-webhook)" >&2; exit 2 ;;
  esac
}

for t in "${targets[@]}"; do
  cmd="$(command_of "$t")"
  # Built once before the clock starts.
  (eval "$cmd -- --list" >/dev/null 2>&1) || { echo "$t: does not build" >&2; exit 1; }
  props=$(eval "$cmd -- --list" 2>/dev/null | grep -c ': test$' || true)
  deadline=$(( $(date +%s) + seconds ))
  rounds=0
  failed=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    if ! out=$(eval "PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$seed $cmd" 2>&1); then
      failed=$((failed + 1))
      echo "$t: a case failed (seed $seed):"
      echo "$out" | grep -E "panicked|minimal failing input|Test failed" | head -20
      break
    fi
    rounds=$((rounds + 1))
  done
  echo "$t: $rounds round(s) of $cases cases x $props properties = $((rounds * cases * props)) cases, $failed failure(s) in ${seconds}s"
done
