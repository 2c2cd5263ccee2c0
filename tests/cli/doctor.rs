//! `kindling doctor` against real daemons: BIND's `named` serving the zones `kindling create
//! infra` writes, on a loopback port; `haproxy` with the `haproxy.cfg` it writes, on loopback
//! VIPs; and `kindling serve`. Each test breaks the setup the way the runbooks did and checks
//! that doctor names that exact fault.
//!
//! Every address is in 127/8 (all of it is local on Linux): each test picks its own 127.x.y.0/24,
//! so tests running in parallel do not share VIPs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use kindling_testkit::{Haproxy, Named};
use serde_json::Value;

use crate::serve::Server;
use crate::{fixtures, kindling};

/// A fresh 127.x.y prefix for one test.
fn net() -> String {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("127.{}.{}", 100 + (std::process::id() % 100), 10 + n)
}

fn reverse_zone(net: &str) -> String {
    let o: Vec<&str> = net.split('.').collect();
    format!("{}.{}.{}.in-addr.arpa", o[2], o[1], o[0])
}

fn fixture(name: &str, net: &str) -> String {
    std::fs::read_to_string(fixtures().join("doctor").join(name))
        .unwrap()
        .replace("@NET@", net)
}

/// An asset directory with the doctor cluster's description and what `kindling create infra`
/// makes of it.
struct Lab {
    dir: tempfile::TempDir,
    net: String,
}

impl Lab {
    fn new() -> Lab {
        let net = net();
        let dir = tempfile::tempdir().unwrap();
        for f in ["install-config.yaml", "inventory.yaml"] {
            std::fs::write(dir.path().join(f), fixture(f, &net)).unwrap();
        }
        let lab = Lab { dir, net };
        lab.create_infra();
        lab
    }

    fn create_infra(&self) {
        kindling(&["create", "infra", "--dir", self.path().to_str().unwrap()]).expect(0);
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.net)
    }

    fn named_dir(&self) -> PathBuf {
        self.path().join("infra/named")
    }

    fn forward_zone_file(&self) -> PathBuf {
        self.named_dir().join("lab.example.test.zone")
    }

    fn reverse_zone_file(&self) -> PathBuf {
        self.named_dir()
            .join(format!("{}.zone", reverse_zone(&self.net)))
    }

    /// Runs `kindling doctor --json` with extra arguments: (exit code, findings, stdout).
    fn doctor(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let mut all = vec!["doctor", "--json", "--dir", self.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let started = Instant::now();
        let run = kindling(&all);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "doctor took {:?}",
            started.elapsed()
        );
        assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        let report: Value = serde_json::from_str(&run.stdout())
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()));
        let findings = report["findings"].as_array().unwrap().clone();
        (run.code(), findings, run.stdout())
    }
}

/// A zone file as text, edited by record owner (its first word), as a user would by hand.
struct ZoneEdit {
    path: PathBuf,
    original: String,
}

impl ZoneEdit {
    fn open(path: PathBuf) -> ZoneEdit {
        let original = std::fs::read_to_string(&path).unwrap();
        ZoneEdit { path, original }
    }

    /// The 1-based line of the first record owned by `owner`.
    fn line_of(&self, owner: &str) -> usize {
        self.original
            .lines()
            .position(|l| l.split_whitespace().next() == Some(owner))
            .unwrap_or_else(|| panic!("{} has no record for {owner}", self.path.display()))
            + 1
    }

    /// Writes the zone with the records of `owner` changed by `f` (`None` deletes them).
    fn write_with(&self, owner: &str, f: impl Fn(&str) -> Option<String>) {
        let _ = self.line_of(owner);
        let mut out = String::new();
        for line in self.original.lines() {
            let edited = if line.split_whitespace().next() == Some(owner) {
                f(line)
            } else {
                Some(line.to_string())
            };
            if let Some(l) = edited {
                out.push_str(&l);
                out.push('\n');
            }
        }
        std::fs::write(&self.path, out).unwrap();
    }

    fn write_text(&self, text: String) {
        std::fs::write(&self.path, text).unwrap();
    }

    fn restore(&self) {
        std::fs::write(&self.path, &self.original).unwrap();
    }
}

/// The findings of one severity (and check id, when given).
fn with<'a>(findings: &'a [Value], severity: &str, check: Option<&str>) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| f["severity"] == severity && check.is_none_or(|c| f["check"] == c))
        .collect()
}

