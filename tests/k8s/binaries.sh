#!/usr/bin/env bash
# Prints the directory that holds real Kubernetes binaries for the tests (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl, and the pod sandbox's pause),
# making them first if needed (with --cached: never; exit 3 when they are not there yet):
#
#   1. $KINDLING_K8S_BIN, if set: used as it is;
#   2. else a cache outside the repository, keyed by the Debian package's version:
#      ${XDG_CACHE_HOME:-~/.cache}/kindling/kubernetes-<version>/bin;
#   3. else it builds them into that cache from Debian bookworm's `kubernetes` source package
#      (upstream v1.20.2 with its whole vendor/), offline, with Debian's Go. Once per machine:
#      7 min 38 s on an idle 2-core machine (kube-apiserver, which generates code first, 5 min of
#      it; ~18 min while other builds ran); later runs take the cache.
#
# The build follows Debian's own rules (GOPATH mode, CGO off, the upstream make targets, which
# generate code first); ../shared/docs/real-kubernetes.md has the measurements and pitfalls.
# Progress goes to stderr, the directory to stdout.
set -euo pipefail

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl pause)
# --cached: print the directory if it holds every binary, else exit 3; never build or install.
cached=0
[ "${1:-}" = --cached ] && cached=1

if [ -n "${KINDLING_K8S_BIN:-}" ]; then
  for b in "${binaries[@]}"; do
    [ -x "$KINDLING_K8S_BIN/$b" ] || { echo "k8s: \$KINDLING_K8S_BIN=$KINDLING_K8S_BIN has no $b" >&2; exit 1; }
  done
  echo "$KINDLING_K8S_BIN"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
need() { # packages...: installs what is missing
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "k8s: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The package version names the cache: a new Debian upload means a new build. The source and
# its binary package kubernetes-client share it, and the binary's needs no deb-src lines.
version=$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: //p' | head -1)
[ -n "$version" ] && [ "$version" != "(none)" ] || { echo "k8s: the Debian mirrors have no kubernetes package (apt-get update?)" >&2; exit 1; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kindling/kubernetes-$version
bin=$cache/bin

have_all() {
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}
if have_all; then
  echo "$bin"
  exit 0
fi
if [ "$cached" = 1 ]; then
  echo "k8s: $bin does not hold them yet" >&2
  exit 3
fi

need golang-go rsync make dpkg-dev gcc libc6-dev
mkdir -p "$cache"
# One build at a time per machine: parallel test runs wait for the first.
exec 9> "$cache/.lock"
flock 9
if have_all; then
  echo "$bin"
  exit 0
fi
src=$cache/src
if [ ! -d "$src/kubernetes" ]; then
  if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: $version$"; then
    # No deb-src lines yet: add them for the same mirrors as the binary packages, for this run.
    sources=/etc/apt/sources.list.d/kindling-k8s-src.sources
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | "${sudo_cmd[@]}" tee "$sources" > /dev/null
    trap '"${sudo_cmd[@]}" rm -f "$sources"; "${sudo_cmd[@]}" apt-get update -qq >&2 || true' EXIT
    "${sudo_cmd[@]}" apt-get update -qq >&2
  fi
  echo "k8s: fetching the source of kubernetes $version" >&2
  rm -rf "$src.partial"
  mkdir -p "$src.partial"
  (cd "$src.partial" && apt-get source -qq kubernetes >&2)
  mv "$src.partial"/kubernetes-*/ "$src.partial/kubernetes"
  mv "$src.partial" "$src"
fi
cd "$src/kubernetes"
export GOPATH=$PWD/.go CGO_ENABLED=0 GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOMAXPROCS=${GOMAXPROCS:-2}
mkdir -p .go/src/k8s.io "$bin"
[ -L .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
# A build that ran without rsync leaves an empty code generator behind; it must be made again.
[ -s _output/bin/prerelease-lifecycle-gen ] || rm -f _output/bin/prerelease-lifecycle-gen
# The pod sandbox's pause process, from the same source (build/pause), as upstream builds it.
if [ ! -x "$bin/pause" ]; then
  cc -Os -Wall -Werror -static -DVERSION=kindling -o "$bin/pause.partial" build/pause/linux/pause.c
  mv "$bin/pause.partial" "$bin/pause"
fi
for b in "${binaries[@]}"; do
  [ "$b" = pause ] && continue
  [ -x "$bin/$b" ] && continue
  started=$(date +%s)
  echo "k8s: building $b" >&2
  env HOME=/tmp make WHAT="cmd/$b" >&2
  install -m 0755 "_output/bin/$b" "$bin/$b.partial"
  mv "$bin/$b.partial" "$bin/$b"
  echo "k8s: built $b in $(( $(date +%s) - started )) s" >&2
done
echo "$bin"
