//! `kindling create ignition-configs`, judged by the programs that consume its output: the real
//! Ignition applying bootstrap.ign and a pointer config to scratch roots, ignition-validate,
//! openssl, kubectl and kubernetes-validate.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ignition_runner::{self, HttpsServer};
use crate::kindling;

const DEMO_IC: &str = include_str!("../../examples/demo/install-config.yaml");
const DEMO_INV: &str = include_str!("../../examples/demo/inventory.yaml");

/// The demo description with the provisioning server and the machine config server moved to
/// loopback ports, so that real servers can stand in for them.
pub fn demo_on_loopback(http_port: u16, mcs_port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    demo_into(dir.path(), http_port, mcs_port);
    dir
}

/// [`demo_on_loopback`] in the directory `dir`.
pub fn demo_into(dir: &Path, http_port: u16, mcs_port: u16) {
    std::fs::write(dir.join("install-config.yaml"), DEMO_IC).unwrap();
    let inventory = DEMO_INV.replace(
        "  serverURL: http://192.168.126.2:8080\n",
        &format!(
            "  serverURL: http://127.0.0.1:{http_port}\n  mcsURL: https://127.0.0.1:{mcs_port}\n"
        ),
    );
    assert_ne!(inventory, DEMO_INV);
    std::fs::write(dir.join("inventory.yaml"), inventory).unwrap();
    crate::seed_mirror(dir);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn ign_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ign") {
                found.push(path);
            }
        }
    }
    found
}

fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run ({e}): run ./test.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn bootstrap_ign_and_a_pointer_config_apply_with_the_real_ignition() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);

    // Every config passes ignition-validate.
    let configs = ign_files(d);
    assert_eq!(
        configs.len(),
        3 + 2 + 2 + 6,
        "bootstrap + 2 pointers + 2 pools + their 2 renderings + 6 machines: {configs:?}"
    );
    for config in &configs {
        let (ok, out) = tool("ignition-validate", &[config.to_str().unwrap()]);
        assert!(ok && out.trim().is_empty(), "{}: {out}", config.display());
    }
    assert_eq!(mode(&d.join("bootstrap.ign")), 0o600);
    // Configs that carry keys or credentials are the owner's only; a worker's own part has
    // neither and stays readable by a server in the group.
    assert_eq!(mode(&d.join("ignition/master.ign")), 0o600);
    assert_eq!(mode(&d.join("ignition/worker.ign")), 0o600);
    assert_eq!(mode(&d.join("ignition/machines/master0.ign")), 0o600);
    assert_eq!(mode(&d.join("ignition/machines/worker0.ign")), 0o640);
    assert_eq!(mode(&d.join("master.ign")), 0o644);

    // The provisioning server hands out the kindling binary the config pins by sha512.
    let assets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(assets.path().join("assets")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_kindling"),
        assets.path().join("assets/kindling"),
    )
    .unwrap();
    // And the node binaries of the mirror under /assets/mirror, as kindling serve does.
    std::os::unix::fs::symlink(d.join("mirror/files"), assets.path().join("assets/mirror"))
        .unwrap();
    let provisioning = HttpsServer::start_on(assets.path(), None, http_port);

    let applied = ignition_runner::apply(&d.join("bootstrap.ign"))
        .unwrap_or_else(|log| panic!("bootstrap.ign failed:\n{log}"));
    let root = applied.root();
    // Fedora CoreOS ships no kubelet: it came from the mirror, checked by its sha512, with the
    // CNI plugins, crictl and containerd's configuration.
    for (on_machine, in_mirror) in [
        ("usr/local/bin/kubelet", "kubernetes/v1.34.1/kubelet"),
        ("usr/local/bin/crictl", "kubernetes/v1.34.1/crictl"),
        ("opt/cni/bin/bridge", "cni/bridge"),
        ("opt/cni/bin/host-local", "cni/host-local"),
        ("opt/cni/bin/loopback", "cni/loopback"),
        ("opt/cni/bin/portmap", "cni/portmap"),
    ] {
        assert_eq!(
            std::fs::read(root.join(on_machine)).unwrap(),
            std::fs::read(d.join("mirror/files").join(in_mirror)).unwrap(),
            "{on_machine}"
        );
        assert_eq!(mode(&root.join(on_machine)), 0o755, "{on_machine}");
    }
    let containerd = std::fs::read_to_string(root.join("etc/containerd/config.toml")).unwrap();
    assert!(containerd.contains("SystemdCgroup = true"), "{containerd}");
    assert_eq!(mode(&root.join("etc/containerd/config.toml")), 0o644);
    for pod in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(
            root.join(format!("etc/kubernetes/manifests/{pod}.yaml"))
                .exists(),
            "{pod} static pod missing"
        );
    }
    for key in [
        "csr-signer.key",
        "apiserver.key",
        "sa.key",
        "etcd/peer.key",
        "etcd/server.key",
        "front-proxy-client.key",
    ] {
        assert_eq!(
            mode(&root.join("etc/kubernetes/pki").join(key)),
            0o600,
            "{key}"
        );
    }
    assert_eq!(mode(&root.join("etc/kubernetes/admin.conf")), 0o600);
    assert_eq!(
        mode(&root.join("opt/kindling/manifests/20-bootstrap-token-secret.yaml")),
        0o600
    );
    let kubelet = std::fs::read_to_string(root.join("etc/systemd/system/kubelet.service")).unwrap();
    assert!(
        kubelet.contains("EnvironmentFile=-/etc/kubernetes/kubelet.env"),
        "{kubelet}"
    );
    let env = std::fs::read_to_string(root.join("etc/kubernetes/kubelet.env")).unwrap();
    assert!(
        env.contains("--hostname-override=bootstrap --node-ip=192.168.126.100"),
        "{env}"
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/kindling-bootstrap.service"))
        .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/kindling agent bootstrap")
            && unit.contains(" --masters master0,master1,master2 --bootstrap-member bootstrap "),
        "{unit}"
    );
    let presets =
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
    assert!(
        presets.contains("enable kindling-bootstrap.service")
            && presets.contains("enable kubelet.service")
            && presets.contains("enable containerd.service"),
        "{presets}"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/systemd/system/docker.service")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/kindling")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_kindling")).unwrap()
    );
    assert_eq!(mode(&root.join("usr/local/bin/kindling")), 0o755);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname"))
            .unwrap()
            .trim(),
        "bootstrap.demo.example.localdomain"
    );
    let keys =
        std::fs::read_to_string(root.join("home/core/.ssh/authorized_keys.d/ignition")).unwrap();
    assert!(keys.contains("demo@kindling"), "{keys}");
    assert!(
        provisioning
            .requests()
            .iter()
            .any(|r| r["path"] == "/assets/kindling" && r["status"] == 200)
    );

    // A kubelet changed in the mirror after the configs pinned it: Ignition refuses it, and
    // the machine's install stops there rather than run a binary nobody checked.
    let kubelet = d.join("mirror/files/kubernetes/v1.34.1/kubelet");
    let original = std::fs::read(&kubelet).unwrap();
    std::fs::write(&kubelet, [original.as_slice(), b"# changed\n"].concat()).unwrap();
    let log = ignition_runner::apply(&d.join("bootstrap.ign"))
        .err()
        .expect("Ignition applied a kubelet that does not match its hash");
    assert!(
        log.contains("usr/local/bin/kubelet") && log.contains("hash"),
        "{log}"
    );
    std::fs::write(&kubelet, original).unwrap();

    // A master boots with the unchanged master.ign: it fetches its pool config over TLS from the
    // machine config server, whose certificate our root CA signed.
    let mcs_root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mcs_root.path().join("config")).unwrap();
    std::fs::copy(
        d.join("ignition/master.ign"),
        mcs_root.path().join("config/master"),
    )
    .unwrap();
    let mcs = HttpsServer::start_on(
        mcs_root.path(),
        Some((&d.join("tls/mcs.crt"), &d.join("tls/mcs.key"))),
        mcs_port,
    );
    let applied = ignition_runner::apply(&d.join("master.ign"))
        .unwrap_or_else(|log| panic!("master.ign failed:\n{log}"));
    let root = applied.root();
    assert_eq!(
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        std::fs::read(d.join("tls/root-ca.crt")).unwrap()
    );
    assert_eq!(mode(&root.join("etc/kubernetes/pki/csr-signer.key")), 0o600);
    assert!(!root.join("etc/kubernetes/pki/ca.key").exists());
    assert!(root.join("etc/kubernetes/controller-manager.conf").exists());
    assert_eq!(
        mode(&root.join("etc/kubernetes/bootstrap-kubelet.conf")),
        0o600
    );
    let fetched = mcs.requests();
    assert!(
        fetched
            .iter()
            .any(|r| r["path"] == "/config/master" && r["status"] == 200),
        "{fetched:?}"
    );
    assert!(
        fetched.iter().all(|r| r["headers"]["Accept"]
            .as_str()
            .unwrap_or("")
            .contains("version=3.3.0")),
        "{fetched:?}"
    );
}