/// The one error of `check` about `subject`, with all errors shown when it is missing.
fn error<'a>(findings: &'a [Value], check: &str, subject: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["severity"] == "error" && f["check"] == check && f["subject"] == subject)
        .unwrap_or_else(|| {
            panic!(
                "no error {check} about {subject}; errors: {:#?}",
                with(findings, "error", None)
            )
        })
}

fn text(f: &Value, field: &str) -> String {
    f[field].as_str().unwrap_or_default().to_string()
}

/// A real `named` serving the lab's `infra/named/` as a name server would: its `named.conf`
/// included, the zone files in its directory.
fn named(lab: &Lab) -> Named {
    let zones = lab.named_dir();
    Named::start(
        &zones,
        &format!("include \"{}/named.conf\";", zones.display()),
    )
}

#[test]
fn dns_as_the_runbook_left_it_broken_one_fault_at_a_time() {
    let lab = Lab::new();
    let dns = |lab: &Lab| {
        let named = named(lab);
        lab.doctor(&["--resolver", &named.addr().to_string(), "--area", "dns"])
    };
    let forward = ZoneEdit::open(lab.forward_zone_file());
    let reverse = ZoneEdit::open(lab.reverse_zone_file());
    let at = |zone: &ZoneEdit, owner: &str| {
        format!(
            "infra/named/{}:{}",
            zone.path.file_name().unwrap().to_string_lossy(),
            zone.line_of(owner)
        )
    };

    // named keeps binary files next to the zones when infra/named is its directory; the lint
    // skips them.
    std::fs::write(
        lab.named_dir().join("managed-keys.bind.jnl"),
        [0xff, 0xfe, 0x00, 0x80],
    )
    .unwrap();

    // The zones `kindling create infra` wrote: no error, no warning.
    let (code, findings, out) = dns(&lab);
    assert_eq!(code, 0, "{out}");
    assert!(with(&findings, "warning", None).is_empty(), "{out}");
    assert_eq!(with(&findings, "ok", Some("dns.forward")).len(), 1, "{out}");
    assert_eq!(with(&findings, "ok", Some("dns.apps-wildcard")).len(), 1);
    assert_eq!(with(&findings, "ok", Some("dns.reverse")).len(), 1);
    assert_eq!(with(&findings, "ok", Some("dns.zone-file")).len(), 1);
    let zone_ok = with(&findings, "ok", Some("dns.zone"));
    assert_eq!(zone_ok[0]["subject"], reverse_zone(&lab.net));

    // api on the ingress VIP.
    forward.write_with("api", |l| Some(l.replace(&lab.ip(10), &lab.ip(11))));
    let (code, findings, _) = dns(&lab);
    assert_eq!(code, 4);
    let f = error(&findings, "dns.forward", "api.lab.example.test");
    assert!(
        text(f, "what").contains(&format!("{} (the ingress VIP)", lab.ip(11))),
        "{f:#}"
    );
    let f = error(&findings, "dns.zone-file", &at(&forward, "api"));
    assert!(text(f, "what").contains("the ingress VIP"), "{f:#}");
    forward.restore();

    // *.app instead of *.apps.
    forward.write_with("*.apps", |l| Some(l.replacen("*.apps", "*.app", 1)));
    let (code, findings, _) = dns(&lab);
    assert_eq!(code, 4);
    let f = error(&findings, "dns.apps-wildcard", "*.apps.lab.example.test");
    assert!(text(f, "what").contains("'*.app', not '*.apps'"), "{f:#}");
    error(&findings, "dns.zone-file", &at(&forward, "*.apps"));
    forward.restore();

    // worker0's PTR missing.
    reverse.write_with("120", |_| None);
    let (code, findings, _) = dns(&lab);
    assert_eq!(code, 4);
    let f = error(
        &findings,
        "dns.reverse",
        &format!("{} (worker0)", lab.ip(120)),
    );
    assert!(text(f, "what").contains("no PTR record"), "{f:#}");
    assert!(text(f, "what").contains("localhost"), "{f:#}");
    assert_eq!(with(&findings, "error", None).len(), 1, "{findings:#?}");
    reverse.restore();

    // The reverse zone copied from another domain: its SOA and NS name another server.
    reverse.write_text(
        reverse
            .original
            .replace("ns1.lab.example.test.", "ns1.example.com."),
    );
    let (code, findings, _) = dns(&lab);
    assert_eq!(code, 4);
    let f = error(&findings, "dns.zone", &reverse_zone(&lab.net));
    let what = text(f, "what");
    assert!(what.contains("SOA primary ns1.example.com"), "{what}");
    assert!(what.contains("NS ns1.example.com"), "{what}");
    assert!(what.contains("served by ns1.lab.example.test"), "{what}");
    assert!(what.contains("do not resolve: ns1.example.com"), "{what}");
    reverse.restore();

    // The name server's A record missing: BIND refuses the whole forward zone.
    forward.write_with("ns1", |_| None);
    let (code, findings, out) = dns(&lab);
    assert_eq!(code, 4);
    let f = error(&findings, "dns.zone", "lab.example.test");
    assert!(text(f, "what").contains("no loaded zone"), "{f:#}");
    let ns_line = forward
        .original
        .lines()
        .position(|l| l.contains(" NS "))
        .unwrap()
        + 1;
    let f = error(
        &findings,
        "dns.zone-file",
        &format!("infra/named/lab.example.test.zone:{ns_line}"),
    );
    assert!(
        text(f, "what").contains(
            "NS ns1.lab.example.test, which is inside the zone but has no A or AAAA record"
        ),
        "{f:#}"
    );
    // One finding for the zone, not one per name in it.
    assert!(
        with(&findings, "error", Some("dns.forward")).is_empty(),
        "{out}"
    );
    forward.restore();
}

