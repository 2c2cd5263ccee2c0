//! Day 2: the pools' renderings, as `create ignition-configs` keeps them and `kindling serve`
//! hands them out, checked with the real Ignition.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use kindling_agent::AgentError;
use kindling_agent::node::disk::{self, Fetch};
use kindling_ignition::Config;

use crate::ignition_configs::demo_on_loopback;
use crate::serve::Server;
use crate::{ignition_runner, kindling};

/// Installs the machine with `mac` (hyphenated) as its first boot would: the pointer config its
/// iPXE script names, applied by Debian's Ignition, which fetches the rest from the MCS.
fn install_root(server: &Server, dir: &Path, mac: &str) -> ignition_runner::Applied {
    let url = server.ignition_url(mac);
    let path_and_query = &url[url.find("/ignition").unwrap()..];
    let (status, pointer) = server.get(path_and_query);
    assert_eq!(status, 200);
    let pointer_path = dir.join(format!("{mac}-pointer.ign"));
    std::fs::write(&pointer_path, pointer).unwrap();
    ignition_runner::apply(&pointer_path)
        .unwrap_or_else(|log| panic!("{log}\n--- server ---\n{}", server.log()))
}

/// [`install_root`]: the rendering written on the machine, and whether it has `path`.
fn install(server: &Server, dir: &Path, mac: &str, path: &str) -> (String, bool) {
    let applied = install_root(server, dir, mac);
    let rendering = std::fs::read_to_string(applied.root().join("etc/kindling/rendering")).unwrap();
    let has = applied.root().join(path.trim_start_matches('/')).exists();
    (rendering.trim().to_string(), has)
}