#[test]
fn certificates_kubeconfigs_and_manifests_pass_their_real_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("install-config.yaml"), DEMO_IC).unwrap();
    std::fs::write(d.join("inventory.yaml"), DEMO_INV).unwrap();
    kindling(&["create", "manifests", "--dir", d.to_str().unwrap()]).expect(0);
    let p = |rel: &str| d.join(rel).to_str().unwrap().to_string();

    let verify = |ca: &str, cert: &str, extra: &[&str]| {
        let mut args = vec!["verify", "-CAfile"];
        let ca = p(ca);
        let cert = p(cert);
        args.push(&ca);
        args.extend(extra);
        args.push(&cert);
        let (ok, out) = tool("openssl", &args);
        assert!(ok, "{cert} {extra:?}: {out}");
    };
    let server = ["-purpose", "sslserver"];
    let client = ["-purpose", "sslclient"];
    // Each machine that runs an apiserver has its own serving certificate: the cluster's names
    // and VIPs, and its own address and names, so a direct https://<master-ip>:6443 verifies.
    for (m, own_ip) in [
        ("bootstrap", "192.168.126.100"),
        ("master0", "192.168.126.110"),
        ("master1", "192.168.126.111"),
    ] {
        let cert = format!("tls/apiserver/{m}.crt");
        verify("tls/root-ca.crt", &cert, &server);
        for name in [
            "api.demo.example.localdomain",
            "api-int.demo.example.localdomain",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            &format!("{m}.demo.example.localdomain"),
        ] {
            verify("tls/root-ca.crt", &cert, &["-verify_hostname", name]);
        }
        for ip in ["172.30.0.1", "127.0.0.1", "192.168.126.10", own_ip] {
            verify("tls/root-ca.crt", &cert, &["-verify_ip", ip]);
        }
    }
    // ... and not another master's address.
    let (ok, out) = tool(
        "openssl",
        &[
            "verify",
            "-CAfile",
            &p("tls/root-ca.crt"),
            "-verify_ip",
            "192.168.126.111",
            &p("tls/apiserver/master0.crt"),
        ],
    );
    assert!(!ok && out.contains("IP address mismatch"), "{out}");
    verify(
        "tls/root-ca.crt",
        "tls/mcs.crt",
        &["-verify_hostname", "api-int.demo.example.localdomain"],
    );
    verify(
        "tls/root-ca.crt",
        "tls/mcs.crt",
        &["-verify_ip", "192.168.126.10"],
    );
    verify(
        "tls/root-ca.crt",
        "tls/mcs.crt",
        &["-verify_ip", "192.168.126.2"],
    );
    for c in [
        "admin",
        "controller-manager",
        "scheduler",
        "apiserver-kubelet-client",
        "bootstrap/admin",
    ] {
        verify("tls/root-ca.crt", &format!("tls/{c}.crt"), &client);
    }
    verify("tls/etcd-ca.crt", "tls/apiserver-etcd-client.crt", &client);
    verify(
        "tls/front-proxy-ca.crt",
        "tls/front-proxy-client.crt",
        &client,
    );
    for m in ["bootstrap", "master0", "master1", "master2"] {
        for kind in ["server", "peer"] {
            verify(
                "tls/etcd-ca.crt",
                &format!("tls/etcd/{m}-{kind}.crt"),
                &server,
            );
        }
        verify(
            "tls/etcd-ca.crt",
            &format!("tls/etcd/{m}-peer.crt"),
            &["-verify_hostname", m],
        );
    }
    let (ok, out) = tool(
        "openssl",
        &[
            "verify",
            "-CAfile",
            &p("tls/etcd-ca.crt"),
            &p("tls/apiserver/master0.crt"),
        ],
    );
    assert!(
        !ok && out.contains("unable to get local issuer"),
        "the apiserver cert must not chain to the etcd CA: {out}"
    );

    // Keys are the owner's alone.
    for key in [
        "tls/root-ca.key",
        "tls/csr-signer.key",
        "tls/apiserver/master0.key",
        "tls/sa.key",
        "auth/kubeconfig",
        "auth/bootstrap-token",
    ] {
        assert_eq!(mode(&d.join(key)), 0o600, "{key}");
    }

    let (ok, out) = tool(
        "kubectl",
        &[
            "--kubeconfig",
            &p("auth/kubeconfig"),
            "config",
            "view",
            "--minify",
        ],
    );
    assert!(
        ok && out.contains("server: https://api.demo.example.localdomain:6443")
            && out.contains("client-certificate-data: DATA+OMITTED"),
        "{out}"
    );
    let (ok, out) = tool(
        "kubectl",
        &[
            "--kubeconfig",
            &p("auth/kubelet-bootstrap.kubeconfig"),
            "config",
            "view",
            "--minify",
        ],
    );
    assert!(
        ok && out.contains("server: https://api-int.demo.example.localdomain:6443"),
        "{out}"
    );

    // Every manifest on disk passes kubernetes-validate at the cluster's version.
    let mut manifests: Vec<String> = Vec::new();
    for sub in [
        "manifests/cluster",
        "manifests/bootstrap",
        "manifests/masters/master0",
        "manifests/masters/master1",
    ] {
        for entry in std::fs::read_dir(d.join(sub)).unwrap() {
            manifests.push(entry.unwrap().path().to_str().unwrap().to_string());
        }
    }
    let mut args = vec!["--strict", "-k", "1.34.1"];
    args.extend(manifests.iter().map(String::as_str));
    let (ok, out) = tool("kubernetes-validate", &args);
    assert!(ok, "{out}");
    assert_eq!(out.matches(" passed ").count(), manifests.len(), "{out}");
}

