#!/usr/bin/env bash
# Day 2 on a 1,000-machine cluster (bench/big-cluster.sh), release build:
# - a change to the worker pool (a Butane snippet) rendered: `create ignition-configs` makes the
#   pool's new rendering, keeps it, and moves the pool's target; target under 1 s;
# - baseline, same run: `create ignition-configs` with nothing changed.
# Needs hyperfine (apt-get install hyperfine).
#
#   bench/day2.sh            # prints hyperfine's table; BENCHMARKS.md records it
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kindling
bin=$PWD/target/release/kindling
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache

bench/big-cluster.sh "$work/big" 1000
python3 bench/fill-mirror.py "$bin" "$work/big"
"$bin" create ignition-configs --dir "$work/big" --log-level warn > /dev/null
mkdir -p "$work/big/snippets/worker"
# Each run writes a snippet the pool has not had: a new rendering every time.
change="bash -c 'n=\$(date +%s%N); printf \"variant: fcos\\nversion: 1.4.0\\nstorage:\\n  files:\\n    - path: /etc/motd.d/day2\\n      contents:\\n        inline: \$n\\n\" > $work/big/snippets/worker/motd.bu && sync'"
hyperfine --warmup 1 --runs 10 -N --export-markdown "$work/day2.md" \
  --prepare "$change" -n "1,000 machines: a worker pool change rendered" \
  "$bin create ignition-configs --dir $work/big --log-level warn" \
  --prepare "sync" -n "baseline: 1,000 machines, nothing changed" \
  "$bin create ignition-configs --dir $work/big --log-level warn"
ls "$work/big/ignition/rendered" | wc -l | sed 's/^/renderings kept: /'
cat "$work/day2.md"
