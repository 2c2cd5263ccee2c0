//! Several `kindling serve --store` replicas on one real etcd cluster (Debian's etcd-server 3.4,
//! three members, TLS with client certificates): the asset directory pushed with `kindling store
//! push`, each replica serving it, a new revision taken up by every replica within a second,
//! and each machine's boot chain answered from one revision throughout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kindling_testkit::{EtcdCluster, EtcdTls, port};

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::serve::{Server, admin_token, http_get};

/// An etcd cluster, an asset directory, and the arguments that reach the store.
pub(crate) struct Site {
    pub etcd: EtcdCluster,
    pub scratch: tempfile::TempDir,
    pub assets: tempfile::TempDir,
    /// `--store ... --etcd-ca ... --etcd-cert ... --etcd-key ...`
    pub store_args: Vec<String>,
    /// The directory the replicas share the images through.
    pub shared: PathBuf,
    /// The machines' view of the provisioning service (serverURL and mcsURL): the load
    /// balancer in front of the replicas.
    pub vip_http: u16,
    pub vip_mcs: u16,
}

impl Site {
    /// None (and says so) when etcd is not installed.
    pub(crate) fn start(test: &str) -> Option<Site> {
        if !kindling_testkit::have("etcd") {
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd is missing (test.sh installs etcd-server)"
            );
            eprintln!("SKIPPED {test}: etcd is not installed");
            return None;
        }
        let scratch = tempfile::tempdir().unwrap();
        let pki = scratch.path().join("etcd-pki");
        std::fs::create_dir_all(&pki).unwrap();
        let tls = EtcdTls::generate(&pki);
        let etcd = EtcdCluster::start(&scratch.path().join("etcd"), 3, &tls);
        let hosts: Vec<String> = etcd
            .client_urls()
            .iter()
            .map(|u| u.trim_start_matches("https://").to_string())
            .collect();
        let path = |name: &str| pki.join(name).display().to_string();
        let store_args = vec![
            "--store".into(),
            format!("etcd://{}/sites/test", hosts.join(",")),
            "--etcd-ca".into(),
            path("ca.crt"),
            "--etcd-cert".into(),
            path("client.crt"),
            "--etcd-key".into(),
            path("client.key"),
        ];
        let (vip_http, vip_mcs) = (port(), port());
        let assets = demo_on_loopback(vip_http, vip_mcs);
        kindling(&[
            "create",
            "ignition-configs",
            "--dir",
            assets.path().to_str().unwrap(),
        ])
        .expect(0);
        let shared = scratch.path().join("shared-blobs");
        Some(Site {
            etcd,
            scratch,
            assets,
            store_args,
            shared,
            vip_http,
            vip_mcs,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        self.assets.path()
    }

    /// `kindling store push` of the asset directory; its output.
    pub(crate) fn push(&self) -> String {
        let mut args = vec!["store", "push", "--dir", self.dir().to_str().unwrap()];
        args.extend(self.store_args.iter().map(String::as_str));
        args.extend(["--blobs-to", self.shared.to_str().unwrap()]);
        let run = kindling(&args);
        run.expect(0);
        run.stdout()
    }

    /// The real etcdctl (v3 API) on the store's members, with the client certificate; its
    /// stdout, which must be a success.
    pub(crate) fn etcdctl(&self, args: &[&str]) -> String {
        let pki = self.scratch.path().join("etcd-pki");
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd.client_urls().join(",")))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!("--cert={}", pki.join("client.crt").display()))
            .arg(format!("--key={}", pki.join("client.key").display()))
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Changes the inventory's kernel arguments to `value` and makes the configs again.
    pub(crate) fn edit(&self, value: &str) {
        let inventory = self.dir().join("inventory.yaml");
        let text = std::fs::read_to_string(&inventory).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.contains("kindling.test="))
            .map(String::from)
            .collect();
        let os = lines.iter().position(|l| l == "  os: fcos").unwrap();
        lines.insert(os + 1, format!("  kernelArgs: [kindling.test={value}]"));
        std::fs::write(&inventory, lines.join("\n") + "\n").unwrap();
        kindling(&[
            "create",
            "ignition-configs",
            "--dir",
            self.dir().to_str().unwrap(),
        ])
        .expect(0);
    }

    /// A replica on its own ports, with its own copy under the scratch directory.
    pub(crate) fn replica(&self, name: &str) -> Replica {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], port()));
        let mcs = SocketAddr::from(([127, 0, 0, 1], port()));
        let mut extra: Vec<&str> = self.store_args.iter().map(String::as_str).collect();
        extra.extend(["--blobs-from", self.shared.to_str().unwrap()]);
        let mut server = Server::start_at(&dir, http, mcs, &extra);
        server.admin = admin_token(self.dir());
        Replica { server, http, mcs }
    }
}

