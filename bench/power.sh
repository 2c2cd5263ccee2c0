#!/usr/bin/env bash
# Powering on 1,000 machines with a one-time network boot (issue 17's target: under 30 s),
# release build, against the sushy-tools Redfish emulator (fake driver, HTTP Basic credentials)
# on loopback: `kindling power on --pxe-once --all`, 32 BMCs at a time (the default), 3 runs.
#
#   bench/power.sh          # BENCHMARKS.md records the output
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINES=${MACHINES:-1000}
PORT=18650

[ -x .venv/bin/sushy-emulator ] || { python3 -m venv .venv && .venv/bin/pip install -q sushy-tools==2.2.0; }
cargo build --release -q -p kindling
bin=$PWD/target/release/kindling
work=$(mktemp -d)
emulator=""
cleanup() {
  [ -z "$emulator" ] || kill "$emulator" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

d=$work/site
mkdir -p "$d/bmc"
python3 bench/machines.py "$d" "$MACHINES" 18651 18652
printf 'username: admin\npassword: bench-pw\n' > "$d/bmc/all.yaml"
chmod 600 "$d/bmc/all.yaml"
# Each machine gets a BMC: a system of the emulator, named by a uuid made from its index.
.venv/bin/python3 - "$d" "$MACHINES" "$PORT" "$work" <<'PY'
import sys, bcrypt
d, n, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
uuid = lambda i: f"00000000-0000-0000-0000-{i:012d}"
lines = open(f"{d}/inventory.yaml").read().splitlines()
out = []
for line in lines:
    out.append(line)
    if line.startswith("  - {name: node"):
        i = int(line.split("name: node")[1].split(",")[0])
        out[-1] = line[:-1] + f", bmc: {{address: 'redfish+http://127.0.0.1:{port}/redfish/v1/Systems/{uuid(i)}', credentials: bmc/all.yaml}}}}"
open(f"{d}/inventory.yaml", "w").write("\n".join(out) + "\n")
systems = ", ".join(f"{{'uuid': '{uuid(i)}', 'name': 'node{i}', 'power_state': 'Off', 'nics': []}}" for i in range(n))
open(f"{work}/htpasswd", "w").write("admin:" + bcrypt.hashpw(b"bench-pw", bcrypt.gensalt(4)).decode() + "\n")
open(f"{work}/emulator.conf", "w").write(
    f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n"
    f"SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{work}/state'\n"
    f"SUSHY_EMULATOR_AUTH_FILE = '{work}/htpasswd'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n")
PY
.venv/bin/sushy-emulator --config "$work/emulator.conf" > "$work/emulator.log" 2>&1 &
emulator=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/redfish/v1" > /dev/null && break
  sleep 0.1
done
# The emulator fills its database at the first list of its systems: not counted.
curl -sf -u admin:bench-pw "http://127.0.0.1:$PORT/redfish/v1/Systems" > /dev/null

echo "kindling: $("$bin" --version); sushy-tools $(.venv/bin/pip show sushy-tools | sed -n 's/^Version: //p')"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in 1 2 3; do
  t0=$(date +%s%N)
  "$bin" power on --pxe-once --all --dir "$d" --log-level warn > "$work/out.txt" 2> "$work/err.txt" || true
  ms=$((($(date +%s%N) - t0) / 1000000))
  echo "- run $run: $ms ms; $(grep -c 'done: ' "$work/out.txt") machines done, $(grep -c 'FAILED' "$work/out.txt") failed"
  "$bin" power off --all --dir "$d" --log-level warn > /dev/null 2>&1 || true
done
