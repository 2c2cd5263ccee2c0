//! The commands that talk to the cluster (wait-for, approve-csrs, gather), run as the real binary
//! against the fake API server of kindling-cluster (feature `fake-apiserver`) on a loopback port.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kindling_cluster::fake::FakeApiServer;
use serde_json::{Value, json};

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;

const TOKEN: &str = "abcdef.0123456789abcdef";

/// The demo description, kindling serve expected at `server` (a port), and a fake API server
/// with a kubeconfig for it at `<dir>/fake.kubeconfig`.
struct Lab {
    dir: tempfile::TempDir,
    fake: FakeApiServer,
    kubeconfig: PathBuf,
}

impl Lab {
    fn new(server_port: u16) -> Lab {
        let dir = demo_on_loopback(server_port, 1);
        let fake = FakeApiServer::new();
        let addr = fake.start_in_thread();
        let kubeconfig = dir.path().join("fake.kubeconfig");
        std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(addr)).unwrap();
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        std::fs::write(
            dir.path().join("auth/bootstrap-token"),
            format!("{TOKEN}\n"),
        )
        .unwrap();
        Lab {
            dir,
            fake,
            kubeconfig,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kindling <command> --dir D --kubeconfig K <args>`.
    fn run(&self, command: &[&str], args: &[&str]) -> crate::Run {
        let dir = self.path().to_str().unwrap().to_string();
        let kubeconfig = self.kubeconfig.to_str().unwrap().to_string();
        let mut all: Vec<&str> = command.to_vec();
        all.extend(["--dir", &dir, "--kubeconfig", &kubeconfig]);
        all.extend(args);
        kindling(&all)
    }

    fn wait_for(&self, goal: &str, args: &[&str]) -> crate::Run {
        let mut all = vec!["--api-timeout", "2s", "--poll-interval", "100ms"];
        all.extend(args);
        self.run(&["wait-for", goal], &all)
    }

    fn bootstrap_record(&self, status: &str, stage: &str, removed: bool) {
        self.fake.put(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bootstrap", "namespace": "kube-system"},
            "data": {"status": status, "stage": stage, "message": format!("at {stage}"),
                     "bootstrapMemberRemoved": removed.to_string(),
                     "etcdMembers": if removed { "master0,master1,master2" } else { "bootstrap,master0,master1,master2" }},
        }));
    }

    /// Every inventory node Ready except `missing`, the control plane and CoreDNS up.
    fn installed_except(&self, missing: &[&str]) {
        for name in [
            "master0", "master1", "master2", "worker0", "worker1", "worker2",
        ] {
            if !missing.contains(&name) {
                self.fake.put_node(name, true);
            }
        }
        for master in ["master0", "master1", "master2"] {
            for component in kindling_cluster::wait::CONTROL_PLANE {
                self.fake
                    .put_pod("kube-system", &format!("{component}-{master}"), true);
            }
        }
        self.fake.put_deployment("kube-system", "coredns", 2);
    }
}

/// A stand-in for kindling serve's `/api/v1/machines`, answering `body` to every request.
fn machines_endpoint(body: Value) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(Mutex::new(body.to_string()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = body.lock().unwrap().clone();
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A port nothing listens on (and that no other test is handed).
fn closed_port() -> u16 {
    kindling_testkit::port()
}

fn after(delay: Duration, f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        f();
    });
}

#[test]
fn bootstrap_complete_passes_once_the_agent_says_so_and_says_the_bootstrap_machine_may_go() {
    let lab = Lab::new(closed_port());
    lab.bootstrap_record("progressing", "wait-masters", false);
    let fake = lab.fake.clone();
    after(Duration::from_millis(1500), move || {
        fake.put(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bootstrap", "namespace": "kube-system"},
            "data": {"status": "complete", "stage": "remove-bootstrap-member",
                     "bootstrapMemberRemoved": "true", "etcdMembers": "master0,master1,master2"},
        }));
    });
    let run = lab.wait_for("bootstrap-complete", &["--bootstrap-timeout", "30s"]);
    run.expect(0);
    let out = run.stdout();
    assert!(out.contains("api: the API answers (v1.33.0-fake)"), "{out}");
    assert!(
        out.contains("for the API (http://127.0.0.1:"),
        "the API named is not the kubeconfig's: {out}"
    );
    assert!(
        out.contains("bootstrap: agent stage \"wait-masters\" (progressing): at wait-masters"),
        "{out}"
    );
    assert!(
        out.contains("bootstrap: bootstrap complete; etcd members: master0, master1, master2"),
        "{out}"
    );
    assert!(
        out.contains("safe to remove the bootstrap machine (bootstrap)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "next: kindling create infra --dir {} --phase bootstrap-removed",
            lab.path().display()
        )),
        "{out}"
    );
    // kindling serve is not running: said once, not on every poll.
    assert_eq!(
        out.matches("kindling serve does not answer at").count(),
        1,
        "{out}"
    );
}

#[test]
fn bootstrap_that_never_completes_exits_5_naming_the_stuck_stage_and_machine() {
    let port = machines_endpoint(json!({"machines": [
        {"name": "bootstrap", "role": "bootstrap", "stage": "agent:wait-masters", "time": "2026-11-26T04:00:00Z"},
        {"name": "master0", "role": "master", "stage": "ignition", "time": "2026-11-26T03:59:00Z"},
    ]}));
    let lab = Lab::new(port);
    lab.bootstrap_record("progressing", "wait-masters", false);
    let run = lab.wait_for("bootstrap-complete", &["--bootstrap-timeout", "1s"]);
    run.expect(5);
    let err = run.stderr();
    assert!(
        err.contains("bootstrap failed: bootstrap: not done after"),
        "{err}"
    );
    assert!(err.contains("agent stage \"wait-masters\""), "{err}");
    assert!(
        err.contains("bootstrap last seen by kindling serve at stage agent:wait-masters (2026-11-26T04:00:00Z)"),
        "{err}"
    );
    let out = run.stdout();
    assert!(
        out.contains("machine master0 (master): ignition at 2026-11-26T03:59:00Z"),
        "{out}"
    );

    lab.bootstrap_record("failed", "apply-manifests", false);
    let run = lab.wait_for("bootstrap-complete", &[]);
    run.expect(5);
    assert!(
        run.stderr().contains(
            "the bootstrap agent failed at stage \"apply-manifests\": at apply-manifests"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_bootstrap_still_making_progress_gets_its_deadline_extended() {
    let lab = Lab::new(closed_port());
    lab.bootstrap_record("progressing", "stage-0", false);
    let fake = lab.fake.clone();
    std::thread::spawn(move || {
        for i in 1..=12 {
            std::thread::sleep(Duration::from_millis(250));
            let (status, removed) = if i == 12 {
                ("complete", "true")
            } else {
                ("progressing", "false")
            };
            fake.put(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "bootstrap", "namespace": "kube-system"},
                "data": {"status": status, "stage": format!("stage-{i}"), "bootstrapMemberRemoved": removed},
            }));
        }
    });
    // 3 s of progress against a 2 s timeout, capped at 3 × 2 s.
    let run = lab.wait_for(
        "bootstrap-complete",
        &["--bootstrap-timeout", "2s", "--timeout-cap", "3"],
    );
    run.expect(0);
    let out = run.stdout();
    assert!(
        out.contains("bootstrap: still making progress (agent stage \"stage-"),
        "{out}"
    );
    assert!(out.contains("deadline extended to"), "{out}");
    assert!(out.contains("(cap 6s)"), "{out}");
}

#[test]
fn an_api_that_never_answers_fails_the_bootstrap_with_exit_5() {
    let lab = Lab::new(closed_port());
    std::fs::write(
        &lab.kubeconfig,
        FakeApiServer::kubeconfig(SocketAddr::from(([127, 0, 0, 1], closed_port()))),
    )
    .unwrap();
    let run = lab.run(
        &["wait-for", "bootstrap-complete"],
        &["--api-timeout", "1s", "--poll-interval", "100ms"],
    );
    run.expect(5);
    let stderr = run.stderr();
    assert!(
        stderr.contains("bootstrap failed: api: not done after"),
        "{stderr}"
    );
    // Said in the user's terms, with the next step; not the HTTP client's text.
    assert!(
        stderr.contains("nothing accepts connections at 127.0.0.1:")
            && stderr.contains("run kindling doctor"),
        "{stderr}"
    );
    assert!(!stderr.contains("tcp connect error"), "{stderr}");
}

#[test]
fn an_api_name_that_does_not_resolve_is_said_so_and_approve_csrs_exits_7() {
    let lab = Lab::new(closed_port());
    let addr = SocketAddr::from(([127, 0, 0, 1], closed_port()));
    let kubeconfig = FakeApiServer::kubeconfig(addr)
        .replace(&addr.to_string(), "api.demo.kindling.invalid:6443");
    assert!(
        kubeconfig.contains("api.demo.kindling.invalid:6443"),
        "{kubeconfig}"
    );
    std::fs::write(&lab.kubeconfig, kubeconfig).unwrap();
    let run = lab.run(
        &["wait-for", "install-complete"],
        &["--api-timeout", "1s", "--poll-interval", "100ms"],
    );
    run.expect(6);
    assert!(
        run.stderr().contains(
            "api.demo.kindling.invalid does not resolve from this host; run kindling doctor"
        ),
        "{}",
        run.stderr()
    );

    let run = lab.run(&["approve-csrs"], &[]);
    run.expect(7);
    assert_eq!(
        run.stderr().lines().next().unwrap_or_default(),
        "ERROR api.demo.kindling.invalid does not resolve from this host; run kindling doctor"
    );
    // Nothing listens: a connection refused, said so.
    std::fs::write(&lab.kubeconfig, FakeApiServer::kubeconfig(addr)).unwrap();
    let run = lab.run(&["approve-csrs"], &[]);
    run.expect(7);
    assert!(
        run.stderr()
            .contains(&format!("nothing accepts connections at {addr}")),
        "{}",
        run.stderr()
    );
}

#[test]
fn install_complete_needs_every_node_ready_and_names_the_one_missing() {
    let port = machines_endpoint(json!({"machines": [
        {"name": "worker2", "role": "worker", "stage": "ignition", "time": "2026-11-26T04:10:00Z"},
    ]}));
    let lab = Lab::new(port);
    lab.installed_except(&["worker2"]);
    let run = lab.wait_for("install-complete", &["--install-timeout", "1s"]);
    run.expect(6);
    let err = run.stderr();
    assert!(
        err.contains("install failed: install: not done after"),
        "{err}"
    );
    assert!(
        err.contains("5/6 nodes Ready; worker2 is not a Node yet"),
        "{err}"
    );
    assert!(
        err.contains("worker2 last seen by kindling serve at stage ignition"),
        "{err}"
    );

    lab.fake.put_node("worker2", true);
    let run = lab.wait_for("install-complete", &["--install-timeout", "5s", "--json"]);
    run.expect(0);
    let events: Vec<Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "phase-started");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "machine" && e["name"] == "worker2" && e["stage"] == "ignition")
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "phase-done" && e["phase"] == "install")
    );
    assert_eq!(
        events.last().unwrap(),
        &json!({"event": "complete", "goal": "install-complete"})
    );
}

#[test]
fn install_complete_waits_for_inventory_csrs() {
    let lab = Lab::new(closed_port());
    lab.installed_except(&[]);
    lab.fake.put(csr(
        "csr-worker1",
        "kubernetes.io/kubelet-serving",
        "system:node:worker1",
        &pem("system:node:worker1", &["worker1"]),
    ));
    let run = lab.wait_for("install-complete", &["--install-timeout", "1s"]);
    run.expect(6);
    assert!(
        run.stderr()
            .contains("pending CSRs: csr-worker1 (worker1) (kindling approve-csrs)"),
        "{}",
        run.stderr()
    );
}

/// A PEM CSR for `cn` (O=system:nodes) with DNS SANs.
pub(crate) fn pem(cn: &str, dns: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.serialize_request(&key).unwrap().pem().unwrap()
}

pub(crate) fn csr(name: &str, signer: &str, user: &str, pem: &str) -> Value {
    use base64::Engine as _;
    let usage = if signer.ends_with("serving") {
        "server auth"
    } else {
        "client auth"
    };
    json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer,
                 "username": user, "usages": ["digital signature", "key encipherment", usage]},
    })
}

#[test]
fn approve_csrs_approves_inventory_machines_only_and_says_why_it_left_the_rest() {
    let lab = Lab::new(closed_port());
    let client = "kubernetes.io/kube-apiserver-client-kubelet";
    let serving = "kubernetes.io/kubelet-serving";
    lab.fake.put(csr(
        "new-worker0",
        client,
        "system:bootstrap:abcdef",
        &pem("system:node:worker0", &[]),
    ));
    lab.fake.put(csr(
        "serving-worker1",
        serving,
        "system:node:worker1",
        &pem(
            "system:node:worker1",
            &["worker1", "worker1.demo.example.localdomain"],
        ),
    ));
    lab.fake.put(csr(
        "intruder",
        client,
        "system:bootstrap:abcdef",
        &pem("system:node:intruder", &[]),
    ));
    lab.fake.put(csr(
        "renamer",
        client,
        "system:node:worker0",
        &pem("system:node:worker1", &[]),
    ));
    lab.fake.put(csr(
        "stranger",
        client,
        "system:bootstrap:zzzzzz",
        &pem("system:node:worker2", &[]),
    ));
    let run = lab.run(&["approve-csrs"], &[]);
    run.expect(0);
    assert!(
        run.stdout()
            .contains("2 approved, 3 left pending, 0 already decided"),
        "{}",
        run.stdout()
    );
    let err = run.stderr();
    for line in [
        "approved CSR new-worker0 (requested by system:bootstrap:abcdef)",
        "approved CSR serving-worker1 (requested by system:node:worker1)",
        "left CSR intruder pending (requested by system:bootstrap:abcdef): \"intruder\" is not a machine in the inventory",
        "left CSR renamer pending (requested by system:node:worker0): node worker0 asks for a certificate of node worker1",
        "left CSR stranger pending (requested by system:bootstrap:zzzzzz): requested with bootstrap token \"zzzzzz\", not this cluster's (\"abcdef\")",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    assert!(
        !err.contains("0123456789abcdef"),
        "the token's secret was logged:\n{err}"
    );
    let approved = |name: &str| {
        lab.fake
            .get(
                "certificates.k8s.io/v1",
                "CertificateSigningRequest",
                None,
                name,
            )
            .unwrap()["status"]["conditions"][0]["type"]
            == "Approved"
    };
    assert!(approved("new-worker0") && approved("serving-worker1"));
    assert!(!approved("intruder") && !approved("renamer") && !approved("stranger"));

    // Run again: nothing new to do.
    let run = lab.run(&["approve-csrs"], &[]);
    run.expect(0);
    assert!(
        run.stdout()
            .contains("0 approved, 3 left pending, 2 already decided"),
        "{}",
        run.stdout()
    );
}

#[test]
fn gather_without_an_api_still_writes_the_events_and_says_what_it_left_out() {
    let lab = Lab::new(closed_port());
    std::fs::write(
        &lab.kubeconfig,
        FakeApiServer::kubeconfig(SocketAddr::from(([127, 0, 0, 1], closed_port()))),
    )
    .unwrap();
    let run = lab.run(&["gather"], &[]);
    run.expect(0);
    let tarball = std::fs::read_dir(lab.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("gather-")
        })
        .expect("a gather-<time>.tar.gz in the asset directory");
    assert!(tarball.to_str().unwrap().ends_with(".tar.gz"));
    let text = Command::new("tar")
        .arg("-xzOf")
        .arg(&tarball)
        .arg("--wildcards")
        .arg("*/gather.txt")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("not collected: no cluster state:"), "{text}");
}
