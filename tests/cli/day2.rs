//! Day 2 against the real control plane and a real kubelet: the node agent on a joined worker.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use kindling_testkit::kube::{Node, Process, READY, eventually, mapping, unit_command};

use crate::kube::{Cluster, Setup, jsonpath, text};

/// `kindling agent node --once` as the machine's unit runs it (the binary Ignition fetched from
/// kindling serve, the unit's arguments, the harness's mapping), plus `extra`.
fn node_agent_run(cluster: &Cluster, root: &Path, extra: &[&str]) -> Output {
    let command = unit_command(root, "kindling-node-agent.service");
    let root_text = root.display().to_string();
    let args = mapping::flags(mapping::Component::NodeAgent, &command[1..], &root_text);
    cluster
        .site
        .command(format!("{root_text}{}", command[0]))
        .args(&args)
        .arg("--once")
        .args(extra)
        .output()
        .unwrap()
}

/// [`node_agent_run`], which must succeed.
fn node_agent_once(cluster: &Cluster, root: &Path, extra: &[&str]) -> Output {
    let out = node_agent_run(cluster, root, extra);
    assert!(out.status.success(), "kindling agent node: {}", text(&out));
    out
}

fn annotation(cluster: &Cluster, key: &str) -> String {
    let escaped = key.replace('.', "\\.");
    jsonpath(
        cluster,
        &["get", "node", "worker0"],
        &format!("{{.metadata.annotations.{escaped}}}"),
    )
}

fn drift_condition(cluster: &Cluster) -> String {
    jsonpath(
        cluster,
        &["get", "node", "worker0"],
        "{.status.conditions[?(@.type==\"KindlingConfigDrift\")].status}",
    )
}

const WORKER0: &str = "  - name: worker0\n    role: worker\n    mac: \"52:54:00:7e:01:20\"\n    ip: 192.168.126.120\n";

