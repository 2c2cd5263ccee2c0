//! The real Ignition (Debian's 2.14 runner, and 2.26 and 0.35 from ../shared/tools) applying
//! configs to a scratch root, and a local HTTPS server standing in for the machine config
//! server, so tests can check what lands on a machine.
//!
//! The recipe and its pitfalls are in ../shared/docs/real-clients.md, section A: platform
//! `file`, the fetch and files stages with their cache and state files kept in the scratch
//! directory, a no-op `setfiles` so the SELinux relabel needs no extra package, and a seeded
//! `/etc/passwd` so that `useradd --root` behaves as on a real machine. Every run is bounded:
//! Ignition retries a failing fetch forever.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";
/// Long enough for a loaded CI machine (a stage takes well under a second here); short enough
/// that a fetch retrying forever fails the test instead of hanging it.
const STAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A scratch root that the real Ignition has written.
pub struct Applied {
    dir: TempDir,
    /// Both stages' log lines.
    pub log: String,
}

impl Applied {
    /// The machine's `/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The config Ignition ended up applying, after fetching and merging remote configs.
    pub fn merged_config(&self) -> serde_json::Value {
        let cache = self.dir.path().join("run/ignition.json");
        serde_json::from_slice(&fs::read(cache).expect("the fetch stage wrote its cache"))
            .expect("the cache is JSON")
    }
}

/// Runs Ignition's fetch and files stages for the config at `config_path` against a fresh
/// scratch root. `Err` holds the stage's log when Ignition fails or times out.
pub fn apply(config_path: &Path) -> Result<Applied, String> {
    apply_with(&Runner::debian(), config_path)
}

/// An Ignition runner: Debian's 2.14 (spec 3.0–3.3), or an upstream build from
/// ../shared/tools: 2.26 (the newest, spec 3.0–3.6) or 0.35 (RHCOS 4.5, spec 2.x only).
pub struct Runner {
    program: PathBuf,
    /// 0.x: `-oem` instead of `-platform`, no state file, no neednet flag, no relabel.
    legacy: bool,
    /// What the runner sends, as the server's event log shows it: "2.14", "2.26", "0.35".
    pub name: &'static str,
}

impl Runner {
    pub fn debian() -> Runner {
        assert!(
            Path::new(IGNITION).exists(),
            "the Ignition runner {IGNITION} is missing: run ./test.sh, which installs Debian's ignition package"
        );
        Runner {
            program: IGNITION.into(),
            legacy: false,
            name: "2.14",
        }
    }

    /// Ignition 2.26.0 from ../shared/tools; `None` (and a printed skip) without it.
    pub fn newest(test: &str) -> Option<Runner> {
        Some(Runner {
            program: kindling_testkit::shared_tool(test, "ignition-2.26.0/ignition")?,
            legacy: false,
            name: "2.26",
        })
    }

    /// Ignition 0.35.0 from ../shared/tools; `None` (and a printed skip) without it.
    pub fn legacy(test: &str) -> Option<Runner> {
        Some(Runner {
            program: kindling_testkit::shared_tool(test, "ignition-0.35.0/ignition")?,
            legacy: true,
            name: "0.35",
        })
    }
}

/// [`apply`] with a given runner.
pub fn apply_with(runner: &Runner, config_path: &Path) -> Result<Applied, String> {
    apply_in(runner, config_path, &[])
}

