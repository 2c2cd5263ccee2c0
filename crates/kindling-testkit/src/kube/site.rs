//! A site network in one network namespace: each machine's address on its loopback device, the
//! cluster's names in its `/etc/hosts`, and every process of the test's cluster inside it. So
//! kindling's addresses and ports run unchanged (etcd on the bootstrap machine's address, the
//! apiserver on 6443, the kubelet on its node IP), tests run side by side, and nothing listens
//! on the host.

use std::ffi::{OsStr, OsString};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A network namespace (`ip netns`) and a process that holds it and its mount namespace (where
/// `/etc/hosts` is the site's) for as long as the test runs.
pub struct Site {
    name: String,
    anchor: Child,
    etc: PathBuf,
}

const PREFIX: &str = "kindling-t";

impl Site {
    /// A namespace whose loopback device holds `addresses`, and whose `/etc/hosts` maps each
    /// name of `hosts` to its address.
    pub fn create(addresses: &[IpAddr], hosts: &[(IpAddr, String)]) -> Site {
        remove_abandoned();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        // The files of /etc/netns/<name>/ go over /etc's, as `ip netns exec` does it.
        let etc = PathBuf::from("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).unwrap();
        let mut text = String::from("127.0.0.1 localhost\n");
        for (ip, host) in hosts {
            text.push_str(&format!("{ip} {host}\n"));
        }
        std::fs::write(etc.join("hosts"), text).unwrap();
        let exec = |args: &[&str]| {
            run(Command::new("ip").args(["netns", "exec", &name]).args(args));
        };
        exec(&["ip", "link", "set", "lo", "up"]);
        for ip in addresses {
            let prefix = if ip.is_ipv4() { "32" } else { "128" };
            exec(&["ip", "addr", "add", &format!("{ip}/{prefix}"), "dev", "lo"]);
        }
        // Not `ip netns exec`: it mounts a fresh /sys, which hides the cgroup hierarchies the
        // kubelet and containerd need. A mount namespace of its own (nothing mounted inside
        // reaches the host) with the site's /etc/hosts, in the site's network namespace.
        let mut anchor = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "nsenter"])
            .arg(format!("--net=/run/netns/{name}"))
            .args([
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/hosts && exec sleep infinity",
            ])
            .arg(etc.join("hosts"))
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare runs");
        // Ready once it sleeps: its namespaces are set up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = anchor.try_wait().unwrap() {
                panic!("the site's namespaces could not be set up: {status}");
            }
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", anchor.id()));
            if comm.is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the site's namespaces were not set up in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Site { name, anchor, etc }
    }

    /// The namespace's name (`ip netns exec <name> …` reaches it by hand).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to run inside the site (its network and mount namespace).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let wrapper = self.wrapper();
        let mut cmd = Command::new(&wrapper[0]);
        cmd.args(&wrapper[1..]).arg(program);
        cmd
    }

    /// The command and arguments that run a program inside the site, for code that builds its
    /// own command lines.
    pub fn wrapper(&self) -> Vec<OsString> {
        [
            "nsenter",
            &format!("--target={}", self.anchor.id()),
            "--net",
            "--mount",
            "--",
        ]
        .map(OsString::from)
        .to_vec()
    }

    /// Whether `url` answers 2xx inside the site (no certificate check: a readiness probe).
    pub fn answers(&self, url: &str) -> bool {
        self.command("curl")
            .args(["-fsSk", "--max-time", "5", "-o", "/dev/null", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let anchor = self.anchor.id();
        if let Some(ns) = netns_of(&anchor.to_string()) {
            stop_processes_in(&self.name, &ns, anchor);
        }
        let _ = self.anchor.kill();
        let _ = self.anchor.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The network namespace of a process, as the kernel names it (`net:[4026532…]`).
fn netns_of(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// Kills (SIGKILL) every process but `anchor` left in the namespace `ns`, naming each by PID,
/// and waits until they are gone.
fn stop_processes_in(name: &str, ns: &Path, anchor: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<(String, String)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| *pid != anchor.to_string() && netns_of(pid).as_deref() == Some(ns))
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_string())
            })
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return;
        }
        for (pid, comm) in &left {
            eprintln!("kube harness: killing {comm} (pid {pid}), left in network namespace {name}");
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Namespaces of test processes that are gone (killed before they could clean up).
fn remove_abandoned() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("kube harness: removing network namespace {name}, left by process {pid}");
        if let Ok(meta) = entry.metadata() {
            let ns = PathBuf::from(format!("net:[{}]", meta.ino()));
            stop_processes_in(&name, &ns, 0);
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&name));
    }
}

impl Site {
    /// The site of a described cluster: every machine's address and the load balancer's VIPs,
    /// with the names kindling gives them (`api`, `api-int`, each machine's name and FQDN).
    /// A machine racked after the site was made (a day-2 addition): its address on the
    /// loopback device, its names in the hosts file (written in place: the site sees it).
    pub fn add_machine(&self, d: &kindling_config::ClusterDescription, name: &str) {
        let m = d
            .inventory
            .machines
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no machine {name} in the description"));
        let prefix = if m.ip.is_ipv4() { "32" } else { "128" };
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args([
                "ip",
                "addr",
                "add",
                &format!("{}/{prefix}", m.ip),
                "dev",
                "lo",
            ]));
        use std::io::Write as _;
        let mut hosts = std::fs::OpenOptions::new()
            .append(true)
            .open(self.etc.join("hosts"))
            .unwrap();
        writeln!(hosts, "{} {}\n{} {}", m.ip, d.fqdn(m), m.ip, m.name).unwrap();
    }

    pub fn for_cluster(d: &kindling_config::ClusterDescription) -> Site {
        let lb = &d.inventory.load_balancer;
        let mut addresses = vec![lb.api_vip, lb.api_int_vip, lb.ingress_vip];
        let mut hosts = vec![
            (lb.api_vip, d.api_host()),
            (lb.api_int_vip, d.api_int_host()),
        ];
        for m in &d.inventory.machines {
            addresses.push(m.ip);
            hosts.push((m.ip, d.fqdn(m)));
            hosts.push((m.ip, m.name.clone()));
        }
        addresses.sort();
        addresses.dedup();
        Site::create(&addresses, &hosts)
    }
}
