//! Parses and validates a description with 10,000 machines, and, as the baseline, only scans the
//! same YAML into parser events. Prints the median and best of several runs.
//!
//! Run: `cargo bench -p kindling-config --bench load`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kindling_config::{ClusterDescription, Source};

const MACHINES: usize = 10_000;
const RUNS: usize = 15;

fn install_config() -> String {
    "apiVersion: v1
baseDomain: example.com
metadata: {name: big}
controlPlane: {name: master, replicas: 3}
compute: [{name: worker, replicas: 9996}]
networking:
  clusterNetwork: [{cidr: 10.128.0.0/9, hostPrefix: 24}]
  serviceNetwork: [172.30.0.0/16]
  machineNetwork: [{cidr: 10.0.0.0/16}]
platform: {none: {}}
"
    .to_string()
}

fn inventory() -> String {
    let mut out = String::from(
        "apiVersion: kindling/v1alpha1
kind: Inventory
provisioning: {serverURL: 'http://10.0.0.2:8080'}
network: {gateway: 10.0.0.1, dnsServers: [10.0.0.2]}
loadBalancer: {apiVIP: 10.0.0.10, ingressVIP: 10.0.0.11}
machines:
",
    );
    for i in 0..MACHINES {
        let role = match i {
            0 => "bootstrap",
            1..=3 => "master",
            _ => "worker",
        };
        let host = 256 + i; // from 10.0.1.0 on
        let _ = write!(
            out,
            "  - name: node{i}\n    role: {role}\n    mac: \"52:54:00:{:02x}:{:02x}:{:02x}\"\n    ip: 10.0.{}.{}\n    labels: {{rack: r{}}}\n",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            host >> 8,
            host & 0xff,
            i % 40
        );
    }
    out
}

fn measure(name: &str, mut f: impl FnMut()) {
    f(); // warm up
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name:<44} median {:>8.2} ms   best {:>8.2} ms   ({RUNS} runs)",
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

fn main() {
    let ic = install_config();
    let inv = inventory();
    println!("inventory: {MACHINES} machines, {} bytes", inv.len());

    measure("baseline: YAML events only (granit-parser)", || {
        let events = granit_parser::Parser::new_from_str(black_box(&inv)).count();
        black_box(events);
    });
    measure("kindling: parse + decode + validate", || {
        let loaded = ClusterDescription::parse(
            Source {
                name: "install-config.yaml",
                text: black_box(&ic),
            },
            Source {
                name: "inventory.yaml",
                text: black_box(&inv),
            },
        )
        .expect("the generated description is valid");
        assert_eq!(loaded.description.inventory.machines.len(), MACHINES);
        black_box(loaded);
    });
}