/// [`apply_with`], the runner started through `wrapper` (a command and its arguments, such as a
/// test site's `nsenter`), so that it fetches from where the machine would.
pub fn apply_in(
    runner: &Runner,
    config_path: &Path,
    wrapper: &[std::ffi::OsString],
) -> Result<Applied, String> {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    seed_root(&w.join("root"));
    fs::create_dir_all(w.join("run")).unwrap();
    // Debian builds Ignition with relabelling on; without setfiles the files stage fails last.
    let bin = w.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("setfiles"), "#!/bin/sh\ncat >/dev/null\n").unwrap();
    fs::set_permissions(bin.join("setfiles"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config_path = std::path::absolute(config_path).unwrap();

    let mut log = String::new();
    for stage in ["fetch", "files"] {
        let log_file = w.join(format!("{stage}.log"));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&runner.program);
                command
            }
            None => Command::new(&runner.program),
        };
        if runner.legacy {
            command.args(["-oem", "file"]);
        } else {
            command
                .args(["-platform", "file"])
                .arg("-state-file")
                .arg(w.join("run/state"))
                .arg("-neednet")
                .arg(w.join("run/neednet"));
        }
        command
            .args(["-stage", stage, "-log-to-stdout"])
            .arg("-root")
            .arg(w.join("root"))
            .arg("-config-cache")
            .arg(w.join("run/ignition.json"))
            .env("IGNITION_CONFIG_FILE", &config_path)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log_file).unwrap())
            .stderr(fs::File::create(w.join(format!("{stage}.err"))).unwrap());
        let outcome = wait_bounded(command.spawn().expect("the Ignition runner starts"));
        log.push_str(&fs::read_to_string(&log_file).unwrap());
        log.push_str(&fs::read_to_string(w.join(format!("{stage}.err"))).unwrap());
        match outcome {
            Some(status) if status.success() => {}
            Some(status) => return Err(format!("ignition {stage} stage: {status}\n{log}")),
            None => {
                return Err(format!(
                    "ignition {stage} stage: killed after {STAGE_TIMEOUT:?}\n{log}"
                ));
            }
        }
    }
    Ok(Applied { dir, log })
}

