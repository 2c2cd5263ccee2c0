//! kindling's identities, RBAC and join flow against a real control plane: Debian's etcd and
//! Kubernetes 1.20.2 built from Debian's source (tests/k8s/binaries.sh), started from the files
//! the real Ignition put on the machines from `kindling serve`, in a network namespace holding
//! the site's addresses (a [`Lab`]). What the harness changes to run 1.20 here is the list in
//! kindling-testkit's kube/mapping.rs, printed by each test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kindling_testkit::Proto;
use kindling_testkit::kube::{
    Binaries, ControlPlane, Node, Process, READY, Site, eventually, mapping, unit_command,
};

use crate::ignition_configs::demo_on_loopback;
use crate::ignition_runner::{self, Applied};
use crate::kindling;

/// inventory.yaml with worker0 labelled and tainted: one label the kubelet may set on itself,
/// one only kindling may set (a node-role), and a taint.
fn labelled_worker0(text: &str) -> String {
    let labelled = text.replace(
        "    ip: 192.168.126.120\n",
        &format!("    ip: 192.168.126.120\n{WORKER0_EXTRA}"),
    );
    assert_ne!(labelled, text);
    labelled
}

const WORKER0_EXTRA: &str = "    labels:\n      topology.kubernetes.io/zone: rack1\n      \
                             node-role.kubernetes.io/storage: \"\"\n    taints:\n      \
                             - dedicated=storage:NoSchedule\n";

/// What a lab's asset directory holds before `create ignition-configs`.
pub struct Setup<'a> {
    /// A mirror with what a real node runs (the kubelet, the CNI plugins, the pause image).
    pub real_nodes: bool,
    /// The control-plane images, built from the Kubernetes binaries (they need `real_nodes`).
    pub control_plane_images: bool,
    /// inventory.yaml, changed.
    pub inventory: &'a dyn Fn(&str) -> String,
    /// install-config.yaml, changed.
    pub install_config: &'a dyn Fn(&str) -> String,
    /// More `kindling serve` arguments.
    pub serve_args: &'a [&'a str],
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            real_nodes: false,
            control_plane_images: false,
            inventory: &|text| text.to_string(),
            install_config: &|text| text.to_string(),
            serve_args: &[],
        }
    }
}

/// A cluster's asset directory (its configs made) and `kindling serve` in a site of its own.
pub struct Lab {
    // Dropped first: the processes, then the namespace, then the files.
    serve: Process,
    pub site: Site,
    pub bins: Binaries,
    pub dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    pub http: SocketAddr,
}