pub(crate) struct Replica {
    pub server: Server,
    pub http: SocketAddr,
    pub mcs: SocketAddr,
}

impl Replica {
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = http_get(self.http, path);
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// An MCS request over TLS to this replica, trusting the cluster's root CA: (status, body).
    pub(crate) fn mcs_get(&self, path: &str, ca: &Path, headers: &[(&str, &str)]) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .args([
                "-H",
                "Accept: application/vnd.coreos.ignition+json;version=3.3.0",
            ]);
        for (name, value) in headers {
            command.args(["-H", &format!("{name}: {value}")]);
        }
        let out = command
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.mcs.port()))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Replica {
    /// The events of `GET /api/v1/events` after id `since` (0: all), read for `wait`:
    /// (id, event).
    pub(crate) fn events(&self, since: u64, wait: Duration) -> Vec<(u64, serde_json::Value)> {
        let out = Command::new("curl")
            .args(["-sN", "--max-time", &format!("{}", wait.as_secs_f64())])
            .args(["-H", &format!("Last-Event-ID: {since}")])
            .args(["-H", &self.server.bearer()])
            .arg(format!("http://{}/api/v1/events", self.http))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut events = Vec::new();
        let mut id = None;
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().parse().ok();
            } else if let Some(data) = line.strip_prefix("data:") {
                let event = serde_json::from_str(data.trim()).unwrap();
                events.push((id.take().expect("an id before the data"), event));
            }
        }
        events
    }

    /// `POST /api/v1/events`, as a machine's agent reports a stage: the status.
    pub(crate) fn report(&self, body: &serde_json::Value) -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(body.to_string())
            .arg(format!("http://{}/api/v1/events", self.http))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn healthz(&self) -> String {
        self.get("/healthz").1
    }
}

/// Waits up to `limit` for `done`, every 100 ms.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// A worker0 report with its token, under report id `id`.
fn report_of(replica: &Replica, stage: &str, id: &str) -> serde_json::Value {
    let (_, script) = replica.get("/ipxe?mac=52-54-00-7e-01-20");
    let token = param(&script, "token").to_string();
    serde_json::json!({
        "mac": "52:54:00:7e:01:20",
        "token": token,
        "stage": stage,
        "result": "done",
        "id": id,
    })
}

