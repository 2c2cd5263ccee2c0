#!/usr/bin/env bash
# Drives `kindling serve` (release build, 1,000 machines, on core 0) past its limits with
# bench/exhaust.py (on core 1): 10,000 idle connections beside boot requests, then 1,000 event
# streams (100 of them slow) during a boot storm. BENCHMARKS.md records the output.
#
#   bench/exhaust.sh              # WRK_SECONDS=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
WRK_SECONDS=${WRK_SECONDS:-10}
HTTP_PORT=18180
MCS_PORT=18723

. bench/need.sh
need wrk wrk
need taskset util-linux

if [ -n "${KINDLING_BIN:-}" ]; then
  bin=$KINDLING_BIN
else
  cargo build --release -q -p kindling
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/kindling
fi
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Room for 10,000 connections on both ends (each process has its own limit).
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 12000 ] || { echo "the open files limit (ulimit -Hn) is below 12,000" >&2; exit 1; }
python3 bench/machines.py "$work" 1000 "$HTTP_PORT" "$MCS_PORT"
"$bin" create manifests --dir "$work" --log-level warn > /dev/null
taskset -c 0 "$bin" serve --dir "$work" --http 127.0.0.1:$HTTP_PORT --mcs 127.0.0.1:$MCS_PORT \
  2>> "$work/serve.log" &
server=$!
for _ in $(seq 200); do
  curl -sf http://127.0.0.1:$HTTP_PORT/healthz > /dev/null && break
  sleep 0.1
done

echo "kindling: $("$bin" --version) ($bin)"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB; load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
taskset -c 1 python3 bench/exhaust.py "$server" "127.0.0.1:$HTTP_PORT" "$work" "$WRK_SECONDS"
