#!/usr/bin/env bash
# Runs kindling's fuzz targets under libFuzzer (cargo-fuzz, nightly) for a number of
# executions each, and prints a line per target: executions, executions per second, coverage
# (libFuzzer's "cov": edges reached), and the crashes, timeouts (over 1 s) and out-of-memory
# runs (over 2 GB) it found, with the artifact of each.
#
#   bench/fuzz.sh [-n EXECUTIONS] [TARGET...]     default: 10,000,000 each, every target
#
# Needs `cargo install cargo-fuzz` and the nightly toolchain. Each target starts from its seeds
# (fuzz/corpus/<target>) and grows a working corpus in fuzz/work/<target>, which is not
# committed; an input that fails goes, minimised, to fuzz/regressions/<target>/ by hand, with
# the fix, and the suite replays it from then on.
#
# matchbox_data writes its input's files under $TMPDIR: with TMPDIR=/dev/shm (a tmpfs) it runs
# about three times as fast as on a disk.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs=10000000
if [ "${1:-}" = "-n" ]; then
  runs=$2
  shift 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^kindling-fuzz-targets$')
fi
cargo +nightly fuzz build -O >&2
printf '%-18s %12s %10s %8s %s\n' target executions exec/s cov found
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  log="work/$t.log"
  cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- \
    -runs="$runs" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || true
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d ' ' -f 2)
  found=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort | tr '\n' ' ')
  printf '%-18s %12s %10s %8s %s\n' "$t" "${executions:-?}" "${speed:-?}" "${cov:-?}" "${found:-none}"
done
# The matchbox_data target's scratch directories, one per fuzzing process.
rm -rf "${TMPDIR:-/tmp}"/kindling-fuzz-matchbox-*