#[test]
fn every_replica_shows_every_event_once_and_keeps_reports_through_a_lost_quorum() {
    let Some(mut site) =
        Site::start("every_replica_shows_every_event_once_and_keeps_reports_through_a_lost_quorum")
    else {
        return;
    };
    site.push();
    let replicas: Vec<Replica> = ["a", "b"].iter().map(|n| site.replica(n)).collect();
    let (a, b) = (&replicas[0], &replicas[1]);

    // One report sent to both replicas (as an agent does when the first dies before it
    // answers) is one event; each replica shows it, with the same id.
    let report = report_of(a, "agent node: apply end", "r-1");
    assert_eq!(a.report(&report), 204);
    assert_eq!(b.report(&report), 204);
    let once = |events: &[(u64, serde_json::Value)]| {
        events
            .iter()
            .filter(|(_, e)| e["stage"] == "agent node: apply end")
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            seen = [a, b]
                .iter()
                .map(|r| once(&r.events(0, Duration::from_millis(700))))
                .collect();
            seen.iter().all(|ids| ids.len() == 1)
        }),
        "{seen:?}"
    );
    assert_eq!(seen[0], seen[1], "the same id on every replica");
    // An id from replica a resumes the stream on replica b: the events after it, none before.
    let (_, boot) = a.get("/ipxe?mac=52-54-00-7e-01-21");
    assert!(boot.contains("#!ipxe"));
    let after = seen[0][0];
    let mut later = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        later = b.events(after, Duration::from_millis(700));
        later.iter().any(|(_, e)| e["machine"] == "worker1")
    }));
    assert!(later.iter().all(|(id, _)| *id > after), "{later:?}");
    // The machine list of b knows what a saw.
    let (_, machines) = b.server.admin_get("/api/v1/machines");
    let machines = String::from_utf8_lossy(&machines);
    assert!(machines.contains("worker1"), "{machines}");

    // Two of three etcd members die: no quorum. Both replicas still serve boot, from what they
    // have; a report is kept locally and acknowledged, and /healthz says why it is degraded.
    site.etcd.kill(1);
    site.etcd.kill(2);
    let (status, script) = b.get("/ipxe?mac=52-54-00-7e-01-20");
    assert_eq!(status, 200, "{script}");
    let kept = report_of(b, "agent node: kept while etcd had no quorum", "r-2");
    let started = Instant::now();
    assert_eq!(b.report(&kept), 204);
    assert!(started.elapsed() < Duration::from_secs(12));
    let health = b.healthz();
    assert!(
        health.starts_with("degraded: ") && health.contains("events are kept locally"),
        "{health}"
    );
    let pending = site
        .scratch
        .path()
        .join("b/.kindling/store/state/.kindling/pending.jsonl");
    assert!(
        std::fs::read_to_string(&pending)
            .unwrap()
            .contains("kept while etcd had no quorum"),
        "the report is on disk"
    );

    // The quorum returns: the kept report arrives once, on every replica, and b is healthy.
    site.etcd.restart(1);
    site.etcd.restart(2);
    site.etcd.wait_healthy_now();
    let stage = "agent node: kept while etcd had no quorum";
    assert!(
        eventually(Duration::from_secs(30), || {
            [a, b].iter().all(|r| {
                let events = r.events(0, Duration::from_millis(700));
                events.iter().filter(|(_, e)| e["stage"] == stage).count() == 1
            })
        }),
        "the kept report is not on every replica once:\n{}",
        b.server.log()
    );
    assert!(eventually(Duration::from_secs(10), || b.healthz() == "ok\n"));
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), "");
}

