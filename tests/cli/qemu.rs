//! Real network boots: QEMU (TCG) with Debian's iPXE ROM boots a machine from HTTP servers on
//! loopback, the way a bare-metal machine boots from `kindling serve`. The iPXE scripts, the
//! kernel and the initramfs are fetched by the real firmware; the initramfs
//! (tests/e2e/mkinitramfs.sh) runs the real Ignition against the config its kernel arguments
//! name, then reports and powers off.
//!
//! A test serves files, calls [`pxe_boot`] with a [`Vm`], then checks the servers' request logs
//! and the [`Boot`]'s serial console. Inside the guest the host's loopback is [`HOST`]
//! (10.0.2.2), so every URL a guest fetches uses that address ([`guest_url`]). Kernel lines
//! must carry [`KERNEL_ARGS`]; `harness.report=URL` makes the guest send
//! `URL?event=ignition&rc=<rc>&hostname=<name>&uptime=<s>` when it is done, and
//! `harness.sha256=PATH` adds `&sha256=<digest of PATH as it landed>`.
//!
//! Recipes, timings and pitfalls are in ../shared/docs/real-clients.md, section B. This
//! machine's /dev/kvm does not run these guests, so QEMU always runs TCG: a boot takes about
//! 20 s of one core, and a lock keeps the VMs one at a time on the 2-core CI machines. Every
//! run is bounded with timeout(1), which outlives a test process killed mid-boot.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const QEMU: &str = "/usr/bin/qemu-system-x86_64";
/// The iPXE ROM QEMU loads for an e1000 NIC; it comes with Debian's ipxe-qemu.
const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-e1000.rom";

/// The host's loopback as a QEMU guest on user-mode networking sees it.
pub const HOST: &str = "10.0.2.2";

/// Kernel arguments every harness boot needs: the console on the serial port the test reads,
/// few kernel messages among the `HARNESS:` lines, and a panic that ends the VM at once instead
/// of leaving it to the timeout.
pub const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1";

/// One machine to boot: what iPXE reports as `${mac}`, `${uuid}`, `${hostname}` and `${serial}`.
#[derive(Debug, Clone)]
pub struct Vm {
    pub mac: String,
    pub uuid: String,
    pub hostname: String,
    pub serial: String,
    /// More QEMU arguments: its disks, for one.
    pub qemu_args: Vec<String>,
}

impl Vm {
    /// Machine number `n`, with identities that differ only in `n`: MAC `52:54:00:6b:64:<n>`,
    /// hostname `node<n>`.
    pub fn numbered(n: u8) -> Vm {
        Vm {
            mac: format!("52:54:00:6b:64:{n:02x}"),
            uuid: format!("6b696e64-6c69-4e67-8000-0000000000{n:02x}"),
            hostname: format!("node{n}"),
            serial: format!("KINDLING{n:04}"),
            qemu_args: Vec::new(),
        }
    }

    /// The MAC as iPXE's `${mac:hexhyp}` writes it: `52-54-00-6b-64-01`.
    pub fn mac_hexhyp(&self) -> String {
        self.mac.replace(':', "-")
    }
}

/// The kernel and initramfs that [`pxe_boot`]ed machines run.
pub struct TestKernel {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

impl TestKernel {
    /// Puts `vmlinuz` and `initrd.img` into `dir` (as symlinks), for a server to serve.
    pub fn link_into(&self, dir: &Path) {
        for (from, name) in [(&self.vmlinuz, "vmlinuz"), (&self.initrd, "initrd.img")] {
            std::os::unix::fs::symlink(from, dir.join(name))
                .unwrap_or_else(|e| panic!("linking {name} into {}: {e}", dir.display()));
        }
    }
}

/// The test kernel and initramfs, built once per test run by tests/e2e/mkinitramfs.sh into a
/// cache under the target directory (a few seconds the first time, about 1 s after that).
pub fn test_kernel() -> &'static TestKernel {
    static KERNEL: OnceLock<TestKernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/mkinitramfs.sh");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-kernel");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "{} failed ({}): run ./test.sh, which installs its packages\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        TestKernel {
            vmlinuz: out.join("vmlinuz"),
            initrd: out.join("initrd.img"),
        }
    })
}

/// `url` on the loopback host (`http://127.0.0.1:P/...`) as a guest must write it.
pub fn guest_url(url: &str) -> String {
    url.replacen("127.0.0.1", HOST, 1)
}

/// What one boot did, as QEMU and the guest's serial console tell it.
pub struct Boot {
    /// Everything on the serial console: SeaBIOS, iPXE, the kernel and the initramfs.
    pub serial_log: String,
    /// The exit of timeout(1) around QEMU: 0 when the guest powered off or rebooted (which
    /// says nothing about success), 124 or 137 when the run was stopped.
    pub status: ExitStatus,
    /// From QEMU's start to its exit.
    pub elapsed: Duration,
}

