//! kindling's identities, RBAC and join flow against a real control plane: Debian's etcd and
//! Kubernetes 1.20.2 built from Debian's source (tests/k8s/binaries.sh), started from the files
//! the real Ignition put on the bootstrap machine, in a network namespace holding the site's
//! addresses. What the harness changes to run 1.20 here is the list in
//! kindling-testkit's kube/mapping.rs, printed by each test.

use std::path::{Path, PathBuf};
use std::process::Output;

use std::net::SocketAddr;

use kindling_testkit::Proto;
use kindling_testkit::kube::{Binaries, ControlPlane, Process, READY, Site, mapping, unit_command};

use crate::ignition_configs::demo_on_loopback;
use crate::ignition_runner::{self, Applied};
use crate::kindling;

/// A cluster's asset directory, `kindling serve` and the bootstrap machine (its root as the real
/// Ignition wrote it, its control plane) in one site.
pub struct Cluster {
    // Dropped first: the processes, then the namespace, then the files.
    _control_plane: ControlPlane,
    _serve: Process,
    pub site: Site,
    pub bins: Binaries,
    pub bootstrap: Applied,
    pub dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
}

impl Cluster {
    /// The demo cluster's bootstrap control plane, or `None` (and a printed skip) without the
    /// Kubernetes binaries.
    pub fn start(test: &str) -> Option<Cluster> {
        let bins = Binaries::find(test)?;
        let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
        let dir = demo_on_loopback(http_port, mcs_port);
        let d = dir.path();
        kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
        let description = kindling_config::ClusterDescription::load(d)
            .unwrap()
            .description;
        let site = Site::for_cluster(&description);
        let logs = tempfile::tempdir().unwrap();

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
        let mut serve = Process::spawn("kindling serve", command, &logs.path().join("serve.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let healthz = format!("http://{http}/healthz");
        serve
            .daemon()
            .wait_listening(&[(http, Proto::Tcp), (mcs, Proto::Tcp)], READY, |_| {
                site.answers(&healthz)
            })
            .unwrap_or_else(|e| panic!("{e}"));

        // The bootstrap machine: bootstrap.ign by the real Ignition, fetching from serve.
        let bootstrap = ignition_runner::apply_in(
            &ignition_runner::Runner::debian(),
            &d.join("bootstrap.ign"),
            &site.wrapper(),
        )
        .unwrap_or_else(|log| panic!("bootstrap.ign failed:\n{log}"));
        let control_plane = ControlPlane::start(&site, &bootstrap.root(), &bins, logs.path())
            .unwrap_or_else(|e| panic!("{e}"));
        Some(Cluster {
            _control_plane: control_plane,
            _serve: serve,
            site,
            bins,
            bootstrap,
            dir,
            logs,
        })
    }

    /// Runs the bootstrap machine's `kindling agent bootstrap`, as its unit starts it, until
    /// its stage `stage` is done; then stops it.
    pub fn bootstrap_agent_until(&self, stage: &str) {
        let root = self.bootstrap.root();
        let command = unit_command(&root, "kindling-bootstrap.service");
        let root_text = root.display().to_string();
        let args = mapping::flags(mapping::Component::Agent, &command[1..], &root_text);
        let mut cmd = self.site.command(format!("{root_text}{}", command[0]));
        cmd.args(&args);
        let log = self.logs.path().join("agent-bootstrap.log");
        let mut agent =
            Process::spawn("kindling agent bootstrap", cmd, &log).unwrap_or_else(|e| panic!("{e}"));
        let marker = root.join(format!("opt/kindling/{stage}.done"));
        agent
            .daemon()
            .wait_ready(&format!("done with {stage}"), READY, |_| marker.exists())
            .unwrap_or_else(|e| panic!("{e}"));
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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Who the apiserver says `kubeconfig` is. 1.20 has no `kubectl auth whoami`: a request the
/// identity may not make is refused with the user's name in the reason.
fn user_of(cluster: &Cluster, kubeconfig: &Path) -> String {
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

fn can_i(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    let out = cluster.kubectl(kubeconfig, &all);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
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
