#!/usr/bin/env bash
# Writes the demo's install-config.yaml and an inventory.yaml of N machines (1 bootstrap,
# 3 masters, the rest workers, on a /21) into DIR: the large cluster the benches share.
#
#   bench/big-cluster.sh DIR [N]     # N defaults to 1000
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
count=${2:-1000}
mkdir -p "$dir"
# hostPrefix 24 leaves room for 1,024 nodes in the /14 pod network.
sed 's|cidr: 192.168.126.0/24|cidr: 10.20.0.0/21|; s|hostPrefix: 23|hostPrefix: 24|' \
  examples/demo/install-config.yaml > "$dir/install-config.yaml"
python3 - "$dir/inventory.yaml" "$count" <<'PY'
import sys
lines = ["apiVersion: kindling/v1alpha1", "kind: Inventory",
         "provisioning: {serverURL: 'http://10.20.0.2:8080'}",
         "network: {gateway: 10.20.0.1, dnsServers: [10.20.0.2]}",
         "loadBalancer: {apiVIP: 10.20.0.10, ingressVIP: 10.20.0.11}", "machines:"]
for i in range(int(sys.argv[2])):
    role = "bootstrap" if i == 0 else "master" if i <= 3 else "worker"
    host = 100 + i
    lines.append(f"  - {{name: node{i}, role: {role}, mac: '52:54:00:00:{i >> 8:02x}:{i & 255:02x}', ip: 10.20.{host >> 8}.{host & 255}}}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
workers=$((count - 4))
sed -i "s/replicas: 3\$/replicas: $workers/" "$dir/install-config.yaml"
sed -i "0,/replicas: $workers/s//replicas: 3/" "$dir/install-config.yaml"
