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

# Inputs: the demo, and 1,000 machines on a /21 (bench/big-cluster.sh).
mkdir -p "$work/demo"
cp examples/demo/install-config.yaml examples/demo/inventory.yaml "$work/demo/"
bench/big-cluster.sh "$work/big" 1000

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
