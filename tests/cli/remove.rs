//! `kindling remove machine`, the real binary, against the **fake** API server (as in
//! `update.rs`): the fake takes policy/v1 Evictions, which the real 1.20 control plane of the
//! tests does not (it takes policy/v1beta1, which kindling also speaks where a server lists it).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::update::{Fleet, finish, wait_until};

fn remove(fleet: &Fleet, name: &str, pause: Option<&str>, extra: &[&str]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
    command
        .args(["remove", "machine", name, "--poll", "1", "--dir"])
        .arg(fleet.path())
        .arg("--kubeconfig")
        .arg(&fleet.kubeconfig)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(step) = pause {
        command.env("KINDLING_REMOVE_PAUSE_AFTER", step);
    }
    command.spawn().unwrap()
}

/// A worker with a pod a budget protects: the drain waits for the budget, the removal is
/// killed after the drain and run again, and it ends with the Node gone, the machine out of
/// inventory.yaml (the rest of it as it was) and out of the DNS, load balancer and DHCP configs.
#[test]
fn a_removed_worker_is_drained_through_its_budget_and_leaves_the_description() {
    let fleet = Fleet::new(None);
    let d = fleet.path();
    let inventory_before = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    crate::kindling(&["create", "infra", "--dir", d.to_str().unwrap()]).expect(0);
    assert!(
        std::fs::read_to_string(d.join("infra/dnsmasq.conf"))
            .unwrap()
            .contains("52:54:00:7e:01:25")
    );
    fleet.fake.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "worker5", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"},
    }));
    fleet.fake.put(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 0},
    }));

    let mut child = remove(&fleet, "worker5", Some("drained"), &[]);
    // The budget holds the pod; the Node is cordoned meanwhile.
    wait_until("worker5 cordoned", || {
        fleet.fake.get("v1", "Node", None, "worker5").unwrap()["spec"]["unschedulable"] == true
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        fleet
            .fake
            .get("v1", "Pod", Some("default"), "web")
            .is_some(),
        "the budget holds it"
    );
    let mut budget = fleet
        .fake
        .get("policy/v1", "PodDisruptionBudget", Some("default"), "web")
        .unwrap();
    budget["status"]["disruptionsAllowed"] = json!(1);
    fleet.fake.put(budget);
    wait_until("the pod evicted and the drain recorded", || {
        fleet
            .fake
            .get("v1", "Pod", Some("default"), "web")
            .is_none()
            && std::fs::read_to_string(d.join(".kindling/fleet/remove-worker5.json"))
                .is_ok_and(|t| t.contains("\"drained\""))
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        fleet.fake.get("v1", "Node", None, "worker5").is_some(),
        "killed before the Node went"
    );

    let (code, out) = finish(remove(&fleet, "worker5", None, &[]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("going on from step Drained"), "{out}");
    assert!(fleet.fake.get("v1", "Node", None, "worker5").is_none());
    let inventory = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    assert_eq!(
        inventory,
        inventory_before.replace(
            "  - name: worker5\n    role: worker\n    mac: \"52:54:00:7e:01:25\"\n    ip: 192.168.126.125\n",
            ""
        )
    );
    let backups: Vec<_> = std::fs::read_dir(d.join(".kindling/backups"))
        .unwrap()
        .collect();
    assert_eq!(backups.len(), 1);
    assert!(
        !std::fs::read_to_string(d.join("infra/dnsmasq.conf"))
            .unwrap()
            .contains("52:54:00:7e:01:25")
    );
    let zones: Vec<String> = std::fs::read_dir(d.join("infra/named"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        zones.iter().any(|z| z.contains("worker4")),
        "the zones name the others"
    );
    assert!(zones.iter().all(|z| !z.contains("worker5")), "{zones:?}");
    let haproxy = std::fs::read_to_string(d.join("infra/haproxy.cfg")).unwrap();
    assert!(
        haproxy.contains("192.168.126.124") && !haproxy.contains("192.168.126.125"),
        "{haproxy}"
    );
    assert!(!d.join(".kindling/fleet/remove-worker5.json").exists());
}

/// Below install-config.yaml's replicas, a removal is refused with the reason, and nothing is
/// touched; --force goes ahead.
#[test]
fn a_removal_below_the_declared_replicas_is_refused() {
    let fleet = Fleet::new(None);
    let d = fleet.path();
    // The demo declares 3 masters; the fake has no master Nodes, so nothing waits on them.
    let before = crate::snapshot(d);
    let (code, out) = finish(remove(&fleet, "master0", None, &[]));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "removing it leaves 2 master(s), and install-config.yaml's controlPlane.replicas is 3"
        ),
        "{out}"
    );
    assert!(out.contains("--force"), "{out}");
    assert_eq!(crate::snapshot(d), before, "nothing written");
    let (code, out) = finish(remove(&fleet, "worker9", None, &[]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no machine named worker9"), "{out}");
}

/// Killed (SIGKILL) after each of its steps and run again, a removal ends as one that was
/// never interrupted.
#[test]
fn a_removal_killed_after_every_step_finishes_when_run_again() {
    let fleet = Fleet::new(None);
    let d = fleet.path();
    let record = d.join(".kindling/fleet/remove-worker4.json");
    for step in [
        "started",
        "drained",
        "etcd-member-removed",
        "node-deleted",
        "out-of-inventory",
    ] {
        let mut child = remove(&fleet, "worker4", Some(step), &[]);
        wait_until(&format!("the removal {step}"), || {
            std::fs::read_to_string(&record).is_ok_and(|t| t.contains(&format!("\"{step}\"")))
        });
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let _ = child.wait();
    }
    let (code, out) = finish(remove(&fleet, "worker4", None, &[]));
    assert_eq!(code, 0, "{out}");
    assert!(fleet.fake.get("v1", "Node", None, "worker4").is_none());
    let inventory = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    assert!(
        !inventory.contains("worker4") && inventory.contains("worker5"),
        "{inventory}"
    );
    assert!(!record.exists());
}
