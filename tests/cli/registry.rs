//! `kindling serve` as the site's registry, judged by the programs that pull in production:
//! Debian's containerd (through `ctr`, which resolves registries with the same `hosts.toml`
//! code as the CRI plugin) with the `hosts.toml` and `config.toml` that kindling put on a
//! worker, and skopeo. No image comes from the internet: the tests make a busybox image.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use kindling_testkit::{Daemon, READY_TIMEOUT};

use crate::ignition_configs::demo_on_loopback;
use crate::serve::Server;
use crate::{ignition_runner, kindling};

/// A containerd of the test's own: kindling's config.toml as the worker got it, with only its
/// state moved to a scratch directory by containerd's own flags.
struct Containerd {
    daemon: Daemon,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start(config: &Path) -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(&socket);
        let mut daemon = Daemon::spawn("containerd", command, &dir.path().join("containerd.log"))
            .unwrap_or_else(|e| panic!("{e}"))
            .terminate_on_drop();
        let probe = socket.clone();
        daemon
            .wait_ready("answering on its socket", READY_TIMEOUT, |_| {
                Command::new("ctr")
                    .arg("--address")
                    .arg(&probe)
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Containerd {
            daemon,
            socket,
            _dir: dir,
        }
    }

    /// `ctr images pull --hosts-dir <hosts>` of `image`: (success, output).
    fn pull(&self, hosts: &Path, image: &str) -> (bool, String) {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--timeout", "120s", "images", "pull", "--hosts-dir"])
            .arg(hosts)
            .arg(image)
            .output()
            .expect("ctr runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn log(&self) -> String {
        self.daemon.log()
    }
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs: run ./test.sh, which installs it");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The demo site on loopback with a test image in its mirror (written by skopeo as an OCI
/// archive, then taken in by `kindling mirror --from-archive`), its configs made, and
/// `kindling serve` running.
struct Site {
    dir: tempfile::TempDir,
    work: tempfile::TempDir,
    server: Server,
    http_port: u16,
    mcs_port: u16,
    written: kindling_testkit::oci::Written,
    layout: std::path::PathBuf,
    /// worker0's pointer URL (it carries its token).
    url: String,
    token: String,
}

impl Site {
    fn start() -> Site {
        let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
        let dir = demo_on_loopback(http_port, mcs_port);
        let d = dir.path();
        let ds = d.to_str().unwrap();
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let written = kindling_testkit::oci::write_busybox(&layout, "1.36");
        let archive = work.path().join("busybox.tar");
        let (ok, out) = skopeo(&[
            "copy",
            &format!("oci:{}:1.36", layout.display()),
            &format!("oci-archive:{}:1.36", archive.display()),
        ]);
        assert!(ok, "{out}");
        let run = kindling(&[
            "mirror",
            "--dir",
            ds,
            "--from-archive",
            archive.to_str().unwrap(),
            "--as",
            "registry.k8s.io/test/busybox",
        ]);
        run.expect(0);
        assert!(
            run.stdout().contains(&format!(
                "registry.k8s.io/test/busybox:1.36  {}",
                written.manifest_digest
            )),
            "{}",
            run.stdout()
        );
        kindling(&["create", "ignition-configs", "--dir", ds]).expect(0);
        let server = Server::start(d, http_port, mcs_port);
        let url = server.ignition_url("52-54-00-7e-01-20");
        let token = url.split("token=").nth(1).unwrap().to_string();
        Site {
            dir,
            work,
            server,
            http_port,
            mcs_port,
            written,
            layout,
            url,
            token,
        }
    }

    /// Its events, once one satisfies `wanted` (see [`crate::events_when`]).
    fn events_with(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        crate::events_when(self.dir.path(), |events| events.iter().any(&wanted))
    }
}

#[test]
fn containerd_and_skopeo_pull_from_kindling_serve_with_what_kindling_gave_the_node() {
    let site = Site::start();
    let (d, work, server, written, layout) = (
        site.dir.path(),
        &site.work,
        &site.server,
        &site.written,
        &site.layout,
    );
    let (http_port, mcs_port, url, token) = (site.http_port, site.mcs_port, &site.url, &site.token);

    let (status, pointer) = server.get(
        url.strip_prefix(&format!("http://127.0.0.1:{http_port}"))
            .unwrap(),
    );
    assert_eq!(status, 200);
    let pointer_path = work.path().join("worker0.ign");
    std::fs::write(&pointer_path, pointer).unwrap();

    // The real Ignition puts the worker's runtime configuration in place.
    let applied = ignition_runner::apply(&pointer_path)
        .unwrap_or_else(|log| panic!("{log}\n--- server ---\n{}", server.log()));
    let root = applied.root();
    let config = root.join("etc/containerd/config.toml");
    let hosts = root.join("etc/containerd/certs.d");
    let toml_path = hosts.join("registry.k8s.io/hosts.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.contains(&format!(
            "[host.\"https://127.0.0.1:{mcs_port}/v2/registry.k8s.io\"]"
        )),
        "{toml}"
    );
    assert_eq!(
        std::fs::metadata(&toml_path).unwrap().permissions().mode() & 0o777,
        0o600,
        "it holds the machine's credentials"
    );
    // The one change: the CA it names is under the scratch root, not at /.
    std::fs::write(
        &toml_path,
        toml.replace(
            "/etc/kubernetes/pki/ca.crt",
            &root.join("etc/kubernetes/pki/ca.crt").display().to_string(),
        ),
    )
    .unwrap();

    // containerd's own reading of kindling's config.toml.
    let dump = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    for setting in [
        "sandbox_image = \"registry.k8s.io/pause:3.10.1\"",
        "SystemdCgroup = true",
        "config_path = \"/etc/containerd/certs.d\"",
        "disabled_plugins = []",
    ] {
        assert!(
            dump.contains(setting),
            "containerd read no {setting}:\n{dump}"
        );
    }

    let containerd = Containerd::start(&config);
    for image in [
        "registry.k8s.io/test/busybox:1.36".to_string(),
        format!("registry.k8s.io/test/busybox@{}", written.manifest_digest),
        // One of the cluster's own images, through the same hosts.toml.
        "registry.k8s.io/pause:3.10.1".to_string(),
    ] {
        let (ok, out) = containerd.pull(&hosts, &image);
        assert!(
            ok,
            "{image}: {out}\n--- containerd ---\n{}\n--- server ---\n{}",
            containerd.log(),
            server.log()
        );
    }

    // skopeo, with the worker's credentials and the cluster's CA.
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(d.join("tls/root-ca.crt"), certs.join("ca.crt")).unwrap();
    let image = format!("docker://127.0.0.1:{mcs_port}/registry.k8s.io/test/busybox:1.36");
    let creds = format!("worker0:{token}");
    let cert_dir = format!("--cert-dir={}", certs.display());
    let (ok, out) = skopeo(&["inspect", &cert_dir, "--creds", &creds, &image]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["Digest"], written.manifest_digest.as_str());
    let copy = work.path().join("copy");
    let (ok, out) = skopeo(&[
        "copy",
        &format!("--src-cert-dir={}", certs.display()),
        "--src-creds",
        &creds,
        &image,
        &format!("oci:{}:1.36", copy.display()),
    ]);
    assert!(ok, "{out}");
    let layer = copy
        .join("blobs/sha256")
        .join(&written.layer_digest["sha256:".len()..]);
    assert_eq!(
        std::fs::read(layer).unwrap(),
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(&written.layer_digest["sha256:".len()..])
        )
        .unwrap()
    );
    // Without credentials, or with another machine's token, the registry serves nothing.
    let (ok, out) = skopeo(&["inspect", &cert_dir, &image]);
    assert!(
        !ok && (out.contains("401") || out.contains("unauthorized")),
        "{out}"
    );
    let (ok, _) = skopeo(&[
        "inspect",
        &cert_dir,
        "--creds",
        &format!("worker1:{token}"),
        &image,
    ]);
    assert!(!ok);

