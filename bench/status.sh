#!/usr/bin/env bash
# `kindling status --json` on 1,000 machines against the real control plane of the tests
# (etcd 3.4 and kube-apiserver 1.20, tests/k8s/binaries.sh), 1,000 Nodes in the apiserver;
# baseline in the same run: `kubectl get nodes -o json`. Target: under 300 ms. Release build
# of the test binary; run as root (the test's network namespace).
#
#   bench/status.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KINDLING_K8S_BIN=$(tests/k8s/binaries.sh --cached)
export KINDLING_K8S_BIN
cargo test --release -q --test cli -- --ignored --nocapture bench_status_of_1000_machines 2>&1 | grep '^BENCH'