#[test]
fn a_dns_server_that_does_not_answer_is_one_finding_and_doctor_ends_quickly() {
    let lab = Lab::new();
    // A UDP port nobody reads: bound, never answered.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (code, findings, _) = lab.doctor(&["--resolver", &resolver, "--area", "dns"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, 4);
    error(&findings, "dns.resolver", &resolver);
    assert_eq!(with(&findings, "error", Some("dns.resolver")).len(), 1);
}

/// `haproxy` with `config` as `infra/haproxy.cfg`, where doctor reads it too.
fn start_haproxy(lab: &Lab, config: &str) -> Haproxy {
    let path = lab.path().join("infra/haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    Haproxy::start(&path).unwrap_or_else(|e| {
        panic!(
            "{e}\n(binding ports 80 and 443 needs root or net.ipv4.ip_unprivileged_port_start=0)"
        )
    })
}

/// The lab's generated haproxy.cfg, made runnable beside other tests: its statistics page on
/// a free port.
fn generated_haproxy_cfg(lab: &Lab) -> String {
    let cfg = std::fs::read_to_string(lab.path().join("infra/haproxy.cfg")).unwrap();
    let stats = cfg
        .lines()
        .find(|l| l.trim_start().starts_with("bind 127.0.0.1:"))
        .expect("a statistics listener on 127.0.0.1")
        .trim()
        .to_string();
    cfg.replacen(
        &stats,
        &format!("bind 127.0.0.1:{}", kindling_testkit::port()),
        1,
    )
}

/// `cfg` without the section that starts with `header` (up to the next blank line).
fn without_section(cfg: &str, header: &str) -> String {
    let start = cfg
        .find(header)
        .unwrap_or_else(|| panic!("no '{header}' in:\n{cfg}"));
    let end = cfg[start..]
        .find("\n\n")
        .map_or(cfg.len(), |i| start + i + 2);
    format!("{}{}", &cfg[..start], &cfg[end..])
}

