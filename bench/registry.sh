#!/usr/bin/env bash
# Image pulls from `kindling serve`'s registry (release build) against nginx serving the same blob
# file over the same TLS certificate: $CLIENTS parallel clients (curl, with a machine's Basic
# credentials for kindling) each GET one $SIZE_MB MB layer. Each server runs one worker pinned to
# core 0, the clients on core 1. Also samples kindling serve's RSS during the pulls.
#
#   bench/registry.sh              # BENCHMARKS.md records the output
#   CLIENTS=20 SIZE_MB=200 RUNS=3 bench/registry.sh
#
# Every blob is checked against its digest the first time kindling serves it (and again if the
# file changes): a warm-up pull before the runs pays that once, and the script prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-20}
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-3}
HTTP_PORT=18090
MCS_PORT=18690
NGINX_PORT=18691

. bench/need.sh
need nginx nginx-light
need taskset util-linux
need curl curl

if [ -n "${KINDLING_BIN:-}" ]; then
  bin=$KINDLING_BIN
else
  cargo build --release -q -p kindling
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/kindling
fi
work=$(mktemp -d)
server=""
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2> /dev/null
  [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work" # nginx's worker runs as nobody

# The demo cluster on loopback, its mirror holding one image with one $SIZE_MB MB layer.
d=$work/site
mkdir -p "$d"
cp examples/demo/install-config.yaml "$d/"
sed "s|  serverURL: http://192.168.126.2:8080|  serverURL: http://127.0.0.1:$HTTP_PORT\n  mcsURL: https://127.0.0.1:$MCS_PORT|" \
  examples/demo/inventory.yaml > "$d/inventory.yaml"
"$bin" create manifests --dir "$d" --log-level warn > /dev/null
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
put() { # file: moves it into the layout by its digest; prints "digest size"
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}
head -c "${SIZE_MB}M" /dev/urandom > "$work/layer"
read -r layer layer_size < <(put "$work/layer")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' "$layer" > "$work/config"
read -r config config_size < <(put "$work/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" > "$work/manifest"
read -r manifest manifest_size < <(put "$work/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
  "$manifest" "$manifest_size" > "$layout/index.json"
"$bin" mirror --dir "$d" --from-archive "$layout" --as registry.k8s.io/bench/big --log-level error > /dev/null 2>&1 || true  # the cluster's other images are not needed here
rm -rf "$layout"
blob=$d/mirror/blobs/sha256/${layer#sha256:}
[ -f "$blob" ] || { echo "the layer did not reach the mirror" >&2; exit 1; }

taskset -c 0 "$bin" serve --dir "$d" --http 127.0.0.1:$HTTP_PORT --mcs 127.0.0.1:$MCS_PORT 2>> "$work/serve.log" &
server=$!
for _ in $(seq 200); do
  curl -sf http://127.0.0.1:$HTTP_PORT/healthz > /dev/null && break
  sleep 0.1
done
token=$(curl -sf "http://127.0.0.1:$HTTP_PORT/ipxe?mac=52-54-00-7e-01-20" | grep -o 'token=[0-9a-f]*' | head -1 | cut -d= -f2)
[ -n "$token" ] || { echo "no machine token from /ipxe" >&2; cat "$work/serve.log" >&2; exit 1; }
ca=$d/tls/root-ca.crt
kindling_url="https://127.0.0.1:$MCS_PORT/v2/registry.k8s.io/bench/big/blobs/$layer"

# nginx: the same file, the same certificate (the machine config server's), one worker.
mkdir -p "$work/www/v2/registry.k8s.io/bench/big/blobs" "$work/logs"
ln "$blob" "$work/www/v2/registry.k8s.io/bench/big/blobs/$layer"
cat > "$work/nginx.conf" << NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log $work/logs/access.log;
  client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $d/tls/mcs.crt;
    ssl_certificate_key $d/tls/mcs.key;
    root $work/www;
  }
}
NGINX
chmod -R a+rX "$work/www" "$d/tls/mcs.crt"
chmod a+r "$d/tls/mcs.key" "$blob"
taskset -c 0 nginx -c "$work/nginx.conf"
nginx_url="https://127.0.0.1:$NGINX_PORT/v2/registry.k8s.io/bench/big/blobs/$layer"

pull_all() { # url, extra curl args...: $CLIENTS parallel GETs on core 1; prints "seconds bytes"
  local url=$1
  shift
  local start end
  start=$(date +%s.%N)
  for _ in $(seq "$CLIENTS"); do
    taskset -c 1 curl -sf -o /dev/null -w '%{size_download}\n' --cacert "$ca" "$@" "$url" >> "$work/sizes" &
  done
  wait $(jobs -p | grep -v "^$server$" | grep -v "^${sampler:-x}$") 2> /dev/null || true
  end=$(date +%s.%N)
  local bytes
  bytes=$(awk '{s += $1} END {printf "%.0f", s}' "$work/sizes")
  rm -f "$work/sizes"
  echo "$(echo "$end - $start" | bc) $bytes"
}

echo "kindling: $("$bin" --version) ($bin)"
echo "machine: $(nproc) cpu, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB; load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$CLIENTS clients x one $SIZE_MB MB layer ($layer_size bytes) over TLS, $RUNS runs each; servers on core 0, curl on core 1"
start=$(date +%s.%N)
taskset -c 1 curl -sf -o /dev/null --cacert "$ca" -u "worker0:$token" "$kindling_url"
printf "warm-up pull (includes kindling's first digest check of the blob): %.2f s\n" "$(echo "$(date +%s.%N) - $start" | bc)"
echo
echo "| server | run | seconds | MiB/s | bytes |"
echo "|---|---|---|---|---|"
peak=0
for run in $(seq "$RUNS"); do
  read -r secs bytes < <(pull_all "$nginx_url")
  printf '| nginx %s | %s | %.2f | %.0f | %s |\n' "$(nginx -v 2>&1 | cut -d/ -f2)" "$run" "$secs" "$(echo "$bytes / 1048576 / $secs" | bc -l)" "$bytes"
  # kindling serve's RSS, sampled every 50 ms while its pulls run.
  (while true; do awk '/^VmRSS/ {print $2}' "/proc/$server/status"; sleep 0.05; done > "$work/rss") &
  sampler=$!
  read -r secs bytes < <(pull_all "$kindling_url" -u "worker0:$token")
  kill "$sampler"
  wait "$sampler" 2> /dev/null || true
  sampler=""
  max=$(sort -n "$work/rss" | tail -1)
  [ "$max" -gt "$peak" ] && peak=$max
  printf '| kindling serve | %s | %.2f | %.0f | %s |\n' "$run" "$secs" "$(echo "$bytes / 1048576 / $secs" | bc -l)" "$bytes"
done
echo
echo "kindling serve RSS: peak during the pulls $((peak / 1024)) MB; VmHWM $(awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$server/status") MB; load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