/// A worker added to a running cluster, and its node agent: only what depends on the new
/// machine is made again and kindling serve takes it; it joins, and `wait-for node` follows it.
/// Then the agent says which rendering it runs, finds an edited file and reports it on the Node
/// (condition, event, `kindling status`), reverts it when asked, and moves to a new rendering
/// when its Node is told to, each read back with kubectl.
#[test]
fn an_added_worker_joins_and_its_node_agent_keeps_it_on_its_rendering() {
    let without_worker0 = |text: &str| {
        let without = text.replace(WORKER0, "");
        assert_ne!(without, text);
        without
    };
    let Some(cluster) = Cluster::start_with(
        "an_added_worker_joins_and_its_node_agent_keeps_it_on_its_rendering",
        &Setup {
            real_nodes: true,
            inventory: &without_worker0,
            ..Setup::default()
        },
    ) else {
        return;
    };
    cluster.bootstrap_agent_until("apply-manifests");
    let d = cluster.dir.path();
    let pools = || {
        ["worker", "master"]
            .map(|p| std::fs::read_to_string(d.join(format!("ignition/pools/{p}.json"))).unwrap())
    };
    let pools_before = pools();

    // Day 2: worker0 is added to the inventory.
    let inventory = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    std::fs::write(d.join("inventory.yaml"), format!("{inventory}{WORKER0}")).unwrap();
    let out = cluster.kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("ignition/machines/worker0.ign").exists());
    // No pool changed: the machines that run keep their renderings, nothing to roll out.
    assert_eq!(pools(), pools_before);
    let mut command = cluster.site.command(env!("CARGO_BIN_EXE_kindling"));
    command
        .args([
            "wait-for",
            "node",
            "worker0",
            "--poll-interval",
            "2s",
            "--dir",
        ])
        .arg(d);
    let mut follower = Process::spawn(
        "kindling wait-for node worker0",
        command,
        &cluster.logs.path().join("wait-for-node.log"),
    )
    .unwrap();

    // The machine is racked: its address on the site's network.
    let description = kindling_config::ClusterDescription::load(d)
        .unwrap()
        .description;
    cluster.site.add_machine(&description, "worker0");

    // kindling serve takes the new machine: its iPXE script is served, then its config.
    eventually("kindling serve knows worker0", READY, || {
        let script = cluster
            .site
            .command("curl")
            .args([
                "-fsS",
                &format!("http://{}/ipxe?mac=52-54-00-7e-01-20", cluster.http),
            ])
            .output()
            .unwrap();
        script
            .status
            .success()
            .then_some(())
            .ok_or(cluster.serve_log())
    });
    let worker = cluster.install("52-54-00-7e-01-20");
    let root = worker.root();
    let calls = kindling_testkit::kube::systemctl_stand_in(&root);
    let node = Node::start(&cluster.site, "worker0", &root, cluster.logs.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut command = cluster.site.command(env!("CARGO_BIN_EXE_kindling"));
    command.args(["approve-csrs", "--watch", "--dir"]).arg(d);
    let _approver = Process::spawn(
        "kindling approve-csrs --watch",
        command,
        &cluster.logs.path().join("approve-csrs.log"),
    )
    .unwrap();
    // wait-for node sees it join: Ready, with the labels kindling gives it (40 s on a machine
    // busy with the storm test; the bound leaves room for a slower one).
    let status = follower.wait_exit(Duration::from_secs(300));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}\n--- kubelet ---\n{}",
        follower.log(),
        node.kubelet_log()
    );
    assert!(
        follower.log().contains("worker0 joined"),
        "{}",
        follower.log()
    );
    // The dashboard's page of worker0 has its join as the real cluster records it. (The page
    // asks the API as it is shown, within a few seconds; a loaded machine's API may be slower,
    // and the page then says so: it is asked again, as a person would reload it.)
    let token = std::fs::read_to_string(d.join("auth/kindling-admin-token")).unwrap();
    eventually("worker0's page shows its join", READY, || {
        let page = cluster
            .site
            .command("curl")
            .args([
                "-fsS",
                "-H",
                &format!("Authorization: Bearer {}", token.trim()),
                &format!("http://{}/api/v1/machines/worker0", cluster.http),
            ])
            .output()
            .unwrap();
        let page: serde_json::Value =
            serde_json::from_slice(&page.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&page)));
        let joined: Vec<&str> = page["cluster"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["stage"].as_str().unwrap())
            .collect();
        ["csr", "csr-approved", "node-registered", "node-ready"]
            .iter()
            .all(|stage| joined.contains(stage))
            .then_some(())
            .ok_or(format!("{page:#}"))
    });
    let rendering = std::fs::read_to_string(root.join("etc/kindling/rendering")).unwrap();
    let first = rendering.trim();

    // Its first pass: the Node says what it runs.
    eventually("worker0 registered", READY, || {
        (!jsonpath(&cluster, &["get", "nodes"], "{.items[*].metadata.name}").is_empty())
            .then_some(())
            .ok_or(node.kubelet_log())
    });
    node_agent_once(&cluster, &root, &[]);
    assert_eq!(
        annotation(&cluster, "kindling.dev/current-rendering"),
        first
    );
    assert_eq!(annotation(&cluster, "kindling.dev/state"), "Done");

    // Someone edits the kubelet's arguments on the machine.
    let env = root.join("etc/kubernetes/kubelet.env");
    let original = std::fs::read(&env).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"# --v=9\n");
    std::fs::write(&env, &edited).unwrap();
    node_agent_once(&cluster, &root, &[]);
    assert_eq!(drift_condition(&cluster), "True");
    assert_eq!(annotation(&cluster, "kindling.dev/state"), "Drifted");
    let message = jsonpath(
        &cluster,
        &["get", "node", "worker0"],
        "{.status.conditions[?(@.type==\"KindlingConfigDrift\")].message}",
    );
    assert!(
        message.contains("/etc/kubernetes/kubelet.env: contents changed"),
        "{message}"
    );
    let events = cluster.admin(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=worker0,reason=ConfigDrift",
        "-o=jsonpath={.items[*].source.component}",
    ]);
    assert_eq!(events.trim(), "kindling-node-agent");
    // The kubelet's own conditions are still there.
    assert_eq!(
        jsonpath(
            &cluster,
            &["get", "node", "worker0"],
            "{.status.conditions[?(@.type==\"MemoryPressure\")].type}"
        ),
        "MemoryPressure"
    );

    // kindling status shows it, with what the cluster says of the node.
    let out = cluster.kindling(&["status", "--json", "--dir", d.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let machines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let worker0 = machines.iter().find(|m| m["name"] == "worker0").unwrap();
    assert_eq!(worker0["agent"], "Drifted", "{worker0}");
    assert!(
        worker0["drift"].as_str().unwrap().contains("kubelet.env"),
        "{worker0}"
    );
    assert_eq!(worker0["current"], first);
    assert_eq!(worker0["ready"], true);
    assert!(
        worker0["certificatesExpire"].is_string(),
        "the kubelet's certificates: {worker0}"
    );
    let out = cluster.kindling(&["status", "--dir", d.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("worker0 ")).unwrap();
    assert!(
        row.contains("1 path(s)") && row.contains("Ready"),
        "{table}"
    );

    // The cluster's admin asks for a revert: the file comes back byte for byte and the kubelet
    // is restarted.
    cluster.admin(&[
        "annotate",
        "node",
        "worker0",
        "kindling.dev/revert-drift=true",
    ]);
    node_agent_once(&cluster, &root, &[]);
    assert_eq!(std::fs::read(&env).unwrap(), original);
    assert_eq!(drift_condition(&cluster), "False");
    assert_eq!(annotation(&cluster, "kindling.dev/revert-drift"), "");
    let systemctl = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(systemctl, "daemon-reload\nrestart kubelet.service\n");

    // A new rendering of the worker pool; the Node is told to move to it.
    std::fs::create_dir_all(d.join("snippets/worker")).unwrap();
    std::fs::write(
        d.join("snippets/worker/motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/day2\n      contents:\n        inline: day two\n",
    )
    .unwrap();
    let out = cluster.kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("ignition/pools/worker.json")).unwrap())
            .unwrap();
    let second = state["target"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    cluster.admin(&[
        "annotate",
        "node",
        "worker0",
        &format!("kindling.dev/desired-rendering={second}"),
    ]);
    // (kindling serve has the new rendering once it has seen the pool change.)
    eventually("worker0 on the new rendering", READY, || {
        let out = node_agent_run(&cluster, &root, &[]);
        let current = annotation(&cluster, "kindling.dev/current-rendering");
        (current == second).then_some(()).ok_or(format!(
            "{current}: {}\n{}",
            text(&out),
            cluster.serve_log()
        ))
    });
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd.d/day2")).unwrap(),
        "day two"
    );
    // A file no program is known to re-read: the machine reboots into it (here the stand-in
    // records the reboot), and the agent that starts afterwards says Done.
    assert_eq!(annotation(&cluster, "kindling.dev/state"), "Rebooting");
    let systemctl = std::fs::read_to_string(&calls).unwrap();
    assert!(systemctl.ends_with("reboot\n"), "{systemctl}");
    node_agent_once(&cluster, &root, &[]);
    assert_eq!(annotation(&cluster, "kindling.dev/state"), "Done");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kindling/rendering")).unwrap(),
        format!("{second}\n")
    );
    let events = cluster.admin(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=worker0,reason=RenderingApplied",
        "-o=jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!(
            "{first} -> {second}; rebooting, as /etc/motd.d/day2 changed"
        )),
        "{events}"
    );

    // The machine leaves the cluster: its pod is held by a budget, then let go, through the
    // real apiserver's Eviction (policy/v1beta1, the version 1.20 lists) and disruption
    // controller.
    let image = kindling_assets::manifests::Images::for_version(
        kindling_config::inventory::DEFAULT_KUBERNETES_VERSION,
    )
    .coredns;
    let manifests = cluster.logs.path().join("budgeted.yaml");
    std::fs::write(&manifests, BUDGETED.replace("IMAGE", &image)).unwrap();
    cluster.admin(&["apply", "-f", manifests.to_str().unwrap()]);
    eventually(
        "the budgeted pod Running, its budget at 0",
        Duration::from_secs(120),
        || {
            let phase = jsonpath(&cluster, &["get", "pod", "web"], "{.status.phase}");
            let allowed = jsonpath(
                &cluster,
                &["get", "pdb", "web"],
                "{.status.disruptionsAllowed}",
            );
            let healthy = jsonpath(&cluster, &["get", "pdb", "web"], "{.status.currentHealthy}");
            (phase == "Running" && allowed == "0" && healthy == "1")
                .then_some(())
                .ok_or(format!(
                    "phase {phase:?}, allowed {allowed:?}, healthy {healthy:?}"
                ))
        },
    );
    let mut command = cluster.site.command(env!("CARGO_BIN_EXE_kindling"));
    command
        .args([
            "remove", "machine", "worker0", "--force", "--poll", "1", "--dir",
        ])
        .arg(d);
    let mut removal = Process::spawn(
        "kindling remove machine worker0",
        command,
        &cluster.logs.path().join("remove.log"),
    )
    .unwrap();
    eventually("the budget refusing the eviction", READY, || {
        removal
            .log()
            .contains(
                "default/web: Cannot evict pod as it would violate the pod's disruption budget",
            )
            .then_some(())
            .ok_or(removal.log())
    });
    assert_eq!(
        jsonpath(&cluster, &["get", "pod", "web"], "{.status.phase}"),
        "Running"
    );
    cluster.admin(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    let status = removal.wait_exit(Duration::from_secs(180));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        removal.log()
    );
    assert!(
        removal.log().contains("worker0: Node deleted"),
        "{}",
        removal.log()
    );
    let nodes = jsonpath(&cluster, &["get", "nodes"], "{.items[*].metadata.name}");
    assert!(!nodes.contains("worker0"), "{nodes}");
    let inventory = std::fs::read_to_string(d.join("inventory.yaml")).unwrap();
    assert!(!inventory.contains("worker0"), "{inventory}");
}

