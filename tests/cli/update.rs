//! `kindling update`, the real binary, against the **fake** API server with six workers whose
//! node agents are played by a thread here: when a Node is told a rendering it goes not Ready
//! (its reboot), then says it runs the rendering, Ready again.
//!
//! Why the fake: six real kubelets (and their node agents rebooting) do not fit a 2-core test
//! machine, and the rolling update's rules are about the Nodes' annotations, cordons and the
//! reboot slots; the real node agent's side runs against a real cluster in `day2.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kindling_cluster::fake::FakeApiServer;
use serde_json::{Value, json};

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;

const WORKERS: [&str; 6] = [
    "worker0", "worker1", "worker2", "worker3", "worker4", "worker5",
];

pub(crate) struct Fleet {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) fake: FakeApiServer,
    pub(crate) kubeconfig: PathBuf,
    /// The most Nodes cordoned at once, as the agents' thread saw them.
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// The renderings before and after the change.
    old: String,
    new: String,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn target(dir: &Path) -> String {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ignition/pools/worker.json")).unwrap())
            .unwrap();
    state["target"].as_str().unwrap().to_string()
}

impl Fleet {
    /// Six workers on the worker pool's first rendering, and a second rendering made; the node
    /// agents ignore the machine named `stuck`.
    pub(crate) fn new(stuck: Option<&'static str>) -> Fleet {
        Fleet::with(stuck, None, false)
    }

