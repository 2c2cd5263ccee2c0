#!/usr/bin/env bash
# Highly available provisioning (kindling serve --store) against file mode, release build, on a
# three-member etcd (Debian's etcd-server, plain HTTP on loopback: the hot path never asks it):
# - GET /ipxe?mac= (every worker's MAC in turn) on one replica, etcd mode against file mode, at
#   1,000 and 100,000 machines, same run (wrk, server on core 0, wrk on core 1);
# - `kindling store push` of 10,000 machines through `create ignition-configs` (every file: the
#   first push, into an empty store);
# - how long after a push a replica serves the new revision (10,000 machines; a pool change).
#
#   bench/ha.sh               # BENCHMARKS.md records the output
#   SIZES="1000" RUNS=1 bench/ha.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 100000"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
HTTP_PORT=18180
MCS_PORT=18723

. bench/need.sh
need wrk wrk
need etcd etcd-server
need taskset util-linux

cargo build --release -q -p kindling
bin=$PWD/target/release/kindling
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export XDG_CACHE_HOME=$work/cache

# Three etcd members on core 1 (beside wrk: the server's core stays its own).
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}e$i=http://127.0.0.1:2238$i"; done
for i in 0 1 2; do
  taskset -c 1 etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:2237$i" --advertise-client-urls "http://127.0.0.1:2237$i" \
    --listen-peer-urls "http://127.0.0.1:2238$i" --initial-advertise-peer-urls "http://127.0.0.1:2238$i" \
    --initial-cluster "$cluster" --log-level error > "$work/etcd$i.log" 2>&1 &
  pids+=($!)
done
store=etcd://127.0.0.1:22370,127.0.0.1:22371,127.0.0.1:22372
for i in 0 1 2; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:2237$i/health" | grep -q true && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:2237$i/health" | grep -q true || {
    echo "etcd member e$i did not come up:" >&2
    tail -5 "$work/etcd$i.log" >&2
    exit 1
  }
done


server=""
start() { # arguments of kindling serve; waits for it on core 0
  taskset -c 0 "$bin" serve --http 127.0.0.1:$HTTP_PORT --mcs 127.0.0.1:$MCS_PORT "$@" \
    2>> "$work/serve.log" &
  server=$!
  for _ in $(seq 600); do
    curl -sf http://127.0.0.1:$HTTP_PORT/healthz > /dev/null && return
    sleep 0.1
  done
  echo "kindling serve did not come up:" >&2
  tail -20 "$work/serve.log" >&2
  exit 1
}
stop() { kill "$server"; wait "$server" || true; server=""; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The median of $RUNS wrk runs: req/s (each run's), and the server's CPU time per request
# (user + system, all its threads: the replica's event journal included).
load() {
  local results=()
  for _ in $(seq "$RUNS"); do
    local before out
    before=$(cpu_ticks "$server")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -s bench/macs.lua \
      "http://127.0.0.1:$HTTP_PORT/" -- "$1" "/ipxe?mac=")
    results+=("$(awk -v ticks=$(($(cpu_ticks "$server") - before)) -v hz="$(getconf CLK_TCK)" '
      /requests in/ { n = $1 } /^Requests\/sec/ { rps = $2 }
      END { printf "%.0f %.1f\n", rps, ticks / hz * 1e6 / n }' <<< "$out")")
  done
  local sorted
  sorted=$(printf '%s\n' "${results[@]}" | sort -n)
  local median
  median=$(sed -n "$(((RUNS + 1) / 2))p" <<< "$sorted")
  echo "${median% *} ($(cut -d' ' -f1 <<< "$sorted" | paste -sd/)) | ${median#* }"
}

echo "kindling: $("$bin" --version); etcd $(etcd --version | head -1 | awk '{print $3}')"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| machines | file mode: req/s | cpu us/req | etcd mode: req/s | cpu us/req | etcd / file, req/s | etcd / file, cpu | push (manifests only) |"
echo "|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  d=$work/m$n
  mkdir -p "$d"
  python3 bench/machines.py "$d" "$n" "$HTTP_PORT" "$MCS_PORT"
  "$bin" create manifests --dir "$d" --log-level warn > /dev/null
  start --dir "$d"
  file=$(load "$d/macs.txt")
  stop
  t0=$(date +%s%N)
  "$bin" store push --dir "$d" --store "$store/m$n" --log-level error > /dev/null
  pushed=$((($(date +%s%N) - t0) / 1000000))
  start --dir "$work/replica-m$n" --store "$store/m$n" --log-level warn
  etcd_mode=$(load "$d/macs.txt")
  stop
  ratio=$(awk -v a="${etcd_mode%% *}" -v b="${file%% *}" 'BEGIN {printf "%.3f", a / b}')
  cpu=$(awk -v a="${etcd_mode##* }" -v b="${file##* }" 'BEGIN {printf "%.3f", a / b}')
  echo "| $n | $file | $etcd_mode | $ratio | $cpu | $pushed ms |"
  rm -rf "$d" "$work/replica-m$n"
done

# 10,000 machines through create ignition-configs (a part per machine, the pool configs).
d=$work/big
mkdir -p "$d"
python3 bench/machines.py "$d" 10000 "$HTTP_PORT" "$MCS_PORT"
python3 bench/fill-mirror.py "$bin" "$d"
"$bin" create ignition-configs --dir "$d" --log-level warn > /dev/null
files=$(find "$d" -type f | wc -l)
echo
echo "### store push of 10,000 machines ($files files, $(du -sh "$d" | cut -f1) on disk), into an empty store"
echo
for run in 1 2 3; do
  t0=$(date +%s%N)
  out=$("$bin" store push --dir "$d" --store "$store/push$run" --log-level error)
  echo "- run $run: $((($(date +%s%N) - t0) / 1000000)) ms: $out"
done

# A replica of the 10,000 machines; then a pool change is pushed, and the replica is asked
# every 10 ms until its /boot.ipxe names the new revision.
start --dir "$work/replica-big" --store "$store/push1" --log-level warn
echo
echo "### a new revision taken up by a replica (10,000 machines, a worker pool change)"
echo
mkdir -p "$d/snippets/worker"
for run in 1 2 3; do
  printf 'variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/bench\n      contents:\n        inline: run %s\n' "$run" > "$d/snippets/worker/motd.bu"
  "$bin" create ignition-configs --dir "$d" --log-level warn > /dev/null
  t0=$(date +%s%N)
  out=$("$bin" store push --dir "$d" --store "$store/push1" --log-level error)
  pushed=$(date +%s%N)
  revision=$(awk '{print $2}' <<< "$out" | tr -d :)
  until curl -sf http://127.0.0.1:$HTTP_PORT/boot.ipxe | grep -q "rev=$revision"; do sleep 0.01; done
  echo "- run $run: pushed in $(((pushed - t0) / 1000000)) ms ($out); served $(((($(date +%s%N) - pushed) / 1000000))) ms after the push returned"
done
stop
echo
echo "load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