/// One entry the initramfs found under the machine's root after Ignition ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    File { mode: u32, sha256: String },
    Dir { mode: u32 },
    Link { target: String },
}

impl Boot {
    /// Whether the time limit stopped QEMU.
    pub fn timed_out(&self) -> bool {
        matches!(self.status.code(), Some(124 | 137) | None)
    }

    /// The text of each `HARNESS:` line the initramfs printed, in order.
    pub fn harness(&self) -> Vec<&str> {
        self.serial_log
            .lines()
            .filter_map(|line| {
                line.split_once("HARNESS: ")
                    .map(|(_, text)| text.trim_end())
            })
            .collect()
    }

    /// The exit code of Ignition's `stage` (`fetch` or `files`), if it ran.
    pub fn stage_rc(&self, stage: &str) -> Option<i32> {
        let prefix = format!("ignition {stage} rc=");
        self.harness()
            .iter()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
    }

    /// Whether the initramfs got to its end and the kernel powered the machine off.
    pub fn powered_off(&self) -> bool {
        self.harness()
            .iter()
            .any(|line| line.starts_with("done, uptime"))
            && self.serial_log.contains("reboot: Power down")
    }

    /// Everything under the machine's root after Ignition, by absolute path.
    pub fn landed(&self) -> BTreeMap<String, Landed> {
        let mut landed = BTreeMap::new();
        for line in self.harness() {
            let Some(entry) = line.strip_prefix("landed ") else {
                continue;
            };
            let mut fields = entry.splitn(3, ' ');
            let (Some(kind), Some(mode), Some(rest)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("a malformed landed line: {line:?}");
            };
            let mode = u32::from_str_radix(mode, 8)
                .unwrap_or_else(|_| panic!("a malformed mode: {line:?}"));
            let (path, entry) = match kind {
                "file" => {
                    let (sha256, path) = rest.split_once(' ').expect("sha256 then path");
                    let sha256 = sha256.to_string();
                    (path, Landed::File { mode, sha256 })
                }
                "dir" => (rest, Landed::Dir { mode }),
                "link" => {
                    let (path, target) = rest.split_once(" -> ").expect("path -> target");
                    let target = target.to_string();
                    (path, Landed::Link { target })
                }
                _ => panic!("an unknown kind of landed entry: {line:?}"),
            };
            landed.insert(path.to_string(), entry);
        }
        landed
    }

    /// The serial log without the firmware's terminal control sequences, for failure messages.
    pub fn console(&self) -> String {
        let mut text = String::with_capacity(self.serial_log.len());
        let mut chars = self.serial_log.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => {
                    if chars.next_if_eq(&'[').is_some() {
                        while chars.next().is_some_and(|c| !c.is_ascii_alphabetic()) {}
                    } else {
                        chars.next();
                    }
                }
                '\r' | '\x08' => {}
                c => text.push(c),
            }
        }
        text
    }
}

impl fmt::Debug for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QEMU ended with {} after {:.1?}; serial console:\n{}",
            self.status,
            self.elapsed,
            self.console()
        )
    }
}

/// Boots `vm` from the network: its firmware gets `bootfile_url` from QEMU's DHCP and runs it
/// (iPXE speaks plain HTTP only). Returns when the guest powers off or reboots, or when
/// `timeout` has passed; waiting for another test's VM does not count.
///
/// Fails the test, never skips it, when QEMU or the iPXE ROM is missing.
pub fn pxe_boot(vm: &Vm, bootfile_url: &str, timeout: Duration) -> Boot {
    for (path, package) in [(QEMU, "qemu-system-x86"), (IPXE_ROM, "ipxe-qemu")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: run ./test.sh, which installs {package}"
        );
    }
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let dir = tempfile::tempdir().unwrap();
    let serial = dir.path().join("serial.log");
    // QEMU's option syntax: a comma inside a value is written twice.
    let nic = format!(
        "user,model=e1000,mac={},hostname={},bootfile={}",
        vm.mac,
        vm.hostname,
        bootfile_url.replace(',', ",,")
    );
    let start = Instant::now();
    let status = Command::new("timeout")
        .args(["--kill-after=5", &format!("{}", timeout.as_secs().max(1))])
        .arg(QEMU)
        .args(["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"])
        // SeaBIOS gives up 1 s after a failed network boot and reboots, which -no-reboot turns
        // into QEMU's exit; plain `-boot n` would wait at "No bootable device" until the timeout.
        .args(["-boot", "order=n,reboot-timeout=1000"])
        .args(["-uuid", &vm.uuid])
        .args(["-smbios", &format!("type=1,serial={}", vm.serial)])
        .args(["-nic", &nic])
        .args(&vm.qemu_args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&serial).unwrap())
        .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
        .status()
        .expect("timeout(1) runs");
    let elapsed = start.elapsed();
    let mut serial_log = String::from_utf8_lossy(&fs::read(&serial).unwrap()).into_owned();
    serial_log.push_str(&fs::read_to_string(dir.path().join("stderr")).unwrap_or_default());
    Boot {
        serial_log,
        status,
        elapsed,
    }
}

