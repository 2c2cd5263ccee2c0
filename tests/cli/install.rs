//! `kindling install` end to end: the machines' BMCs are the sushy-tools Redfish emulator (its
//! fake driver), the cluster is kindling-cluster's fake API server, and `kindling serve` is the
//! real one the install starts. Every phase runs in order, the install is killed with SIGKILL
//! between phases and goes on from where it was, and it exits with doctor's and wait-for's
//! codes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kindling_cluster::fake::FakeApiServer;
use serde_json::json;

use crate::cluster::{csr, pem};
use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::power::{emulator_of, system, until_power, write_credentials};

/// The demo's machines, with the address each one's inventory entry ends its `ip:` line with,
/// and the UUID of its emulated system.
const MACHINES: [(&str, &str, &str); 7] = [
    (
        "bootstrap",
        "192.168.126.100",
        "00000000-0000-0000-0000-000000000100",
    ),
    (
        "master0",
        "192.168.126.110",
        "00000000-0000-0000-0000-000000000110",
    ),
    (
        "master1",
        "192.168.126.111",
        "00000000-0000-0000-0000-000000000111",
    ),
    (
        "master2",
        "192.168.126.112",
        "00000000-0000-0000-0000-000000000112",
    ),
    (
        "worker0",
        "192.168.126.120",
        "00000000-0000-0000-0000-000000000120",
    ),
    (
        "worker1",
        "192.168.126.121",
        "00000000-0000-0000-0000-000000000121",
    ),
    (
        "worker2",
        "192.168.126.122",
        "00000000-0000-0000-0000-000000000122",
    ),
];
const PASSWORD: &str = "s3cret-bmc";

fn phases_done(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join(".kindling/install.json")) else {
        return Vec::new();
    };
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["phase"].as_str().unwrap().to_string())
        .collect()
}

/// `kindling install` started in the background, with `pause_after` (the test hook) set.
fn install_until(args: &[String], pause_after: &str, dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .arg("install")
        .args(args)
        .env("KINDLING_INSTALL_PAUSE_AFTER", pause_after)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !phases_done(dir).iter().any(|p| p == pause_after) {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("install ended ({status}) before {pause_after}:\n{err}");
        }
        assert!(Instant::now() < deadline, "{pause_after} was not reached");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Killed between phases, as a host that dies.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    format!("{status}")
}

