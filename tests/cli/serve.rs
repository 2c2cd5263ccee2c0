//! `kindling serve` as machines meet it: the real binary on loopback, the real Ignition fetching
//! a pointer config from it and then its pool config over TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kindling_testkit::{Daemon, Haproxy, Proto, READY_TIMEOUT};

use crate::ignition_configs::demo_on_loopback;
use crate::{ignition_runner, kindling};

/// A running `kindling serve`, stopped with SIGTERM when dropped.
pub(crate) struct Server {
    daemon: Daemon,
    /// The boot server's address.
    http: SocketAddr,
    /// The admin token of the API (`auth/kindling-admin-token` of what it serves).
    pub(crate) admin: Option<String>,
}

impl Server {
    pub(crate) fn start(dir: &Path, http_port: u16, mcs_port: u16) -> Server {
        Server::start_with(dir, http_port, mcs_port, &[])
    }

    /// `start`, with more `kindling serve` arguments.
    pub(crate) fn start_with(dir: &Path, http_port: u16, mcs_port: u16, extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1", dir, http_port, mcs_port, extra)
    }

    /// `start_with`, listening on another local address.
    fn start_on(host: &str, dir: &Path, http_port: u16, mcs_port: u16, extra: &[&str]) -> Server {
        let addr = |port| SocketAddr::new(host.parse().unwrap(), port);
        Server::start_at(dir, addr(http_port), addr(mcs_port), extra)
    }

    /// `kindling serve` with its boot server on `http` and its machine config server on `mcs`.
    /// Ready when its own process listens on both and `/healthz` answers. The ports are part of
    /// the cluster description the test made, so there is no retry on others: they come from
    /// [`kindling_testkit::port`], which hands none out twice.
    pub(crate) fn start_at(
        dir: &Path,
        http: SocketAddr,
        mcs: SocketAddr,
        extra: &[&str],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
        command
            .args(["serve", "--dir"])
            .arg(dir)
            .args(["--http", &http.to_string(), "--mcs", &mcs.to_string()])
            .args(extra);
        let daemon = Daemon::spawn("kindling serve", command, &dir.join("serve.log"))
            .unwrap_or_else(|e| panic!("{e}"))
            .terminate_on_drop();
        let mut server = Server {
            daemon,
            http,
            admin: None,
        };
        server
            .daemon
            .wait_listening(
                &[(http, Proto::Tcp), (mcs, Proto::Tcp)],
                READY_TIMEOUT,
                |_| http_get(http, "/healthz").0 == 200,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        // Made by serve at its first start; a replica's is the store's, which its test sets.
        server.admin = admin_token(dir);
        server
    }

    /// `Authorization: Bearer <the admin token>`, for the API's reads.
    pub(crate) fn bearer(&self) -> String {
        let token = self.admin.as_deref().expect("the admin token is known");
        format!("Authorization: Bearer {}", token.trim())
    }

    /// [`Server::get`] as the admin.
    pub(crate) fn admin_get(&self, path: &str) -> (u16, Vec<u8>) {
        http_request(self.http, path, &self.bearer())
    }
    /// A plain HTTP/1.1 GET from the boot server: (status, body); status 0 when nothing answers.
    pub(crate) fn get(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(self.http, path)
    }

    /// The `coreos.inst.ignition_url` the iPXE script of the machine with `mac` (hyphenated)
    /// names: its first config's URL, with its token.
    pub(crate) fn ignition_url(&self, mac: &str) -> String {
        let (status, script) = self.get(&format!("/ipxe?mac={mac}"));
        assert_eq!(status, 200);
        String::from_utf8(script)
            .unwrap()
            .split_whitespace()
            .find_map(|a| a.strip_prefix("coreos.inst.ignition_url="))
            .expect("the script names an Ignition URL")
            .to_string()
    }

    pub(crate) fn log(&self) -> String {
        self.daemon.log()
    }

    /// Its log once `done` holds of it (see `Daemon::log_when`).
    pub(crate) fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        self.daemon.log_when(done)
    }

    /// The boot server's address.
    pub(crate) fn http(&self) -> SocketAddr {
        self.http
    }

    /// Kills it with SIGKILL, as a host that dies.
    pub(crate) fn kill(&mut self) {
        let _ = self.daemon.child().kill();
        let _ = self.daemon.child().wait();
    }
}

/// A plain HTTP/1.1 GET: (status, body); status 0 when nothing answers.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_request(addr, path, "")
}