    // The timeline says who pulled what, and how long each blob took (recorded once its
    // body is sent).
    let events = crate::events_when(d, |events| {
        events
            .iter()
            .any(|e| e["stage"] == "images" && e["detail"].as_str().unwrap().contains(" ms"))
    });
    let pulls: Vec<&serde_json::Value> = events.iter().filter(|e| e["stage"] == "images").collect();
    let events = format!("{events:?}");
    assert!(
        pulls.iter().any(|e| e["machine"] == "worker0"
            && e["detail"] == "pull registry.k8s.io/test/busybox:1.36"),
        "{events}"
    );
    assert!(
        pulls.iter().any(|e| e["machine"] == "worker0"
            && e["detail"].as_str().unwrap().starts_with(&format!(
                "registry.k8s.io/test/busybox blob sha256:{}",
                &written.layer_digest["sha256:".len().."sha256:".len() + 12]
            ))
            && e["detail"].as_str().unwrap().contains(" ms")),
        "{events}"
    );

    // containerd checks digests too. A blob changed in place behind kindling's back (same size
    // and inode, its modification time put back, so kindling does not check an already
    // verified file again) reaches containerd, which refuses it.
    let layer = d
        .join("mirror/blobs/sha256")
        .join(&written.layer_digest["sha256:".len()..]);
    let original = std::fs::read(&layer).unwrap();
    let modified = std::fs::metadata(&layer).unwrap().modified().unwrap();
    let mut changed = original.clone();
    changed[100] ^= 0xff;
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&layer)
            .unwrap();
        file.write_all(&changed).unwrap();
        file.set_modified(modified).unwrap();
    }
    let behind_its_back = Containerd::start(&config);
    let (ok, out) = behind_its_back.pull(&hosts, "registry.k8s.io/test/busybox:1.36");
    assert!(
        !ok,
        "containerd took a blob that does not match its digest: {out}"
    );
    assert!(out.contains("digest"), "{out}");
    drop(behind_its_back);
    std::fs::write(&layer, &original).unwrap();

    // A blob changed in the mirror is refused by kindling, and the pull fails.
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let fresh = Containerd::start(&config);
    let (ok, out) = fresh.pull(&hosts, "registry.k8s.io/test/busybox:1.36");
    assert!(!ok, "a tampered blob was pulled: {out}");
    let refused = format!(
        "mirror blob {} does not match its digest",
        written.layer_digest
    );
    let log = server.log_when(|log| log.contains(&refused));
    assert!(log.contains(&refused), "{log}");
}

