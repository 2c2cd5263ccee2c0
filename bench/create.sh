#!/usr/bin/env bash
# Times `kindling create ignition-configs` on a fresh directory with the release build:
# the built-in example (bootstrap, 3 masters, 3 workers) with ECDSA and RSA keys, and a
# 1,000-machine inventory. Needs hyperfine (apt-get install hyperfine).
#
#   bench/create.sh            # prints hyperfine's tables; BENCHMARKS.md records them
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kindling
bin=$PWD/target/release/kindling
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The binary's sha512 is cached per user; "cold" runs clear that cache first.
export XDG_CACHE_HOME=$work/cache

# Inputs: the demo, and the demo's install-config with 1,000 machines on a /21.
mkdir -p "$work/demo" "$work/big"
cp examples/demo/install-config.yaml examples/demo/inventory.yaml "$work/demo/"
# hostPrefix 24 leaves room for 1,024 nodes in the /14 pod network.
sed 's|cidr: 192.168.126.0/24|cidr: 10.20.0.0/21|; s|hostPrefix: 23|hostPrefix: 24|' examples/demo/install-config.yaml > "$work/big/install-config.yaml"
python3 - "$work/big/inventory.yaml" <<'PY'
import sys
lines = ["apiVersion: kindling/v1alpha1", "kind: Inventory",
         "provisioning: {serverURL: 'http://10.20.0.2:8080'}",
         "network: {gateway: 10.20.0.1, dnsServers: [10.20.0.2]}",
         "loadBalancer: {apiVIP: 10.20.0.10, ingressVIP: 10.20.0.11}", "machines:"]
for i in range(1000):
    role = "bootstrap" if i == 0 else "master" if i <= 3 else "worker"
    host = 100 + i
    lines.append(f"  - {{name: node{i}, role: {role}, mac: '52:54:00:00:{i >> 8:02x}:{i & 255:02x}', ip: 10.20.{host >> 8}.{host & 255}}}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
sed -i 's/replicas: 3$/replicas: 996/' "$work/big/install-config.yaml"
sed -i '0,/replicas: 996/s//replicas: 3/' "$work/big/install-config.yaml"

# Ignition configs pin the mirror's node binaries: a mirror of stand-ins, filled once per input
# and linked into each run (it is read, not written).
python3 bench/fill-mirror.py "$bin" "$work/demo"
python3 bench/fill-mirror.py "$bin" "$work/big"

fresh() { # copy the inputs of $1 into an empty run directory; $2 = cold clears the hash cache
  local cold=""
  [ "${2:-}" = cold ] && cold="rm -rf $XDG_CACHE_HOME && "
  # sync, so that no run pays for the writeback of the previous one's deleted files.
  echo "bash -c '${cold}rm -rf $work/run && mkdir $work/run && cp $work/$1/*.yaml $work/run/ && ln -s $work/$1/mirror $work/run/mirror && sync'"
}
# Baseline for the file-system floor: copying a finished demo asset directory (same files, no
# fsync, no work) with cp.
mkdir -p "$work/done" && cp "$work"/demo/*.yaml "$work/done/" && ln -s "$work/demo/mirror" "$work/done/mirror"
"$bin" create ignition-configs --dir "$work/done" --log-level warn > /dev/null
hyperfine --warmup 2 --runs 15 -N --export-markdown "$work/demo.md" \
  --prepare "$(fresh demo)" -n "demo, ecdsa" "$bin create ignition-configs --dir $work/run --log-level warn" \
  --prepare "$(fresh demo cold)" -n "demo, ecdsa, binary hash not cached" "$bin create ignition-configs --dir $work/run --log-level warn" \
  --prepare "$(fresh demo)" -n "demo, create manifests only" "$bin create manifests --dir $work/run --log-level warn" \
  --prepare "$(fresh demo)" -n "demo, rsa" "$bin create ignition-configs --dir $work/run --log-level warn --key-algorithm rsa" \
  --prepare "bash -c 'rm -rf $work/copy && sync'" -n "baseline: cp -r of the finished demo directory" "cp -r $work/done $work/copy" \
  --prepare "$(fresh demo)" -n "baseline: kindling --version" "$bin --version"
hyperfine --warmup 1 --runs 5 -N --export-markdown "$work/big.md" \
  --prepare "$(fresh big)" -n "1,000 machines, ecdsa" "$bin create ignition-configs --dir $work/run --log-level warn"
cat "$work/demo.md" "$work/big.md"
