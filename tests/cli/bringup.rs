//! One real bring-up on one host: a single-master cluster with no bootstrap machine, whose
//! master founds the cluster from its own config, as on a real site. Its config comes from
//! `kindling serve` and the real Ignition applies it; `kindling agent join-master` founds etcd;
//! containerd (configured by kindling) pulls every image from `kindling serve`'s registry; the
//! kubelet (kindling's unit and configuration) runs kindling's static pods (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, their images built here from the 1.20 binaries and
//! their flags mapped by kindling-testkit's kube/mapping.rs); `kindling serve --approve-csrs`
//! lets the master's kubelet join; `kindling agent bootstrap` runs its stages to the end; and
//! `kindling wait-for bootstrap-complete` says so.
//!
//! On its own: `cargo test --test cli bringup` (about two minutes; bounded at five, for when
//! other tests share the machine; ./test.sh builds the Kubernetes binaries once per machine).

use std::time::{Duration, Instant};

use kindling_testkit::kube::{Node, mapping};

use crate::kube::{Lab, Setup, text};

/// The demo inventory with master0 alone: no bootstrap machine, no other master, no worker.
fn master0_alone(inventory: &str) -> String {
    let start = inventory.find("  - name: bootstrap").unwrap();
    let end = inventory.find("  - name: master0").unwrap();
    let without_bootstrap = format!("{}{}", &inventory[..start], &inventory[end..]);
    let end = without_bootstrap.find("  - name: master1").unwrap();
    without_bootstrap[..end].to_string()
}

fn one_master(install_config: &str) -> String {
    let edited = install_config.replacen("  replicas: 3", "  replicas: 1", 2);
    assert_ne!(edited, install_config);
    edited
}

/// How long the bring-up may take, from an empty directory to bootstrap-complete. On its own it
/// takes about two minutes (BENCHMARKS.md); the bound leaves room for the other real-cluster
/// test that `cargo test` runs beside it on two cores.
const BOUND: Duration = Duration::from_secs(300);

#[test]
fn bringup_one_master_founds_the_cluster_and_bootstrap_completes() {
    let started = Instant::now();
    let Some(lab) = Lab::start(
        "bringup_one_master_founds_the_cluster_and_bootstrap_completes",
        &Setup {
            real_nodes: true,
            control_plane_images: true,
            inventory: &master0_alone,
            install_config: &one_master,
            serve_args: &["--approve-csrs"],
        },
    ) else {
        return;
    };
    let d = lab.dir.path();

    // master0 installs: its config from kindling serve, applied by the real Ignition.
    let master = lab.install("52-54-00-7e-01-10");
    let root = master.root();

    // join-master finds no member and founds etcd: master0's etcd pod, alone, state new.
    let mut join = lab.agent(
        &root,
        "kindling-join-master.service",
        mapping::Component::JoinMasterAgent,
    );
    let status = join
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("join-master did not finish:\n{}", join.log()));
    assert!(status.success(), "join-master: {status}\n{}", join.log());
    let pods = root.join("etc/kubernetes/manifests");
    let etcd = std::fs::read_to_string(pods.join("etcd.yaml")).unwrap();
    assert!(etcd.contains("--initial-cluster-state=new"), "{etcd}");

    // The static pods, as the kubelet runs them here (mapping.rs), then the node.
    for entry in std::fs::read_dir(&pods).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let component = mapping::pod_component(&name)
            .unwrap_or_else(|| panic!("a static pod kindling did not write: {name}"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            mapping::static_pod(component, &text, &root.display().to_string()),
        )
        .unwrap();
    }
    let node =
        Node::start(&lab.site, "master0", &root, lab.logs.path()).unwrap_or_else(|e| panic!("{e}"));

    // The bootstrap stages, run by the master itself, to the end.
    let mut agent = lab.agent(
        &root,
        "kindling-bootstrap.service",
        mapping::Component::BootstrapAgent,
    );
    let left = BOUND.saturating_sub(started.elapsed());
    let wait = lab.kindling(&[
        "wait-for",
        "bootstrap-complete",
        "--dir",
        d.to_str().unwrap(),
        "--bootstrap-timeout",
        &format!("{}s", left.as_secs().max(1)),
    ]);
    if !wait.status.success() {
        let admin = lab.asset("auth/kubeconfig");
        let state = lab.kubectl(&admin, &["get", "nodes,pods", "-A", "-o", "wide"]);
        let apiserver = lab.kubectl(
            &admin,
            &[
                "describe",
                "pod",
                "-n",
                "kube-system",
                "kube-apiserver-master0",
            ],
        );
        eprintln!("{}", text(&apiserver));
        panic!(
            "wait-for bootstrap-complete: {}\n--- the cluster ---\n{}\n--- agent ---\n{}\n--- kubelet ---\n{}\n--- serve ---\n{}",
            text(&wait),
            text(&state),
            agent.log(),
            node.kubelet_log(),
            lab.serve_log()
        );
    }
    let complete = started.elapsed();
    eprintln!(
        "bring-up: bootstrap complete {} s after the start",
        complete.as_secs()
    );
    assert!(
        complete < BOUND,
        "the bring-up took {} s",
        complete.as_secs()
    );
    assert!(
        text(&wait).contains("bootstrap complete"),
        "{}",
        text(&wait)
    );
    let status = agent
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the bootstrap agent did not finish:\n{}", agent.log()));
    assert!(status.success(), "{}", agent.log());
    for stage in kindling_agent::bootstrap::Stage::ALL.map(|s| s.name()) {
        assert!(
            root.join(format!("opt/kindling/{stage}.done")).exists(),
            "{stage}"
        );
    }
    // The control plane runs as the kubelet's static pods, which the API shows as mirror pods
    // (the kubelet may be re-creating one at any moment: it deletes and makes a mirror pod again
    // when it finds it out of date).
    kindling_testkit::kube::eventually(
        "the control plane's mirror pods",
        Duration::from_secs(60),
        || {
            let pods = crate::kube::jsonpath(
                &lab,
                &["get", "pods", "-n", "kube-system"],
                "{.items[*].metadata.name}",
            );
            [
                "etcd-master0",
                "kube-apiserver-master0",
                "kube-controller-manager-master0",
                "kube-scheduler-master0",
            ]
            .iter()
            .all(|pod| pods.split_whitespace().any(|p| p == *pod))
            .then_some(())
            .ok_or(pods)
        },
    );
    // install-complete reads the real cluster too: the node and, once their probes pass, the
    // control plane's pods are up, and CoreDNS, whose image here is a stand-in, is what it
    // names as missing.
    kindling_testkit::kube::eventually(
        "install-complete naming only CoreDNS",
        Duration::from_secs(90),
        || {
            let install = lab.kindling(&[
                "wait-for",
                "install-complete",
                "--dir",
                d.to_str().unwrap(),
                "--install-timeout",
                "3s",
                "--poll-interval",
                "1s",
            ]);
            (install.status.code() == Some(6)
                && text(&install).contains(
                    "not done after 3s: 1/1 nodes Ready; CoreDNS has no available replica yet",
                ))
            .then_some(())
            .ok_or(text(&install))
        },
    );
}