#[cfg(test)]
mod tests {
    use kindling_ignition::{Config, IgnitionVersion, PointerConfig};
    use sha2::{Digest, Sha256, Sha512};

    use super::*;
    use crate::ignition_runner::{HttpsServer, TestCa};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// iPXE fetches its scripts, the kernel and the initramfs from a plain static server; the
    /// real Ignition in the initramfs fetches the pointer config, merges the full config over
    /// TLS with the pointer's CA, writes its files, and the machine reports. No kindling server
    /// is involved: this checks the harness that `kindling serve`'s tests boot against.
    #[test]
    fn a_machine_pxe_boots_and_applies_a_pointer_config_fetched_over_tls() {
        let kernel = test_kernel();
        let vm = Vm::numbered(1);

        let ca = TestCa::new();
        let mcs_dir = tempfile::tempdir().unwrap();
        let mcs = HttpsServer::start(mcs_dir.path(), &ca.server_cert(), &ca.server_key());
        let payload = b"fetched during the files stage\n";
        fs::create_dir_all(mcs_dir.path().join("assets")).unwrap();
        fs::write(mcs_dir.path().join("assets/payload"), payload).unwrap();
        let mut full = Config::new();
        full.set_hostname("worker1.demo.example.com");
        full.add_file("/etc/motd", b"booted by kindling's harness\n", 0o644);
        full.add_file("/etc/kindling/token", b"s3cr3t", 0o600);
        full.add_file("/usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
        full.add_directory("/var/lib/kindling", 0o700);
        full.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
        full.add_remote_file(
            "/opt/payload",
            &guest_url(&format!("{}/assets/payload", mcs.url())),
            &hex(&Sha512::digest(payload)),
            0o640,
        );
        fs::create_dir_all(mcs_dir.path().join("config")).unwrap();
        fs::write(
            mcs_dir.path().join("config/worker"),
            full.render(IgnitionVersion::V3_3).unwrap(),
        )
        .unwrap();

        let boot_dir = tempfile::tempdir().unwrap();
        let http = HttpsServer::start_on(boot_dir.path(), None, 0);
        let base = guest_url(&http.url());
        kernel.link_into(boot_dir.path());
        let write = |name: &str, text: &str| fs::write(boot_dir.path().join(name), text).unwrap();
        write(
            "boot.ipxe",
            &format!(
                "#!ipxe\nchain {base}/ipxe?mac=${{mac:hexhyp}}&uuid=${{uuid}}&hostname=${{hostname}}\
                 &serial=${{serial}}&arch=${{buildarch:uristring}}\n"
            ),
        );
        write(
            "ipxe",
            &format!(
                "#!ipxe\nkernel {base}/vmlinuz initrd=initrd.img {KERNEL_ARGS} \
                 ignition.config.url={base}/pointer.ign harness.report={base}/report \
                 harness.sha256=/opt/payload\ninitrd {base}/initrd.img\nboot\n"
            ),
        );
        let pointer = PointerConfig {
            source: guest_url(&format!("{}/config/worker", mcs.url())),
            root_ca_pem: ca.ca_pem(),
            http_headers: vec![("X-Kindling-Token".to_string(), "t0k3n".to_string())],
        };
        fs::write(
            boot_dir.path().join("pointer.ign"),
            pointer.render(IgnitionVersion::V3_3).unwrap(),
        )
        .unwrap();

        let boot = pxe_boot(&vm, &format!("{base}/boot.ipxe"), Duration::from_secs(90));
        assert!(!boot.timed_out(), "{boot:?}");
        assert!(boot.powered_off(), "{boot:?}");
        assert_eq!(boot.stage_rc("fetch"), Some(0), "{boot:?}");
        assert_eq!(boot.stage_rc("files"), Some(0), "{boot:?}");

        let mut requests: Vec<(f64, String, serde_json::Value)> = Vec::new();
        for (server, scheme) in [(&http, "http"), (&mcs, "https")] {
            for r in server.requests() {
                let time = r["time"].as_f64().expect("a request time");
                let path = r["path"].as_str().unwrap().to_string();
                requests.push((time, format!("{scheme} {path}"), r));
            }
        }
        requests.sort_by(|a, b| a.0.total_cmp(&b.0));
        let seen: Vec<&str> = requests.iter().map(|(_, what, _)| what.as_str()).collect();
        let (report, seen) = seen.split_last().expect("requests");
        assert_eq!(
            seen,
            [
                "http /boot.ipxe".to_string(),
                format!(
                    "http /ipxe?mac={}&uuid={}&hostname={}&serial={}&arch=i386",
                    vm.mac_hexhyp(),
                    vm.uuid,
                    vm.hostname,
                    vm.serial
                ),
                "http /vmlinuz".to_string(),
                "http /initrd.img".to_string(),
                "http /pointer.ign".to_string(),
                "https /config/worker".to_string(),
                "https /assets/payload".to_string(),
            ],
            "{boot:?}"
        );
        let (report, uptime) = report
            .split_once("&uptime=")
            .unwrap_or_else(|| panic!("the last request is no report: {report}"));
        assert_eq!(
            report,
            "http /report?event=ignition&rc=0&hostname=worker1.demo.example.com"
        );
        let sha256 = hex(&Sha256::digest(payload));
        assert!(uptime.ends_with(&format!("&sha256={sha256}")), "{uptime}");
        let agent = |what: &str| {
            let (_, _, r) = requests.iter().find(|(_, w, _)| w == what).unwrap();
            r["headers"]["User-Agent"].as_str().unwrap_or_default()
        };
        assert!(agent("http /boot.ipxe").starts_with("iPXE/"));
        assert!(agent("http /initrd.img").starts_with("iPXE/"));
        assert!(agent("http /pointer.ign").starts_with("Ignition/"));
        assert!(agent("https /config/worker").starts_with("Ignition/"));
        let (_, _, config) = requests
            .iter()
            .find(|(_, w, _)| w == "https /config/worker")
            .unwrap();
        assert_eq!(config["status"], 200);
        assert_eq!(config["headers"]["X-Kindling-Token"], "t0k3n");

        let landed = boot.landed();
        let file = |path: &str, contents: &[u8], mode: u32| {
            assert_eq!(
                landed.get(path),
                Some(&Landed::File {
                    mode,
                    sha256: hex(&Sha256::digest(contents))
                }),
                "{path} in {landed:#?}"
            );
        };
        file("/etc/hostname", b"worker1.demo.example.com\n", 0o644);
        file("/etc/motd", b"booted by kindling's harness\n", 0o644);
        file("/etc/kindling/token", b"s3cr3t", 0o600);
        file("/usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
        file("/opt/payload", payload, 0o640);
        assert_eq!(
            landed.get("/var/lib/kindling"),
            Some(&Landed::Dir { mode: 0o700 })
        );
        assert_eq!(
            landed.get("/etc/localtime"),
            Some(&Landed::Link {
                target: "/usr/share/zoneinfo/UTC".to_string()
            })
        );
        eprintln!(
            "booted in {:.1?}: {}",
            boot.elapsed,
            boot.harness().join(" | ")
        );
    }

    /// kindling's first script in the real iPXE (Debian's ROM in QEMU): the chain it names
    /// answers 503 twice (a replica still laying out a revision, or one that died), and iPXE
    /// tries again, as many times and as far apart as the script says, until it is answered.
    #[test]
    fn kindlings_boot_script_tries_its_chain_again_in_the_real_ipxe() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = guest_url(&format!("http://127.0.0.1:{port}"));
        let boot =
            kindling_matchbox::chain_with_retries(&format!("{base}/next?mac=${{mac:hexhyp}}"));
        let server = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = if path == "/boot.ipxe" {
                    ("200 OK", boot.clone())
                } else if asked
                    .iter()
                    .filter(|p: &&String| p.starts_with("/next"))
                    .count()
                    < 2
                {
                    ("503 Service Unavailable", "not laid out yet\n".to_string())
                } else {
                    // Done: the machine reboots, which ends QEMU (-no-reboot).
                    (
                        "200 OK",
                        "#!ipxe\necho kindling-chain-answered\nsleep 1\nreboot\n".to_string(),
                    )
                };
                let done = body.contains("kindling-chain-answered");
                asked.push(path);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                if done {
                    return asked;
                }
            }
            asked
        });
        let vm = Vm::numbered(9);
        let booted = pxe_boot(&vm, &format!("{base}/boot.ipxe"), Duration::from_secs(120));
        let console = booted.console();
        assert!(console.contains("kindling-chain-answered"), "{booted:?}");
        assert!(
            console.contains(&format!(
                "the boot script did not come (try 2 of {})",
                kindling_matchbox::BOOT_TRIES
            )),
            "{console}"
        );
        let asked = server.join().unwrap();
        let chains = asked.iter().filter(|p| p.starts_with("/next")).count();
        assert_eq!(chains, 3, "{asked:?}");
        assert!(
            asked
                .iter()
                .all(|p| p == "/boot.ipxe" || p == "/next?mac=52-54-00-6b-64-09"),
            "{asked:?}"
        );
    }
}
