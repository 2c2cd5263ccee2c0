#!/usr/bin/env bash
# Runs the whole suite (./test.sh) RUNS times in a row (default 10) under an artificial load of
# two busy processes, and says how many runs failed. Proof that the suite does not flake on a
# loaded 2-core machine. Each run's output is kept in target/soak/run-N.log.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
mkdir -p target/soak
busy=()
for _ in 1 2; do
  ( while :; do :; done ) &
  busy+=($!)
done
trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  started=$(date +%s)
  if ./test.sh >"target/soak/run-$i.log" 2>&1; then result=pass; else result=FAIL; failed=$((failed + 1)); fi
  echo "soak: run $i of $runs: $result in $(( $(date +%s) - started )) s (target/soak/run-$i.log)"
  if [ "$result" = FAIL ]; then sed -n '/^test.sh: the tests failed/,$p' "target/soak/run-$i.log"; fi
done
echo "soak: $failed of $runs runs failed, under 2 busy processes on $(nproc) cores, at $(git rev-parse --short HEAD)"
[ "$failed" -eq 0 ]
