//! `kindling agent join-master` and `kindling agent bootstrap` against real etcd (Debian's
//! etcd-server 3.4): a bootstrap member and three masters on loopback addresses, with the
//! certificates `kindling create manifests` made. Each etcd runs with the command of the static
//! pod kindling wrote (the bootstrap pod, or the pod join-master activated), so the test proves
//! the pods are right; only what differs between a node and this one host is translated (see
//! [`etcd_args`]).
//!
//! The Kubernetes steps run against kindling-cluster's fake API server on a loopback port (no
//! real kube-apiserver here): the agent applies the cluster manifests to it, reads the masters'
//! kube-apiserver mirror pods from it, and writes the bootstrap record to it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kindling_cluster::fake::FakeApiServer;
use kindling_config::yaml;
use kindling_testkit::{Daemon, Proto, READY_TIMEOUT};

use crate::kindling;
use crate::serve::Server;

const DEMO_IC: &str = include_str!("../../examples/demo/install-config.yaml");
const DEMO_INV: &str = include_str!("../../examples/demo/inventory.yaml");
const MASTERS: [&str; 3] = ["master0", "master1", "master2"];

/// A child process killed when dropped (the agent under test).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo cluster moved to a free loopback /24, its assets made, and a directory per machine
/// standing in for that machine's disk.
struct Lab {
    assets: tempfile::TempDir,
    nodes: tempfile::TempDir,
    /// `127.a.b.`: the machines are `<prefix>100` (bootstrap), `<prefix>110`..`112`.
    prefix: String,
    etcds: Vec<(String, Daemon)>,
    /// The Kubernetes API the agents talk to.
    api: FakeApiServer,
    api_url: String,
}

impl Lab {
    /// A lab on a /24 of 127/8 whose etcd ports are free; `seed` keeps parallel tests apart.
    fn new(seed: u8) -> Lab {
        Lab::with_inventory(seed, str::to_string)
    }

    /// `new`, with `edit` applied to the demo's inventory.yaml.
    fn with_inventory(seed: u8, edit: impl Fn(&str) -> String) -> Lab {
        let pid = std::process::id();
        let prefix = (0..50u32)
            .map(|i| format!("127.{}.{}.", 100 + seed, (pid + i * 7) % 250 + 1))
            .find(|p| {
                [100, 110, 111, 112].iter().all(|host| {
                    [2379, 2380].iter().all(|port| {
                        TcpListener::bind((format!("{p}{host}").as_str(), *port)).is_ok()
                    })
                })
            })
            .expect("a loopback /24 with free etcd ports");
        let api = FakeApiServer::new();
        let api_addr = api.start_in_thread();
        let assets = tempfile::tempdir().unwrap();
        let moved = |text: &str| text.replace("192.168.126.", &prefix);
        std::fs::write(assets.path().join("install-config.yaml"), moved(DEMO_IC)).unwrap();
        std::fs::write(assets.path().join("inventory.yaml"), moved(&edit(DEMO_INV))).unwrap();
        crate::seed_mirror(assets.path());
        kindling(&[
            "create",
            "ignition-configs",
            "--dir",
            &assets.path().to_string_lossy(),
        ])
        .expect(0);
        Lab {
            assets,
            nodes: tempfile::tempdir().unwrap(),
            prefix,
            etcds: Vec::new(),
            api,
            api_url: format!("http://{api_addr}"),
        }
    }

    fn ip(&self, machine: &str) -> String {
        let host = match machine {
            "bootstrap" => 100,
            "master0" => 110,
            "master1" => 111,
            "master2" => 112,
            other => panic!("no machine {other}"),
        };
        format!("{}{host}", self.prefix)
    }

    fn client_url(&self, machine: &str) -> String {
        format!("https://{}:2379", self.ip(machine))
    }

    fn asset(&self, path: &str) -> PathBuf {
        self.assets.path().join(path)
    }

    /// `<node>/<what>` on `machine`'s stand-in disk.
    fn node(&self, machine: &str, what: &str) -> PathBuf {
        self.nodes.path().join(machine).join(what)
    }