/// The exit status, or `None` after killing a child that ran past [`STAGE_TIMEOUT`].
fn wait_bounded(mut child: Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + STAGE_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Debian-like `/etc`: without it `useradd --root` adds `root` again as a normal user.
fn seed_root(root: &Path) {
    let etc = root.join("etc");
    fs::create_dir_all(etc.join("selinux")).unwrap();
    fs::write(etc.join("selinux/config"), "SELINUXTYPE=targeted\n").unwrap();
    let read = |path: &str| {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run ./test.sh on a Debian host (base-passwd)"))
    };
    // As pwconv and grpconv leave them on Debian: passwords live in shadow and gshadow.
    let shadowed = |text: String| -> String {
        text.lines()
            .map(|line| match line.split_once(':') {
                Some((name, rest)) => {
                    let rest = rest.split_once(':').map_or("", |(_, r)| r);
                    format!("{name}:x:{rest}\n")
                }
                None => format!("{line}\n"),
            })
            .collect()
    };
    let passwd = shadowed(read("/usr/share/base-passwd/passwd.master"));
    let group = shadowed(read("/usr/share/base-passwd/group.master"));
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(':').next())
            .map(str::to_string)
            .collect()
    };
    let shadow: String = names(&passwd)
        .iter()
        .map(|n| format!("{n}:*:19000:0:99999:7:::\n"))
        .collect();
    let gshadow: String = names(&group).iter().map(|n| format!("{n}:*::\n")).collect();
    fs::write(etc.join("passwd"), &passwd).unwrap();
    fs::write(etc.join("group"), &group).unwrap();
    fs::write(etc.join("shadow"), shadow).unwrap();
    fs::write(etc.join("gshadow"), gshadow).unwrap();
    fs::set_permissions(etc.join("shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(etc.join("gshadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::copy("/etc/login.defs", etc.join("login.defs")).unwrap();
    fs::create_dir_all(root.join("root")).unwrap();
    fs::create_dir_all(root.join("home")).unwrap();
}

/// A throw-away CA and a server certificate for 127.0.0.1, localhost and 10.0.2.2 (the host as
/// a QEMU guest reaches it, see `qemu.rs`), made with `openssl`.
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate; both expire in a day.
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.2.2\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
        )
        .unwrap();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(
            d,
            &format!(
                "req -x509 {ec} -subj /CN=kindling-test-ca -days 1 -keyout ca.key -out ca.pem \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        openssl(
            d,
            &format!("req {ec} -subj /CN=127.0.0.1 -keyout server.key -out server.csr"),
        );
        openssl(
            d,
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
             -extfile server.ext -out server.pem",
        );
        TestCa { dir }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.dir.path().join("ca.pem")).unwrap()
    }

    /// The server's certificate (SANs 127.0.0.1, localhost and 10.0.2.2), PEM.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key, PEM.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// Runs `openssl` in `dir` with whitespace-separated `args`.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl could not run ({e}): run ./test.sh, which installs it")
        });
    assert!(
        output.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `tests/e2e/https_server.py` serving a directory on loopback, over TLS or plain HTTP; stopped
/// when dropped.
pub struct HttpsServer {
    child: Child,
    port: u16,
    tls: bool,
    state: TempDir,
}

impl HttpsServer {
    /// Serves `dir` with `cert` and `key` on a free port; returns once the server is listening.
    pub fn start(dir: &Path, cert: &Path, key: &Path) -> HttpsServer {
        HttpsServer::start_on(dir, Some((cert, key)), 0)
    }

    /// Serves `dir` over TLS with (cert, key), or plain HTTP without; on `port`, or a free one
    /// if 0.
    pub fn start_on(dir: &Path, tls: Option<(&Path, &Path)>, port: u16) -> HttpsServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/https_server.py");
        let state = tempfile::tempdir().unwrap();
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string());
        if let Some((cert, key)) = tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = command
            .arg("--log")
            .arg(state.path().join("requests.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(state.path().join("stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 could not run ({e}): run ./test.sh"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not start: {line:?}\n{}",
                script.display(),
                fs::read_to_string(state.path().join("stderr")).unwrap_or_default()
            );
        };
        HttpsServer {
            child,
            port,
            tls: tls.is_some(),
            state,
        }
    }

    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every request so far, one JSON object each: method, path, status, headers.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let log = fs::read_to_string(self.state.path().join("requests.jsonl")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use kindling_ignition::{Config, IgnitionVersion, PointerConfig, parse_snippet};
    use sha2::{Digest, Sha512};

    use super::*;

    const CORE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0d2l0aGtpbmRsaW5n core@kindling";
    const SNIPPET: &str = "variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/snippet.conf
      contents:
        inline: from the snippet
  links:
    - path: /etc/hard-motd
      target: /etc/motd
      hard: true
systemd:
  units:
    - name: masked.service
      mask: true
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ snippet@kindling
";

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o7777
    }

    /// `config` as spec 3.3 JSON without its `passwd` section.
    fn without_users(config: &Config) -> Vec<u8> {
        let mut value: serde_json::Value =
            serde_json::from_slice(&config.render(IgnitionVersion::V3_3).unwrap()).unwrap();
        value.as_object_mut().unwrap().remove("passwd");
        serde_json::to_vec(&value).unwrap()
    }

    /// Every builder method (remote files aside: see the pointer test), plus a snippet.
    fn full_config() -> Config {
        let mut config = Config::new();
        config.set_hostname("worker0.demo.example.com");
        config.add_file("/etc/motd", b"kindling was here\n", 0o644);
        config.add_file("/etc/kindling/token", b"s3cr3t", 0o600);
        config.add_file("/etc/kindling/blob", &[0, 1, 2, 0xfe, 0xff], 0o640);
        config.add_file("/usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
        config.add_directory("/var/lib/kindling", 0o700);
        config.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
        config.add_unit(
            "kindling-agent.service",
            "[Unit]\nDescription=kindling agent\n[Service]\nExecStart=/usr/local/bin/hello\n[Install]\nWantedBy=multi-user.target\n",
            true,
        );
        config.add_unit("idle.service", "[Unit]\nDescription=idle\n", false);
        config.add_dropin(
            "kubelet.service",
            "10-kindling.conf",
            "[Service]\nEnvironment=KUBELET_NODE_IP=172.16.0.21\n",
        );
        config.add_ssh_keys("core", &[CORE_KEY.to_string()]);
        config.merge(parse_snippet("snippets/worker/10-test.bu", SNIPPET).unwrap());
        config
    }

    /// Debian's Ignition 2.14 for every spec it reads (3.0–3.3), 2.26 for 3.4, and 0.35 (RHCOS
    /// 4.5) for 2.2 and 2.3, the last without users: 0.35 adds them by running
    /// `/usr/bin/chroot`, which Debian keeps in /usr/sbin.
    #[test]
    fn the_real_ignition_applies_every_entry_for_each_spec_it_reads() {
        const TEST: &str = "the_real_ignition_applies_every_entry_for_each_spec_it_reads";
        let scratch = tempfile::tempdir().unwrap();
        let mut runs: Vec<(Runner, IgnitionVersion)> = IgnitionVersion::ALL
            .into_iter()
            .filter(|v| (IgnitionVersion::V3_0..=IgnitionVersion::V3_3).contains(v))
            .map(|v| (Runner::debian(), v))
            .collect();
        if let Some(newest) = Runner::newest(TEST) {
            runs.push((newest, IgnitionVersion::V3_4));
        }
        for version in [IgnitionVersion::V2_2, IgnitionVersion::V2_3] {
            if let Some(legacy) = Runner::legacy(TEST) {
                runs.push((legacy, version));
            }
        }
        for (runner, version) in runs {
            let legacy = version.major() == 2;
            let mut config = full_config();
            if legacy {
                config = Config::from_json(
                    &fs::read(write(
                        scratch.path(),
                        "no-users.ign",
                        &without_users(&config),
                    ))
                    .unwrap(),
                )
                .unwrap();
            }
            let path = write(
                scratch.path(),
                &format!("{version}.ign"),
                &config.render(version).unwrap(),
            );
            let applied = apply_with(&runner, &path)
                .unwrap_or_else(|e| panic!("Ignition {} spec {version}: {e}", runner.name));
            let root = applied.root();
            let read =
                |p: &str| fs::read(root.join(p)).unwrap_or_else(|e| panic!("{version} {p}: {e}"));

            assert_eq!(read("etc/hostname"), b"worker0.demo.example.com\n");
            assert_eq!(mode(&root.join("etc/hostname")), 0o644);
            assert_eq!(read("etc/motd"), b"kindling was here\n");
            assert_eq!(read("etc/kindling/token"), b"s3cr3t");
            assert_eq!(mode(&root.join("etc/kindling/token")), 0o600);
            assert_eq!(read("etc/kindling/blob"), [0, 1, 2, 0xfe, 0xff]);
            assert_eq!(mode(&root.join("etc/kindling/blob")), 0o640);
            assert_eq!(mode(&root.join("usr/local/bin/hello")), 0o755);
            assert_eq!(read("etc/snippet.conf"), b"from the snippet");
            assert_eq!(
                mode(&root.join("etc/snippet.conf")),
                0o644,
                "Butane's default"
            );

            assert!(root.join("var/lib/kindling").is_dir());
            assert_eq!(mode(&root.join("var/lib/kindling")), 0o700);
            assert_eq!(
                fs::read_link(root.join("etc/localtime")).unwrap(),
                Path::new("/usr/share/zoneinfo/UTC")
            );
            let motd = fs::metadata(root.join("etc/motd")).unwrap();
            let hard = fs::symlink_metadata(root.join("etc/hard-motd")).unwrap();
            assert_eq!((hard.ino(), motd.nlink()), (motd.ino(), 2), "a hard link");

            let units = root.join("etc/systemd/system");
            assert!(
                String::from_utf8(read("etc/systemd/system/kindling-agent.service"))
                    .unwrap()
                    .contains("ExecStart=/usr/local/bin/hello")
            );
            assert!(units.join("idle.service").is_file());
            assert_eq!(
                read("etc/systemd/system/kubelet.service.d/10-kindling.conf"),
                b"[Service]\nEnvironment=KUBELET_NODE_IP=172.16.0.21\n"
            );
            assert!(
                !units.join("kubelet.service").exists(),
                "only the drop-in is written"
            );
            assert_eq!(
                fs::read_link(units.join("masked.service")).unwrap(),
                Path::new("/dev/null")
            );
            let preset =
                String::from_utf8(read("etc/systemd/system-preset/20-ignition.preset")).unwrap();
            assert!(
                preset.lines().any(|l| l == "enable kindling-agent.service"),
                "{preset}"
            );
            assert!(
                preset.lines().any(|l| l == "disable idle.service"),
                "{preset}"
            );

            if legacy {
                continue;
            }
            let passwd = String::from_utf8(read("etc/passwd")).unwrap();
            assert!(passwd.lines().any(|l| l.starts_with("core:x:")), "{passwd}");
            let root_lines = passwd.lines().filter(|l| l.starts_with("root:"));
            assert_eq!(root_lines.count(), 1, "root is not added again: {passwd}");
            let keys_file = root.join("home/core/.ssh/authorized_keys.d/ignition");
            let keys = fs::read_to_string(&keys_file).unwrap();
            let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(
                keys,
                [
                    CORE_KEY,
                    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ snippet@kindling"
                ]
            );
            assert_eq!(mode(&keys_file), 0o600);
            assert!(applied.log.contains("files passed"), "{}", applied.log);
        }
    }

    #[test]
    fn the_pointer_config_fetches_the_full_config_over_https_with_its_ca() {
        let ca = TestCa::new();
        let served = tempfile::tempdir().unwrap();
        let payload = b"payload fetched by Ignition\n".to_vec();
        write(served.path(), "assets/payload", &payload);
        let server = HttpsServer::start(served.path(), &ca.server_cert(), &ca.server_key());

        let mut full = Config::new();
        full.add_file("/etc/served-by-mcs", b"worker pool\n", 0o644);
        full.add_unit("kubelet.service", "[Unit]\nDescription=kubelet\n", true);
        let digest: String = Sha512::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        full.add_remote_file(
            "/opt/payload",
            &format!("{}/assets/payload", server.url()),
            &digest,
            0o640,
        );
        write(
            served.path(),
            "config/worker",
            &full.render(IgnitionVersion::V3_3).unwrap(),
        );

        let scratch = tempfile::tempdir().unwrap();
        for (version, headers) in [
            (IgnitionVersion::V3_0, vec![]),
            (
                IgnitionVersion::V3_3,
                vec![("X-Kindling-Token".to_string(), "t0k3n".to_string())],
            ),
        ] {
            let pointer = PointerConfig {
                source: format!("{}/config/worker", server.url()),
                root_ca_pem: ca.ca_pem(),
                http_headers: headers.clone(),
            };
            let path = write(
                scratch.path(),
                &format!("pointer-{version}.ign"),
                &pointer.render(version).unwrap(),
            );
            let applied = apply(&path).unwrap_or_else(|e| panic!("pointer {version}: {e}"));
            let root = applied.root();
            assert_eq!(
                fs::read(root.join("etc/served-by-mcs")).unwrap(),
                b"worker pool\n"
            );
            assert_eq!(fs::read(root.join("opt/payload")).unwrap(), payload);
            assert_eq!(mode(&root.join("opt/payload")), 0o640);
            assert!(root.join("etc/systemd/system/kubelet.service").is_file());
            let merged = applied.merged_config();
            let cached_ca =
                merged["ignition"]["security"]["tls"]["certificateAuthorities"][0]["source"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no CA in the merged config: {merged}"));
            assert_eq!(
                kindling_ignition::data_url::decode(cached_ca),
                Some(ca.ca_pem().into_bytes()),
                "the merged config keeps the pointer's CA"
            );

            let requests = server.requests();
            let fetch = requests
                .iter()
                .rev()
                .find(|r| r["path"] == "/config/worker")
                .unwrap_or_else(|| panic!("no config fetch in {requests:?}"));
            assert_eq!(fetch["status"], 200);
            let user_agent = fetch["headers"]["User-Agent"].as_str().unwrap_or_default();
            assert!(user_agent.starts_with("Ignition/"), "{fetch}");
            let token = fetch["headers"]["X-Kindling-Token"].as_str();
            assert_eq!(token, headers.first().map(|(_, v)| v.as_str()), "{fetch}");
            assert!(
                requests
                    .iter()
                    .any(|r| r["path"] == "/assets/payload" && r["status"] == 200)
            );
        }
    }

    /// Ignition 0.35 (RHCOS 4.5) follows a spec 2.2 or 2.3 pointer over HTTPS, trusting the CA
    /// it carries, and appends the full config it fetches.
    #[test]
    fn ignition_0_35_follows_a_spec_2_pointer_over_https_with_its_ca() {
        const TEST: &str = "ignition_0_35_follows_a_spec_2_pointer_over_https_with_its_ca";
        let Some(legacy) = Runner::legacy(TEST) else {
            return;
        };
        let ca = TestCa::new();
        let served = tempfile::tempdir().unwrap();
        let server = HttpsServer::start(served.path(), &ca.server_cert(), &ca.server_key());
        let mut full = Config::new();
        full.add_file("/etc/served-by-mcs", b"worker pool\n", 0o644);
        write(
            served.path(),
            "config/worker",
            &full.render(IgnitionVersion::V2_2).unwrap(),
        );
        let scratch = tempfile::tempdir().unwrap();
        for version in [IgnitionVersion::V2_2, IgnitionVersion::V2_3] {
            let pointer = PointerConfig {
                source: format!(
                    "{}/config/worker?mac=52-54-00-00-00-01&token=t",
                    server.url()
                ),
                root_ca_pem: ca.ca_pem(),
                http_headers: Vec::new(),
            };
            let path = write(
                scratch.path(),
                &format!("pointer-{version}.ign"),
                &pointer.render(version).unwrap(),
            );
            let applied =
                apply_with(&legacy, &path).unwrap_or_else(|e| panic!("pointer {version}: {e}"));
            assert_eq!(
                fs::read(applied.root().join("etc/served-by-mcs")).unwrap(),
                b"worker pool\n",
                "{version}"
            );
        }
    }

    #[test]
    fn a_remote_file_with_the_wrong_hash_stops_ignition() {
        let ca = TestCa::new();
        let served = tempfile::tempdir().unwrap();
        write(served.path(), "assets/payload", b"tampered\n");
        let server = HttpsServer::start(served.path(), &ca.server_cert(), &ca.server_key());
        let mut full = Config::new();
        full.add_remote_file(
            "/opt/payload",
            &format!("{}/assets/payload", server.url()),
            &"0".repeat(128),
            0o644,
        );
        write(
            served.path(),
            "config/worker",
            &full.render(IgnitionVersion::V3_3).unwrap(),
        );
        let pointer = PointerConfig {
            source: format!("{}/config/worker", server.url()),
            root_ca_pem: ca.ca_pem(),
            http_headers: vec![],
        };
        let path = write(
            served.path(),
            "pointer.ign",
            &pointer.render(IgnitionVersion::V3_3).unwrap(),
        );
        let err = apply(&path).err().expect("Ignition refuses the file");
        assert!(err.contains("hash verification failed"), "{err}");
        assert!(err.starts_with("ignition files stage"), "{err}");
    }
}