#[test]
fn install_runs_every_phase_in_order_and_goes_on_after_a_kill() {
    let (http_port, mcs_port, bmc_port) = (
        kindling_testkit::port(),
        kindling_testkit::port(),
        kindling_testkit::port(),
    );
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let emulator_dir = tempfile::tempdir().unwrap();
    let systems: Vec<(&str, &str)> = MACHINES.iter().map(|(n, _, u)| (*n, *u)).collect();
    let _emulator = emulator_of(emulator_dir.path(), bmc_port, PASSWORD, &systems);
    std::fs::create_dir_all(d.join("bmc")).unwrap();
    let mut inventory = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    for (name, ip, uuid) in MACHINES {
        write_credentials(d, name, "admin", PASSWORD);
        let line = format!("    ip: {ip}\n");
        assert!(inventory.contains(&line), "{line}");
        inventory = inventory.replacen(
            &line,
            &format!(
                "{line}    bmc: {{address: \"redfish+http://127.0.0.1:{bmc_port}/redfish/v1/Systems/{uuid}\", credentials: bmc/{name}.yaml}}\n"
            ),
            1,
        );
    }
    std::fs::write(d.join("inventory.yaml"), inventory).unwrap();

    let fake = FakeApiServer::new();
    let api = fake.start_in_thread();
    let kubeconfig = d.join("fake.kubeconfig");
    std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(api)).unwrap();
    // worker1's kubelet asks for its serving certificate: the install approves it.
    fake.put(csr(
        "csr-worker1",
        "kubernetes.io/kubelet-serving",
        "system:node:worker1",
        &pem("system:node:worker1", &["worker1"]),
    ));

    let mut args: Vec<String> = [
        "--dir",
        d.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--api-timeout",
        "20s",
        "--bootstrap-timeout",
        "120s",
        "--install-timeout",
        "120s",
        "--poll-interval",
        "200ms",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--http".into(),
        format!("127.0.0.1:{http_port}"),
        "--mcs".into(),
        format!("127.0.0.1:{mcs_port}"),
    ]);
    let serve_pid = || std::fs::read_to_string(d.join(".kindling/serve.pid")).unwrap();
    struct StopServe(std::path::PathBuf);
    impl Drop for StopServe {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _stop_serve = StopServe(d.join(".kindling/serve.pid"));

    // Doctor finds this loopback site wanting (no DNS for the cluster): the install stops there
    // with doctor's code, with what it made and the server it started kept.
    let mut all: Vec<&str> = vec!["install"];
    all.extend(args.iter().map(String::as_str));
    let first = kindling(&all);
    first.expect(4);
    assert!(
        first.stderr().contains("--ignore-doctor-errors"),
        "{}",
        first.stderr()
    );
    assert_eq!(phases_done(d), ["create", "serve"]);
    assert!(d.join("bootstrap.ign").exists() && d.join("infra/haproxy.cfg").exists());
    let pid = serve_pid();

    // Past doctor, killed once the control plane is powered on.
    args.push("--ignore-doctor-errors".into());
    install_until(&args, "power-control-plane", d);
    assert_eq!(
        phases_done(d),
        ["create", "serve", "doctor", "power-control-plane"]
    );
    for (name, _, uuid) in &MACHINES[..4] {
        until_power(bmc_port, uuid, PASSWORD, "On");
        // The emulator keeps the target only: it says Continuous of every override, whatever
        // was asked (sushy-tools' main.py); kindling-power's tests check that it asks for Once.
        let boot = &system(bmc_port, uuid, PASSWORD)["Boot"];
        assert_eq!(boot["BootSourceOverrideTarget"], "Pxe", "{name}: {boot}");
    }
    for (name, _, uuid) in &MACHINES[4..] {
        assert_eq!(
            system(bmc_port, uuid, PASSWORD)["PowerState"],
            "Off",
            "{name}"
        );
    }

    // Goes on: waits for bootstrap-complete, which the bootstrap agent would write.
    let mut all: Vec<&str> = vec!["install"];
    all.extend(args.iter().map(String::as_str));
    let rest = std::thread::spawn({
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        move || {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            kindling(&all)
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        phases_done(d).last().map(String::as_str),
        Some("power-control-plane"),
        "bootstrap-complete waits for the cluster"
    );
    for (_, _, uuid) in &MACHINES[4..] {
        assert_eq!(system(bmc_port, uuid, PASSWORD)["PowerState"], "Off");
    }
    fake.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bootstrap", "namespace": "kube-system"},
        "data": {"status": "complete", "stage": "done", "message": "at done",
                 "bootstrapMemberRemoved": "true", "etcdMembers": "master0,master1,master2"},
    }));
    // The nodes come up once their machines boot.
    for (name, _, _) in &MACHINES[1..] {
        fake.put_node(name, true);
    }
    for master in ["master0", "master1", "master2"] {
        for component in kindling_cluster::wait::CONTROL_PLANE {
            fake.put_pod("kube-system", &format!("{component}-{master}"), true);
        }
    }
    fake.put_deployment("kube-system", "coredns", 2);

    let rest = rest.join().unwrap();
    rest.expect(0);
    let out = rest.stdout();
    let started: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('[') && (l.ends_with(": ...") || l.contains(": done at ")))
        .collect();
    assert_eq!(
        started.iter().map(|l| &l[..5]).collect::<Vec<_>>(),
        [
            "[1/9]", "[2/9]", "[3/9]", "[4/9]", "[5/9]", "[6/9]", "[7/9]", "[8/9]", "[9/9]"
        ],
        "{out}"
    );
    assert!(started[0].contains(": done at "), "{out}");
    assert!(
        out.contains("[2/9] kindling serve: done in") && out.contains("already answering"),
        "{out}"
    );
    assert!(
        out.contains("the install of") && out.contains("is complete"),
        "{out}"
    );
    assert_eq!(
        phases_done(d),
        [
            "create",
            "serve",
            "doctor",
            "power-control-plane",
            "bootstrap-complete",
            "power-workers",
            "approve-csrs",
            "install-complete",
            "remove-bootstrap",
        ]
    );
    assert_eq!(
        serve_pid(),
        pid,
        "the server the first run started went on serving"
    );
    for (name, _, uuid) in &MACHINES[4..] {
        until_power(bmc_port, uuid, PASSWORD, "On");
        let boot = &system(bmc_port, uuid, PASSWORD)["Boot"];
        assert_eq!(boot["BootSourceOverrideTarget"], "Pxe", "{name}: {boot}");
    }
    until_power(bmc_port, MACHINES[0].2, PASSWORD, "Off");
    let approved = fake
        .get(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            None,
            "csr-worker1",
        )
        .expect("the CSR is still there");
    assert!(
        approved["status"]["conditions"]
            .to_string()
            .contains("Approved"),
        "{approved:#}"
    );
    let haproxy = std::fs::read_to_string(d.join("infra/haproxy.cfg")).unwrap();
    assert!(!haproxy.contains("192.168.126.100"), "{haproxy}");
    // No BMC password in anything the install said.
    assert!(!out.contains(PASSWORD) && !rest.stderr().contains(PASSWORD));

    // Once done, a run again does nothing but say so.
    let again = kindling(&all);
    again.expect(0);
    assert_eq!(
        again.stdout().matches(": done at ").count(),
        8,
        "{}",
        again.stdout()
    );
}