/// The value of `name=` in a URL or kernel argument line.
fn param<'a>(text: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=");
    let start = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {name}= in {text}"))
        + key.len();
    let rest = &text[start..];
    let end = rest.find(['&', ' ', '\n', '"']).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn replicas_serve_the_pushed_revision_and_switch_whole_to_the_next() {
    let Some(site) = Site::start("replicas_serve_the_pushed_revision_and_switch_whole_to_the_next")
    else {
        return;
    };
    let pushed = site.push();
    assert!(pushed.starts_with("revision 1:"), "{pushed}");
    let again = site.push();
    assert!(again.contains("unchanged: revision 1"), "{again}");
    let replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|n| site.replica(n)).collect();
    let ca = site.dir().join("tls/root-ca.crt");

    // One machine's boot, each step on another replica: every URL carries revision 1, and the
    // token made by one replica's copy of the key is accepted by the others.
    let (status, boot) = replicas[0].get("/boot.ipxe");
    assert_eq!(status, 200);
    assert!(boot.contains("&rev=1"), "{boot}");
    let (status, script) = replicas[0].get("/ipxe?mac=52-54-00-7e-01-20&rev=1");
    assert_eq!(status, 200, "{script}");
    let ignition_url = script
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("coreos.inst.ignition_url="))
        .unwrap_or_else(|| panic!("{script}"))
        .to_string();
    assert_eq!(param(&ignition_url, "rev"), "1");
    let path = ignition_url
        .strip_prefix(&format!("http://127.0.0.1:{}", site.vip_http))
        .unwrap();
    let (status, pointer) = replicas[1].get(path);
    assert_eq!(status, 200, "{pointer}");
    let pointer: serde_json::Value = serde_json::from_str(&pointer).unwrap();
    let source = pointer["ignition"]["config"]["merge"][0]["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        source,
        format!("https://127.0.0.1:{}/config/worker?rev=1", site.vip_mcs)
    );
    let token = param(&ignition_url, "token").to_string();
    let identity = [
        ("X-Kindling-Mac", "52-54-00-7e-01-20"),
        ("X-Kindling-Token", token.as_str()),
    ];
    for replica in &replicas {
        let (status, config) = replica.mcs_get("/config/worker?rev=1", &ca, &identity);
        assert_eq!(status, 200, "{config}");
        assert!(
            config.contains("worker0"),
            "the machine's own part is in it"
        );
        let (status, _) = replica.mcs_get("/config/worker?rev=1", &ca, &[identity[0]]);
        assert_eq!(status, 403, "no token, no config");
    }

    // A new revision: the kernel arguments change. Every replica serves it soon after the push;
    // a boot begun on revision 1 is still answered from revision 1.
    let inventory = site.dir().join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let edited = text.replace(
        "  os: fcos\n",
        "  os: fcos\n  kernelArgs: [kindling.test=revision2]\n",
    );
    assert_ne!(text, edited);
    std::fs::write(&inventory, edited).unwrap();
    kindling(&[
        "create",
        "ignition-configs",
        "--dir",
        site.dir().to_str().unwrap(),
    ])
    .expect(0);
    let pushed = site.push();
    let at = Instant::now();
    assert!(pushed.starts_with("revision 2:"), "{pushed}");
    for replica in &replicas {
        loop {
            let (_, boot) = replica.get("/boot.ipxe");
            if boot.contains("&rev=2") {
                break;
            }
            // Under a second in the release build (bench/ha.sh); this is a debug build that
            // may share the machine with the rest of the suite.
            assert!(
                at.elapsed() < Duration::from_secs(5),
                "a replica still serves revision 1 {:?} after the push:\n{}",
                at.elapsed(),
                replica.server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (_, new) = replicas[2].get("/ipxe?mac=52-54-00-7e-01-20&rev=2");
    assert!(new.contains("kindling.test=revision2"), "{new}");
    let (_, old) = replicas[2].get("/ipxe?mac=52-54-00-7e-01-20&rev=1");
    assert!(
        !old.contains("kindling.test") && old.contains("rev=1"),
        "{old}"
    );
    let (status, later) = replicas[2].get("/ipxe?mac=52-54-00-7e-01-20&rev=3");
    assert_eq!(status, 503, "{later}");
    assert!(
        later.contains("not laid out on this replica yet"),
        "{later}"
    );
    let (status, bad) = replicas[2].get("/ipxe?mac=52-54-00-7e-01-20&rev=x");
    assert_eq!(status, 400, "{bad}");

    // The machine token key is pinned: a push with another is refused, and changes nothing.
    let key = site.dir().join("tls/machine-token.key");
    let ours = std::fs::read(&key).unwrap();
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let mut args = vec!["store", "push", "--dir", site.dir().to_str().unwrap()];
    args.extend(site.store_args.iter().map(String::as_str));
    let run = kindling(&args);
    run.expect(1);
    assert!(
        run.stderr()
            .contains("differs from the one revision 2 has: every token handed out")
            && run.stderr().contains("--rotate-token-key"),
        "{}",
        run.stderr()
    );
    std::fs::write(&key, ours).unwrap();
    assert!(site.push().contains("unchanged: revision 2"));

    // `store pull` gives the directory back, secrets with their modes.
    let pulled = site.scratch.path().join("pulled");
    let mut args = vec!["store", "pull", "--dir", pulled.to_str().unwrap()];
    args.extend(site.store_args.iter().map(String::as_str));
    args.extend(["--blobs-from", site.shared.to_str().unwrap()]);
    let run = kindling(&args);
    run.expect(0);
    assert!(run.stdout().starts_with("revision 2 "), "{}", run.stdout());
    for file in [
        "inventory.yaml",
        "tls/mcs.key",
        "bootstrap.ign",
        "tls/machine-token.key",
    ] {
        let read = |dir: &Path| {
            std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        };
        assert_eq!(read(&pulled), read(site.dir()), "{file}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pulled.join("tls/mcs.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Pulling over an asset directory is refused, and changes nothing.
    let run = kindling(&args);
    run.expect(1);
    assert!(
        run.stderr().contains("pull into an empty one"),
        "{}",
        run.stderr()
    );
}

/// `store prune` keeps the newest revisions and deletes the rest with the blobs only they used
/// (read back with etcdctl); what is kept still pulls and serves whole. Pushes and prunes take
/// turns: a push waits while another holds the store's writer lease.
#[test]
fn store_prune_keeps_the_newest_revisions_and_a_push_waits_for_the_writer_before_it() {
    let Some(site) = Site::start(
        "store_prune_keeps_the_newest_revisions_and_a_push_waits_for_the_writer_before_it",
    ) else {
        return;
    };
    let inventory_digest = |site: &Site| {
        use sha2::Digest as _;
        let bytes = std::fs::read(site.dir().join("inventory.yaml")).unwrap();
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let mut digests = Vec::new();
    for n in 1..=3 {
        site.edit(&format!("revision{n}"));
        digests.push(inventory_digest(&site));
        assert!(site.push().starts_with(&format!("revision {n}:")));
    }
    let keys = |prefix: &str| -> Vec<String> {
        site.etcdctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let revisions = || {
        keys("/sites/test/revisions/")
            .iter()
            .map(|k| {
                k.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_start_matches('0')
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(revisions(), ["1", "2", "3"]);
    let blob = |digest: &str| keys(&format!("/sites/test/blobs/{digest}/"));
    assert!(!blob(&digests[0]).is_empty());

    let mut args = vec!["store", "prune", "--keep", "2"];
    args.extend(site.store_args.iter().map(String::as_str));
    let run = kindling(&args);
    run.expect(0);
    assert!(
        run.stdout()
            .starts_with("kept revisions 2-3 (2); removed revisions 1, "),
        "{}",
        run.stdout()
    );
    assert_eq!(revisions(), ["2", "3"]);
    assert!(
        blob(&digests[0]).is_empty(),
        "revision 1's inventory.yaml is left"
    );
    assert!(!blob(&digests[1]).is_empty() && !blob(&digests[2]).is_empty());
    // Nothing more to do the second time.
    let run = kindling(&args);
    run.expect(0);
    assert!(
        run.stdout().contains("removed revisions none, 0 blobs"),
        "{}",
        run.stdout()
    );

    // What is kept is whole: revision 2 pulls, a new replica serves revision 3.
    let pull = |revision: &str, into: &str| {
        let dir = site.scratch.path().join(into);
        let mut args = vec!["store", "pull", "--dir", dir.to_str().unwrap()];
        args.extend(site.store_args.iter().map(String::as_str));
        args.extend([
            "--blobs-from",
            site.shared.to_str().unwrap(),
            "--revision",
            revision,
        ]);
        (kindling(&args), dir)
    };
    let (run, dir) = pull("2", "pulled-2");
    run.expect(0);
    let pulled = std::fs::read_to_string(dir.join("inventory.yaml")).unwrap();
    assert!(pulled.contains("kindling.test=revision2"), "{pulled}");
    let (run, _) = pull("1", "pulled-1");
    run.expect(1);
    assert!(run.stderr().contains("no revision 1"), "{}", run.stderr());
    let replica = site.replica("late");
    let (status, script) = replica.get("/ipxe?mac=52-54-00-7e-01-20");
    assert_eq!(status, 200, "{script}");
    assert!(
        script.contains("kindling.test=revision3") && script.contains("rev=3"),
        "{script}"
    );

    // Someone else holds the writer lease: a push waits for it, then goes on.
    let lease = site.etcdctl(&["lease", "grant", "60"]);
    let lease = lease.split_whitespace().nth(1).unwrap().to_string();
    site.etcdctl(&[
        "put",
        "--lease",
        &lease,
        "/sites/test/leaders/writer",
        "another push",
    ]);
    site.edit("revision4");
    let mut push = Command::new(env!("CARGO_BIN_EXE_kindling"));
    push.args(["store", "push", "--dir", site.dir().to_str().unwrap()])
        .args(&site.store_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let push = push.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        site.etcdctl(&["get", "--print-value-only", "/sites/test/current"])
            .trim(),
        "3"
    );
    site.etcdctl(&["lease", "revoke", &lease]);
    let out = push.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("revision 4:"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        keys("/sites/test/leaders/writer").is_empty(),
        "the push gave the lease back"
    );
}

/// CSR approval on three replicas: exactly one (the leader) approves; killed with SIGKILL, it
/// is replaced by another within the lease's time to live, which approves what came meanwhile
/// and nothing twice. The API server is the fake (the approvals are counted at its door).
#[test]
fn csrs_are_approved_by_one_leader_and_by_another_once_it_dies() {
    use kindling_cluster::fake::FakeApiServer;
    let Some(site) = Site::start("csrs_are_approved_by_one_leader_and_by_another_once_it_dies")
    else {
        return;
    };
    site.push();
    let fake = FakeApiServer::new();
    let addr = fake.start_in_thread();
    let kubeconfig = site.scratch.path().join("fake.kubeconfig");
    std::fs::write(&kubeconfig, FakeApiServer::kubeconfig(addr)).unwrap();
    let token = std::fs::read_to_string(site.dir().join("auth/bootstrap-token")).unwrap();
    let user = format!("system:bootstrap:{}", &token[..6]);
    let start = |name: &str| {
        let dir = site.scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], port()));
        let mcs = SocketAddr::from(([127, 0, 0, 1], port()));
        let mut extra: Vec<&str> = site.store_args.iter().map(String::as_str).collect();
        extra.extend([
            "--approve-csrs",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ]);
        Server::start_at(&dir, http, mcs, &extra)
    };
    let mut replicas: Vec<Server> = ["a", "b", "c"].iter().map(|n| start(n)).collect();
    let approvals = |name: &str| {
        fake.writes()
            .iter()
            .filter(|(method, path)| {
                method == "PUT" && path.ends_with(&format!("/{name}/approval"))
            })
            .count()
    };
    let client = "kubernetes.io/kube-apiserver-client-kubelet";
    let put = |name: &str, node: &str| {
        fake.put(crate::cluster::csr(
            name,
            client,
            &user,
            &crate::cluster::pem(&format!("system:node:{node}"), &[]),
        ));
    };

    put("csr-worker0", "worker0");
    assert!(
        eventually(Duration::from_secs(30), || approvals("csr-worker0") == 1),
        "{}",
        replicas[0].log()
    );
    // (Its log line may come a moment after the approval: serve writes its log in batches.)
    let logged = Instant::now();
    let leader = loop {
        if let Some(leader) = replicas
            .iter()
            .position(|r| r.log().contains("approved CSR csr-worker0"))
        {
            break leader;
        }
        assert!(
            logged.elapsed() < Duration::from_secs(10),
            "no replica logged the approval"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let others = replicas
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != leader && r.log().contains("approved CSR"))
        .count();
    assert_eq!(others, 0, "only the leader approves");

    // The leader dies; a CSR comes meanwhile. Another replica takes over within the lease's
    // time to live (and a second to notice), approves it, and approves nothing twice.
    replicas[leader].kill();
    let killed = Instant::now();
    put("csr-worker1", "worker1");
    assert!(
        eventually(Duration::from_secs(30), || approvals("csr-worker1") == 1),
        "nobody took over"
    );
    let took = killed.elapsed();
    // The lease's TTL and a second to notice, and room for a debug build on a busy machine
    // to connect and list the CSRs.
    let limit = Duration::from_secs(kindling_store::election::TTL as u64 + 5);
    assert!(took < limit, "took over {took:?} after the leader died");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(approvals("csr-worker0"), 1, "approved twice");
    assert_eq!(approvals("csr-worker1"), 1, "approved twice");
}