    /// The agent's etcd TLS files: the CA and the apiserver's etcd client certificate, which
    /// Ignition installs at the defaults; and a short poll interval.
    fn etcd_tls(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("--etcd-ca", self.asset("tls/etcd-ca.crt")),
            ("--etcd-cert", self.asset("tls/apiserver-etcd-client.crt")),
            ("--etcd-key", self.asset("tls/apiserver-etcd-client.key")),
            ("--poll-interval", "1".into()),
        ]
    }

    /// Starts `machine`'s etcd with the command of the pod at `pod`, and waits until it is healthy.
    fn start_etcd(&mut self, machine: &str, pod: &Path) {
        let args = etcd_args(&pod_command(pod), self, machine);
        let log = self.node(machine, "etcd.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut command = Command::new("etcd");
        command.args(&args);
        let mut etcd = Daemon::spawn(&format!("{machine}'s etcd"), command, &log)
            .unwrap_or_else(|e| panic!("{e}"));
        // Its own process on its two ports, and healthy to a client of this lab's CA: the proof
        // that this is the member the test started.
        let url = self.client_url(machine);
        let at = |port| SocketAddr::new(self.ip(machine).parse().unwrap(), port);
        etcd.wait_listening(
            &[(at(2379), Proto::Tcp), (at(2380), Proto::Tcp)],
            READY_TIMEOUT,
            |_| self.etcdctl(&url, &["endpoint", "health"]).status.success(),
        )
        .unwrap_or_else(|e| panic!("{e}\n(started with {args:?})"));
        self.etcds.push((machine.to_string(), etcd));
    }

    /// Runs the real etcdctl (v3 API) against `endpoints` with the client certificate.
    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!(
                "--cacert={}",
                self.asset("tls/etcd-ca.crt").display()
            ))
            .arg(format!(
                "--cert={}",
                self.asset("tls/apiserver-etcd-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                self.asset("tls/apiserver-etcd-client.key").display()
            ))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s")
            .args(args)
            .output()
            .expect("etcdctl runs")
    }

    /// `etcdctl member list`: (name, peer URL) of every member, sorted.
    fn members(&self) -> Vec<(String, String)> {
        let endpoints = MASTERS.map(|m| self.client_url(m)).join(",");
        let out = self.etcdctl(&endpoints, &["member", "list", "--write-out=simple"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut members: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split(", ").collect();
                (fields[2].to_string(), fields[3].to_string())
            })
            .collect();
        members.sort();
        members
    }

    /// The bootstrap machine: its static pods as Ignition installs them, its etcd started from
    /// its pod, and its admin.conf naming the fake API server.
    fn boot_bootstrap(&mut self) {
        let pods = self.node("bootstrap", "etc/kubernetes/manifests");
        std::fs::create_dir_all(&pods).unwrap();
        for entry in std::fs::read_dir(self.asset("manifests/bootstrap")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, pods.join(path.file_name().unwrap())).unwrap();
        }
        self.write_kubeconfig("bootstrap");
        self.start_etcd("bootstrap", &pods.join("etcd.yaml"));
    }

    /// A master: its member pod where Ignition puts it, join-master, then its etcd from the pod
    /// join-master activated.
    fn join_master(&mut self, machine: &str) {
        self.install_member_pod(machine);
        let run = self.join_master_run(machine);
        run.expect(0);
        let active = self.node(machine, "etc/kubernetes/manifests/etcd.yaml");
        self.start_etcd(machine, &active);
    }

    /// The member pod where Ignition puts it.
    fn install_member_pod(&self, machine: &str) {
        let member_pod = self.node(machine, "opt/kindling/etcd-member.yaml");
        std::fs::create_dir_all(member_pod.parent().unwrap()).unwrap();
        std::fs::copy(
            self.asset(&format!("manifests/masters/{machine}/etcd-member.yaml")),
            &member_pod,
        )
        .unwrap();
    }

    /// The masters boot together: every join-master runs at once, and each master's etcd starts
    /// as soon as its pod is activated (as its kubelet would start it). etcd accepts one
    /// unstarted member at a time, so the agents wait for each other's members to start.
    fn join_masters_at_once(&mut self) {
        let agents: Vec<(&str, Killed, PathBuf)> = MASTERS
            .iter()
            .map(|m| {
                self.install_member_pod(m);
                let log = self.node(m, "join-master.stderr");
                let child = Command::new(env!("CARGO_BIN_EXE_kindling"))
                    .args(self.join_master_args(m))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap();
                (*m, Killed(child), log)
            })
            .collect();
        // etcd holds one added member that has not started; until it starts, the other
        // agents' adds are refused and they wait. No etcd starts before one refusal is seen,
        // so the waiting path is taken every time, whatever order the scheduler runs the
        // agents in.
        let read = |log: &PathBuf| std::fs::read_to_string(log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !agents
            .iter()
            .any(|(_, _, log)| read(log).contains("not enough started members"))
        {
            assert!(
                Instant::now() < deadline,
                "no join-master was refused while another's member had not started: {:?}",
                agents
                    .iter()
                    .map(|(_, _, log)| read(log))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut started: Vec<&str> = Vec::new();
        while started.len() < MASTERS.len() {
            for m in MASTERS {
                let pod = self.node(m, "etc/kubernetes/manifests/etcd.yaml");
                if !started.contains(&m) && pod.exists() {
                    self.start_etcd(m, &pod);
                    started.push(m);
                }
            }
            assert!(Instant::now() < deadline, "started only {started:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        for (m, agent, log) in agents {
            let mut agent = agent;
            let status = wait_exit(&mut agent, Duration::from_secs(60));
            assert!(status.success(), "{m}: {status}: {}", read(&log));
        }
        let waited = MASTERS
            .iter()
            .map(|m| {
                std::fs::read_to_string(self.node(m, "var/log/kindling/join-master.jsonl")).unwrap()
            })
            .collect::<Vec<_>>();
        assert!(
            waited.iter().all(|log| log.contains("\"result\":\"done\"")),
            "{waited:?}"
        );
    }

    /// `kindling agent join-master` with the arguments of the master pool's unit, node paths
    /// moved to `machine`'s stand-in disk.
    fn join_master_run(&self, machine: &str) -> crate::Run {
        kindling(
            &self
                .join_master_args(machine)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    }

    fn join_master_args(&self, machine: &str) -> Vec<String> {
        unit_args(
            &self.asset("ignition/master.ign"),
            "kindling-join-master.service",
            &[
                (
                    "--member-pod",
                    self.node(machine, "opt/kindling/etcd-member.yaml"),
                ),
                (
                    "--static-pods-dir",
                    self.node(machine, "etc/kubernetes/manifests"),
                ),
                ("--state-dir", self.node(machine, "opt/kindling")),
                ("--log-dir", self.node(machine, "var/log/kindling")),
                (
                    "--identity-file",
                    self.node(machine, "etc/kindling/identity"),
                ),
                ("--timeout", "90".into()),
            ],
            &self.etcd_tls(),
        )
    }

    /// `kindling agent bootstrap` with the arguments of bootstrap.ign's unit, node paths moved
    /// to the bootstrap machine's stand-in disk, and a test hook.
    fn bootstrap_agent(&self, hook: Option<(&str, &str)>) -> Command {
        self.bootstrap_agent_reporting(hook, None)
    }

    /// `bootstrap_agent`, reporting to this `kindling serve` instead of the unit's.
    fn bootstrap_agent_reporting(
        &self,
        hook: Option<(&str, &str)>,
        server: Option<&str>,
    ) -> Command {
        let mut tls = self.etcd_tls();
        if let Some(server) = server {
            tls.push(("--server", server.into()));
        }
        let args = unit_args(
            &self.asset("bootstrap.ign"),
            "kindling-bootstrap.service",
            &[
                ("--manifests", self.asset("manifests/cluster")),
                (
                    "--kubeconfig",
                    self.node("bootstrap", "etc/kubernetes/admin.conf"),
                ),
                // api-int is the same fake here.
                ("--api-server", self.api_url.clone().into()),
                ("--state-dir", self.node("bootstrap", "opt/kindling")),
                ("--log-dir", self.node("bootstrap", "var/log/kindling")),
                (
                    "--static-pods-dir",
                    self.node("bootstrap", "etc/kubernetes/manifests"),
                ),
                (
                    "--identity-file",
                    self.node("bootstrap", "etc/kindling/identity"),
                ),
                ("--stage-timeout", "90".into()),
            ],
            &tls,
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
        command
            .args(&args)
            .env_remove("KINDLING_AGENT_PAUSE_AFTER")
            .env_remove("KINDLING_AGENT_PAUSE_BEFORE_MARKER")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((var, stage)) = hook {
            command.env(var, stage);
        }
        command
    }

    /// What a machine gets from `kindling serve`: its pointer URL with its token (iPXE), then
    /// its config; the identity file in it goes to the node's disk. Returns the token.
    fn fetch_identity(&self, server: &Server, machine: &str, mac: &str) -> String {
        let (status, script) = server.get(&format!("/ipxe?mac={mac}"));
        assert_eq!(status, 200, "{}", server.log());
        let script = String::from_utf8(script).unwrap();
        let token = script
            .split("token=")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_hexdigit()).next())
            .unwrap()
            .to_string();
        let (status, config) = server.get(&format!("/ignition?mac={mac}&token={token}"));
        assert_eq!(status, 200, "{}", server.log());
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        let file = config["storage"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "/etc/kindling/identity")
            .expect("the config has the agent's identity file");
        assert_eq!(file["mode"], 0o600);
        let identity =
            kindling_ignition::data_url::decode(file["contents"]["source"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&identity),
            format!("mac={}\ntoken={token}\n", mac.replace('-', ":"))
        );
        let path = self.node(machine, "etc/kindling/identity");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, identity).unwrap();
        token
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.node("bootstrap", "var/log/kindling/bootstrap.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each record is JSON"))
            .collect()
    }

    fn count(&self, stage: &str, phase: &str, result: &str) -> usize {
        self.records()
            .iter()
            .filter(|r| r["stage"] == stage && r["phase"] == phase && r["result"] == result)
            .count()
    }

    /// `machine`'s admin.conf: the fake API server, without credentials.
    fn write_kubeconfig(&self, machine: &str) {
        let path = self.node(machine, "etc/kubernetes/admin.conf");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let addr = self
            .api_url
            .strip_prefix("http://")
            .unwrap()
            .parse()
            .unwrap();
        std::fs::write(path, FakeApiServer::kubeconfig(addr)).unwrap();
    }

    /// The masters' kube-apiserver mirror pods, as their kubelets publish them: Ready on
    /// `nodes`, not Ready on the others.
    fn set_ready_apiservers(&self, nodes: &[&str]) {
        for m in MASTERS {
            self.api.put_pod(
                "kube-system",
                &format!("kube-apiserver-{m}"),
                nodes.contains(&m),
            );
        }
    }

    /// The bootstrap record the agent wrote.
    fn bootstrap_record(&self) -> serde_json::Value {
        self.api
            .get("v1", "ConfigMap", Some("kube-system"), "bootstrap")
            .expect("ConfigMap kube-system/bootstrap")
    }

    /// The etcd members are exactly the masters, each healthy.
    fn assert_masters_are_the_members(&self) {
        let members = self.members();
        assert_eq!(
            members,
            MASTERS
                .map(|m| (m.to_string(), format!("https://{}:2380", self.ip(m))))
                .to_vec()
        );
        for m in MASTERS {
            let health = self.etcdctl(&self.client_url(m), &["endpoint", "health"]);
            assert!(
                health.status.success(),
                "{m}: {}",
                String::from_utf8_lossy(&health.stderr)
            );
        }
    }

    /// The end state of a hand-over: exactly the masters, each healthy; the record says
    /// complete; the temporary control plane's pods are out of the static pods directory.
    fn assert_handed_over(&self) {
        self.assert_masters_are_the_members();
        let record = self.bootstrap_record();
        assert_eq!(record["metadata"]["name"], "bootstrap");
        assert_eq!(record["metadata"]["namespace"], "kube-system");
        assert_eq!(record["data"]["status"], "complete");
        assert_eq!(record["data"]["bootstrapMemberRemoved"], "true");
        assert_eq!(record["data"]["etcdMembers"], "master0,master1,master2");
        let left: Vec<_> = std::fs::read_dir(self.node("bootstrap", "etc/kubernetes/manifests"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let stopped = self.node("bootstrap", "opt/kindling/stopped-static-pods");
        for pod in ["etcd.yaml", "kube-apiserver.yaml"] {
            assert!(stopped.join(pod).exists(), "{pod} was not moved");
        }
        for stage in [
            "wait-apiserver",
            "apply-manifests",
            "wait-masters",
            "remove-bootstrap-member",
            "bootstrap-complete",
            "stop-temporary-control-plane",
        ] {
            assert!(
                self.node("bootstrap", &format!("opt/kindling/{stage}.done"))
                    .exists(),
                "{stage}.done"
            );
        }
        // The cluster manifests are applied (server-side apply), the namespace first.
        for (api_version, kind, namespace, name) in [
            ("v1", "Namespace", None, "kube-flannel"),
            (
                "apps/v1",
                "DaemonSet",
                Some("kube-flannel"),
                "kube-flannel-ds",
            ),
            ("apps/v1", "DaemonSet", Some("kube-system"), "kube-proxy"),
            ("apps/v1", "Deployment", Some("kube-system"), "coredns"),
        ] {
            assert!(
                self.api.get(api_version, kind, namespace, name).is_some(),
                "{kind} {name} was not applied"
            );
        }
        let applies: Vec<(String, String)> = self
            .api
            .writes()
            .into_iter()
            .filter(|(method, path)| method == "PATCH" && !path.contains("/configmaps/bootstrap"))
            .collect();
        assert!(
            applies[0].1.contains("/namespaces/kube-flannel"),
            "{applies:?}"
        );
    }
}

/// The contents of `unit` in the Ignition config `ign`, if it has that unit.
fn unit_contents(ign: &Path, unit: &str) -> Option<String> {
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(ign).unwrap()).unwrap();
    config["systemd"]["units"]
        .as_array()?
        .iter()
        .find(|u| u["name"] == unit)?["contents"]
        .as_str()
        .map(String::from)
}

/// The arguments of `unit`'s ExecStart in the Ignition config `ign` (the binary left out),
/// with the values of `overrides` put in (replacing the unit's, or added).
fn unit_args(
    ign: &Path,
    unit: &str,
    overrides: &[(&str, PathBuf)],
    more: &[(&str, PathBuf)],
) -> Vec<String> {
    let contents =
        unit_contents(ign, unit).unwrap_or_else(|| panic!("{} has no {unit}", ign.display()));
    let exec = contents
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut args: Vec<String> = exec.split_whitespace().skip(1).map(String::from).collect();
    for (flag, value) in overrides.iter().chain(more) {
        let value = value.display().to_string();
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag.to_string(), value]),
        }
    }
    args
}