    /// [`Fleet::new`]; the agent of `drifted` reports drift and refuses what it is told. With
    /// `served`, every worker was served the first rendering (the record `kindling serve` keeps
    /// of it, written here), so the pool keeps each pinned there until the update moves it.
    fn with(stuck: Option<&'static str>, drifted: Option<&'static str>, served: bool) -> Fleet {
        let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
        let dir = demo_on_loopback(http_port, mcs_port);
        let d = dir.path();
        let inventory = d.join("inventory.yaml");
        let mut text = std::fs::read_to_string(&inventory).unwrap();
        for i in 3..6 {
            text.push_str(&format!(
                "  - name: worker{i}\n    role: worker\n    mac: \"52:54:00:7e:01:2{i}\"\n    ip: 192.168.126.12{i}\n"
            ));
        }
        std::fs::write(&inventory, text).unwrap();
        kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
        let old = target(d);
        if served {
            std::fs::create_dir_all(d.join(".kindling/served")).unwrap();
            for name in WORKERS {
                std::fs::write(d.join(".kindling/served").join(name), &old).unwrap();
            }
        }
        std::fs::create_dir_all(d.join("snippets/worker")).unwrap();
        std::fs::write(
            d.join("snippets/worker/motd.bu"),
            "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/x\n      contents:\n        inline: x\n",
        )
        .unwrap();
        kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
        let new = target(d);
        assert_ne!(old, new);

        let fake = FakeApiServer::new();
        let addr = fake.start_in_thread();
        let kubeconfig = d.join("fake.kubeconfig");
        std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(addr)).unwrap();
        for name in WORKERS {
            let mut node = fake.put_node(name, true);
            node["metadata"]["annotations"] = json!({
                "kindling.dev/current-rendering": old, "kindling.dev/state": "Done",
            });
            fake.put(node);
        }
        let (peak, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let agents = (fake.clone(), peak.clone(), stop.clone());
        std::thread::spawn(move || play_agents(&agents.0, &agents.1, &agents.2, stuck, drifted));
        Fleet {
            dir,
            fake,
            kubeconfig,
            peak,
            stop,
            old,
            new,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kindling update --pool worker ...` started, with `KINDLING_UPDATE_PAUSE_AFTER=<pause>`.
    /// Starts an update two at a time, pausing after each machine's apply, and kills it with
    /// SIGKILL once a machine is applying.
    fn kill_while_applying(&self) {
        let mut child = self.start(Some("applying"), &["--max-unavailable", "2"]);
        wait_until("a machine applying", || {
            self.update_state()["machines"]
                .as_object()
                .is_some_and(|m| m.values().any(|p| p["step"] == "applying"))
        });
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let _ = child.wait();
    }

    fn start(&self, pause: Option<&str>, args: &[&str]) -> Child {
        self.start_in(self.path(), pause, args)
    }

    /// [`Fleet::start`] on another copy of the asset directory.
    fn start_in(&self, dir: &Path, pause: Option<&str>, args: &[&str]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
        command
            .args(["update", "--pool", "worker", "--poll", "1", "--dir"])
            .arg(dir)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(step) = pause {
            command.env("KINDLING_UPDATE_PAUSE_AFTER", step);
        }
        command.spawn().unwrap()
    }

    fn update_state(&self) -> Value {
        let path = self.path().join(".kindling/fleet/worker.update.json");
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    fn node(&self, name: &str) -> Value {
        self.fake.get("v1", "Node", None, name).unwrap()
    }

    fn on(&self, name: &str) -> String {
        self.node(name)["metadata"]["annotations"]["kindling.dev/current-rendering"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The node agents: a Node told another rendering goes not Ready, then runs it and is Ready.
fn play_agents(
    fake: &FakeApiServer,
    peak: &AtomicUsize,
    stop: &AtomicBool,
    stuck: Option<&str>,
    drifted: Option<&str>,
) {
    while !stop.load(Ordering::SeqCst) {
        let nodes = fake.list("v1", "Node");
        let cordoned = nodes
            .iter()
            .filter(|n| n["spec"]["unschedulable"] == true)
            .count();
        peak.fetch_max(cordoned, Ordering::SeqCst);
        for mut node in nodes {
            let name = node["metadata"]["name"].as_str().unwrap().to_string();
            let annotations = node["metadata"]["annotations"].clone();
            let desired = annotations["kindling.dev/desired-rendering"].as_str();
            let current = annotations["kindling.dev/current-rendering"].as_str();
            if desired.is_none() || desired == current || Some(name.as_str()) == stuck {
                continue;
            }
            if Some(name.as_str()) == drifted {
                node["metadata"]["annotations"]["kindling.dev/state"] = json!("Drifted");
                node["metadata"]["annotations"]["kindling.dev/refused-rendering"] = json!(desired);
                fake.put(node);
                continue;
            }
            let ready = node["status"]["conditions"][0]["status"] == "True";
            if ready && annotations["kindling.dev/state"] != "Rebooting" {
                node["metadata"]["annotations"]["kindling.dev/state"] = json!("Rebooting");
                node["status"]["conditions"][0]["status"] = json!("False");
            } else {
                node["metadata"]["annotations"]["kindling.dev/current-rendering"] = json!(desired);
                node["metadata"]["annotations"]["kindling.dev/state"] = json!("Done");
                node["status"]["conditions"][0]["status"] = json!("True");
            }
            fake.put(node);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds, or panics after a minute naming `what`.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The update's output, once it exits (within two minutes).
pub(crate) fn finish(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kindling update did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    use std::io::Read as _;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code().unwrap_or(-1), out)
}

fn assert_all_moved(fleet: &Fleet) {
    for name in WORKERS {
        assert_eq!(fleet.on(name), fleet.new, "{name}");
        assert_ne!(
            fleet.node(name)["spec"]["unschedulable"],
            true,
            "{name} uncordoned"
        );
    }
    let slots: Value = serde_json::from_slice(
        &std::fs::read(fleet.path().join(".kindling/fleet/worker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(slots["slots"], json!({}), "every slot given back");
    let state = fleet.update_state();
    for name in WORKERS {
        assert_eq!(state["machines"][name]["step"], "done", "{state}");
    }
    assert!(
        fleet.peak.load(Ordering::SeqCst) <= 2,
        "never more than 2 out at once"
    );
}

/// Killed (SIGKILL) after each of a machine's steps and run again, the update ends where an
/// uninterrupted one would: every worker on the new rendering, uncordoned, the slots free, and
/// never more than two out at once.
#[test]
fn a_rolling_update_killed_at_every_step_ends_as_if_it_never_was() {
    let fleet = Fleet::new(None);
    for step in ["cordoned", "drained", "applying", "done"] {
        let mut child = fleet.start(Some(step), &["--max-unavailable", "2"]);
        wait_until(&format!("a machine {step}"), || {
            fleet.update_state()["machines"]
                .as_object()
                .is_some_and(|m| m.values().any(|p| p["step"] == step))
        });
        // The state is written before the hook sleeps: kill it there.
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let _ = child.wait();
    }
    let (code, out) = finish(fleet.start(None, &[]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("pool worker: every machine runs {}", fleet.new)),
        "{out}"
    );
    assert_all_moved(&fleet);
    assert_eq!(
        fleet.peak.load(Ordering::SeqCst),
        2,
        "two at a time, not one"
    );
    // The pool's machines are now meant to be on the new rendering (kindling serve serves it).
    let pool: Value = serde_json::from_slice(
        &std::fs::read(fleet.path().join("ignition/pools/worker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pool["target"], json!(fleet.new));
    assert!(
        pool["machines"].as_object().is_none_or(|m| m.is_empty()),
        "{pool}"
    );

    // A rollback is one command: every worker back on the rendering before.
    let (code, out) = finish(fleet.start(None, &["--rollback"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("every machine runs {}", fleet.old)),
        "{out}"
    );
    for name in WORKERS {
        assert_eq!(fleet.on(name), fleet.old, "{name}");
    }
    let pool: Value = serde_json::from_slice(
        &std::fs::read(fleet.path().join("ignition/pools/worker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pool["target"], json!(fleet.old));
}

/// A window that closes mid-update: the machines that started finish, no other starts; the
/// rest go when the update may run again.
#[test]
fn no_machine_starts_outside_the_window() {
    let fleet = Fleet::new(None);
    fleet.kill_while_applying();
    let started: Vec<&str> = WORKERS
        .into_iter()
        .filter(|w| fleet.update_state()["machines"][*w]["step"] != "waiting")
        .collect();
    assert!(!started.is_empty() && started.len() <= 2, "{started:?}");

    // The window is in three hours: closed now.
    let hour = (jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour()
        + 3)
        % 24;
    let window = format!("{hour:02}:00-{:02}:00 UTC", (hour + 1) % 24);
    let (code, out) = finish(fleet.start(None, &["--window", &window, "--stop-outside-window"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("outside the pool's maintenance windows"),
        "{out}"
    );
    for name in WORKERS {
        let moved = fleet.on(name) == fleet.new;
        assert_eq!(moved, started.contains(&name), "{name}: {out}");
    }
    let (code, out) = finish(fleet.start(None, &["--any-time"]));
    assert_eq!(code, 0, "{out}");
    assert_all_moved(&fleet);
}

/// A machine whose agent never answers halts the update, which names it and its step; the
/// others are not touched while it is stuck.
#[test]
fn a_stuck_machine_halts_the_rollout_with_its_name() {
    let fleet = Fleet::new(Some("worker0"));
    let (code, out) = finish(fleet.start(None, &["--max-unavailable", "1", "--stall", "3"]));
    assert_eq!(code, 9, "{out}");
    assert!(
        out.contains("worker0 halted the update at step applying: no progress for 3s"),
        "{out}"
    );
    assert_eq!(
        fleet.node("worker0")["spec"]["unschedulable"],
        true,
        "left cordoned"
    );
    for name in &WORKERS[1..] {
        assert_eq!(fleet.on(name), fleet.old, "{name} was not started");
    }
}

/// A machine whose agent reports drift and refuses the rendering halts the update, which says
/// what to do; nothing is written over its files.
#[test]
fn a_drifted_machine_is_never_updated_over() {
    let fleet = Fleet::with(None, Some("worker0"), false);
    let (code, out) = finish(fleet.start(None, &["--max-unavailable", "1"]));
    assert_eq!(code, 9, "{out}");
    assert!(
        out.contains("worker0 halted the update at step applying: its files drifted"),
        "{out}"
    );
    assert!(out.contains("--revert-drift"), "{out}");
    assert_eq!(fleet.on("worker0"), fleet.old);
}

/// An update interrupted mid-flight, then turned around (`--rollback`): the machines it had
/// taken out go back with the rest, and none is left cordoned or holding a slot.
#[test]
fn an_interrupted_update_rolled_back_leaves_nothing_behind() {
    let fleet = Fleet::new(None);
    fleet.kill_while_applying();
    let (code, out) = finish(fleet.start(None, &["--rollback"]));
    assert_eq!(code, 0, "{out}");
    for name in WORKERS {
        assert_eq!(fleet.on(name), fleet.old, "{name}");
        assert_ne!(fleet.node(name)["spec"]["unschedulable"], true, "{name}");
    }
    let slots: Value = serde_json::from_slice(
        &std::fs::read(fleet.path().join(".kindling/fleet/worker.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(slots["slots"], json!({}));
}

/// `kindling update --store`, as the replicas of `serve --store` share their state: one update
/// at a time moves a pool, wherever it is run; its progress is in the store, so after it is
/// killed, another host's copy of the asset directory (pulled from the store) goes on from there;
/// and each machine's pin is pushed, so every replica serves what the machine is meant to run.
#[test]
fn an_update_in_the_store_runs_once_and_goes_on_from_another_host() {
    if !kindling_testkit::have("etcd") {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is missing (test.sh installs etcd-server)"
        );
        eprintln!(
            "SKIPPED an_update_in_the_store_runs_once_and_goes_on_from_another_host: etcd is not installed"
        );
        return;
    }
    let fleet = Fleet::with(None, None, true);
    let scratch = tempfile::tempdir().unwrap();
    let pki = scratch.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let tls = kindling_testkit::EtcdTls::generate(&pki);
    let etcd = kindling_testkit::EtcdCluster::start(&scratch.path().join("etcd"), 1, &tls);
    let url = etcd.client_urls()[0]
        .trim_start_matches("https://")
        .to_string();
    let store_args: Vec<String> = vec![
        "--store".into(),
        format!("etcd://{url}/sites/update"),
        "--etcd-ca".into(),
        pki.join("ca.crt").display().to_string(),
        "--etcd-cert".into(),
        pki.join("client.crt").display().to_string(),
        "--etcd-key".into(),
        pki.join("client.key").display().to_string(),
    ];
    let store: Vec<&str> = store_args.iter().map(String::as_str).collect();
    let with_store = |args: &[&str]| -> Vec<String> {
        args.iter().chain(&store).map(|a| a.to_string()).collect()
    };
    fn refs(all: &[String]) -> Vec<&str> {
        all.iter().map(String::as_str).collect()
    }
    let run = |args: &[&str]| kindling(&refs(&with_store(args)));
    run(&["store", "push", "--dir", fleet.path().to_str().unwrap()]).expect(0);
    // The pins the store's newest revision has, as a replica would serve them.
    let pulled = |name: &str| {
        let dir = scratch.path().join(name);
        run(&["store", "pull", "--dir", dir.to_str().unwrap()]).expect(0);
        dir
    };
    let pinned = |dir: &Path| -> Value {
        let pool: Value =
            serde_json::from_slice(&std::fs::read(dir.join("ignition/pools/worker.json")).unwrap())
                .unwrap();
        pool["machines"].clone()
    };
    assert_eq!(
        pinned(&pulled("before")).as_object().map(|m| m.len()),
        Some(6)
    );

    // The first update stops after its first machine is told; a second one, started meanwhile
    // from another copy, waits for the first's lease and says who holds it.
    let first = fleet.start(
        Some("applying"),
        &refs(&with_store(&["--max-unavailable", "1"])),
    );
    let state = || {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.client_urls()[0]))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!("--cert={}", pki.join("client.crt").display()))
            .arg(format!("--key={}", pki.join("client.key").display()))
            .args(["get", "--print-value-only", "/sites/update/updates/worker"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let applying = || {
        state()["machines"]
            .as_object()
            .and_then(|m| m.iter().find(|(_, p)| p["step"] == "applying"))
            .map(|(name, _)| name.clone())
    };
    wait_until("a machine applying, in the store", || applying().is_some());
    let moving = applying().unwrap();
    let other_host = pulled("other-host");
    let (code, out) = finish(fleet.start_in(&other_host, None, &store));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("holds the store's update lease") && out.contains("(pid "),
        "{out}"
    );
    // The machine told to move is no longer pinned to the old rendering in the store.
    let pins = pinned(&pulled("mid-update"));
    assert!(pins.get(&moving).is_none(), "{moving} still pinned: {pins}");
    assert_eq!(pins.as_object().map(|m| m.len()), Some(5), "{pins}");

    // Killed; the other host goes on from the store (once the lease has run out).
    let mut first = first;
    first.kill().unwrap();
    let _ = first.wait();
    let (code, out) = finish(fleet.start_in(&other_host, None, &store));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("pool worker: every machine runs {}", fleet.new)),
        "{out}"
    );
    for name in WORKERS {
        assert_eq!(fleet.on(name), fleet.new, "{name}");
        assert_ne!(fleet.node(name)["spec"]["unschedulable"], true, "{name}");
        assert_eq!(state()["machines"][name]["step"], "done", "{}", state());
    }
    assert_eq!(
        fleet.peak.load(Ordering::SeqCst),
        1,
        "one at a time, across both"
    );
    assert_eq!(
        pinned(&pulled("after")),
        Value::Null,
        "no pin left in the store"
    );
}