/// The admin token of the asset directory `dir`, if it has one.
pub(crate) fn admin_token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("auth/kindling-admin-token"))
        .ok()
        .map(|t| t.trim().to_string())
}

/// [`http_get`] with one more header line (`Name: value`), or none when empty.
fn http_request(addr: SocketAddr, path: &str, header: &str) -> (u16, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return (0, Vec::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let header = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{header}Connection: close\r\n\r\n",
        addr.ip()
    );
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw[split..].to_vec())
}

/// GETs an HTTPS URL trusting `ca`, with extra headers; returns the status.
fn https_status(url: &str, ca: &Path, headers: &[(&str, &str)]) -> u16 {
    let headers: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k:?}: {v:?}"))
        .collect();
    let script = format!(
        "import ssl, sys, urllib.request, urllib.error\n\
         ctx = ssl.create_default_context(cafile={ca:?})\n\
         req = urllib.request.Request({url:?}, headers={{{}}})\n\
         try:\n    print(urllib.request.urlopen(req, context=ctx).status)\n\
         except urllib.error.HTTPError as e:\n    print(e.code)\n",
        headers.join(", "),
        ca = ca.display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_real_ignition_boots_a_worker_from_kindling_serve() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    // The OS images are not in assets/: a warning names each, before anything boots.
    assert!(
        run.stderr().contains(
            "assets/fcos/fedora-coreos-live-kernel-x86_64: the machines' boot script names it, but it is not there"
        ) && run.stderr().contains("kindling mirror --from-release"),
        "{}",
        run.stderr()
    );
    let server = Server::start(d, http_port, mcs_port);

    // What iPXE would fetch, and the pointer config the kernel arguments name.
    let url = server.ignition_url("52-54-00-7e-01-20");
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{http_port}"))
        .unwrap();
    let token = path.split("token=").nth(1).unwrap().to_string();
    let (status, pointer) = server.get(path);
    assert_eq!(status, 200);
    let pointer_path = d.join("worker0-pointer.ign");
    std::fs::write(&pointer_path, pointer).unwrap();

    let applied = ignition_runner::apply(&pointer_path)
        .unwrap_or_else(|log| panic!("{log}\n--- server ---\n{}", server.log()));
    let root = applied.root();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname"))
            .unwrap()
            .trim(),
        "worker0.demo.example.localdomain"
    );
    let env = std::fs::read_to_string(root.join("etc/kubernetes/kubelet.env")).unwrap();
    assert!(env.contains("--node-ip=192.168.126.120"), "{env}");
    assert_eq!(
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        std::fs::read(d.join("tls/root-ca.crt")).unwrap()
    );

    // The timeline: iPXE, the pointer, then the MCS in the spec Ignition asked for.
    let events = crate::events_when(d, |events| {
        events
            .iter()
            .filter(|e| e["machine"] == "worker0" && e["stage"] == "binaries")
            .count()
            == 7
    });
    let stages: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["machine"] == "worker0")
        .map(|e| {
            (
                e["stage"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "ipxe", "ignition", "bound", "mcs", "binaries", "binaries", "binaries", "binaries",
            "binaries", "binaries", "binaries"
        ],
        "{events:?}"
    );
    assert_eq!(stages[2].1, "127.0.0.1");
    // The config is the worker pool's rendering, named in the event and on the machine.
    let rendering = std::fs::read_to_string(root.join("etc/kindling/rendering")).unwrap();
    let rendering = rendering.trim();
    assert!(rendering.starts_with("rendered-worker-"), "{rendering}");
    assert!(
        d.join(format!("ignition/rendered/{rendering}.ign"))
            .is_file()
    );
    assert_eq!(stages[3].1, format!("pool worker, {rendering}, spec 3.3.0"));

    // Only worker0, with its own token, gets worker0's config.
    let mcs = format!("https://127.0.0.1:{mcs_port}/config/worker");
    let ca = d.join("tls/root-ca.crt");
    assert_eq!(
        https_status(
            &mcs,
            &ca,
            &[
                ("X-Kindling-Mac", "52-54-00-7e-01-20"),
                ("X-Kindling-Token", &token)
            ]
        ),
        200
    );
    assert_eq!(
        https_status(
            &mcs,
            &ca,
            &[
                ("X-Kindling-Mac", "52-54-00-7e-01-21"),
                ("X-Kindling-Token", &token)
            ]
        ),
        403
    );
    assert_eq!(
        https_status(
            &mcs,
            &ca,
            &[
                ("X-Kindling-Mac", "52-54-00-7e-01-20"),
                ("X-Kindling-Token", "0000")
            ]
        ),
        403
    );
    assert_eq!(
        https_status(
            &format!("https://127.0.0.1:{mcs_port}/config/nope"),
            &ca,
            &[]
        ),
        404
    );
    // An unknown machine gets nothing.
    assert_eq!(server.get("/ipxe?mac=52-54-00-00-99-99").0, 404);
    assert_eq!(server.get("/ignition?mac=52-54-00-00-99-99").0, 404);

    // An edit of the inventory is picked up; a bad one keeps the old catalog serving.
    let inventory = d.join("inventory.yaml");
    let original = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &inventory,
        original.replace("52:54:00:7e:01:21", "52:54:00:7e:01:99"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get("/ipxe?mac=52-54-00-7e-01-99").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the inventory edit was not picked up:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(
        &inventory,
        original.replace("role: worker", "role: nonsense"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log().contains("still serving the previous version") {
        assert!(
            Instant::now() < deadline,
            "the bad edit was not reported:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.get("/ipxe?mac=52-54-00-7e-01-99").0, 200);

    let log = server.log_when(|log| log.contains("GET /ipxe?mac=52-54-00-7e-01-99 200"));
    assert!(log.contains("token=REDACTED"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("GET /config/worker 200") && l.trim_end().ends_with(" worker0")),
        "the access log names the machine:\n{log}"
    );
    assert!(!log.contains(&token), "a token reached the log:\n{log}");
}

/// The whole path a machine takes: Debian's iPXE in QEMU PXE-boots from `kindling serve`,
/// boots the kernel and initramfs it serves, and the real Ignition inside fetches the machine's
/// pointer config, then its pool config over TLS with its token. A second VM, whose MAC is not
/// in the inventory, gets nothing.
#[test]
fn a_pxe_booted_vm_applies_its_config_from_kindling_serve() {
    use crate::qemu::{self, Landed, Vm};
    let kernel = qemu::test_kernel();
    let vm = Vm::numbered(1);
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());

    // Where the guest reports; a static server that only logs.
    let reports = tempfile::tempdir().unwrap();
    let report_server = ignition_runner::HttpsServer::start_on(reports.path(), None, 0);
    let report_url = qemu::guest_url(&format!("{}/report", report_server.url()));

    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let host = qemu::HOST;
    let inventory = std::fs::read_to_string(d.join("inventory.yaml"))
        .unwrap()
        .replace(&format!("http://127.0.0.1:{http_port}"), &format!("http://{host}:{http_port}"))
        .replace(&format!("https://127.0.0.1:{mcs_port}"), &format!("https://{host}:{mcs_port}"))
        .replace("  os: fcos\n", &format!(
            "  os: flatcar\n  osImages:\n    kernel: http://{host}:{http_port}/assets/vmlinuz\n    initramfs: http://{host}:{http_port}/assets/initrd.img\n  kernelArgs: [console=ttyS0, quiet, panic=-1, harness.report={report_url}]\n"
        ))
        .replace("52:54:00:7e:01:20", &vm.mac);
    std::fs::write(d.join("inventory.yaml"), inventory).unwrap();
    // The test initramfs has no useradd (busybox), so no SSH keys: they would create the core user.
    let install_config = std::fs::read_to_string(d.join("install-config.yaml")).unwrap();
    let without_keys = install_config.split("sshKey:").next().unwrap().to_string();
    std::fs::write(d.join("install-config.yaml"), without_keys).unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    std::fs::create_dir_all(d.join("assets")).unwrap();
    kernel.link_into(&d.join("assets"));
    let server = Server::start(d, http_port, mcs_port);

    let boot = qemu::pxe_boot(
        &vm,
        &format!("http://{host}:{http_port}/boot.ipxe"),
        Duration::from_secs(150),
    );
    assert_eq!(
        boot.stage_rc("fetch"),
        Some(0),
        "{boot:?}\n--- server ---\n{}",
        server.log()
    );
    assert_eq!(boot.stage_rc("files"), Some(0), "{boot:?}");
    let landed = boot.landed();
    assert!(
        matches!(
            landed.get("/etc/kubernetes/pki/ca.crt"),
            Some(Landed::File { mode: 0o644, .. })
        ),
        "{landed:?}"
    );
    assert!(
        matches!(
            landed.get("/etc/kubernetes/bootstrap-kubelet.conf"),
            Some(Landed::File { mode: 0o600, .. })
        ),
        "{landed:?}"
    );
    assert!(
        landed.contains_key("/etc/kubernetes/kubelet.env") && landed.contains_key("/etc/hostname"),
        "{landed:?}"
    );
    assert!(
        report_server.requests().iter().any(|r| r["path"]
            .as_str()
            .unwrap_or("")
            .contains("event=ignition&rc=0")),
        "{:?}",
        report_server.requests()
    );

    // The machine's timeline, in order, and the downloads between.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(d.join(".kindling/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<String> = events
        .iter()
        .map(|e| match e["machine"].as_str() {
            Some(m) => format!("{m}:{}", e["stage"].as_str().unwrap()),
            None => format!(
                "{}:{}",
                e["stage"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or("")
            ),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "armed:every machine of the inventory (7) is armed for its first install",
            "boot.ipxe:",
            "worker0:ipxe",
            "kernel:vmlinuz",
            "initrd:initrd.img",
            "worker0:ignition",
            // Its install window: bound to the address the VM's config came from.
            "worker0:bound",
            "worker0:mcs",
            // Fedora CoreOS has no kubelet: Ignition fetched it, crictl and the CNI plugins
            // from the mirror, and kindling for the node agent (in an order of its own).
            "worker0:binaries",
            "worker0:binaries",
            "worker0:binaries",
            "worker0:binaries",
            "worker0:binaries",
            "worker0:binaries",
            "worker0:binaries",
        ],
        "{events:?}"
    );
    let mut binaries: Vec<&str> = events
        .iter()
        .filter(|e| e["stage"] == "binaries")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    binaries.sort();
    assert_eq!(
        binaries,
        [
            "kindling",
            "mirror/cni/bridge",
            "mirror/cni/host-local",
            "mirror/cni/loopback",
            "mirror/cni/portmap",
            "mirror/kubernetes/v1.34.1/crictl",
            "mirror/kubernetes/v1.34.1/kubelet",
        ]
    );

    // A machine the inventory does not name gets no boot script, so no config and no secret.
    let stranger = Vm::numbered(2);
    let boot = qemu::pxe_boot(
        &stranger,
        &format!("http://{host}:{http_port}/boot.ipxe"),
        Duration::from_secs(60),
    );
    assert!(boot.harness().is_empty(), "{boot:?}");
    let log = server.log();
    assert!(
        log.contains(&format!("GET /ipxe?mac={}", stranger.mac_hexhyp())) && log.contains(" 404 "),
        "{log}"
    );
    let after: usize = std::fs::read_to_string(d.join(".kindling/events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"ignition\"") || l.contains("\"mcs\""))
        .count();
    assert_eq!(after, 2, "only worker0's ignition and mcs events");
}

/// A client that never finishes its request headers is cut off, and SIGTERM stops the server.
#[test]
fn slow_clients_are_cut_off_and_sigterm_stops_the_server() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    kindling(&["create", "manifests", "--dir", dir.path().to_str().unwrap()]).expect(0);
    let mut server = Server::start(dir.path(), http_port, mcs_port);

    // One client stops in the middle of its headers; another sends nothing at all. Both are
    // cut off after the header timeout (10 s).
    let mut slow = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    slow.write_all(b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(25),
        "cut off after {waited:?}"
    );
    let mut nothing = Vec::new();
    let closed = silent.read_to_end(&mut nothing);
    let waited = started.elapsed();
    assert!(
        closed.is_ok() && nothing.is_empty() && waited < Duration::from_secs(25),
        "a silent connection: {closed:?} after {waited:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &server.daemon.pid().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.daemon.child().try_wait().unwrap() {
            assert!(
                status.success(),
                "kindling serve exited with {status}:\n{}",
                server.log()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kindling serve did not stop on SIGTERM:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log().contains("shutting down"), "{}", server.log());
}

/// curl from the local address `from` to an HTTPS URL trusting `ca`, as Ignition 2.14 asks:
/// (HTTP status, body); status 0 when no HTTP answer came (e.g. the connection was refused).
fn curl_from(from: &str, url: &str, ca: &Path) -> (u16, String) {
    curl_from_resolving(from, url, ca, &[])
}

/// `curl_from`, with curl's `--resolve HOST:PORT:ADDRESS` for each of `resolve`.
fn curl_from_resolving(from: &str, url: &str, ca: &Path, resolve: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", from, "--cacert"])
        .arg(ca)
        .args(resolve.iter().flat_map(|r| ["--resolve", r]))
        .args([
            "-H",
            "Accept: application/vnd.coreos.ignition+json;version=3.3.0, */*;q=0.1",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The demo with every address moved from 192.168.126.0/24 to 127.0.0.0/24, so that this
/// host can be any of its machines (all of 127/8 is local on Linux) and a real HAProxy can
/// bind its VIPs: api-int is 127.0.0.10, worker0 127.0.0.120, worker1 127.0.0.121.
fn demo_on_loopback_network(http_port: u16, mcs_url: &str) -> tempfile::TempDir {
    demo_on_network(
        "127.0.0.",
        "  serverURL: http://127.0.0.2:8080\n",
        &format!("  serverURL: http://127.0.0.1:{http_port}\n  mcsURL: {mcs_url}\n"),
    )
}

/// The demo with its addresses moved from 192.168.126.0/24 to `prefix` (e.g. `127.0.77.`),
/// and one line of the moved inventory replaced.
fn demo_on_network(prefix: &str, line: &str, replacement: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let moved = |text: &str| text.replace("192.168.126.", prefix);
    let ic = include_str!("../../examples/demo/install-config.yaml");
    let inv = moved(include_str!("../../examples/demo/inventory.yaml"));
    assert!(inv.contains(line), "{line}");
    let inv = inv.replace(line, replacement);
    std::fs::write(dir.path().join("install-config.yaml"), moved(ic)).unwrap();
    std::fs::write(dir.path().join("inventory.yaml"), inv).unwrap();
    crate::seed_mirror(dir.path());
    dir
}

#[test]
fn behind_haproxy_with_the_proxy_protocol_machines_are_known_by_their_address() {
    let port = kindling_testkit::port;
    let (http_port, mcs_port, v2_port, v1_port) = (port(), port(), port(), port());
    let dir = demo_on_loopback_network(http_port, &format!("https://127.0.0.10:{v2_port}"));
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let server = Server::start_with(
        d,
        http_port,
        mcs_port,
        &["--mcs-auth", "source-ip", "--proxy-from", "127.0.0.1"],
    );
    // HAProxy on the api-int VIP, in front of the machine config server, with each version of
    // the PROXY protocol; it connects to kindling from 127.0.0.1.
    let config = d.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend mcs-v2\n  bind 127.0.0.10:{v2_port}\n  default_backend mcs-v2\n\
             backend mcs-v2\n  server kindling 127.0.0.1:{mcs_port} send-proxy-v2\n\
             frontend mcs-v1\n  bind 127.0.0.10:{v1_port}\n  default_backend mcs-v1\n\
             backend mcs-v1\n  server kindling 127.0.0.1:{mcs_port} send-proxy\n"
        ),
    )
    .unwrap();
    let _haproxy = Haproxy::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let ca = d.join("tls/root-ca.crt");
    let url = |port: u16, pool: &str| format!("https://127.0.0.10:{port}/config/{pool}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl_from("127.0.0.120", &url(v2_port, "worker"), &ca).0 == 0 {
        assert!(Instant::now() < deadline, "haproxy did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    let hostname = |name: &str| format!("data:,{name}.demo.example.localdomain%0A");
    for (from, port, machine) in [
        ("127.0.0.120", v2_port, "worker0"),
        ("127.0.0.121", v1_port, "worker1"),
    ] {
        let (status, body) = curl_from(from, &url(port, "worker"), &ca);
        assert_eq!(status, 200, "{from}: {body}\n{}", server.log());
        assert!(body.contains(&hostname(machine)), "{from}: {body}");
        assert!(body.contains(r#""version":"3.3.0""#), "{body}");
    }
    // A machine asking for another pool, and an address the inventory does not have.
    let (status, body) = curl_from("127.0.0.120", &url(v2_port, "master"), &ca);
    assert_eq!(status, 403, "{body}");
    let (status, body) = curl_from("127.0.0.50", &url(v1_port, "worker"), &ca);
    assert_eq!(
        (status, body.trim()),
        (403, "no machine in inventory.yaml has address 127.0.0.50")
    );

    // Straight to kindling: from a machine's own address (no proxy in between) it is known by
    // that address; from the trusted proxy's address a header is required.
    let direct = format!("https://127.0.0.1:{mcs_port}/config/worker");
    let (status, body) = curl_from("127.0.0.121", &direct, &ca);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&hostname("worker1")));
    assert_eq!(curl_from("127.0.0.1", &direct, &ca).0, 0);
    // Nobody else may claim an address with a header of their own: it is not read, and the
    // TLS handshake fails on it.
    let forged = Command::new("python3")
        .args([
            "-c",
            "import socket, ssl, sys\n\
             s = socket.socket(); s.bind(('127.0.0.50', 0)); s.connect(('127.0.0.1', int(sys.argv[1])))\n\
             s.sendall(b'PROXY TCP4 127.0.0.120 127.0.0.1 5000 22623\\r\\n')\n\
             ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
             try:\n    t = ctx.wrap_socket(s, server_hostname='127.0.0.1'); t.sendall(b'GET /config/worker HTTP/1.0\\r\\n\\r\\n'); print(t.recv(100))\n\
             except (ssl.SSLError, OSError) as e:\n    print('refused', type(e).__name__)\n",
            &mcs_port.to_string(),
            ca.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let forged = String::from_utf8_lossy(&forged.stdout);
    assert!(forged.starts_with("refused"), "{forged}");

    // The machines' last stages: worker1's fetch; worker0's refused request for the master pool.
    let (_, machines) = server.admin_get("/api/v1/machines");
    let machines: serde_json::Value = serde_json::from_slice(&machines).unwrap();
    for (name, stage) in [("worker0", "denied"), ("worker1", "mcs")] {
        let row = machines["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{machines}"));
        assert_eq!(row["stage"], stage, "{row}");
    }
}

#[test]
fn mcs_auth_none_is_refused_for_a_cluster_without_a_bootstrap_machine() {
    // Without a bootstrap machine the first master's own part starts the bootstrap agent; bare
    // pool configs (--mcs-auth=none) would leave the cluster without one.
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let inventory = dir.path().join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let without = text.replace(
        "  - name: bootstrap\n    role: bootstrap\n    mac: \"52:54:00:7e:01:00\"\n    ip: 192.168.126.100\n",
        "",
    );
    assert_ne!(without, text);
    std::fs::write(&inventory, without).unwrap();
    let d = dir.path().to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", d]).expect(0);
    let http = format!("127.0.0.1:{http_port}");
    let mcs = format!("127.0.0.1:{mcs_port}");
    let run = kindling(&[
        "serve",
        "--dir",
        d,
        "--http",
        &http,
        "--mcs",
        &mcs,
        "--mcs-auth",
        "none",
    ]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("--mcs-auth=none cannot serve this cluster"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_generated_load_balancer_tells_kindling_serve_each_machine_by_its_address() {
    // create infra --mcs-proxy-protocol in front of serve --mcs-auth=source-ip: the generated
    // haproxy.cfg, as it is but for its statistics port, on VIPs of 127.0.77.0/24.
    let http_port = kindling_testkit::port();
    let dir = demo_on_network(
        "127.0.77.",
        "  serverURL: http://127.0.77.2:8080\n",
        &format!("  serverURL: http://127.0.77.2:{http_port}\n"),
    );
    let d = dir.path();
    let inventory = d.join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let edited = text.replace("apiIntVIP: 127.0.77.10", "apiIntVIP: 127.0.77.9");
    assert_ne!(edited, text);
    std::fs::write(&inventory, edited).unwrap();
    let ds = d.to_str().unwrap();
    kindling(&["create", "ignition-configs", "--dir", ds]).expect(0);
    kindling(&["create", "infra", "--dir", ds, "--mcs-proxy-protocol"]).expect(0);
    let generated = std::fs::read_to_string(d.join("infra/haproxy.cfg")).unwrap();
    assert!(
        generated.contains("server provisioning 127.0.77.2:22623 send-proxy-v2 check-send-proxy"),
        "{generated}"
    );
    let stats_port = kindling_testkit::port();
    let config = d.join("haproxy-test.cfg");
    std::fs::write(&config, Haproxy::with_stats_port(&generated, stats_port)).unwrap();

    // kindling serve on the provisioning host's address; HAProxy reaches it from 127.0.0.1.
    let server = Server::start_on(
        "127.0.77.2",
        d,
        http_port,
        22623,
        &["--mcs-auth", "source-ip", "--proxy-from", "127.0.0.1"],
    );
    let _haproxy = Haproxy::start(&config).unwrap_or_else(|e| panic!("{e}"));

    // HAProxy's health check of the machine config server passes: its checks carry a header
    // too, which kindling requires from the load balancer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{stats_port}/;csv")])
            .output()
            .unwrap();
        let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
        if stats
            .lines()
            .any(|l| l.starts_with("machine-config,provisioning,") && l.contains(",UP,"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the machine config server never came UP in HAProxy:\n{stats}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let ca = d.join("tls/root-ca.crt");
    let fetch = |from: &str| {
        curl_from_resolving(
            from,
            "https://api-int.demo.example.localdomain:22623/config/worker",
            &ca,
            &["api-int.demo.example.localdomain:22623:127.0.77.9"],
        )
    };
    let (status, body) = fetch("127.0.77.120");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("data:,worker0.demo.example.localdomain%0A"),
        "{body}"
    );
    let (status, body) = fetch("127.0.77.50");
    assert_eq!(status, 403, "{body}");
}

/// Each Ignition a seed's OS runs fetches its first config from `kindling serve` with its own
/// `Accept` header, follows the pointer to the machine config server, and applies what it gets:
/// Ignition 0.35 (RHCOS 4.5, spec 2.x only) gets 2.2.0, Ignition 2.26 the newest spec kindling
/// writes (3.4.0), and Debian's 2.14 3.3.0. Without an Ignition `Accept` header (an OS installer's
/// own client) the inventory's `ignitionVersion` decides.
#[test]
fn every_ignition_gets_a_spec_it_reads_from_kindling_serve() {
    const TEST: &str = "every_ignition_gets_a_spec_it_reads_from_kindling_serve";
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    // Ignition 0.35 adds users by running /usr/bin/chroot, which Debian does not have (it is
    // in /usr/sbin); the users section is checked by 0.35's validator in kindling-ignition.
    let ic = std::fs::read_to_string(d.join("install-config.yaml")).unwrap();
    let without_key = ic.split("sshKey:").next().unwrap().to_string();
    std::fs::write(d.join("install-config.yaml"), without_key).unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let server = Server::start(d, http_port, mcs_port);
    let url = server.ignition_url("52-54-00-7e-01-20");

    // The OS installer's own fetch: no Ignition Accept header, so the inventory's 3.3.0.
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{http_port}"))
        .unwrap();
    let (status, pointer) = server.get(path);
    assert_eq!(status, 200);
    let pointer: serde_json::Value = serde_json::from_slice(&pointer).unwrap();
    assert_eq!(pointer["ignition"]["version"], "3.3.0");

    let runners = [
        (Some(ignition_runner::Runner::debian()), "3.3.0"),
        (ignition_runner::Runner::newest(TEST), "3.4.0"),
        (ignition_runner::Runner::legacy(TEST), "2.2.0"),
    ];
    let mut ran = 0;
    for (runner, spec) in runners {
        let Some(runner) = runner else { continue };
        ran += 1;
        // The smallest config in the runner's own spec that sends it to kindling serve.
        let first = if spec.starts_with('2') {
            serde_json::json!({"ignition": {"version": "2.2.0", "config": {"append": [{"source": url}]}}})
        } else {
            serde_json::json!({"ignition": {"version": "3.0.0", "config": {"merge": [{"source": url}]}}})
        };
        let first_path = d.join(format!("first-{}.ign", runner.name));
        std::fs::write(&first_path, first.to_string()).unwrap();
        let applied = ignition_runner::apply_with(&runner, &first_path).unwrap_or_else(|log| {
            panic!(
                "Ignition {}: {log}\n--- server ---\n{}",
                runner.name,
                server.log()
            )
        });
        let root = applied.root();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname"))
                .unwrap()
                .trim(),
            "worker0.demo.example.localdomain",
            "Ignition {}",
            runner.name
        );
        let env = std::fs::read_to_string(root.join("etc/kubernetes/kubelet.env")).unwrap();
        assert!(env.contains("--node-ip=192.168.126.120"), "{env}");
        let is_mcs = |e: &&serde_json::Value| e["machine"] == "worker0" && e["stage"] == "mcs";
        let events = crate::events_when(d, |events| events.iter().filter(is_mcs).count() >= ran);
        let mcs: Vec<&serde_json::Value> = events.iter().filter(is_mcs).collect();
        assert_eq!(mcs.len(), ran, "one MCS fetch per runner:\n{events:?}");
        let last_mcs = &mcs[ran - 1];
        let rendering = std::fs::read_to_string(d.join(".kindling/served/worker0")).unwrap();
        assert_eq!(
            last_mcs["detail"],
            format!("pool worker, {}, spec {spec}", rendering.trim()),
            "Ignition {}",
            runner.name
        );
    }

    // A config that spec 2.2 cannot express is refused to a 2.x client with 406 and a log line
    // naming the field, never served with the field dropped.
    let snippets = d.join("snippets/worker");
    std::fs::create_dir_all(&snippets).unwrap();
    std::fs::write(
        snippets.join("tool.bu"),
        format!(
            "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /usr/local/bin/tool\n      \
             contents:\n        source: http://127.0.0.1:{http_port}/assets/tool\n        \
             verification:\n          hash: sha256-{}\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    // worker0 stays on the rendering it was served until a rolling update moves it; worker1,
    // which never installed, gets the new one.
    let worker1 = server.ignition_url("52-54-00-7e-01-21");
    let token = worker1.split("token=").nth(1).unwrap().to_string();
    let mcs = format!("https://127.0.0.1:{mcs_port}/config/worker");
    let ca = d.join("tls/root-ca.crt");
    let ask = |accept: &str| {
        https_status(
            &mcs,
            &ca,
            &[
                ("X-Kindling-Mac", "52-54-00-7e-01-21"),
                ("X-Kindling-Token", &token),
                ("Accept", accept),
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ask("application/vnd.coreos.ignition+json;version=3.3.0") != 200
        || ask("application/vnd.coreos.ignition+json; version=2.2.0") != 406
    {
        assert!(
            Instant::now() < deadline,
            "no 406 for spec 2.2:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.log_when(|log| log.contains("cannot be served as Ignition spec 2.2.0"));
    assert!(
        log.contains("cannot be served as Ignition spec 2.2.0") && log.contains("sha256"),
        "{log}"
    );
}

/// A matchbox data directory is followed as matchbox follows its own: a group added is served
/// at the next request, a bad edit keeps the last good version serving (with the file named
/// in the log and `/healthz` degraded), and fixing it clears that.
#[test]
fn a_matchbox_data_directory_is_followed_and_a_bad_edit_keeps_the_last_good_one() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    for sub in ["groups", "profiles", "ignition", "generic"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
        for entry in std::fs::read_dir(crate::fixtures().join("matchbox").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, d.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    let http: SocketAddr = ([127, 0, 0, 1], kindling_testkit::port()).into();
    let mcs: SocketAddr = ([127, 0, 0, 1], kindling_testkit::port()).into();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kindling"));
    command.args(["serve", "--data-path"]).arg(d).args([
        "--http",
        &http.to_string(),
        "--mcs",
        &mcs.to_string(),
    ]);
    let logs = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn("kindling serve", command, &logs.path().join("serve.log"))
        .unwrap_or_else(|e| panic!("{e}"))
        .terminate_on_drop();
    daemon
        .wait_listening(&[(http, Proto::Tcp)], READY_TIMEOUT, |_| {
            http_get(http, "/healthz").0 == 200
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let script =
        |query: &str| String::from_utf8(http_get(http, &format!("/ipxe?{query}")).1).unwrap();
    let live = "mac=52-54-00-aa-00-01";
    assert!(
        script(live).contains("coreos.inst.install_dev"),
        "{}",
        script(live)
    );

    // A group added for one machine: served at the next request after it is seen.
    std::fs::write(
        d.join("groups/live.json"),
        r#"{"id": "live", "profile": "fedora-coreos", "selector": {"mac": "52:54:00:aa:00:01"}}"#,
    )
    .unwrap();
    until("the added group is served", &|| {
        !script(live).contains("coreos.inst.install_dev")
    });

    // A bad edit: the previous version goes on, and health says why.
    std::fs::write(d.join("groups/live.json"), r#"{"id": "live", "profile": "#).unwrap();
    until("the bad edit is reported", &|| {
        String::from_utf8(http_get(http, "/healthz").1)
            .unwrap()
            .starts_with("degraded: ")
    });
    let health = String::from_utf8(http_get(http, "/healthz").1).unwrap();
    assert!(health.contains("groups/live.json"), "{health}");
    assert!(!script(live).contains("coreos.inst.install_dev"));
    let log = daemon.log_when(|log| log.contains("still serving the previous version"));
    assert!(log.contains("still serving the previous version"), "{log}");

    // Fixed: served, and healthy again.
    std::fs::remove_file(d.join("groups/live.json")).unwrap();
    until("the fix is served", &|| {
        http_get(http, "/healthz").1 == b"ok\n" && script(live).contains("coreos.inst.install_dev")
    });
}