/// A second site, online to the first: `kindling mirror --from-registry` pulls every image its
/// machines need from the first site's kindling serve (a registry that holds them under their
/// full names), checked blob by blob, and resumes a blob cut off half way with a range request.
#[test]
fn kindling_mirror_pulls_what_is_missing_from_a_registry_and_resumes_a_cut_blob() {
    let site = Site::start();
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let other = demo_on_loopback_without_mirror(http_port, mcs_port);
    let o = other.path();
    let os = o.to_str().unwrap();
    // Its node binaries from a directory (stand-ins), its images from the registry.
    let bins = site.work.path().join("bins");
    std::fs::create_dir_all(bins.join("cni")).unwrap();
    for (path, _) in kindling_mirror::Files::read(&site.dir.path().join("mirror"))
        .unwrap()
        .files
    {
        let from = site.dir.path().join("mirror/files").join(&path);
        let name = path.rsplit('/').next().unwrap();
        let to = if path.starts_with("cni/") {
            bins.join("cni").join(name)
        } else {
            bins.join(name)
        };
        std::fs::copy(from, to).unwrap();
    }
    // The user's own manifest names the test image, so this site needs it too.
    kindling(&["create", "manifests", "--dir", os]).expect(0);
    std::fs::write(
        o.join("manifests/cluster/90-tool.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tool\n  namespace: default\nspec:\n  containers:\n    - name: tool\n      image: registry.k8s.io/test/busybox:1.36\n",
    )
    .unwrap();
    // Half of the layer, as a run killed during its download would leave it.
    let hex = &site.written.layer_digest["sha256:".len()..];
    let layer = std::fs::read(site.layout.join("blobs/sha256").join(hex)).unwrap();
    let blobs = o.join("mirror/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!(".{hex}.partial")),
        &layer[..layer.len() / 2],
    )
    .unwrap();

    let registry = format!("127.0.0.1:{}", site.mcs_port);
    let creds = format!("worker0:{}", site.token);
    let ca = site.dir.path().join("tls/root-ca.crt");
    let pull = |extra: &[&str]| {
        let mut args = vec![
            "mirror",
            "--dir",
            os,
            "--from-dir",
            bins.to_str().unwrap(),
            "--from-registry",
            &registry,
            "--ca",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kindling(&args)
    };
    // Without credentials the registry serves nothing, and the error says so.
    let run = pull(&[]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("pulling ") && run.stderr().contains("Not authorized"),
        "{}",
        run.stderr()
    );
    let run = pull(&["--registry-creds", &creds, "--json"]);
    run.expect(0);
    let out: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        out["missing"],
        serde_json::json!({"files": [], "images": []})
    );
    let pulled: Vec<&str> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert!(
        pulled.contains(&"registry.k8s.io/test/busybox:1.36"),
        "{pulled:?}"
    );
    assert!(
        pulled.contains(&"registry.k8s.io/pause:3.10.1"),
        "{pulled:?}"
    );
    assert_eq!(std::fs::read(blobs.join(hex)).unwrap(), layer);
    assert!(!blobs.join(format!(".{hex}.partial")).exists());
    // The first site served the rest of the layer only.
    let half = layer.len() / 2;
    let resumed = |e: &serde_json::Value| {
        e["stage"] == "images"
            && e["detail"].as_str().unwrap().contains(&format!(
                "(bytes {half}-{} of {})",
                layer.len() - 1,
                layer.len()
            ))
    };
    let events = site.events_with(resumed);
    assert!(events.iter().any(resumed), "{events:?}");
    // Both sites hold the same image, by digest.
    let theirs = kindling_mirror::Mirror::open(&o.join("mirror")).unwrap();
    let served = theirs
        .manifest("registry.k8s.io/test/busybox", "1.36")
        .unwrap();
    assert_eq!(served.digest.as_str(), site.written.manifest_digest);
    kindling(&["create", "ignition-configs", "--dir", os]).expect(0);
}

/// The demo on loopback, with nothing in its mirror.
fn demo_on_loopback_without_mirror(http_port: u16, mcs_port: u16) -> tempfile::TempDir {
    let dir = demo_on_loopback(http_port, mcs_port);
    std::fs::remove_dir_all(dir.path().join("mirror")).unwrap();
    dir
}

/// `kindling mirror --from-release` on a host that is online: the node binaries from where their
/// projects publish them (here a web server laid out as dl.k8s.io and GitHub's release paths),
/// each checked against the .sha256 published beside it.
#[test]
fn kindling_mirror_downloads_the_node_binaries_and_checks_each_against_its_published_digest() {
    let publish = tempfile::tempdir().unwrap();
    let p = publish.path();
    let sha256 = |bytes: &[u8]| -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let put = |relative: &str, bytes: &[u8], companion: &str| {
        let path = p.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(format!("{}.sha256", path.display()), companion).unwrap();
    };
    let k8s = "dl.k8s.io/release/v1.34.1/bin/linux/amd64";
    for binary in ["kubelet", "kubectl"] {
        let bytes = format!("#!/bin/sh\n# A stand-in for {binary}.\n");
        // dl.k8s.io's .sha256 holds the digest alone.
        put(
            &format!("{k8s}/{binary}"),
            bytes.as_bytes(),
            &sha256(bytes.as_bytes()),
        );
    }
    // The release tarballs, and their "digest  name" files.
    let stage = tempfile::tempdir().unwrap();
    let s = stage.path();
    std::fs::write(s.join("crictl"), "#!/bin/sh\necho crictl\n").unwrap();
    for plugin in ["bridge", "host-local", "loopback", "portmap", "macvlan"] {
        std::fs::write(s.join(plugin), format!("#!/bin/sh\necho {plugin}\n")).unwrap();
    }
    let tarball = |name: &str, files: &[&str]| -> Vec<u8> {
        let out = s.join(name);
        let status = Command::new("tar")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(s)
            .args(files)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(out).unwrap()
    };
    let crictl = tarball("crictl-v1.34.0-linux-amd64.tar.gz", &["crictl"]);
    put(
        "github.com/kubernetes-sigs/cri-tools/releases/download/v1.34.0/crictl-v1.34.0-linux-amd64.tar.gz",
        &crictl,
        &format!("{}  crictl-v1.34.0-linux-amd64.tar.gz\n", sha256(&crictl)),
    );
    let cni = tarball(
        "cni-plugins-linux-amd64-v1.7.1.tgz",
        &[
            "./bridge",
            "./host-local",
            "./loopback",
            "./portmap",
            "./macvlan",
        ],
    );
    put(
        "github.com/containernetworking/plugins/releases/download/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz",
        &cni,
        &format!("{}  cni-plugins-linux-amd64-v1.7.1.tgz\n", sha256(&cni)),
    );
    // Fedora CoreOS's stream metadata, and the PXE images it names.
    let build = "prod/streams/stable/builds/43.1/x86_64";
    let mut pxe = serde_json::Map::new();
    for (key, name) in [
        ("kernel", "live-kernel"),
        ("initramfs", "live-initramfs.img"),
        ("rootfs", "live-rootfs.img"),
    ] {
        let bytes = format!("fcos {key}");
        let path = format!("builds.coreos.fedoraproject.org/{build}/fedora-coreos-43.1-{name}");
        std::fs::create_dir_all(p.join(&path).parent().unwrap()).unwrap();
        std::fs::write(p.join(&path), &bytes).unwrap();
        pxe.insert(
            key.into(),
            serde_json::json!({"location": format!("https://{path}"), "sha256": sha256(bytes.as_bytes())}),
        );
    }
    let stream = serde_json::json!({"stream": "stable", "architectures": {"x86_64": {"artifacts": {"metal": {"formats": {"pxe": pxe}}}}}});
    std::fs::create_dir_all(p.join("builds.coreos.fedoraproject.org/streams")).unwrap();
    std::fs::write(
        p.join("builds.coreos.fedoraproject.org/streams/stable.json"),
        stream.to_string(),
    )
    .unwrap();
    let port = kindling_testkit::port();
    let server = ignition_runner::HttpsServer::start_on(p, None, port);
    let base = server.url();

    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback_without_mirror(http_port, mcs_port);
    let d = dir.path();
    // An interrupted earlier run left part of the kubelet; this server ignores ranges, so the
    // download starts again rather than append to it.
    let downloads = d.join("mirror/.downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(downloads.join("kubelet.partial"), "#!/bin/sh\n# A stand-in").unwrap();
    let run = kindling(&[
        "mirror",
        "--dir",
        d.to_str().unwrap(),
        "--from-release",
        &base,
        "--json",
    ]);
    run.expect(8); // the images are still missing
    let out: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(out["missing"]["files"], serde_json::json!([]), "{out}");
    let files = kindling_mirror::Files::read(&d.join("mirror")).unwrap();
    for (path, bytes) in [
        (
            "kubernetes/v1.34.1/kubelet",
            std::fs::read(p.join(k8s).join("kubelet")).unwrap(),
        ),
        (
            "kubernetes/v1.34.1/crictl",
            std::fs::read(s.join("crictl")).unwrap(),
        ),
        ("cni/portmap", std::fs::read(s.join("portmap")).unwrap()),
    ] {
        assert_eq!(
            std::fs::read(d.join("mirror/files").join(path)).unwrap(),
            bytes,
            "{path}"
        );
        assert_eq!(files.get(path).unwrap().sha256, sha256(&bytes), "{path}");
    }
    assert!(
        !downloads.exists(),
        "the staging directory is gone once all is in"
    );
    // And Fedora CoreOS's PXE images, under the names its boot scripts give them.
    for (file, bytes) in [
        ("fedora-coreos-live-kernel-x86_64", "fcos kernel"),
        ("fedora-coreos-live-initramfs.x86_64.img", "fcos initramfs"),
        ("fedora-coreos-live-rootfs.x86_64.img", "fcos rootfs"),
    ] {
        assert_eq!(
            std::fs::read_to_string(d.join("assets/fcos").join(file)).unwrap(),
            bytes
        );
    }

    // A download that does not match its published digest is refused, and not stored.
    std::fs::write(p.join(k8s).join("kubectl"), "#!/bin/sh\n# tampered\n").unwrap();
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let other = demo_on_loopback_without_mirror(http_port, mcs_port);
    let run = kindling(&[
        "mirror",
        "--dir",
        other.path().to_str().unwrap(),
        "--from-release",
        &base,
    ]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("kubectl") && run.stderr().contains("digest"),
        "{}",
        run.stderr()
    );
    let files = kindling_mirror::Files::read(&other.path().join("mirror")).unwrap();
    assert!(files.get("kubernetes/v1.34.1/kubectl").is_none());
}

/// A site that already runs a registry mirror says so in install-config.yaml, as for
/// openshift-install: `imageContentSources` sends registry.k8s.io to it, `additionalTrustBundle`
/// is its CA, the pull secret holds its credentials. The machines' containerd then pulls from
/// that mirror (here the first site's kindling serve), and kindling's own mirror need not hold
/// those images.
#[test]
fn a_sites_own_mirror_in_install_config_is_where_containerd_pulls_from() {
    use base64::Engine as _;
    let first = Site::start();
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let ds = d.to_str().unwrap();
    let mirror_host = format!("127.0.0.1:{}", first.mcs_port);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("worker0:{}", first.token));
    let ca = std::fs::read_to_string(first.dir.path().join("tls/root-ca.crt")).unwrap();
    let ic = std::fs::read_to_string(d.join("install-config.yaml")).unwrap();
    let pull_secret = ic.lines().find(|l| l.starts_with("pullSecret:")).unwrap();
    let mut ic = ic.replace(
        pull_secret,
        &format!("pullSecret: '{{\"auths\":{{\"{mirror_host}\":{{\"auth\":\"{auth}\"}}}}}}'"),
    );
    ic.push_str(&format!(
        "imageContentSources:\n- source: registry.k8s.io\n  mirrors:\n  - {mirror_host}/registry.k8s.io\nadditionalTrustBundle: |\n{}",
        ca.lines().map(|l| format!("  {l}\n")).collect::<String>()
    ));
    std::fs::write(d.join("install-config.yaml"), ic).unwrap();
    // A manifest of the user's names the first site's test image, which this site's mirror
    // does not hold: the site's own mirror covers registry.k8s.io.
    kindling(&["create", "manifests", "--dir", ds]).expect(0);
    std::fs::write(
        d.join("manifests/cluster/90-tool.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tool\n  namespace: default\nspec:\n  containers:\n    - name: tool\n      image: registry.k8s.io/test/busybox:1.36\n",
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", ds]).expect(0);
    let server = Server::start(d, http_port, mcs_port);
    let url = server.ignition_url("52-54-00-7e-01-20");
    let (status, pointer) = server.get(
        url.strip_prefix(&format!("http://127.0.0.1:{http_port}"))
            .unwrap(),
    );
    assert_eq!(status, 200);
    let pointer_path = first.work.path().join("second-worker0.ign");
    std::fs::write(&pointer_path, pointer).unwrap();
    let applied = ignition_runner::apply(&pointer_path)
        .unwrap_or_else(|log| panic!("{log}\n--- server ---\n{}", server.log()));
    let root = applied.root();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kindling/additional-trust-bundle.pem")).unwrap(),
        ca
    );
    let hosts = root.join("etc/containerd/certs.d");
    let toml_path = hosts.join("registry.k8s.io/hosts.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.contains(&format!(
            "[host.\"https://{mirror_host}/v2/registry.k8s.io\"]"
        )),
        "{toml}"
    );
    // ghcr.io is not the site's: it still comes from this site's kindling serve.
    let ghcr = std::fs::read_to_string(hosts.join("ghcr.io/hosts.toml")).unwrap();
    assert!(
        ghcr.contains(&format!("https://127.0.0.1:{mcs_port}/v2/ghcr.io")),
        "{ghcr}"
    );
    // The one change: the CA files it names are under the scratch root, not at /.
    std::fs::write(
        &toml_path,
        toml.replace("\"/etc/", &format!("\"{}/etc/", root.display())),
    )
    .unwrap();

    let containerd = Containerd::start(&root.join("etc/containerd/config.toml"));
    let (ok, out) = containerd.pull(&hosts, "registry.k8s.io/test/busybox:1.36");
    assert!(ok, "{out}\n--- containerd ---\n{}", containerd.log());
    // The first site's registry served it (containerd resolves the tag with HEAD, then gets
    // the manifest by digest), to the credentials of the pull secret.
    let pulled = |e: &serde_json::Value| {
        e["stage"] == "images"
            && e["machine"] == "worker0"
            && e["detail"]
                == format!(
                    "pull registry.k8s.io/test/busybox@{}",
                    first.written.manifest_digest
                )
    };
    let events = first.events_with(pulled);
    assert!(events.iter().any(pulled), "{events:?}");
}
