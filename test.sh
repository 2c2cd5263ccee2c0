#!/usr/bin/env bash
# Runs kindling's whole test suite: formatting, lints, unit and end-to-end tests.
# First it installs, only where missing, every package the tests drive (Debian packages via
# apt-get; PyPI tools into .venv/). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages whose programs the tests run as real consumers of kindling's output.
APT_PACKAGES=(
  openssh-client   # ssh-keygen: checks the SSH keys kindling accepts
  bsdutils         # script: runs kindling on a pseudo-terminal to test its prompts
  ignition         # ignition-validate and the real Ignition runner
  openssl          # openssl verify: checks every certificate against its CA
  python3-venv     # the venv that holds the PyPI tools below
  qemu-system-x86  # QEMU (TCG) network-boots test machines (tests/cli/qemu.rs); removes qemu-utils 10, unused
  ipxe-qemu        # the real iPXE ROM those machines boot from
  busybox-static   # the userland of the test initramfs (tests/e2e/mkinitramfs.sh)
  bind9-utils      # named-checkzone, named-checkconf -z: check every zone and the named.conf fragment of create infra
  bind9            # named, the name server the doctor tests run on loopback
  haproxy          # haproxy -c: checks infra/haproxy.cfg (and runs on loopback for the doctor tests)
  dnsmasq-base     # dnsmasq --test: checks infra/dnsmasq.conf (the binary without the service)
  isc-dhcp-server  # dhcpd -t: checks infra/dhcpd.conf
  kea-dhcp4-server # kea-dhcp4 -t: checks infra/kea-dhcp4.json
  tar              # tar -tzf / -xzOf: reads the tarball of kindling gather (essential, listed for clarity)
  etcd-server      # etcd 3.4: the agent's join-master and bootstrap hand-over run against real members on loopback (tests/cli/agent.rs)
  etcd-client      # etcdctl: the test's independent check of the membership and of each member's health
  curl             # fetches from chosen source addresses (--interface) through HAProxy in the PROXY protocol tests (tests/cli/serve.rs), and runs the install report unit's command (tests/cli/secrets.rs)
  systemd          # systemd-analyze verify: checks the units kindling puts on the machines (tests/cli/secrets.rs)
  containerd       # pulls test images from kindling serve's registry with the hosts.toml and config.toml kindling gives nodes (tests/cli/registry.rs)
  runc             # containerd's runtime (a dependency it is started with)
  skopeo           # inspects and copies images from kindling's registry, and writes the OCI archives kindling mirror reads
  iproute2         # ip netns: each real-cluster test runs its site in a network namespace of its own (tests/cli/kube.rs); ss: serve's listen queue (tests/cli/limits.rs)
  util-linux       # nsenter: runs the cluster's programs inside that namespace
  containernetworking-plugins  # the bridge, host-local and loopback CNI plugins the real kubelet's pods get (tests/cli/kube.rs)
  chromium         # the browser the dashboard's tests drive headless (tests/ui, through playwright-core)
  ipmitool         # reads back, on its own session, what kindling power did over IPMI (tests/cli/power.rs)
  python3-pyghmi   # pyghmi's BMC: the IPMI (RMCP+) BMC those tests power (tests/ipmi/simbmc.py)
  gcc              # builds the pod sandbox's pause from the Kubernetes source (tests/k8s/binaries.sh)
  libc6-dev        # ... statically
)
# PyPI tools, installed into .venv/ (pinned).
PYPI_PACKAGES=(
  kubernetes-validate==1.37.0   # validates every manifest against the Kubernetes schemas, offline
  schemathesis==4.32.5          # fuzzes kindling serve's API from docs/openapi.yaml; its jsonschema checks the dashboard's calls
  sushy-tools==2.2.0            # the Redfish BMC emulator kindling power is tested against (tests/cli/power.rs)
)

# Services those packages enable and start on install. The tests run their own instances on
# loopback ports; a system DNS, DHCP or load balancer that appears as a side effect is a surprise
# on a workstation, so test.sh stops and disables each one it installed (never one that was
# already there).
declare -A SERVICES=(
  [bind9]=named
  [haproxy]=haproxy
  [isc-dhcp-server]=isc-dhcp-server
  [kea-dhcp4-server]=kea-dhcp4-server
  [etcd-server]=etcd
  [containerd]=containerd
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  for pkg in "${missing[@]}"; do
    service=${SERVICES[$pkg]:-}
    [ -n "$service" ] || continue
    if command -v systemctl >/dev/null && systemctl is-enabled --quiet "$service" 2>/dev/null; then
      echo "test.sh: stopping and disabling $service (started by installing $pkg; the tests run their own)" >&2
      "${sudo_cmd[@]}" systemctl disable --now "$service" || true
    fi
  done
fi

venv=.venv
if [ ! -x "$venv/bin/pip" ]; then
  python3 -m venv "$venv"
fi
for spec in "${PYPI_PACKAGES[@]}"; do
  name=${spec%%==*}
  want=${spec##*==}
  have=$("$venv/bin/pip" show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  if [ "$have" != "$want" ]; then
    echo "test.sh: installing $spec into $venv" >&2
    "$venv/bin/pip" install -q "$spec"
  fi
done
# Tests find the tools here.
export PATH="$PWD/$venv/bin:$PATH"

# npm packages of the dashboard's browser tests (tests/ui: playwright-core, @axe-core/playwright),
# exactly as package-lock.json pins them. Node.js and npm are the machine's; Debian's otherwise.
if ! command -v npm >/dev/null; then
  echo "test.sh: installing nodejs and npm" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
if ! cmp -s tests/ui/package-lock.json tests/ui/node_modules/.kindling-lock 2>/dev/null; then
  echo "test.sh: installing tests/ui's npm packages" >&2
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.kindling-lock)
fi

# Real Kubernetes for tests/cli/kube.rs: the cache's binaries, or a one-time build from
# Debian's source package (about 8 minutes on an idle 2-core machine, 18 on a busy one).
KINDLING_K8S_BIN=$(tests/k8s/binaries.sh)
export KINDLING_K8S_BIN

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Every test runs, even after a failure; the failures are listed again at the end.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo
  echo "test.sh: the tests failed (cargo test exit $rc). Failed tests, by test binary:"
  awk '/^ *Running / { bin = $0; sub(/^ *Running /, "", bin) }
       /^ *Doc-tests / { bin = $0; sub(/^ *Doc-tests /, "doc-tests ", bin) }
       /^test .* \.\.\. FAILED$/ { sub(/ \.\.\. FAILED$/, ""); sub(/^test /, ""); print "  " bin ": " $0 }' "$log"
  # A test binary that crashed lists no failed test; cargo names it here.
  sed -n '/^error: [0-9]* targets\? failed:/,/^[^ ]/p' "$log" | sed 's/^/  /'
fi
exit "$rc"