/// The OpenShift 4.5 UPI description (spec 3.1.0, an infra machine): infra machines get their own
/// pool and pointer, and every config passes ignition-validate.
#[test]
fn infra_machines_get_their_own_pool_and_pointer() {
    let upi = crate::fixtures().join("valid/openshift-4.5-upi");
    let dir = crate::dir_with(&[
        ("install-config.yaml", &upi.join("install-config.yaml")),
        ("inventory.yaml", &upi.join("inventory.yaml")),
    ]);
    let d = dir.path();
    crate::seed_mirror(d);
    // kindling installs this cluster itself: with the pod network it installs.
    let ic = d.join("install-config.yaml");
    let text = std::fs::read_to_string(&ic).unwrap();
    std::fs::write(
        &ic,
        text.replace("networkType: OpenShiftSDN", "networkType: Flannel"),
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    for config in ign_files(d) {
        let (ok, out) = tool("ignition-validate", &[config.to_str().unwrap()]);
        assert!(ok && out.trim().is_empty(), "{}: {out}", config.display());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert_eq!(json["ignition"]["version"], "3.1.0", "{}", config.display());
    }
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("infra.ign")).unwrap()).unwrap();
    assert_eq!(
        pointer["ignition"]["config"]["merge"][0]["source"],
        "https://api-int.ocp45.example.localdomain:22623/config/infra"
    );
    assert!(d.join("ignition/infra.ign").exists());
    let machine = std::fs::read_to_string(d.join("ignition/machines/i1.ign")).unwrap();
    let machine: serde_json::Value = serde_json::from_str(&machine).unwrap();
    let env = machine["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/kubernetes/kubelet.env")
        .expect("the infra machine's kubelet arguments");
    let env =
        kindling_ignition::data_url::decode(env["contents"]["source"].as_str().unwrap()).unwrap();
    let env = String::from_utf8(env).unwrap();
    assert!(
        env.contains("--register-with-taints=infra=reserved:NoSchedule,infra=reserved:NoExecute"),
        "{env}"
    );
    assert!(
        env.contains("node-role.kubernetes.io/infra"),
        "the infra role label is named: {env}"
    );
}