/// `spec.containers[0].command` of a static pod, read with kindling's YAML reader (not the
/// agent's pod code).
fn pod_command(pod: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(pod).unwrap_or_else(|e| panic!("{}: {e}", pod.display()));
    let node = yaml::parse(&text).unwrap();
    let container = match &node
        .get("spec")
        .and_then(|s| s.get("containers"))
        .unwrap()
        .value
    {
        yaml::Value::Seq(items) => items[0].clone(),
        other => panic!("containers is {other:?}"),
    };
    match &container.get("command").unwrap().value {
        yaml::Value::Seq(items) => items
            .iter()
            .map(|i| match &i.value {
                yaml::Value::Scalar { text, .. } => text.to_string(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("command is {other:?}"),
    }
}

/// The pod's etcd command as this host runs it. Node paths become the asset directory's files
/// (the same files Ignition installs there) and a data directory of the node's own. All members
/// share this host's loopback, so the `127.0.0.1` client and metrics listeners every node has
/// to itself are dropped. The pods target etcd 3.6; Debian's 3.4 spells two flags differently.
/// Everything else (name, URLs, initial cluster and state, TLS settings) is the pod's.
fn etcd_args(command: &[String], lab: &Lab, machine: &str) -> Vec<String> {
    assert_eq!(command[0], "etcd");
    let asset = |p: &str| lab.asset(p).display().to_string();
    let file = |path: &str| -> String {
        match path {
            "/etc/kubernetes/pki/etcd/ca.crt" => asset("tls/etcd-ca.crt"),
            "/etc/kubernetes/pki/etcd/server.crt" => {
                asset(&format!("tls/etcd/{machine}-server.crt"))
            }
            "/etc/kubernetes/pki/etcd/server.key" => {
                asset(&format!("tls/etcd/{machine}-server.key"))
            }
            "/etc/kubernetes/pki/etcd/peer.crt" => asset(&format!("tls/etcd/{machine}-peer.crt")),
            "/etc/kubernetes/pki/etcd/peer.key" => asset(&format!("tls/etcd/{machine}-peer.key")),
            "/var/lib/etcd" => lab.node(machine, "var/lib/etcd").display().to_string(),
            other => panic!("the etcd pod names {other}, which this test does not map"),
        }
    };
    let mut args = Vec::new();
    for arg in &command[1..] {
        let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
        let value = match flag {
            "--listen-metrics-urls" => continue,
            "--feature-gates" => {
                assert_eq!(value, "InitialCorruptCheck=true");
                args.push("--experimental-initial-corrupt-check=true".to_string());
                continue;
            }
            "--watch-progress-notify-interval" => {
                args.push(format!(
                    "--experimental-watch-progress-notify-interval={value}"
                ));
                continue;
            }
            "--listen-client-urls" => value
                .split(',')
                .filter(|u| !u.starts_with("https://127.0.0.1:"))
                .collect::<Vec<_>>()
                .join(","),
            _ if value.starts_with('/') => file(value),
            _ => value.to_string(),
        };
        args.push(format!("{flag}={value}"));
    }
    args
}

/// The demo's inventory without its bootstrap machine: the first master founds etcd.
fn without_bootstrap(inventory: &str) -> String {
    let without = inventory.replace(
        "  - name: bootstrap\n    role: bootstrap\n    mac: \"52:54:00:7e:01:00\"\n    ip: 192.168.126.100\n",
        "",
    );
    assert_ne!(without, inventory);
    without
}

fn skip_without_etcd() -> bool {
    if kindling_testkit::have("etcd") && kindling_testkit::have("etcdctl") {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "etcd and etcdctl are missing (test.sh installs etcd-server and etcd-client)"
    );
    eprintln!("skipping: etcd or etcdctl is not installed");
    true
}

/// Waits for `child` to exit within `limit`; kills it otherwise.
fn wait_exit(child: &mut Killed, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn output(child: Killed) -> String {
    let mut child = child;
    let mut text = String::new();
    use std::io::Read;
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn masters_join_and_the_bootstrap_member_is_removed_by_the_hand_over_rule() {
    if skip_without_etcd() {
        return;
    }
    let mut lab = Lab::new(1);
    lab.boot_bootstrap();
    for m in MASTERS {
        lab.join_master(m);
        let pod = pod_command(&lab.node(m, "etc/kubernetes/manifests/etcd.yaml"));
        assert!(pod.contains(&"--initial-cluster-state=existing".to_string()));
    }
    // The last master's pod lists the bootstrap member and every master.
    let pod = pod_command(&lab.node("master2", "etc/kubernetes/manifests/etcd.yaml"));
    let initial = pod
        .iter()
        .find_map(|a| a.strip_prefix("--initial-cluster="))
        .unwrap();
    let mut entries: Vec<&str> = initial.split(',').collect();
    entries.sort();
    assert_eq!(
        entries,
        ["bootstrap", "master0", "master1", "master2"]
            .map(|m| format!("{m}=https://{}:2380", lab.ip(m)))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(lab.members().len(), 4);

    // join-master again: the member is not added twice, and the pod stays as it is.
    let before =
        std::fs::read_to_string(lab.node("master1", "etc/kubernetes/manifests/etcd.yaml")).unwrap();
    assert!(
        lab.join_master_run("master1")
            .expect(0)
            .stdout()
            .contains("already joined")
    );
    std::fs::remove_file(lab.node("master1", "opt/kindling/join-master.done")).unwrap();
    let again = lab.join_master_run("master1");
    assert!(
        again.expect(0).stdout().contains("already an etcd member"),
        "{}",
        again.stdout()
    );
    assert_eq!(
        std::fs::read_to_string(lab.node("master1", "etc/kubernetes/manifests/etcd.yaml")).unwrap(),
        before
    );
    assert_eq!(lab.members().len(), 4);

    // kindling serve hands the bootstrap machine its identity inside bootstrap.ign; the agent
    // reports its stages with it.
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let server = Server::start(lab.assets.path(), http_port, mcs_port);
    let token = lab.fetch_identity(&server, "bootstrap", "52-54-00-7e-01-00");
    let server_url = format!("http://127.0.0.1:{http_port}");

    // One master apiserver Ready is not enough: the bootstrap member stays.
    lab.set_ready_apiservers(&["master0"]);
    let mut agent = Killed(
        lab.bootstrap_agent_reporting(None, Some(&server_url))
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.count("remove-bootstrap-member", "start", "") == 0 {
        assert!(Instant::now() < deadline, "stage 4 never started");
        assert!(agent.0.try_wait().unwrap().is_none(), "{}", output(agent));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(agent.0.try_wait().unwrap().is_none());
    assert!(lab.members().iter().any(|(name, _)| name == "bootstrap"));
    assert!(
        !lab.node("bootstrap", "opt/kindling/remove-bootstrap-member.done")
            .exists()
    );

    lab.set_ready_apiservers(&["master0", "master1"]);
    let status = wait_exit(&mut agent, Duration::from_secs(90));
    let stderr = output(agent);
    assert!(status.success(), "{stderr}");
    lab.assert_handed_over();

    // The server has every record as an event of the bootstrap machine; no log has the token.
    let (status, machines) = server.admin_get("/api/v1/machines");
    assert_eq!(status, 200);
    let machines: serde_json::Value = serde_json::from_slice(&machines).unwrap();
    let bootstrap = machines["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bootstrap")
        .unwrap();
    assert_eq!(
        bootstrap["stage"],
        "agent bootstrap: stop-temporary-control-plane end",
        "{}",
        server.log()
    );
    let events = std::fs::read_to_string(lab.asset(".kindling/events.jsonl")).unwrap();
    assert!(events.contains("agent-version"), "{events}");
    assert!(events.contains("remove-bootstrap-member end"), "{events}");
    let records =
        std::fs::read_to_string(lab.node("bootstrap", "var/log/kindling/bootstrap.jsonl")).unwrap();
    for (what, text) in [
        ("records", &records),
        ("stderr", &stderr),
        ("events", &events),
    ] {
        assert!(!text.contains(&token), "the token is in the {what}");
    }

    // Every stage's start and end is a record; a second run skips them all.
    let records = lab.records();
    assert!(
        records
            .iter()
            .all(|r| r["timestamp"].is_string() && r["errorMessage"].is_string())
    );
    assert_eq!(lab.count("remove-bootstrap-member", "end", "done"), 1);
    let mut again = Killed(lab.bootstrap_agent(None).spawn().unwrap());
    assert!(wait_exit(&mut again, Duration::from_secs(30)).success());
    assert_eq!(lab.count("wait-apiserver", "end", "skipped"), 1);
    lab.assert_handed_over();
    // The removed bootstrap member shut itself down.
    let bootstrap = lab
        .etcds
        .iter_mut()
        .find(|(m, _)| m == "bootstrap")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bootstrap.1.child().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{}", bootstrap.1.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kill -9 at every stage, at both crash points (after a stage's work but before its marker, and
/// after its marker): each run resumes, and the end state is the same as without crashes.
#[test]
fn the_bootstrap_agent_killed_at_every_stage_resumes_to_the_same_end() {
    if skip_without_etcd() {
        return;
    }
    let mut lab = Lab::new(2);
    lab.boot_bootstrap();
    lab.join_masters_at_once();
    assert_eq!(lab.members().len(), 4);
    lab.set_ready_apiservers(&["master0", "master1", "master2"]);
    let stages = [
        "wait-apiserver",
        "apply-manifests",
        "wait-masters",
        "remove-bootstrap-member",
        "bootstrap-complete",
        "stop-temporary-control-plane",
    ];
    for (i, stage) in stages.iter().enumerate() {
        for var in [
            "KINDLING_AGENT_PAUSE_BEFORE_MARKER",
            "KINDLING_AGENT_PAUSE_AFTER",
        ] {
            let done_before = lab.count(stage, "end", "done");
            let marker = lab.node("bootstrap", &format!("opt/kindling/{stage}.done"));
            let mut agent = Killed(lab.bootstrap_agent(Some((var, stage))).spawn().unwrap());
            let deadline = Instant::now() + Duration::from_secs(90);
            let reached = || match var {
                "KINDLING_AGENT_PAUSE_AFTER" => marker.exists(),
                _ => lab.count(stage, "end", "done") > done_before,
            };
            while !reached() {
                if let Some(status) = agent.0.try_wait().unwrap() {
                    panic!(
                        "stage {i} {stage}: the agent exited ({status}) before the hook: {}",
                        output(agent)
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "stage {stage} with {var}: never reached"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            // Give a paused agent a moment to be sure it is asleep, then kill -9.
            std::thread::sleep(Duration::from_millis(300));
            agent.0.kill().unwrap();
            agent.0.wait().unwrap();
            if var == "KINDLING_AGENT_PAUSE_BEFORE_MARKER" {
                assert!(!marker.exists(), "{stage}: marker written before the hook");
            }
        }
    }
    // Each stage ran twice (its first run was killed before the marker), then was skipped.
    for stage in stages {
        assert_eq!(lab.count(stage, "end", "done"), 2, "{stage}");
    }
    let mut last = Killed(lab.bootstrap_agent(None).spawn().unwrap());
    let status = wait_exit(&mut last, Duration::from_secs(60));
    assert!(status.success(), "{}", output(last));
    lab.assert_handed_over();
}

/// Without a bootstrap machine, the first master founds the etcd cluster (join-master finds no
/// member and it is first in its pod's initial cluster), the others join it, and the bootstrap
/// stages run on it: nothing is removed, and its control plane stays.
#[test]
fn without_a_bootstrap_machine_the_first_master_founds_etcd_and_runs_the_stages() {
    if skip_without_etcd() {
        return;
    }
    let mut lab = Lab::with_inventory(3, without_bootstrap);
    assert!(!lab.asset("bootstrap.ign").exists());
    lab.join_master("master0");
    let pod = pod_command(&lab.node("master0", "etc/kubernetes/manifests/etcd.yaml"));
    assert!(
        pod.contains(&"--initial-cluster-state=new".to_string()),
        "{pod:?}"
    );
    assert!(
        pod.contains(&format!(
            "--initial-cluster=master0=https://{}:2380",
            lab.ip("master0")
        )),
        "{pod:?}"
    );
    lab.join_master("master1");
    lab.join_master("master2");

    lab.write_kubeconfig("master0");
    lab.set_ready_apiservers(&["master0", "master1"]);
    // The unit is in master0's own part of its config: only the first master has it.
    assert!(
        unit_contents(
            &lab.asset("ignition/machines/master1.ign"),
            "kindling-bootstrap.service"
        )
        .is_none()
    );
    let args = unit_args(
        &lab.asset("ignition/machines/master0.ign"),
        "kindling-bootstrap.service",
        &[
            (
                "--kubeconfig",
                lab.node("master0", "etc/kubernetes/admin.conf"),
            ),
            ("--api-server", lab.api_url.clone().into()),
            ("--manifests", lab.asset("manifests/cluster")),
            ("--state-dir", lab.node("master0", "opt/kindling")),
            ("--log-dir", lab.node("master0", "var/log/kindling")),
            (
                "--static-pods-dir",
                lab.node("master0", "etc/kubernetes/manifests"),
            ),
            (
                "--identity-file",
                lab.node("master0", "etc/kindling/identity"),
            ),
            ("--stage-timeout", "60".into()),
        ],
        &lab.etcd_tls(),
    );
    assert!(!args.iter().any(|a| a == "--bootstrap-member"), "{args:?}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
    command.args(&args);
    let out = command
        .env_remove("KINDLING_AGENT_PAUSE_AFTER")
        .env_remove("KINDLING_AGENT_PAUSE_BEFORE_MARKER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let members = lab.members();
    assert_eq!(
        members,
        MASTERS
            .map(|m| (m.to_string(), format!("https://{}:2380", lab.ip(m))))
            .to_vec()
    );
    let record = lab.bootstrap_record();
    assert_eq!(record["data"]["status"], "complete");
    assert_eq!(record["data"]["bootstrapMemberRemoved"], "true");
    // Its etcd is the real one: still in the static pods directory.
    assert!(
        lab.node("master0", "etc/kubernetes/manifests/etcd.yaml")
            .exists()
    );
    let marker = std::fs::read_to_string(
        lab.node("master0", "opt/kindling/stop-temporary-control-plane.done"),
    )
    .unwrap();
    assert!(marker.contains("the real one"), "{marker}");
}

/// Replacing a failed master, the documented procedure (README, "Replacing a failed master"),
/// with real etcd: with one master's etcd dead, removing a healthy one is refused (its quorum
/// would be lost); the dead one is removed (its member, its Node, its lines of inventory.yaml),
/// and the same name with a new MAC joins again as a new member.
#[test]
fn a_failed_master_is_replaced_and_etcd_keeps_its_quorum() {
    if skip_without_etcd() {
        return;
    }
    let mut lab = Lab::with_inventory(4, without_bootstrap);
    for m in MASTERS {
        lab.join_master(m);
    }
    for m in MASTERS {
        lab.api.put_node(m, true);
    }
    lab.write_kubeconfig("master0");
    let kubeconfig = lab.node("master0", "etc/kubernetes/admin.conf");
    let dir = lab.assets.path().to_path_buf();
    let remove = |name: &str, extra: &[&str]| {
        let mut args = vec!["remove", "machine", name, "--poll", "1", "--dir"];
        let (dir, kubeconfig) = (dir.to_str().unwrap(), kubeconfig.to_str().unwrap());
        args.extend([dir, "--kubeconfig", kubeconfig]);
        args.extend(extra);
        kindling(&args)
    };

    // master2's machine dies.
    let at = lab.etcds.iter().position(|(m, _)| m == "master2").unwrap();
    drop(lab.etcds.remove(at));
    lab.api.put_node("master2", false);

    // Removing a healthy master now would leave two members with one healthy: refused, even
    // with --force (which is only about install-config's replicas).
    let run = remove("master1", &[]);
    run.expect(2);
    assert!(
        run.stderr().contains("controlPlane.replicas is 3"),
        "{}",
        run.stderr()
    );
    let run = remove("master1", &["--force"]);
    run.expect(2);
    assert!(
        run.stderr().contains("below their quorum of 2"),
        "{}",
        run.stderr()
    );
    assert_eq!(lab.members().len(), 3, "nothing removed");
    std::fs::remove_file(dir.join(".kindling/fleet/remove-master1.json")).unwrap();
    assert!(lab.api.get("v1", "Node", None, "master1").is_some());

    // The dead one goes: its member, its Node, its lines of the inventory.
    let run = remove("master2", &["--force"]);
    run.expect(0);
    assert!(
        run.stdout()
            .contains("master2: etcd member removed; 2 member(s) left"),
        "{}",
        run.stdout()
    );
    let members = lab.members();
    assert_eq!(
        members.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["master0", "master1"]
    );
    assert!(lab.api.get("v1", "Node", None, "master2").is_none());
    let inventory = std::fs::read_to_string(dir.join("inventory.yaml")).unwrap();
    assert!(!inventory.contains("master2"), "{inventory}");
    assert!(
        run.stdout()
            .contains("inventory.yaml needs its replacement now"),
        "{}",
        run.stdout()
    );

    // Its replacement: the same name and address, a new MAC, a new disk.
    let replacement = format!(
        "  - name: master2\n    role: master\n    mac: \"52:54:00:7e:09:12\"\n    ip: {}\n",
        lab.ip("master2")
    );
    let at = inventory.find("  - name: worker0").unwrap();
    let mut with = inventory.clone();
    with.insert_str(at, &replacement);
    std::fs::write(dir.join("inventory.yaml"), with).unwrap();
    kindling(&["create", "ignition-configs", "--dir", dir.to_str().unwrap()]).expect(0);
    std::fs::remove_dir_all(lab.node("master2", "")).unwrap();
    lab.join_master("master2");
    lab.assert_masters_are_the_members();
}

/// `kindling update` of the master pool, with real etcd: no master starts while a member is not
/// healthy, and then they go one at a time (their node agents played here, on the fake API).
#[test]
fn masters_are_updated_one_at_a_time_with_etcd_healthy() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if skip_without_etcd() {
        return;
    }
    let mut lab = Lab::with_inventory(5, without_bootstrap);
    for m in MASTERS {
        lab.join_master(m);
    }
    let dir = lab.assets.path().to_path_buf();
    let target = |dir: &Path| {
        let pool: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("ignition/pools/master.json")).unwrap())
                .unwrap();
        pool["target"].as_str().unwrap().to_string()
    };
    let old = target(&dir);
    for m in MASTERS {
        let mut node = lab.api.put_node(m, true);
        node["metadata"]["annotations"] = serde_json::json!({
            "kindling.dev/current-rendering": old, "kindling.dev/state": "Done",
        });
        lab.api.put(node);
    }
    std::fs::create_dir_all(dir.join("snippets/master")).unwrap();
    std::fs::write(
        dir.join("snippets/master/motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/m\n      contents:\n        inline: m\n",
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", dir.to_str().unwrap()]).expect(0);
    let new = target(&dir);
    assert_ne!(new, old);

    // The masters' node agents: told a rendering, they run it.
    let (peak, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (api, agents_peak, agents_stop) = (lab.api.clone(), peak.clone(), stop.clone());
    let agents = std::thread::spawn(move || {
        while !agents_stop.load(Ordering::SeqCst) {
            let nodes = api.list("v1", "Node");
            let cordoned = nodes
                .iter()
                .filter(|n| n["spec"]["unschedulable"] == true)
                .count();
            agents_peak.fetch_max(cordoned, Ordering::SeqCst);
            for mut node in nodes {
                let annotations = &node["metadata"]["annotations"];
                let desired = annotations["kindling.dev/desired-rendering"].clone();
                if desired.is_string() && desired != annotations["kindling.dev/current-rendering"] {
                    node["metadata"]["annotations"]["kindling.dev/current-rendering"] = desired;
                    api.put(node);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    lab.write_kubeconfig("master0");
    let kubeconfig = lab.node("master0", "etc/kubernetes/admin.conf");
    let update = |extra: &[&str]| {
        let mut args = vec!["update", "--pool", "master", "--poll", "1", "--dir"];
        let (dir, kubeconfig) = (dir.to_str().unwrap(), kubeconfig.to_str().unwrap());
        args.extend([dir, "--kubeconfig", kubeconfig]);
        args.extend(extra);
        kindling(&args)
    };

    // master2's etcd is down: no master starts.
    let at = lab.etcds.iter().position(|(m, _)| m == "master2").unwrap();
    drop(lab.etcds.remove(at));
    let run = update(&["--stop-outside-window"]);
    run.expect(0);
    assert!(
        run.stdout().contains("etcd is not healthy"),
        "{}",
        run.stdout()
    );
    assert_eq!(peak.load(Ordering::SeqCst), 0, "no master was cordoned");

    // It is back: the masters go, one at a time.
    let pod = lab.node("master2", "etc/kubernetes/manifests/etcd.yaml");
    lab.start_etcd("master2", &pod);
    let run = update(&[]);
    run.expect(0);
    assert!(
        run.stdout().contains(&format!("every machine runs {new}")),
        "{}",
        run.stdout()
    );
    stop.store(true, Ordering::SeqCst);
    agents.join().unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one master at a time");
    for m in MASTERS {
        let node = lab.api.get("v1", "Node", None, m).unwrap();
        assert_eq!(
            node["metadata"]["annotations"]["kindling.dev/current-rendering"],
            new.as_str()
        );
    }
}