impl Lab {
    /// The demo cluster, changed as `setup` says; `None` (and a printed skip) without the
    /// Kubernetes binaries.
    pub fn start(test: &str, setup: &Setup<'_>) -> Option<Lab> {
        let bins = Binaries::find(test)?;
        let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
        let dir = demo_on_loopback(http_port, mcs_port);
        let d = dir.path();
        for (file, edit) in [
            ("inventory.yaml", setup.inventory),
            ("install-config.yaml", setup.install_config),
        ] {
            let text = std::fs::read_to_string(d.join(file)).unwrap();
            std::fs::write(d.join(file), edit(&text)).unwrap();
        }
        let version = kindling_config::inventory::DEFAULT_KUBERNETES_VERSION;
        let images = kindling_assets::manifests::Images::for_version(version);
        if setup.real_nodes {
            kindling_testkit::kube::seed_mirror(d, version, &bins, &images.pause);
        }
        if setup.control_plane_images {
            kindling_testkit::kube::seed_control_plane_images(
                d,
                &bins,
                &[
                    (&images.kube_apiserver, "kube-apiserver"),
                    (&images.kube_controller_manager, "kube-controller-manager"),
                    (&images.kube_scheduler, "kube-scheduler"),
                    (&images.etcd, "etcd"),
                ],
            );
        }
        kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
        let description = kindling_config::ClusterDescription::load(d)
            .unwrap()
            .description;
        let site = Site::for_cluster(&description);
        // $KINDLING_TEST_LOGS keeps every process's log after the test, for a look at a failure.
        let logs = match std::env::var_os("KINDLING_TEST_LOGS") {
            Some(dir) => {
                std::fs::create_dir_all(&dir).unwrap();
                tempfile::Builder::new()
                    .prefix(&format!("{test}-"))
                    .disable_cleanup(true)
                    .tempdir_in(dir)
                    .unwrap()
            }
            None => tempfile::tempdir().unwrap(),
        };

        // kindling serve on the site's loopback, where the description puts it.
        let http = SocketAddr::from(([127, 0, 0, 1], http_port));
        let mcs = SocketAddr::from(([127, 0, 0, 1], mcs_port));
        let mut command = site.command(env!("CARGO_BIN_EXE_kindling"));
        command.args(["serve", "--dir"]).arg(d).args([
            "--http",
            &http.to_string(),
            "--mcs",
            &mcs.to_string(),
        ]);
        command.args(setup.serve_args);
        let mut serve = Process::spawn("kindling serve", command, &logs.path().join("serve.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let healthz = format!("http://{http}/healthz");
        serve
            .daemon()
            .wait_listening(&[(http, Proto::Tcp), (mcs, Proto::Tcp)], READY, |_| {
                site.answers(&healthz)
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Some(Lab {
            serve,
            site,
            bins,
            dir,
            logs,
            http,
        })
    }

    /// `kindling serve`'s last log lines.
    pub fn serve_log(&self) -> String {
        self.serve.log()
    }

    /// A kindling command inside the site.
    pub fn kindling(&self, args: &[&str]) -> Output {
        self.site
            .command(env!("CARGO_BIN_EXE_kindling"))
            .args(args)
            .output()
            .unwrap()
    }

    /// A `kindling agent` as the unit `unit` on the machine with root `root` starts it.
    pub fn agent(&self, root: &Path, unit: &str, component: mapping::Component) -> Process {
        let command = unit_command(root, unit);
        let root_text = root.display().to_string();
        let args = mapping::flags(component, &command[1..], &root_text);
        let mut cmd = self.site.command(format!("{root_text}{}", command[0]));
        cmd.args(&args);
        let log = self.logs.path().join(format!("{unit}.log"));
        Process::spawn(unit, cmd, &log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// GETs `url` inside the site; panics unless it answers 2xx.
    pub fn get(&self, url: &str) -> Vec<u8> {
        let out = self
            .site
            .command("curl")
            .args(["-fsS", "--max-time", "30", url])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {url}: {}", text(&out));
        out.stdout
    }

    /// The machine with `mac` (hyphenated) as it installs: the config its iPXE script names,
    /// from `kindling serve`, applied by the real Ignition inside the site.
    pub fn install(&self, mac: &str) -> Applied {
        let script =
            String::from_utf8(self.get(&format!("http://{}/ipxe?mac={mac}", self.http))).unwrap();
        let url = script
            .split_whitespace()
            .find_map(|a| a.strip_prefix("coreos.inst.ignition_url="))
            .unwrap_or_else(|| panic!("no Ignition URL in {script}"));
        let pointer = self.logs.path().join(format!("{mac}.ign"));
        std::fs::write(&pointer, self.get(url)).unwrap();
        ignition_runner::apply_in(
            &ignition_runner::Runner::debian(),
            &pointer,
            &self.site.wrapper(),
        )
        .unwrap_or_else(|log| panic!("{mac}'s config failed:\n{log}"))
    }

    /// A file of the asset directory.
    pub fn asset(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// kubectl 1.20 inside the site, with `kubeconfig`.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.site
            .command(self.bins.path("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .unwrap()
    }

    /// kubectl as the cluster's admin (`auth/kubeconfig`); panics with its output on failure.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.kubectl(&self.asset("auth/kubeconfig"), args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A lab whose bootstrap machine has installed (its root as the real Ignition wrote it) and runs
/// its control plane.
pub struct Cluster {
    // Dropped first: the control plane, then the machine's files, then the lab.
    _control_plane: ControlPlane,
    pub bootstrap: Applied,
    pub lab: Lab,
}

impl std::ops::Deref for Cluster {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Cluster {
    /// The demo cluster's bootstrap control plane, or `None` (and a printed skip) without the
    /// Kubernetes binaries.
    pub fn start(test: &str) -> Option<Cluster> {
        Cluster::start_with(test, &Setup::default())
    }

    /// [`Cluster::start`] in a lab made as `setup` says.
    pub fn start_with(test: &str, setup: &Setup<'_>) -> Option<Cluster> {
        let lab = Lab::start(test, setup)?;
        // The bootstrap machine: bootstrap.ign by the real Ignition, fetching from serve.
        let bootstrap = ignition_runner::apply_in(
            &ignition_runner::Runner::debian(),
            &lab.asset("bootstrap.ign"),
            &lab.site.wrapper(),
        )
        .unwrap_or_else(|log| panic!("bootstrap.ign failed:\n{log}"));
        let control_plane =
            ControlPlane::start(&lab.site, &bootstrap.root(), &lab.bins, lab.logs.path())
                .unwrap_or_else(|e| panic!("{e}"));
        Some(Cluster {
            _control_plane: control_plane,
            bootstrap,
            lab,
        })
    }

    /// Starts the bootstrap machine's `kindling agent bootstrap`, as its unit starts it.
    pub fn bootstrap_agent(&self) -> Process {
        self.agent(
            &self.bootstrap.root(),
            "kindling-bootstrap.service",
            mapping::Component::BootstrapAgent,
        )
    }

    /// Runs the bootstrap agent until its stage `stage` is done; then stops it.
    pub fn bootstrap_agent_until(&self, stage: &str) {
        let mut agent = self.bootstrap_agent();
        let marker = self
            .bootstrap
            .root()
            .join(format!("opt/kindling/{stage}.done"));
        agent
            .daemon()
            .wait_ready(&format!("done with {stage}"), READY, |_| marker.exists())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Who the apiserver says `kubeconfig` is. 1.20 has no `kubectl auth whoami`: a request the
/// identity may not make is refused with the user's name in the reason.
fn user_of(cluster: &Lab, kubeconfig: &Path) -> String {
    let out = cluster.kubectl(
        kubeconfig,
        &["create", "namespace", "kindling-whoami", "--dry-run=server"],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{}: {said}", kubeconfig.display());
    said.split("User \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{}: no user in {said}", kubeconfig.display()))
        .to_string()
}

fn can_i(cluster: &Lab, kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    let out = cluster.kubectl(kubeconfig, &all);
    // "yes", or "no" with the authorizer's reason after it.
    match String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
    {
        Some("yes") => true,
        Some("no") => false,
        _ => panic!("kubectl auth can-i {args:?}: {}", text(&out)),
    }
}

#[test]
fn a_real_apiserver_serves_kindlings_certificate_and_each_kubeconfig_is_who_kindling_meant() {
    let Some(cluster) = Cluster::start(
        "a_real_apiserver_serves_kindlings_certificate_and_each_kubeconfig_is_who_kindling_meant",
    ) else {
        return;
    };
    let admin = cluster.asset("auth/kubeconfig");
    let root = cluster.bootstrap.root();

    // The admin kubeconfig names https://api.<domain>:6443; the apiserver's certificate holds
    // that name, api-int's, the VIP, the bootstrap machine's own address, and loopback.
    let version = cluster.admin(&["get", "--raw", "/version"]);
    assert!(version.contains("\"gitVersion\": \"v1.20.2\""), "{version}");
    for server in [
        "https://api-int.demo.example.localdomain:6443",
        "https://192.168.126.10:6443",
        "https://192.168.126.100:6443",
        "https://bootstrap.demo.example.localdomain:6443",
        "https://127.0.0.1:6443",
    ] {
        let server_arg = format!("--server={server}");
        cluster.admin(&[&server_arg, "get", "--raw", "/readyz"]);
    }
    // ... and no other machine's: master0's address reaches the same apiserver here, but the
    // bootstrap machine's certificate does not name it.
    let out = cluster.kubectl(
        &admin,
        &[
            "--server=https://192.168.126.110:6443",
            "get",
            "--raw",
            "/readyz",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("certificate is valid for"),
        "{}",
        text(&out)
    );

    // Each kubeconfig authenticates as the identity kindling meant.
    assert!(
        can_i(&cluster, &admin, &["*", "*"]),
        "the admin is in system:masters"
    );
    let bootstrap_admin = root.join("etc/kubernetes/admin.conf");
    assert!(can_i(&cluster, &bootstrap_admin, &["*", "*"]));
    for (kubeconfig, user) in [
        (
            root.join("etc/kubernetes/controller-manager.conf"),
            "system:kube-controller-manager",
        ),
        (
            root.join("etc/kubernetes/scheduler.conf"),
            "system:kube-scheduler",
        ),
    ] {
        assert_eq!(
            user_of(&cluster, &kubeconfig),
            user,
            "{}",
            kubeconfig.display()
        );
        assert!(!can_i(&cluster, &kubeconfig, &["*", "*"]));
    }
}

#[test]
fn the_bootstrap_token_may_ask_for_a_certificate_and_nothing_else() {
    let Some(cluster) =
        Cluster::start("the_bootstrap_token_may_ask_for_a_certificate_and_nothing_else")
    else {
        return;
    };
    // The bootstrap agent applies kindling's RBAC and the token's Secret, as on a machine.
    cluster.bootstrap_agent_until("apply-manifests");
    let token = cluster.asset("auth/kubelet-bootstrap.kubeconfig");
    let id = std::fs::read_to_string(cluster.asset("auth/bootstrap-token")).unwrap();
    let id = id.trim().split('.').next().unwrap().to_string();
    assert_eq!(user_of(&cluster, &token), format!("system:bootstrap:{id}"));
    assert!(can_i(
        &cluster,
        &token,
        &["create", "certificatesigningrequests.certificates.k8s.io"]
    ));
    assert!(can_i(
        &cluster,
        &token,
        &["get", "certificatesigningrequests.certificates.k8s.io"]
    ));
    for denied in [
        &["get", "nodes"][..],
        &["list", "secrets", "-n", "kube-system"],
        &["create", "pods"],
        &["get", "configmaps", "-n", "kube-system"],
        &[
            "update",
            "certificatesigningrequests.certificates.k8s.io/approval",
        ],
        &["*", "*"],
    ] {
        assert!(
            !can_i(&cluster, &token, denied),
            "the bootstrap token may {denied:?}"
        );
    }
}

/// A pod on worker0 from one of the mirror's images (busybox under every name the cluster
/// pulls): it says hello, then waits.
const HELLO_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: default
spec:
  nodeName: worker0
  tolerations:
  - key: dedicated
    operator: Equal
    value: storage
    effect: NoSchedule
  containers:
  - name: hello
    image: IMAGE
    command: ["/bin/sh", "-c", "echo hello from worker0; exec sleep 3600"]
"#;

/// A static pod the kubelet runs from its manifest directory, as it runs the control plane's.
const STATIC_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: static-hello
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: hello
    image: IMAGE
    command: ["/bin/sh", "-c", "exec sleep 3600"]
"#;

pub fn jsonpath(cluster: &Lab, args: &[&str], path: &str) -> String {
    let jp = format!("-o=jsonpath={path}");
    let mut all = args.to_vec();
    all.push(&jp);
    let out = cluster.kubectl(&cluster.asset("auth/kubeconfig"), &all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_real_kubelet_joins_through_approve_csrs_gets_its_labels_and_runs_pods() {
    let Some(cluster) = Cluster::start_with(
        "a_real_kubelet_joins_through_approve_csrs_gets_its_labels_and_runs_pods",
        &Setup {
            real_nodes: true,
            inventory: &labelled_worker0,
            ..Setup::default()
        },
    ) else {
        return;
    };
    cluster.bootstrap_agent_until("apply-manifests");
    let d = cluster.dir.path();
    let image = kindling_assets::manifests::Images::for_version(
        kindling_config::inventory::DEFAULT_KUBERNETES_VERSION,
    )
    .coredns;

    // worker0 installs from kindling serve and starts its containerd and kubelet.
    let worker = cluster.install("52-54-00-7e-01-20");
    let root = worker.root();
    let node = Node::start(&cluster.site, "worker0", &root, cluster.logs.path())
        .unwrap_or_else(|e| panic!("{e}"));

    // Its client CSR waits for kindling: nothing else approves it.
    eventually("worker0's client CSR", READY, || {
        let csrs = jsonpath(&cluster, &["get", "csr"], "{.items[*].spec.username}");
        csrs.contains("system:bootstrap:")
            .then_some(())
            .ok_or(format!("CSRs by {csrs:?}\n{}", node.kubelet_log()))
    });
    assert!(
        jsonpath(&cluster, &["get", "nodes"], "{.items[*].metadata.name}").is_empty(),
        "no Node before kindling approves"
    );

    let mut command = cluster.site.command(env!("CARGO_BIN_EXE_kindling"));
    command.args(["approve-csrs", "--watch", "--dir"]).arg(d);
    let approver = Process::spawn(
        "kindling approve-csrs --watch",
        command,
        &cluster.logs.path().join("approve-csrs.log"),
    )
    .unwrap();
    eventually("worker0 Ready", Duration::from_secs(180), || {
        let ready = jsonpath(
            &cluster,
            &["get", "node", "worker0"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready == "True").then_some(()).ok_or(format!(
            "Ready={ready:?}\n--- kubelet ---\n{}\n--- approve-csrs ---\n{}",
            node.kubelet_log(),
            approver.log()
        ))
    });

    // Both of its CSRs were approved by kindling and issued by the controller manager. (The
    // kubelet asks for its serving certificate once it has registered, so that one may come
    // after the Node is Ready.)
    eventually("both of worker0's CSRs approved", READY, || {
        let csrs = cluster.admin(&[
            "get",
            "csr",
            "-o=jsonpath={range .items[*]}{.spec.signerName} {.status.conditions[0].type} {.status.conditions[0].reason}{\"\\n\"}{end}",
        ]);
        [
            "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving",
        ]
        .iter()
        .all(|signer| {
            csrs.lines()
                .any(|l| l == format!("{signer} Approved KindlingInventoryMatch"))
        })
        .then_some(())
        .ok_or(format!("{csrs}\n--- approve-csrs ---\n{}", approver.log()))
    });

    // kindling's labels (the ones a kubelet may not set on itself too) and taint.
    eventually("worker0's labels", READY, || {
        let labels = jsonpath(&cluster, &["get", "node", "worker0"], "{.metadata.labels}");
        [
            "node-role.kubernetes.io/worker",
            "node-role.kubernetes.io/storage",
            "\"topology.kubernetes.io/zone\":\"rack1\"",
        ]
        .iter()
        .all(|l| labels.contains(l))
        .then_some(())
        .ok_or(labels)
    });
    let taints = jsonpath(&cluster, &["get", "node", "worker0"], "{.spec.taints}");
    assert!(
        taints.contains("\"key\":\"dedicated\"") && taints.contains("NoSchedule"),
        "{taints}"
    );

    // A pod runs with an image containerd pulled from kindling serve's registry; logs and exec
    // reach it through the kubelet's serving certificate, which kindling's CA check accepts.
    let pod = cluster.logs.path().join("hello.yaml");
    std::fs::write(&pod, HELLO_POD.replace("IMAGE", &image)).unwrap();
    cluster.admin(&["apply", "-f", pod.to_str().unwrap()]);
    eventually("the hello pod Running", Duration::from_secs(120), || {
        let phase = jsonpath(&cluster, &["get", "pod", "hello"], "{.status.phase}");
        (phase == "Running").then_some(()).ok_or(format!(
            "phase {phase:?}: {}\n--- kubelet ---\n{}",
            cluster.admin(&["describe", "pod", "hello"]),
            node.kubelet_log()
        ))
    });
    eventually("kubectl logs", READY, || {
        let out = cluster.kubectl(&cluster.asset("auth/kubeconfig"), &["logs", "hello"]);
        text(&out)
            .contains("hello from worker0")
            .then_some(())
            .ok_or(text(&out))
    });
    let exec = cluster.admin(&[
        "exec",
        "hello",
        "--",
        "/bin/sh",
        "-c",
        "echo exec on $(hostname)",
    ]);
    assert_eq!(exec.trim(), "exec on hello");
    let events = std::fs::read_to_string(d.join(".kindling/events.jsonl")).unwrap();
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"images\"") && l.contains("worker0")),
        "kindling serve's registry saw no pull by worker0: {events}"
    );

    // A static pod from the kubelet's manifest directory runs, and its mirror pod shows it.
    std::fs::write(
        root.join("etc/kubernetes/manifests/static-hello.yaml"),
        STATIC_POD.replace("IMAGE", &image),
    )
    .unwrap();
    eventually(
        "the static pod's mirror pod Running",
        Duration::from_secs(120),
        || {
            let phase = jsonpath(
                &cluster,
                &["get", "pod", "-n", "kube-system", "static-hello-worker0"],
                "{.status.phase}",
            );
            (phase == "Running").then_some(()).ok_or(phase)
        },
    );

    // The node's own identity: system:node:worker0, held to its own Node by NodeRestriction,
    // which is why kindling, not the kubelet, sets node-role labels.
    let kubelet_conf = root.join("etc/kubernetes/kubelet.conf");
    assert_eq!(user_of(&cluster, &kubelet_conf), "system:node:worker0");
    let out = cluster.kubectl(
        &kubelet_conf,
        &[
            "label",
            "node",
            "worker0",
            "node-role.kubernetes.io/storage-",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("is not allowed to modify labels"),
        "{}",
        text(&out)
    );
    assert!(!can_i(
        &cluster,
        &kubelet_conf,
        &["list", "secrets", "-n", "kube-system"]
    ));
    assert!(can_i(&cluster, &kubelet_conf, &["get", "nodes"]));
    drop(approver);
    drop(node);
}

#[test]
fn serve_approves_an_inventory_kubelet_and_leaves_an_unknown_one_pending() {
    let Some(cluster) = Cluster::start_with(
        "serve_approves_an_inventory_kubelet_and_leaves_an_unknown_one_pending",
        &Setup {
            real_nodes: true,
            inventory: &labelled_worker0,
            serve_args: &["--approve-csrs"],
            ..Setup::default()
        },
    ) else {
        return;
    };
    cluster.bootstrap_agent_until("apply-manifests");

    // A machine that is not in the inventory, with the bootstrap token (copied from worker1's
    // config): its kubelet asks, and kindling leaves it asking.
    let stolen = cluster.install("52-54-00-7e-01-21");
    let root = stolen.root();
    let env = root.join("etc/kubernetes/kubelet.env");
    let text = std::fs::read_to_string(&env).unwrap();
    let intruder = text.replace(
        "--hostname-override=worker1 --node-ip=192.168.126.121",
        "--hostname-override=intruder --node-ip=192.168.126.121",
    );
    assert_ne!(intruder, text);
    std::fs::write(&env, intruder).unwrap();
    let node = Node::start(&cluster.site, "intruder", &root, cluster.logs.path())
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("serve's word on the intruder's CSR", READY, || {
        let log = cluster.serve_log();
        log.contains("left CSR").then_some(()).ok_or(format!(
            "--- serve ---\n{log}\n--- kubelet ---\n{}",
            node.kubelet_log()
        ))
    });
    assert!(
        cluster.serve_log().contains("intruder"),
        "{}",
        cluster.serve_log()
    );
    let conditions = jsonpath(&cluster, &["get", "csr"], "{.items[*].status.conditions}");
    assert!(
        conditions.is_empty(),
        "the intruder's CSR was decided: {conditions}"
    );
    assert!(jsonpath(&cluster, &["get", "nodes"], "{.items[*].metadata.name}").is_empty());
    drop(node);

    // worker0, which is in the inventory, joins with no one but kindling serve approving.
    let worker = cluster.install("52-54-00-7e-01-20");
    let node = Node::start(
        &cluster.site,
        "worker0",
        &worker.root(),
        cluster.logs.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "worker0 Ready with its labels",
        Duration::from_secs(180),
        || {
            let ready = jsonpath(
                &cluster,
                &["get", "node", "worker0"],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            let labels = jsonpath(&cluster, &["get", "node", "worker0"], "{.metadata.labels}");
            (ready == "True" && labels.contains("node-role.kubernetes.io/storage"))
                .then_some(())
                .ok_or(format!(
                    "Ready={ready:?} labels {labels}\n--- kubelet ---\n{}\n--- serve ---\n{}",
                    node.kubelet_log(),
                    cluster.serve_log()
                ))
        },
    );
    let csrs = cluster.admin(&[
        "get",
        "csr",
        "-o=jsonpath={range .items[*]}{.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}",
    ]);
    assert!(
        csrs.lines()
            .any(|l| l.starts_with("system:bootstrap:") && !l.contains("Approved")),
        "the intruder's CSR is still pending: {csrs}"
    );
    assert!(
        csrs.lines().any(|l| l == "system:node:worker0 Approved"),
        "worker0's serving CSR: {csrs}"
    );
    let token = std::fs::read_to_string(cluster.asset("auth/bootstrap-token")).unwrap();
    assert!(
        !cluster.serve_log().contains(token.trim()),
        "the bootstrap token was logged"
    );
}

#[test]
fn the_bootstrap_agent_labels_a_master_as_it_registers() {
    let Some(cluster) = Cluster::start_with(
        "the_bootstrap_agent_labels_a_master_as_it_registers",
        &Setup {
            real_nodes: true,
            ..Setup::default()
        },
    ) else {
        return;
    };
    // The agent as the bootstrap machine runs it; it waits for the masters from here on.
    let agent = cluster.bootstrap_agent();
    let master = cluster.install("52-54-00-7e-01-10");
    let node = Node::start(
        &cluster.site,
        "master0",
        &master.root(),
        cluster.logs.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Its CSRs approved by hand, as a user without kindling's approver would: the labels then
    // come from the agent alone.
    eventually("master0 registered", Duration::from_secs(180), || {
        let pending = jsonpath(
            &cluster,
            &["get", "csr"],
            "{range .items[?(@.status.conditions)]}{end}{.items[*].metadata.name}",
        );
        for csr in pending.split_whitespace() {
            let _ = cluster.kubectl(
                &cluster.asset("auth/kubeconfig"),
                &["certificate", "approve", csr],
            );
        }
        let nodes = jsonpath(&cluster, &["get", "nodes"], "{.items[*].metadata.name}");
        (nodes == "master0").then_some(()).ok_or(format!(
            "nodes {nodes:?}\n--- kubelet ---\n{}",
            node.kubelet_log()
        ))
    });
    eventually(
        "master0's role label from the agent",
        Duration::from_secs(60),
        || {
            let labels = jsonpath(&cluster, &["get", "node", "master0"], "{.metadata.labels}");
            labels
                .contains("node-role.kubernetes.io/control-plane")
                .then_some(())
                .ok_or(format!("{labels}\n--- agent ---\n{}", agent.log()))
        },
    );
    let managers = jsonpath(
        &cluster,
        &["get", "node", "master0"],
        "{.metadata.managedFields[*].manager}",
    );
    assert!(managers.contains("kindling-labels"), "{managers}");
    let taints = jsonpath(&cluster, &["get", "node", "master0"], "{.spec.taints}");
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );
    assert!(
        agent.log().contains("node master0: labelled"),
        "{}",
        agent.log()
    );
}

#[test]
fn gather_collects_the_real_clusters_state_and_no_secret() {
    let Some(cluster) = Cluster::start("gather_collects_the_real_clusters_state_and_no_secret")
    else {
        return;
    };
    // The cluster's RBAC, the token's Secret and the bootstrap record, as the agent writes them.
    cluster.bootstrap_agent_until("apply-manifests");
    let d = cluster.dir.path();
    let token = std::fs::read_to_string(d.join("auth/bootstrap-token")).unwrap();
    let secret = token.trim().split_once('.').unwrap().1.to_string();
    // Events a machine could have sent with secrets in them: a token in a URL, the bootstrap
    // token in an error.
    let events = d.join(".kindling/events.jsonl");
    let mut log = std::fs::read_to_string(&events).unwrap_or_default();
    for line in [
        serde_json::json!({"time": "2026-11-26T04:00:00Z", "machine": "master0", "stage": "ipxe", "status": 200,
               "detail": "GET /ipxe?mac=52:54:00:7e:01:10&token=deadbeef"}),
        serde_json::json!({"time": "2026-11-26T04:01:00Z", "machine": "master0", "stage": "agent-version", "detail": "0.1.0"}),
        serde_json::json!({"time": "2026-11-26T04:02:00Z", "machine": "master0", "stage": "join-master",
               "detail": format!("failed: kubelet said {}", token.trim())}),
    ] {
        log.push_str(&format!("{line}\n"));
    }
    std::fs::write(&events, log).unwrap();

    let output = cluster.logs.path().join("debug.tar.gz");
    let run = cluster.kindling(&[
        "gather",
        "--dir",
        d.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&output)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for expected in [
        "events.jsonl",
        "agent-stages.jsonl",
        "versions.json",
        "description/inventory.yaml",
        "description/cluster.json",
        "description/metadata.json",
        "cluster/version.json",
        "cluster/nodes.json",
        "cluster/csrs.json",
        "cluster/kube-system-pods.json",
        "cluster/bootstrap-configmap.json",
        "gather.txt",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(&format!("/{expected}"))),
            "{expected} missing from:\n{listing}"
        );
    }
    assert!(
        !listing.contains("tls/") && !listing.contains("auth/") && !listing.contains(".ign"),
        "{listing}"
    );
    let contents = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(&output)
        .output()
        .unwrap();
    let contents = String::from_utf8_lossy(&contents.stdout);
    assert!(
        !contents.contains("PRIVATE KEY"),
        "a private key was gathered"
    );
    assert!(
        !contents.contains(&secret),
        "the bootstrap token was gathered"
    );
    assert!(
        !contents.contains("deadbeef"),
        "a machine token was gathered"
    );
    assert!(contents.contains("token=REDACTED"));
    assert!(
        contents.contains("\"master0\": \"0.1.0\""),
        "the agent's version is missing"
    );
    // The real cluster's answers: its version and the agent's bootstrap record.
    assert!(contents.contains("v1.20.2"), "the API's version is missing");
    let record = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(&output)
        .args(["--wildcards", "*/cluster/bootstrap-configmap.json"])
        .output()
        .unwrap();
    let record = String::from_utf8_lossy(&record.stdout);
    assert!(record.contains("\"status\": \"progressing\""), "{record}");
}
