#!/usr/bin/env bash
# The dashboard's speed (issue 16), release build: a `kindling serve` of 10,000 machines on core
# 0, Debian's Chromium through playwright-core (tests/ui/bench.mjs):
# - the machines page: navigation until its rows are drawn, and until a sort answers (median of 5);
# - a boot storm (wrk: GET /ipxe?mac= over 5,000 workers' MACs, 64 connections at a steady
#   2,500 requests a second, every machine's boot script five times over in 10 s, on core 1) with
#   the page open and following the event stream: the main thread's longest task and how many
#   passed 100 ms, and how long after the storm the page showed what the server's list says;
# - the server's CPU time per storm request with the page open, against the same storm with no
#   browser before and after it (same run). The browser runs on core 1, beside wrk.
#
#   bench/ui.sh        # BENCHMARKS.md records the output
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINES=${MACHINES:-10000}
STORM_MACHINES=${STORM_MACHINES:-5000}
DURATION=${DURATION:-15}
HTTP_PORT=18280
MCS_PORT=18823

. bench/need.sh
need wrk wrk
need taskset util-linux
need chromium chromium
(cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)

cargo build --release -q -p kindling
bin=$PWD/target/release/kindling
work=$(mktemp -d)
server=""
cleanup() {
  [ -z "$server" ] || kill "$server" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export XDG_CACHE_HOME=$work/cache

d=$work/site
mkdir -p "$d"
python3 bench/machines.py "$d" "$MACHINES" "$HTTP_PORT" "$MCS_PORT"
head -n "$STORM_MACHINES" "$d/macs.txt" > "$work/storm-macs.txt"
"$bin" create manifests --dir "$d" --log-level warn > /dev/null
taskset -c 0 "$bin" serve --dir "$d" --http 127.0.0.1:$HTTP_PORT --mcs 127.0.0.1:$MCS_PORT \
  --log-level warn 2>> "$work/serve.log" &
server=$!
for _ in $(seq 600); do
  curl -sf http://127.0.0.1:$HTTP_PORT/healthz > /dev/null && break
  sleep 0.1
done
token=$(cat "$d/auth/kindling-admin-token")

# A steady rate, the same with and without the browser: at full speed wrk would take all of core
# 1 from the browser, and the server's CPU per request depends on how hard it is driven.
DELAY_MS=${DELAY_MS:-25}
storm="taskset -c 1 wrk -t1 -c64 -d${DURATION}s -s bench/macs-paced.lua http://127.0.0.1:$HTTP_PORT/ -- $work/storm-macs.txt /ipxe?mac= $DELAY_MS"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
alone() { # the server's CPU us per storm request, no browser
  local before out
  before=$(cpu_ticks)
  out=$($storm)
  awk -v ticks=$(($(cpu_ticks) - before)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ { n = $1 } END { printf "%.1f", ticks / hz * 1e6 / n }' <<< "$out"
}

echo "kindling: $("$bin" --version); $(chromium --version 2> /dev/null | head -1); playwright-core $(node -p 'require("./tests/ui/node_modules/playwright-core/package.json").version')"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
$storm > /dev/null # warms the server and the event log up; not counted
before="$(alone) $(alone)"
# The browser on core 1 with wrk, as it would be on another machine: on the server's core it
# would take the server's cache and time, which is not the server's work.
page=$(KINDLING_URL=http://127.0.0.1:$HTTP_PORT KINDLING_TOKEN=$token KINDLING_PID=$server \
  KINDLING_STORM="$storm" taskset -c 1 node tests/ui/bench.mjs)
after="$(alone) $(alone)"
echo "$page"
echo
python3 - "$page" "$before $after" <<'PY'
import json, sys
page = json.loads(sys.argv[1])
runs = [float(x) for x in sys.argv[2].split()]
alone = sorted(runs)[len(runs) // 2]  # the median of the runs before and after
storm = page["storm"]
cpu = storm["cpuUsPerRequest"]
print(f"| machines | page drawn (median) | page answers a sort (median) | longest task, load |")
print(f"|---|---|---|---|")
print(f"| {page['machines']} | {page['drawnMs']['median']} ms ({'/'.join(map(str, page['drawnMs']['runs']))}) | {page['interactiveMs']['median']} ms ({'/'.join(map(str, page['interactiveMs']['runs']))}) | {page['loadLongestTaskMs']} ms |")
print()
print(f"| storm | requests | longest task | tasks over 100 ms | page caught up after | cpu us/req, page open | no browser, 2 runs before and 2 after | page open / none (medians) |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| {len(cpu['runs'])} x {storm['seconds'] / len(cpu['runs']):.0f} s over {storm['machinesAtIpxe']} machines | {storm['requests']} | {storm['longestTaskMs']} ms | {storm['tasksOver100Ms']} | {storm['caughtUpMsAfter']} ms | {cpu['median']:.1f} ({'/'.join(map(str, cpu['runs']))}) | {alone:.1f} ({'/'.join(f'{r:.1f}' for r in runs)}) | {cpu['median'] / alone:.3f} |")
PY
