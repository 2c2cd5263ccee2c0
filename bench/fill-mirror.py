#!/usr/bin/env python3
"""Fills an asset directory's mirror with stand-ins, for benchmarks that need `create
ignition-configs` to run: shell-script node binaries that say what they stand for, and one tiny
image under every name the cluster pulls. The bench measures kindling, not Kubernetes.

    bench/fill-mirror.py KINDLING_BINARY DIR
"""
import hashlib, json, os, subprocess, sys, tempfile

kindling, d = sys.argv[1], sys.argv[2]
listing = subprocess.run([kindling, "mirror", "--dir", d, "--json", "--log-level", "error"],
                         capture_output=True, text=True)
missing = json.loads(listing.stdout)["missing"]
with tempfile.TemporaryDirectory() as work:
    args = []
    if missing["files"]:
        bins = os.path.join(work, "bin")
        os.makedirs(os.path.join(bins, "cni"))
        for path in missing["files"]:
            name = path.rsplit("/", 1)[-1]
            target = os.path.join(bins, "cni", name) if path.startswith("cni/") else os.path.join(bins, name)
            with open(target, "w") as f:
                f.write(f"#!/bin/sh\n# A stand-in for {name}, made by kindling's benchmarks.\n")
        args += ["--from-dir", bins]
    subprocess.run([kindling, "mirror", "--dir", d, "--log-level", "error", *args],
                   check=False, capture_output=True)

    def blob(layout, data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs/sha256", digest), "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    for image in missing["images"]:
        repo, tag = image.rsplit(":", 1)
        layout = os.path.join(work, "layout-" + hashlib.sha256(image.encode()).hexdigest()[:8])
        os.makedirs(os.path.join(layout, "blobs/sha256"))
        open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
        layer = blob(layout, b"\0" * 1024)  # an empty tar: two zero blocks
        config = blob(layout, json.dumps({"architecture": "amd64", "os": "linux",
                                          "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}]}).encode()
        top = blob(layout, manifest)
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **top,
                   "annotations": {"org.opencontainers.image.ref.name": tag}}]},
                  open(os.path.join(layout, "index.json"), "w"))
        subprocess.run([kindling, "mirror", "--dir", d, "--log-level", "error", "--from-archive", layout, "--as", repo],
                       check=False, capture_output=True)
final = subprocess.run([kindling, "mirror", "--dir", d, "--json", "--log-level", "error"], capture_output=True, text=True)
left = json.loads(final.stdout)["missing"]
if left["files"] or left["images"]:
    sys.exit(f"fill-mirror: still missing {left}")