/// The rendering the pool's machines are meant to be on.
fn pool_target(dir: &Path, pool: &str) -> String {
    pool_state(dir, pool)["target"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pool_state(dir: &Path, pool: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("ignition/pools/{pool}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A change to a pool makes a new rendering; the machines that installed stay on theirs and a
/// machine that installs now gets the new one, each from the real Ignition.
#[test]
fn a_machine_gets_the_rendering_it_is_meant_to_be_on() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    let first = pool_target(d, "worker");
    assert!(
        run.stdout()
            .contains(&format!("pool worker: {first} (new)")),
        "{}",
        run.stdout()
    );
    let server = Server::start(d, http_port, mcs_port);
    let (worker0, _) = install(&server, d, "52-54-00-7e-01-20", "/etc/motd.d/day2");
    assert_eq!(worker0, first);
    assert_eq!(
        std::fs::read_to_string(d.join(".kindling/served/worker0")).unwrap(),
        format!("{first}\n")
    );

    // The user changes the worker pool.
    let snippets = d.join("snippets/worker");
    std::fs::create_dir_all(&snippets).unwrap();
    std::fs::write(
        snippets.join("motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/day2\n      \
         contents:\n        inline: day two\n",
    )
    .unwrap();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    let state = pool_state(d, "worker");
    let second = state["target"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(state["machines"], serde_json::json!({"worker0": first}));
    assert!(
        run.stdout().contains(&format!(
            "pool worker: {second} (new); 1 machine(s) stay on what they run until kindling update --pool worker"
        )),
        "{}",
        run.stdout()
    );
    // Both renderings are kept, each the pool's config as it was made.
    assert!(d.join(format!("ignition/rendered/{first}.ign")).is_file());
    assert_eq!(
        std::fs::read(d.join(format!("ignition/rendered/{second}.ign"))).unwrap(),
        std::fs::read(d.join("ignition/worker.ign")).unwrap()
    );

    // kindling serve picks the change up: worker1, which never installed, gets the new one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (worker1, has_motd) = loop {
        let got = install(&server, d, "52-54-00-7e-01-21", "/etc/motd.d/day2");
        if got.0 == second || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(worker1, second, "{}", server.log());
    assert!(has_motd);
    // worker0 installing again gets what it is meant to be on, not the newest.
    let (again, has_motd) = install(&server, d, "52-54-00-7e-01-20", "/etc/motd.d/day2");
    assert_eq!(again, first);
    assert!(!has_motd);
}

/// The config Ignition applied to a root, as kindling reads configs. Ignition 2.14 caches it in
/// its own newest spec, 3.4.0-experimental, which adds nothing the configs use to 3.3.0.
fn applied_config(applied: &ignition_runner::Applied) -> Config {
    let mut merged = applied.merged_config();
    assert_eq!(merged["ignition"]["version"], "3.4.0-experimental");
    merged["ignition"]["version"] = "3.3.0".into();
    Config::from_json(&serde_json::to_vec(&merged).unwrap()).unwrap()
}

/// The node binaries, from `kindling serve` as Ignition downloads them.
struct FromServer<'s>(&'s Server);

impl Fetch for FromServer<'_> {
    fn fetch(&self, url: &str, _sha512: Option<&str>) -> Result<Vec<u8>, AgentError> {
        let path = &url[url.find("/assets/").unwrap()..];
        let (status, body) = self.0.get(path);
        assert_eq!(status, 200, "{url}");
        Ok(body)
    }
}

/// The node agent reads a root the way the real Ignition wrote it: no drift on a fresh install;
/// an edited file is found, and reverted byte for byte; and a newer rendering written over an
/// older machine leaves exactly what Ignition writes from that rendering.
#[test]
fn the_node_agent_sees_the_disk_as_ignition_wrote_it() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let server = Server::start(d, http_port, mcs_port);
    let worker0 = install_root(&server, d, "52-54-00-7e-01-20");
    let root = worker0.root();
    let first = applied_config(&worker0);
    assert!(disk::expected(&first).len() > 20);
    assert_eq!(disk::check(&root, &first).unwrap(), []);

    // Someone edits the kubelet's arguments and opens up the CA certificate.
    let env = root.join("etc/kubernetes/kubelet.env");
    let original = std::fs::read(&env).unwrap();
    std::fs::write(&env, b"KUBELET_ARGS=--v=9\n").unwrap();
    let ca = root.join("etc/kubernetes/pki/ca.crt");
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o666)).unwrap();
    let drift: Vec<String> = disk::check(&root, &first)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        drift,
        [
            "/etc/kubernetes/kubelet.env: contents changed",
            "/etc/kubernetes/pki/ca.crt: mode 0666, not 0644"
        ]
    );
    let reverted = disk::write(&root, None, &first, &FromServer(&server)).unwrap();
    assert_eq!(reverted.changed.len(), 2);
    assert_eq!(std::fs::read(&env).unwrap(), original);
    assert_eq!(disk::check(&root, &first).unwrap(), []);

    // A new rendering of the worker pool, installed on worker1 by Ignition and written over
    // worker0 by the agent: the same files, byte for byte and mode for mode.
    let snippets = d.join("snippets/worker");
    std::fs::create_dir_all(&snippets).unwrap();
    std::fs::write(
        snippets.join("more.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/day2\n      \
         mode: 0600\n      contents:\n        inline: day two\nsystemd:\n  units:\n    - name: day2.service\n      \
         enabled: true\n      contents: |\n        [Service]\n        ExecStart=/bin/true\n",
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let second = pool_target(d, "worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker1 = loop {
        let applied = install_root(&server, d, "52-54-00-7e-01-21");
        let on = std::fs::read_to_string(applied.root().join("etc/kindling/rendering")).unwrap();
        if on.trim() == second || Instant::now() > deadline {
            break applied;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let newer = applied_config(&worker1);
    let written = disk::write(&root, Some(&first), &newer, &FromServer(&server)).unwrap();
    for path in [
        "/etc/motd.d/day2",
        "/etc/systemd/system/day2.service",
        disk::PRESET_FILE,
    ] {
        assert!(
            written.changed.iter().any(|p| p == path),
            "{path}: {written:?}"
        );
    }
    assert_eq!(disk::check(&root, &newer).unwrap(), []);
    for path in disk::expected(&newer).keys() {
        let ours = disk::on_disk(&root, path);
        let theirs = disk::on_disk(&worker1.root(), path);
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!(
            meta(&ours).permissions().mode(),
            meta(&theirs).permissions().mode(),
            "{path}"
        );
        if meta(&ours).is_file() {
            let (mut ours, mut theirs) = (
                std::fs::read(&ours).unwrap(),
                std::fs::read(&theirs).unwrap(),
            );
            if path == disk::PRESET_FILE {
                // The same lines; Ignition orders them as its merge left the units.
                for text in [&mut ours, &mut theirs] {
                    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
                    lines.sort();
                    *text = lines.join(&b'\n');
                }
            }
            assert!(
                ours == theirs,
                "{path}: ours\n{}\ntheirs\n{}",
                String::from_utf8_lossy(&ours[..ours.len().min(400)]),
                String::from_utf8_lossy(&theirs[..theirs.len().min(400)])
            );
        }
    }
}

/// A client certificate for `node` from the cluster's CSR signer, as the kubelet's is once its
/// CSR is approved (`CN=system:node:<node>`, `O=system:nodes`), made by openssl; or from a CA of
/// its own with `foreign`. Returns the certificate and key paths.
fn node_certificate(
    dir: &Path,
    node: &str,
    foreign: bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let work = dir.join(format!("node-cert-{node}-{foreign}"));
    std::fs::create_dir_all(&work).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca, ca_key) = if foreign {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=someone-else",
            "-days",
            "1",
        ]);
        (work.join("ca.crt"), work.join("ca.key"))
    } else {
        (
            dir.join("tls/csr-signer.crt"),
            dir.join("tls/csr-signer.key"),
        )
    };
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        &format!("/O=system:nodes/CN=system:node:{node}"),
    ]);
    std::fs::write(work.join("ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        ca.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-out",
        "node.crt",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    (work.join("node.crt"), work.join("node.key"))
}

/// curl to the machine config server with a client certificate: (status, rendering header,
/// body); status 0 when the TLS handshake fails.
fn fetch_as(
    url: &str,
    ca: &Path,
    cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> (u16, String, String) {
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "-D", "-", "--cacert"]).arg(ca);
    if let Some((crt, key)) = cert {
        curl.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = curl.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rendering = head
        .lines()
        .find_map(|l| l.strip_prefix("x-kindling-rendering: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    (status, rendering, body.to_string())
}

/// After its install, a node's agent gets its renderings with the kubelet's client certificate,
/// and only its own; a certificate from elsewhere or another node's name gets nothing.
#[test]
fn a_node_fetches_its_renderings_with_its_kubelet_certificate() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let first = pool_target(d, "worker");
    let server = Server::start(d, http_port, mcs_port);
    let ca = d.join("tls/root-ca.crt");
    let url = format!("https://127.0.0.1:{mcs_port}/config/worker");

    let worker0 = node_certificate(d, "worker0", false);
    let (status, rendering, body) = fetch_as(&url, &ca, Some(&worker0));
    assert_eq!(
        (status, rendering.as_str()),
        (200, first.as_str()),
        "{body}"
    );
    let config = Config::from_json(body.as_bytes()).unwrap();
    let hostname = config.file("/etc/hostname").unwrap();
    assert_eq!(
        hostname.contents,
        kindling_ignition::Contents::Inline(b"worker0.demo.example.localdomain\n".to_vec())
    );

    // A new rendering: the node may ask for it by name, and still for the one it runs.
    std::fs::create_dir_all(d.join("snippets/worker")).unwrap();
    std::fs::write(
        d.join("snippets/worker/motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/x\n      contents:\n        inline: x\n",
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let second = pool_target(d, "worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, rendering, _) =
            fetch_as(&format!("{url}?rendering={second}"), &ca, Some(&worker0));
        if status == 200 {
            assert_eq!(rendering, second);
            break;
        }
        assert!(Instant::now() < deadline, "{status}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, rendering, _) = fetch_as(&format!("{url}?rendering={first}"), &ca, Some(&worker0));
    assert_eq!((status, rendering.as_str()), (200, first.as_str()));
    let (status, _, body) = fetch_as(
        &format!("{url}?rendering=rendered-worker-0000000000000000"),
        &ca,
        Some(&worker0),
    );
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = fetch_as(
        &format!("https://127.0.0.1:{mcs_port}/config/master"),
        &ca,
        Some(&worker0),
    );
    assert_eq!(status, 403, "{body}");

    // No certificate: a rendering by name is refused. A stranger's node name, or a CA of
    // someone else's, gets nothing.
    let (status, _, body) = fetch_as(&format!("{url}?rendering={first}"), &ca, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("kubelet's client certificate"), "{body}");
    let stranger = node_certificate(d, "intruder", false);
    let (status, _, body) = fetch_as(&url, &ca, Some(&stranger));
    assert_eq!(status, 403, "{body}");
    let forged = node_certificate(d, "worker0", true);
    assert_eq!(
        fetch_as(&url, &ca, Some(&forged)).0,
        0,
        "the handshake refuses it"
    );
}

/// `kindling certs` and `certs renew`, with the clock moved past the leaves' expiry: they are
/// listed as expired, a dry run writes nothing, and the renewal re-signs them under the same CAs
/// (openssl verifies them at the moved clock) into a new master rendering.
#[test]
fn certificates_past_their_expiry_are_renewed_under_the_same_cas() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let path = d.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", path]).expect(0);
    let master_before = pool_target(d, "master");
    let root_ca = std::fs::read(d.join("tls/root-ca.crt")).unwrap();

    let run = kindling(&["certs", "--dir", path, "--json"]);
    run.expect(0);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&run.stdout()).unwrap();
    let find = |source: &str| listed.iter().find(|c| c["source"] == source).cloned();
    let apiserver = find("tls/apiserver/master0.crt").expect("the apiserver's certificate");
    assert_eq!(apiserver["kind"], "leaf");
    assert_eq!(apiserver["machine"], "master0");
    assert!(
        apiserver["names"]
            .as_array()
            .unwrap()
            .contains(&"api-int.demo.example.localdomain".into())
    );
    assert_eq!(find("tls/root-ca.crt").unwrap()["kind"], "ca");
    assert_eq!(find("auth/kubeconfig").unwrap()["kind"], "kubeconfig");
    assert_eq!(find("auth/bootstrap-token").unwrap()["bootstrapOnly"], true);

    // 400 days later.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    let later_text = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let at_later = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindling"))
            .args(args)
            .env("KINDLING_NOW", &later_text)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let table = at_later(&["certs", "--dir", path]);
    let line = table
        .lines()
        .find(|l| l.contains("tls/apiserver/master0.crt"))
        .unwrap();
    assert!(line.ends_with("EXPIRED"), "{line}");

    let snapshot = crate::snapshot(d);
    let dry = at_later(&["certs", "renew", "--dir", path, "--dry-run"]);
    assert!(
        dry.contains("would re-sign tls/apiserver/master0.crt"),
        "{dry}"
    );
    assert_eq!(crate::snapshot(d), snapshot, "a dry run writes nothing");

    let renewed = at_later(&["certs", "renew", "--dir", path]);
    assert!(renewed.contains("kindling update"), "{renewed}");
    assert_eq!(
        std::fs::read(d.join("tls/root-ca.crt")).unwrap(),
        root_ca,
        "the same CA"
    );
    let verify = std::process::Command::new("openssl")
        .args([
            "verify",
            "-attime",
            &later.unix_timestamp().to_string(),
            "-CAfile",
        ])
        .arg(d.join("tls/root-ca.crt"))
        .arg(d.join("tls/apiserver/master0.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let table = at_later(&["certs", "--dir", path]);
    assert!(!table.contains("EXPIRED"), "{table}");
    // The masters' new certificates are in a new rendering of their pool.
    let master_after = pool_target(d, "master");
    assert_ne!(master_after, master_before);
}
