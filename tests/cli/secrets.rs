//! What an attacker on the boot network can and cannot get from `kindling serve`: one test per
//! claim of the README's "What a MAC address is worth". The real binary on loopback, curl from
//! chosen source addresses (all of 127/8 is local), and the real commands kindling puts on the
//! machines.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::serve::Server;

/// A served demo cluster in token mode (the default).
struct Site {
    dir: tempfile::TempDir,
    server: Server,
    mcs_port: u16,
}

impl Site {
    fn new() -> Site {
        let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
        let dir = demo_on_loopback(http_port, mcs_port);
        kindling(&[
            "create",
            "ignition-configs",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .expect(0);
        let server = Server::start(dir.path(), http_port, mcs_port);
        Site {
            dir,
            server,
            mcs_port,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What anyone who knows `mac` gets: the machine's pointer config, and the token in it.
    fn pointer(&self, mac: &str) -> (Value, String) {
        let (status, body) = self.server.get(&format!("/ignition?mac={mac}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let pointer: Value = serde_json::from_slice(&body).unwrap();
        let token = pointer["ignition"]["config"]["merge"][0]["httpHeaders"][1]["value"]
            .as_str()
            .unwrap()
            .to_string();
        (pointer, token)
    }

    /// GET /config/<pool> with a machine's MAC and token, from local address `from`: (status,
    /// body).
    fn fetch(&self, from: &str, pool: &str, mac: &str, token: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--interface", from, "--cacert"])
            .arg(self.path().join("tls/root-ca.crt"))
            .args(["-H", &format!("X-Kindling-Mac: {mac}")])
            .args(["-H", &format!("X-Kindling-Token: {token}")])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}/config/{pool}", self.mcs_port))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    fn events(&self, stage: &str) -> Vec<Value> {
        std::fs::read_to_string(self.path().join(".kindling/events.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["stage"] == stage)
            .collect()
    }
}

/// The unit file a served config starts on the machine.
fn unit<'a>(config: &'a Value, name: &str) -> &'a str {
    config["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))["contents"]
        .as_str()
        .unwrap()
}

/// A file of a served config, decoded.
fn file(config: &Value, path: &str) -> String {
    let f = config["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path}"));
    let bytes =
        kindling_ignition::data_url::decode(f["contents"]["source"].as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_mac_gets_the_pointer_and_token_but_the_secrets_go_only_to_the_first_address() {
    let site = Site::new();
    // Anyone who knows master0's MAC gets its pointer config and token: no keys in it.
    let (pointer, token) = site.pointer("52-54-00-7e-01-10");
    assert!(!pointer.to_string().contains("PRIVATE KEY"));
    let mac = "52-54-00-7e-01-10";

    // The thief fetches first, from 127.0.0.66: it gets the master config...
    let (status, body) = site.fetch("127.0.0.66", "master", mac, &token);
    assert_eq!(status, 200, "{body}\n{}", site.server.log());
    // ...and the real master0's install then fails loudly, naming the thief's address.
    let (status, body) = site.fetch("127.0.0.110", "master", mac, &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("already fetched from 127.0.0.66"), "{body}");
    let replayed = site.events("replayed");
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["machine"], "master0");
    let detail = replayed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("127.0.0.66") && detail.contains("127.0.0.110"),
        "{detail}"
    );
    // The token never reaches the log.
    assert!(!site.server.log().contains(&token));
    assert!(
        !std::fs::read_to_string(site.path().join(".kindling/events.jsonl"))
            .unwrap()
            .contains(&token)
    );
}

#[test]
fn a_machine_that_reported_its_install_gets_nothing_secret_until_a_person_arms_it() {
    let site = Site::new();
    let mac = "52-54-00-7e-01-20";
    let (_, token) = site.pointer(mac);
    let (status, body) = site.fetch("127.0.0.120", "worker", mac, &token);
    assert_eq!(status, 200, "{body}");
    // A retry from the same address (a first boot that failed) is served.
    assert_eq!(site.fetch("127.0.0.120", "worker", mac, &token).0, 200);
    let config: Value = serde_json::from_str(&body).unwrap();

    // The machine's first boot runs the report unit kindling put in its config, with the
    // identity file the server added: the command as systemd would run it (sh expands
    // ${mac} and ${token} from the environment file as systemd does, and reads the same
    // quoting).
    let report = unit(&config, "kindling-installed.service");
    let exec = report
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let identity = file(&config, "/etc/kindling/identity");
    let mut sh = Command::new("sh");
    sh.args(["-c", exec]);
    for line in identity.lines() {
        let (k, v) = line.split_once('=').unwrap();
        sh.env(k, v);
    }
    let out = sh.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(site.events("disarmed").len(), 1);
    assert_eq!(site.events("disarmed")[0]["machine"], "worker0");

    // From then on nothing secret is served for it, not even to its own address and token.
    let (status, body) = site.fetch("127.0.0.120", "worker", mac, &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("kindling machines arm worker0"), "{body}");

    // A person re-arms it for a re-install: the next address to ask gets it, once.
    let run = kindling(&[
        "machines",
        "arm",
        "worker0",
        "--dir",
        site.path().to_str().unwrap(),
    ]);
    run.expect(0);
    assert!(run.stdout().contains("worker0: armed"), "{}", run.stdout());
    assert_eq!(site.fetch("127.0.0.121", "worker", mac, &token).0, 200);
    assert_eq!(site.fetch("127.0.0.120", "worker", mac, &token).0, 403);
    let armed = site.events("armed");
    assert!(
        armed
            .iter()
            .any(|e| e["machine"] == "worker0" && e["detail"] == "by kindling machines arm"),
        "{armed:?}"
    );

    // An unknown machine is a usage error that lists the real ones.
    let run = kindling(&[
        "machines",
        "arm",
        "worker9",
        "--dir",
        site.path().to_str().unwrap(),
    ]);
    run.expect(2);
    assert!(
        run.stderr().contains("no machine named worker9"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_install_report_unit_is_valid_for_systemd() {
    if !kindling_testkit::have("systemd-analyze") {
        eprintln!(
            "skipping the_install_report_unit_is_valid_for_systemd: systemd-analyze is not installed"
        );
        return;
    }
    let dir = demo_on_loopback(8080, 22623);
    kindling(&[
        "create",
        "ignition-configs",
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .expect(0);
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ignition/worker.ign")).unwrap())
            .unwrap();
    let units = tempfile::tempdir().unwrap();
    let path = units.path().join("kindling-installed.service");
    std::fs::write(&path, unit(&config, "kindling-installed.service")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It may not find the identity file here; it must not find anything wrong with the unit.
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| {
            l.contains("kindling-installed.service") && !l.contains("/etc/kindling/identity")
        })
        .collect();
    assert!(problems.is_empty(), "{said}");
}

/// Every file of an Ignition config, decoded: (path, contents).
fn decoded(config: &Value) -> Vec<(String, String)> {
    config["storage"]["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    let text = f["contents"]["source"]
                        .as_str()
                        .and_then(kindling_ignition::data_url::decode)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    (f["path"].as_str().unwrap().to_string(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Standard base64, as kubeconfigs embed keys.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The files of an Ignition config that hold a private key or a credential (a kubeconfig's
/// client key, a bootstrap token).
fn secret_files(config: &Value) -> Vec<String> {
    decoded(config)
        .into_iter()
        .filter(|(_, text)| {
            text.contains("PRIVATE KEY")
                || text.contains("client-key-data")
                || text.contains("token: ")
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn the_root_ca_key_never_leaves_the_asset_directory_and_each_key_has_its_reason() {
    let dir = demo_on_loopback(8080, 22623);
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let read = |path: &str| -> Value {
        serde_json::from_slice(&std::fs::read(d.join(path)).unwrap()).unwrap()
    };
    // The root key's base64, as it would be in a PEM file or in a kubeconfig.
    let root_key = std::fs::read_to_string(d.join("tls/root-ca.key")).unwrap();
    let root_key_body: String = root_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let holds_root_key = |text: &str| {
        let flat: String = text.split_whitespace().collect();
        flat.contains(&root_key_body) || flat.contains(&base64_of(&root_key))
    };
    // The README's list, "What the machines hold": each key with the component that needs it.
    let control_plane = [
        "/etc/kubernetes/pki/csr-signer.key", // controller manager: signs kubelet CSRs
        "/etc/kubernetes/pki/apiserver-kubelet-client.key", // apiserver: logs, exec on kubelets
        "/etc/kubernetes/pki/apiserver-etcd-client.key", // apiserver: its etcd client
        "/etc/kubernetes/pki/front-proxy-client.key", // apiserver: aggregated APIs
        "/etc/kubernetes/pki/sa.key", // controller manager, apiserver: service-account tokens
        "/etc/kubernetes/controller-manager.conf", // controller manager's own identity
        "/etc/kubernetes/scheduler.conf", // scheduler's own identity
    ];
    let mut master: Vec<&str> = vec!["/etc/kubernetes/bootstrap-kubelet.conf"];
    master.extend(control_plane);
    let mut bootstrap: Vec<&str> = control_plane.to_vec();
    bootstrap.extend([
        "/etc/kubernetes/admin.conf", // the bootstrap agent applies the manifests
        "/etc/kubernetes/pki/apiserver.key", // apiserver: serves the API (its own address)
        "/etc/kubernetes/pki/etcd/server.key", // its temporary etcd member
        "/etc/kubernetes/pki/etcd/peer.key",
    ]);
    for (path, want) in [
        ("bootstrap.ign", bootstrap),
        ("ignition/master.ign", master),
        (
            "ignition/worker.ign",
            vec!["/etc/kubernetes/bootstrap-kubelet.conf"],
        ),
        (
            "ignition/machines/master0.ign",
            vec![
                "/etc/kubernetes/pki/apiserver.key",
                "/etc/kubernetes/pki/etcd/server.key",
                "/etc/kubernetes/pki/etcd/peer.key",
            ],
        ),
        ("ignition/machines/worker0.ign", vec![]),
        ("master.ign", vec![]),
        ("worker.ign", vec![]),
    ] {
        let config = read(path);
        let mut have = secret_files(&config);
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        have.sort();
        want.sort();
        assert_eq!(have, want, "{path}");
        // Not even inside another file.
        for (file, text) in decoded(&config) {
            assert!(
                !holds_root_key(&text),
                "{path}: {file} holds the root CA key"
            );
        }
    }

    // A kubelet certificate as the controller manager signs it (openssl with the CSR signer's
    // key) is trusted by what the API server trusts (the bundle), and chains to the root.
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let p = |path: &Path| path.to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p(&w("kubelet.key")),
        "-out",
        &p(&w("kubelet.csr")),
        "-subj",
        "/O=system:nodes/CN=system:node:worker0.demo.example.localdomain",
    ]);
    std::fs::write(w("ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&w("kubelet.csr")),
        "-CA",
        &p(&d.join("tls/csr-signer.crt")),
        "-CAkey",
        &p(&d.join("tls/csr-signer.key")),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p(&w("ext")),
        "-out",
        &p(&w("kubelet.crt")),
    ]);
    let verified = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        &p(&d.join("tls/client-ca-bundle.crt")),
        &p(&w("kubelet.crt")),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let chained = openssl(&[
        "verify",
        "-CAfile",
        &p(&d.join("tls/root-ca.crt")),
        "-untrusted",
        &p(&d.join("tls/csr-signer.crt")),
        &p(&w("kubelet.crt")),
    ]);
    assert!(chained.contains(": OK"), "{chained}");
    // The signer signs leaves only.
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &p(&d.join("tls/csr-signer.crt")),
    ]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
}
