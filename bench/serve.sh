#!/usr/bin/env bash
# Load-tests `kindling serve` (release build) with wrk at 10; 1,000; 10,000 and 100,000 machines,
# then runs the boot storm (benches/boot_storm.rs: 5,000 machines walk boot.ipxe -> ipxe ->
# ignition -> machine config server over TLS). The server is pinned to core 0, the load
# generator to core 1. Installs wrk and nginx-light (the static-file baseline) if missing.
#
#   bench/serve.sh                 # every size, then the storm; BENCHMARKS.md records the output
#   SIZES="1000" RUNS=1 STORM_RUNS=0 bench/serve.sh
#
# Each wrk figure is the median by req/s of $RUNS runs of $DURATION s (64 connections,
# keep-alive). "cpu us/req" is the server's user+system CPU time over the requests answered
# in that run: it moves less than req/s when other processes share the machine, but it moves
# too (caches), so each table also gives the load average; compare runs of a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"10 1000 10000 100000"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
STORM_RUNS=${STORM_RUNS:-3}
HTTP_PORT=18080
MCS_PORT=18623
STATIC_PORT=18081

. bench/need.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux

# KINDLING_BIN=path measures another build of the server (e.g. an older commit's) with this
# tree's bench tools.
if [ -n "${KINDLING_BIN:-}" ]; then
  bin=$KINDLING_BIN