#[test]
fn the_load_balancer_frontends_and_the_machine_config_server_exposure() {
    let lab = Lab::new();
    let config = generated_haproxy_cfg(&lab);

    {
        let _haproxy = start_haproxy(&lab, &config);
        let (code, findings, out) = lab.doctor(&["--area", "load-balancer"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(with(&findings, "ok", Some("lb.frontend")).len(), 5, "{out}");
        assert_eq!(
            with(&findings, "ok", Some("lb.mcs-exposure")).len(),
            2,
            "{out}"
        );
        // No CA yet: the API check says what it skipped, as a note.
        let readyz = with(&findings, "info", Some("lb.readyz"));
        assert!(text(readyz[0], "what").contains("skipped"), "{out}");

        // With the cluster's CA, a 6443 frontend whose backends (the masters) are not up is an
        // API that is not up yet: a note before the install, not an error.
        kindling(&["create", "manifests", "--dir", lab.path().to_str().unwrap()]).expect(0);
        let (code, findings, out) = lab.doctor(&["--area", "load-balancer"]);
        assert_eq!(code, 0, "{out}");
        let readyz = with(&findings, "info", Some("lb.readyz"));
        assert!(
            text(readyz[0], "what").starts_with("API not up yet"),
            "{out}"
        );
    }

    // The machine config server's frontend missing.
    let without_mcs = without_section(&config, "frontend machine-config\n");
    {
        let _haproxy = start_haproxy(&lab, &without_mcs);
        let (code, findings, _) = lab.doctor(&["--area", "load-balancer"]);
        assert_eq!(code, 4);
        let f = error(&findings, "lb.frontend", &format!("{}:22623", lab.ip(9)));
        let what = text(f, "what");
        assert!(what.contains("the machine config server"), "{what}");
        assert!(what.contains("has no frontend binding"), "{what}");
        assert_eq!(with(&findings, "error", None).len(), 1, "{findings:#?}");
    }

    // 22623 also bound on the external API VIP.
    let mcs_bind = format!("    bind {}:22623\n", lab.ip(9));
    assert!(config.contains(&mcs_bind), "{config}");
    let exposed = config.replace(
        &mcs_bind,
        &format!("{mcs_bind}    bind {}:22623\n", lab.ip(10)),
    );
    {
        let _haproxy = start_haproxy(&lab, &exposed);
        let (code, findings, _) = lab.doctor(&["--area", "load-balancer"]);
        assert_eq!(code, 4);
        let f = error(
            &findings,
            "lb.mcs-exposure",
            &format!("{}:22623", lab.ip(10)),
        );
        assert!(text(f, "what").contains("open on the API VIP"), "{f:#}");
    }
}

/// A one-shot HTTP server answering every request with `body`.
fn http_stub(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn provisioning_against_kindling_serve_and_the_runbooks_boot_script() {
    let lab = Lab::new();
    // The machine config server by name, as machines reach it: api-int resolves (through the
    // lab's named) to the api-int VIP, where kindling serve's MCS listens.
    let named = named(&lab);
    let (http, mcs) = (kindling_testkit::port(), kindling_testkit::port());
    let mcs_addr = format!("{}:{mcs}", lab.ip(9));
    let inventory = lab.path().join("inventory.yaml");
    let edited = std::fs::read_to_string(&inventory).unwrap().replace(
        &format!("  serverURL: http://{}:8080\n", lab.ip(2)),
        &format!(
            "  serverURL: http://127.0.0.1:{http}\n  mcsURL: https://api-int.lab.example.test:{mcs}\n"
        ),
    );
    std::fs::write(&inventory, edited).unwrap();
    crate::seed_mirror(lab.path());
    kindling(&[
        "create",
        "ignition-configs",
        "--dir",
        lab.path().to_str().unwrap(),
    ])
    .expect(0);

    let serve = Server::start_at(
        lab.path(),
        SocketAddr::from(([127, 0, 0, 1], http)),
        mcs_addr.parse().unwrap(),
        &[],
    );

    let resolver = named.addr().to_string();
    // The OS images the boot script names are not there yet: the machines would stop half way
    // through their boot.
    let (code, findings, out) = lab.doctor(&["--resolver", &resolver, "--area", "provisioning"]);
    assert_eq!(code, 4, "{out}");
    let images = with(&findings, "error", Some("provisioning.boot-image"));
    let named_images: Vec<String> = images.iter().map(|f| text(f, "subject")).collect();
    assert_eq!(
        named_images,
        [
            format!("http://127.0.0.1:{http}/assets/fcos/fedora-coreos-live-kernel-x86_64"),
            format!("http://127.0.0.1:{http}/assets/fcos/fedora-coreos-live-rootfs.x86_64.img"),
            format!("http://127.0.0.1:{http}/assets/fcos/fedora-coreos-live-initramfs.x86_64.img"),
        ],
        "{out}"
    );
    assert!(text(images[0], "what").contains("404"), "{out}");
    assert!(text(images[0], "fix").contains("/assets/"), "{out}");
    for file in [
        "fedora-coreos-live-kernel-x86_64",
        "fedora-coreos-live-initramfs.x86_64.img",
        "fedora-coreos-live-rootfs.x86_64.img",
    ] {
        let path = lab.path().join("assets/fcos").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file).unwrap();
    }
    let (code, findings, out) = lab.doctor(&[
        "--resolver",
        &resolver,
        "--area",
        "provisioning,certificates",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        with(&findings, "ok", Some("provisioning.boot-image")).len(),
        3,
        "{out}"
    );
    assert_eq!(
        with(&findings, "ok", Some("provisioning.boot-script")).len(),
        1,
        "{out}"
    );
    assert_eq!(
        with(&findings, "ok", Some("provisioning.mcs-tls")).len(),
        1,
        "{out}"
    );
    assert_eq!(
        with(&findings, "ok", Some("certs.bootstrap")).len(),
        1,
        "{out}"
    );
    assert_eq!(with(&findings, "ok", Some("certs.ca")).len(), 1, "{out}");

    // Another cluster's CA: the machines would reject this machine config server.
    let other = tempfile::tempdir().unwrap();
    for f in ["install-config.yaml", "inventory.yaml"] {
        std::fs::copy(lab.path().join(f), other.path().join(f)).unwrap();
    }
    kindling(&[
        "create",
        "manifests",
        "--dir",
        other.path().to_str().unwrap(),
    ])
    .expect(0);
    std::fs::copy(
        other.path().join("tls/root-ca.crt"),
        lab.path().join("tls/root-ca.crt"),
    )
    .unwrap();
    let (code, findings, _) = lab.doctor(&["--resolver", &resolver, "--area", "provisioning"]);
    assert_eq!(code, 4);
    let f = error(
        &findings,
        "provisioning.mcs-tls",
        &format!("https://api-int.lab.example.test:{mcs}"),
    );
    assert!(
        text(f, "what").contains("the machines will reject"),
        "{f:#}"
    );
    // The fix names this asset directory, not a placeholder.
    assert!(
        text(f, "fix").contains(&format!("kindling serve --dir {}'", lab.path().display())),
        "{f:#}"
    );
    drop(serve);

    // The runbook's boot script: "# !ipxe".
    let port = http_stub("# !ipxe\nchain http://x/ipxe\n");
    let edited = std::fs::read_to_string(&inventory).unwrap().replace(
        &format!("127.0.0.1:{http}\n"),
        &format!("127.0.0.1:{port}\n"),
    );
    std::fs::write(&inventory, edited).unwrap();
    let (code, findings, _) = lab.doctor(&["--area", "provisioning"]);
    assert_eq!(code, 4);
    let f = error(
        &findings,
        "provisioning.boot-script",
        &format!("http://127.0.0.1:{port}/boot.ipxe"),
    );
    assert!(
        text(f, "what").contains("'# !ipxe' instead of '#!ipxe'"),
        "{f:#}"
    );
}

#[test]
fn certificates_expiring_within_the_bootstrap_window_are_errors() {
    let lab = Lab::new();
    kindling(&["create", "manifests", "--dir", lab.path().to_str().unwrap()]).expect(0);
    // Bootstrap certificates live twice the 24 h window: a 72 h window outlives them.
    let (code, findings, out) =
        lab.doctor(&["--area", "certificates", "--bootstrap-window-hours", "72"]);
    assert_eq!(code, 4, "{out}");
    error(&findings, "certs.bootstrap", "tls/bootstrap/admin.crt");
    error(
        &findings,
        "certs.bootstrap",
        "tls/etcd/bootstrap-server.crt",
    );
    let f = error(&findings, "certs.bootstrap", "tls/etcd/bootstrap-peer.crt");
    assert!(
        text(f, "fix").contains("kindling create ignition-configs"),
        "{f:#}"
    );
    // A directory without tls/: the skipped checks are named.
    let (code, findings, _) = Lab::new().doctor(&["--area", "certificates"]);
    assert_eq!(code, 0);
    assert_eq!(with(&findings, "info", Some("certs.skipped")).len(), 1);
}

#[test]
fn human_output_groups_by_area_and_an_invalid_description_exits_3() {
    let lab = Lab::new();
    let run = kindling(&[
        "doctor",
        "--dir",
        lab.path().to_str().unwrap(),
        "--area",
        "certificates",
    ]);
    run.expect(0);
    let out = run.stdout();
    assert!(out.contains("Cluster description\n  ok"), "{out}");
    assert!(out.contains("Certificates\n  info"), "{out}");
    assert!(out.contains("[certs.skipped]"), "{out}");

    let help = kindling(&["--help"]);
    assert!(
        help.stdout().contains("4  doctor found errors"),
        "{}",
        help.stdout()
    );

    std::fs::write(lab.path().join("inventory.yaml"), "apiVersion: nope\n").unwrap();
    kindling(&["doctor", "--dir", lab.path().to_str().unwrap()]).expect(3);
}
