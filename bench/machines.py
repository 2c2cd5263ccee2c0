#!/usr/bin/env python3
"""Writes an install-config.yaml and an inventory.yaml of N machines (a bootstrap machine, 3
masters, the rest workers) on 10.0.0.0/12, served from 127.0.0.1 at HTTP_PORT (boot) and
MCS_PORT (machine config server), into DIR; and DIR/macs.txt, the workers' MACs one a line, as
iPXE's ${mac:hexhyp} sends them. The benches' large clusters.

    bench/machines.py DIR N HTTP_PORT MCS_PORT
"""
import sys
d, n, hp, mp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
open(f"{d}/install-config.yaml", "w").write(f"""apiVersion: v1
baseDomain: example.com
metadata: {{name: bench}}
controlPlane: {{name: master, replicas: 3}}
compute: [{{name: worker, replicas: {n - 4}}}]
networking:
  clusterNetwork: [{{cidr: 10.128.0.0/9, hostPrefix: 26}}]
  serviceNetwork: [172.30.0.0/16]
  machineNetwork: [{{cidr: 10.0.0.0/12}}]
platform: {{none: {{}}}}
pullSecret: '{{"auths":{{"registry.example.com":{{"auth":"ZGVtbzpkZW1v"}}}}}}'
sshKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk6PsczSizUBeFcIkUGOKJubO32bSq2lECdGqJD6ym/ bench@kindling
""")
lines = ["apiVersion: kindling/v1alpha1", "kind: Inventory",
         f"provisioning: {{serverURL: 'http://127.0.0.1:{hp}', mcsURL: 'https://127.0.0.1:{mp}'}}",
         "network: {gateway: 10.0.0.1, dnsServers: [10.0.0.2]}",
         "loadBalancer: {apiVIP: 10.0.0.10, apiIntVIP: 10.0.0.10, ingressVIP: 10.0.0.11}",
         "machines:"]
workers = []
for i in range(n):
    role = "bootstrap" if i == 0 else "master" if i <= 3 else "worker"
    host = 256 + i  # from 10.0.1.0 on
    mac = f"52:54:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
    if role == "worker":
        workers.append(mac.replace(":", "-"))
    lines.append(f"  - {{name: node{i}, role: {role}, mac: '{mac}', "
                 f"ip: 10.{host >> 16}.{host >> 8 & 255}.{host & 255}}}")
open(f"{d}/inventory.yaml", "w").write("\n".join(lines) + "\n")
open(f"{d}/macs.txt", "w").write("\n".join(workers) + "\n")