else
  cargo build --release -q -p kindling
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/kindling
fi
storm=$(cargo bench -q -p kindling-server --bench boot_storm --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "boot_storm" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# An install-config and inventory with N machines, and their workers' MACs (bench/machines.py).
generate() { # dir, N
  python3 bench/machines.py "$1" "$2" "$HTTP_PORT" "$MCS_PORT"
}

start() { # dir: starts kindling serve on core 0 and waits for it
  taskset -c 0 "$bin" serve --dir "$1" --http 127.0.0.1:$HTTP_PORT --mcs 127.0.0.1:$MCS_PORT \
    2>> "$1/serve.log" &
  server=$!
  for _ in $(seq 200); do
    curl -sf http://127.0.0.1:$HTTP_PORT/healthz > /dev/null && return
    sleep 0.1
  done
  echo "kindling serve did not come up:" >&2
  cat "$1/serve.log" >&2
  exit 1
}
stop() {
  kill "$server"
  wait "$server" || true
  server=""
}
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One table row: the median by req/s of $RUNS wrk runs against the process $1.
# load pid, name, wrk arguments...
load() {
  local pid=$1 name=$2
  shift 2
  local results=()
  for _ in $(seq "$RUNS"); do
    local before after out
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@")
    after=$(cpu_ticks "$pid")
    results+=("$(awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
      /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
      /requests in/ { n = $1 } /^Requests\/sec/ { rps = $2 }
      /Non-2xx/ { bad += $NF }
      /Socket errors/ { gsub(/[^0-9 ]/, ""); for (f = 1; f <= NF; f++) bad += $f }
      END { printf "%.0f|%.2f|%.2f|%.1f|%d\n", rps, p50, p99, ticks / hz * 1e6 / n, bad }' <<< "$out")")
  done
  printf '%s\n' "${results[@]}" | sort -t'|' -k1,1n | sed -n "$(((RUNS + 1) / 2))p" |
    awk -F'|' -v name="$name" -v all="$(printf '%s\n' "${results[@]}" | cut -d'|' -f1 | sort -n | paste -sd/)" \
      '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", name, $1, all, $2, $3, $4, $5 }'
}

header() {
  echo
  echo "$1"
  echo
  echo "| what | req/s (median) | req/s (each run) | p50 ms | p99 ms | server cpu us/req | errors |"
  echo "|---|---|---|---|---|---|---|"
}

echo "kindling: $("$bin" --version) ($bin)"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB; $(rustc --version)"
echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, $RUNS runs each; server on core 0, wrk on core 1"

# Baseline: nginx serving one machine's iPXE script as a static file, with an access log.
mkdir -p "$work/static/www" "$work/static/logs"
chmod 755 "$work" # nginx's worker runs as nobody
cat > "$work/nginx.conf" << NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/static/logs/error.log;
events { worker_connections 1024; }
http {
  access_log $work/static/logs/access.log;
  client_body_temp_path $work/static; proxy_temp_path $work/static;
  fastcgi_temp_path $work/static; uwsgi_temp_path $work/static; scgi_temp_path $work/static;
  server { listen 127.0.0.1:$STATIC_PORT; root $work/static/www; }
}
NGINX

for n in $SIZES; do
  d=$work/m$n
  mkdir -p "$d"
  generate "$d" "$n"
  "$bin" create manifests --dir "$d" --log-level warn > /dev/null
  mac=$(head -1 "$d/macs.txt")
  start "$d"
  pid=$server
  started=$(rss "$pid")
  if [ ! -f "$work/static/www/ipxe" ]; then
    curl -sf "http://127.0.0.1:$HTTP_PORT/ipxe?mac=$mac" > "$work/static/www/ipxe"
    taskset -c 0 nginx -c "$work/nginx.conf"
    sleep 0.5
    header "### baseline (same run): nginx $(nginx -v 2>&1 | cut -d/ -f2), one worker on core 0, the same iPXE script as a static file"
    load "$(cat "$work/nginx.pid" | xargs pgrep -P)" "nginx: GET /ipxe (static file, $(wc -c < "$work/static/www/ipxe") bytes)" "http://127.0.0.1:$STATIC_PORT/ipxe"
    kill "$(cat "$work/nginx.pid")"
  fi
  header "### $n machines (load avg before: $(cut -d' ' -f1-3 /proc/loadavg))"
  load "$pid" "GET /healthz (baseline: no lookup)" "http://127.0.0.1:$HTTP_PORT/healthz"
  load "$pid" "GET /boot.ipxe" "http://127.0.0.1:$HTTP_PORT/boot.ipxe"
  load "$pid" "GET /ipxe?mac= (one MAC)" "http://127.0.0.1:$HTTP_PORT/ipxe?mac=$mac"
  load "$pid" "GET /ipxe?mac= (every worker's MAC in turn)" -s bench/macs.lua "http://127.0.0.1:$HTTP_PORT/" -- "$d/macs.txt" "/ipxe?mac="
  load "$pid" "GET /ignition?mac= (one MAC)" "http://127.0.0.1:$HTTP_PORT/ignition?mac=$mac"
  load "$pid" "GET /ignition?mac= (every worker's MAC in turn)" -s bench/macs.lua "http://127.0.0.1:$HTTP_PORT/" -- "$d/macs.txt" "/ignition?mac="
  echo
  echo "RSS: $started MB after start, $(rss "$pid") MB after the load (peak $(hwm "$pid") MB); load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop
  rm -rf "$d"
done

[ "$STORM_RUNS" -gt 0 ] || exit 0

# The boot storm: 5,000 machines (3 masters, 4,997 workers) boot at once, 64 at a time, from a
# directory through `create ignition-configs` (the machine config server needs the pool configs).
d=$work/storm
mkdir -p "$d"
generate "$d" 5001
python3 bench/fill-mirror.py "$bin" "$d"  # the configs pin the mirror's (stand-in) node binaries
"$bin" create ignition-configs --dir "$d" --log-level warn > /dev/null
start "$d"
echo
echo "### boot storm: 5,000 machines, 64 at a time (load avg before: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "RSS after start: $(rss "$server") MB"
for _ in $(seq "$STORM_RUNS"); do
  echo '```'
  taskset -c 1 "$storm" --dir "$d" --machines 5000 --concurrency 64
  echo '```'
done
echo "RSS after the storms: $(rss "$server") MB (peak $(hwm "$server") MB); load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
stop