/// The benchmark of `kindling status` on 1,000 machines against the real control plane of the
/// tests (bench/status.sh runs it and prints the figures; BENCHMARKS.md records them): the
/// demo's inventory grown to 1,000 machines on a /21, their 1,000 Nodes in the real apiserver,
/// Ready, with their node agents' annotations. Baseline in the same run: `kubectl get nodes -o
/// json`, the same list of Nodes without anything else.
#[test]
#[ignore = "a benchmark: bench/status.sh runs it"]
fn bench_status_of_1000_machines() {
    const COUNT: usize = 1000;
    let workers = COUNT - 4;
    let ip = |i: usize| format!("192.168.{}.{}", 120 + (i + 20) / 250, (i + 20) % 250 + 1);
    let inventory = move |text: &str| {
        let mut text = text.to_string();
        for i in 3..workers {
            text.push_str(&format!(
                "  - name: node{i}\n    role: worker\n    mac: \"52:54:00:10:{:02x}:{:02x}\"\n    ip: {}\n",
                i >> 8,
                i & 255,
                ip(i)
            ));
        }
        text
    };
    let install_config = move |text: &str| {
        text.replace("cidr: 192.168.126.0/24", "cidr: 192.168.120.0/21")
            .replace("hostPrefix: 23", "hostPrefix: 24")
            .replace(
                "  - name: worker\n    replicas: 3",
                &format!("  - name: worker\n    replicas: {workers}"),
            )
    };
    let Some(cluster) = Cluster::start_with(
        "bench_status_of_1000_machines",
        &Setup {
            inventory: &inventory,
            install_config: &install_config,
            ..Setup::default()
        },
    ) else {
        return;
    };
    let d = cluster.dir.path();
    let description = kindling_config::ClusterDescription::load(d)
        .unwrap()
        .description;
    assert_eq!(description.inventory.machines.len(), COUNT);
    let rendering = std::fs::read_to_string(d.join("ignition/pools/worker.json")).unwrap();
    let rendering: serde_json::Value = serde_json::from_str(&rendering).unwrap();
    let nodes: Vec<serde_json::Value> = description
        .inventory
        .machines
        .iter()
        .filter(|m| m.role != kindling_config::Role::Bootstrap)
        .map(|m| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": m.name, "annotations": {
                    "kindling.dev/current-rendering": rendering["target"],
                    "kindling.dev/state": "Done",
                }},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
            })
        })
        .collect();
    let list = cluster.logs.path().join("nodes.json");
    std::fs::write(
        &list,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": nodes}).to_string(),
    )
    .unwrap();
    cluster.admin(&["create", "-f", list.to_str().unwrap()]);

    let time = |what: &str, command: &mut dyn FnMut() -> Output| {
        let mut runs: Vec<Duration> = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                let out = command();
                assert!(out.status.success(), "{what}: {}", text(&out));
                start.elapsed()
            })
            .collect();
        runs.sort();
        println!(
            "BENCH {what}: median {:.1} ms, best {:.1} ms (7 runs)",
            runs[3].as_secs_f64() * 1000.0,
            runs[0].as_secs_f64() * 1000.0
        );
        runs[3]
    };
    let status = time("kindling status --json, 1,000 machines", &mut || {
        cluster.kindling(&["status", "--json", "--dir", d.to_str().unwrap()])
    });
    time("baseline: kubectl get nodes -o json", &mut || {
        cluster.kubectl(&d.join("auth/kubeconfig"), &["get", "nodes", "-o", "json"])
    });
    let out = cluster.kindling(&["status", "--json", "--dir", d.to_str().unwrap()]);
    let machines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(machines.len(), COUNT);
    assert_eq!(
        machines.iter().filter(|m| m["ready"] == true).count(),
        COUNT - 1
    );
    assert!(status < Duration::from_secs(5), "{status:?}");
}

/// A pod on worker0 and a budget that keeps one of its kind running.
const BUDGETED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  nodeName: worker0
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: IMAGE
    command: ["/bin/sh", "-c", "exec sleep 3600"]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: default
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: web}
"#;
