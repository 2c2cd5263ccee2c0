//! A real Kubernetes for the tests: Debian's etcd and the Kubernetes 1.20.2 binaries that
//! `tests/k8s/binaries.sh` builds, run from what kindling wrote for a machine (its static pods,
//! kubeconfigs, kubelet unit and configuration, containerd's configuration), in a network
//! namespace that holds the machines' addresses.
//!
//! The harness never makes a certificate or a flag of its own: every change it makes to
//! kindling's output is in [`mapping`], and is printed.

pub mod mapping;
mod node;
mod site;

pub use node::{Node, seed_control_plane_images, seed_mirror};
pub use site::Site;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kindling_config::yaml;

use crate::{Daemon, StartError};

/// The programs the tests run, from `$KINDLING_K8S_BIN` or the cache `tests/k8s/binaries.sh`
/// fills.
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries, or `None` with the test named as skipped and why (also when not root).
    /// `./test.sh` builds them (once per machine) and sets `$KINDLING_K8S_BIN`; a bare
    /// `cargo test` finds them in the cache when an earlier `./test.sh` built them.
    pub fn find(test: &str) -> Option<Binaries> {
        // Network namespaces, cgroups and a kubelet need root.
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        if !root {
            eprintln!(
                "SKIPPED {test}: a real cluster needs root (network namespaces, cgroups, the \
                 kubelet); run ./test.sh as root, as CI does"
            );
            return None;
        }
        let dir = match std::env::var_os("KINDLING_K8S_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/k8s/binaries.sh");
                let out = Command::new(&script).arg("--cached").output();
                match out {
                    Ok(out) if out.status.success() => {
                        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
                    }
                    Ok(out) => {
                        eprintln!(
                            "SKIPPED {test}: no Kubernetes binaries ({}); ./test.sh builds them once \
                             per machine, or set KINDLING_K8S_BIN",
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                        return None;
                    }
                    Err(e) => {
                        eprintln!("SKIPPED {test}: {}: {e}", script.display());
                        return None;
                    }
                }
            }
        };
        for program in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kubectl",
            "pause",
        ] {
            assert!(
                dir.join(program).is_file(),
                "{} has no {program}: KINDLING_K8S_BIN must name a directory with every binary \
                 tests/k8s/binaries.sh builds",
                dir.display()
            );
        }
        Some(Binaries { dir })
    }

    /// The path of `program` (`kube-apiserver`, `kubectl`, …; `pause` too).
    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }
}

/// A static pod's command line: the `command` list of its first container.
pub fn pod_command(manifest: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let pod = yaml::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", manifest.display()));
    let container = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(|c| match &c.value {
            yaml::Value::Seq(items) => items.first(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}: no spec.containers[0]", manifest.display()));
    match &container.get("command").map(|c| &c.value) {
        Some(yaml::Value::Seq(items)) => items
            .iter()
            .map(|i| match &i.value {
                yaml::Value::Scalar { text, .. } => text.to_string(),
                other => panic!("{}: a command item is {other:?}", manifest.display()),
            })
            .collect(),
        other => panic!("{}: command is {other:?}", manifest.display()),
    }
}

/// The stand-in for systemctl that [`mapping`] gives the node agent on a machine with root
/// `root` (there is no systemd here): it appends each call's arguments as a line to the file
/// it returns, and succeeds.
pub fn systemctl_stand_in(root: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join("run/kindling-test");
    std::fs::create_dir_all(&dir).unwrap();
    let calls = dir.join("systemctl.calls");
    let script = dir.join("systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    calls
}

/// A systemd unit's command line as the machine would run it: `ExecStart` (the last one, its
/// continuation lines joined) with `$VAR` and `${VAR}` taken from its `EnvironmentFile`s (under
/// `root`), split at whitespace as systemd splits an unquoted variable.
pub fn unit_command(root: &Path, unit: &str) -> Vec<String> {
    let path = root.join("etc/systemd/system").join(unit);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let joined = text.replace("\\\n", " ");
    let mut env = std::collections::BTreeMap::new();
    let mut exec = None;
    for line in joined.lines() {
        if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let file = root.join(file.trim_start_matches('-').trim_start_matches('/'));
            for l in std::fs::read_to_string(&file).unwrap_or_default().lines() {
                if let Some((k, v)) = l.split_once('=')
                    && !l.starts_with('#')
                {
                    env.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
                }
            }
        } else if let Some(command) = line.strip_prefix("ExecStart=")
            && !command.trim().is_empty()
        {
            exec = Some(command.to_string());
        }
    }
    let exec = exec.unwrap_or_else(|| panic!("{}: no ExecStart", path.display()));
    exec.split_whitespace()
        .flat_map(|word| {
            let name = word
                .strip_prefix("${")
                .and_then(|w| w.strip_suffix('}'))
                .or_else(|| word.strip_prefix('$'));
            match name {
                Some(name) => env
                    .get(name)
                    .map(|v| v.split_whitespace().map(String::from).collect())
                    .unwrap_or_default(),
                None => vec![word.to_string()],
            }
        })
        .collect()
}

/// One process of the control plane or a node, stopped (and named, with its PID) when dropped.
pub struct Process {
    daemon: Option<Daemon>,
    name: String,
}

impl Process {
    /// Starts `command` as `name`, its output to `log`; stopped (and named) when dropped.
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Process, StartError> {
        Ok(Process {
            daemon: Some(Daemon::spawn(name, command, log)?),
            name: name.to_string(),
        })
    }

    /// The daemon, to wait for it.
    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("running until dropped")
    }

    /// Waits up to `timeout` for the process to exit (a oneshot unit's); `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.daemon().child();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().map_or(0, Daemon::pid)
    }

    /// The last lines of its log.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            eprintln!(
                "kube harness: stopping {} (pid {})",
                self.name,
                daemon.pid()
            );
            drop(daemon);
        }
    }
}

/// A control plane run from one machine's static pods: etcd, kube-apiserver,
/// kube-controller-manager and kube-scheduler as processes in the site's network namespace,
/// each with the command kindling wrote (mapped by [`mapping`]), reading the machine's files
/// under `root`.
pub struct ControlPlane {
    /// In order of start: etcd first. Stopped in reverse order.
    pods: Vec<StaticPod>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(pod) = self.pods.pop() {
            drop(pod);
        }
    }
}

/// One static pod's process, started again when it exits, as the kubelet restarts a static pod
/// (restartPolicy Always). kube-controller-manager and kube-scheduler exit when they cannot renew
/// their leader lease in time, which a slow etcd on a loaded machine causes; on a machine the
/// kubelet brings them back, and so does the harness. Each start's log is kept: the one before
/// as `<pod>.previous.log`, as `kubectl logs --previous` shows it.
struct StaticPod {
    /// Stopped (and named) when dropped, after the watcher has ended.
    _process: Arc<Mutex<Process>>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl StaticPod {
    /// Watches `process`, started from `command` with its output to `log`.
    fn supervise(process: Process, command: Command, log: &Path) -> StaticPod {
        let running = Arc::new(Mutex::new(process));
        let stop = Arc::new(AtomicBool::new(false));
        let log = log.to_path_buf();
        let watcher = {
            let (running, stop) = (running.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let mut process = running.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(status) = process.daemon().exited() else {
                        continue;
                    };
                    let name = process.name.clone();
                    eprintln!(
                        "kube harness: {name} (pid {}) exited ({status}); starting it again, as \
                         the kubelet restarts a static pod",
                        process.pid()
                    );
                    let previous = log.with_extension("previous.log");
                    let _ = std::fs::rename(&log, &previous);
                    match Process::spawn(&name, rebuilt(&command), &log) {
                        Ok(new) => *process = new,
                        Err(e) => eprintln!("kube harness: {e}"),
                    }
                }
            })
        };
        StaticPod {
            _process: running,
            stop,
            watcher: Some(watcher),
        }
    }
}

impl Drop for StaticPod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// How long a component may take to become ready. kube-apiserver takes 6–12 s on an idle
/// 2-core machine; a loaded one is slower.
pub const READY: Duration = Duration::from_secs(120);

impl ControlPlane {
    /// Starts the control plane whose static pods are in `<root>/etc/kubernetes/manifests`,
    /// logs in `logs`; each is ready before the next starts.
    pub fn start(
        site: &Site,
        root: &Path,
        bins: &Binaries,
        logs: &Path,
    ) -> Result<ControlPlane, StartError> {
        eprintln!("{}", mapping::describe());
        let manifests = root.join("etc/kubernetes/manifests");
        let root_text = root.display().to_string();
        std::fs::create_dir_all(logs)
            .map_err(|e| StartError::new(format!("{}: {e}", logs.display())))?;
        // Starts the pod's command as a process and waits until `ready` holds (`what`).
        let start =
            |component, pod: &str, program: PathBuf, what: &str, ready: &dyn Fn() -> bool| {
                let command = pod_command(&manifests.join(format!("{pod}.yaml")));
                let mut cmd = site.command(&program);
                cmd.args(mapping::flags(component, &command[1..], &root_text));
                let log = logs.join(format!("{pod}.log"));
                let mut process = Process::spawn(pod, rebuilt(&cmd), &log)?;
                process.daemon().wait_ready(what, READY, |_| ready())?;
                Ok::<_, StartError>(StaticPod::supervise(process, cmd, &log))
            };
        let healthy = |url: &'static str| move || site.answers(url);

        let mut pods = Vec::new();
        pods.push(start(
            mapping::Component::Etcd,
            "etcd",
            PathBuf::from("etcd"),
            "healthy (http://127.0.0.1:2381/health)",
            &healthy("http://127.0.0.1:2381/health"),
        )?);
        let admin = root.join("etc/kubernetes/admin.conf");
        pods.push(start(
            mapping::Component::KubeApiserver,
            "kube-apiserver",
            bins.path("kube-apiserver"),
            "ready (kubectl get --raw /readyz)",
            &|| {
                site.command(bins.path("kubectl"))
                    .arg(format!("--kubeconfig={}", admin.display()))
                    .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        )?);
        pods.push(start(
            mapping::Component::KubeControllerManager,
            "kube-controller-manager",
            bins.path("kube-controller-manager"),
            "healthy (https://127.0.0.1:10257/healthz)",
            &healthy("https://127.0.0.1:10257/healthz"),
        )?);
        pods.push(start(
            mapping::Component::KubeScheduler,
            "kube-scheduler",
            bins.path("kube-scheduler"),
            "healthy (https://127.0.0.1:10259/healthz)",
            &healthy("https://127.0.0.1:10259/healthz"),
        )?);
        Ok(ControlPlane { pods })
    }
}

/// A copy of `command`'s program and arguments (all [`Site::command`] sets).
fn rebuilt(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    copy
}

/// Polls `check` every 250 ms until it holds or `timeout` passes; `what` names it in the panic.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if started.elapsed() > timeout => {
                panic!("{what}: not after {} s: {why}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static pod that exits is started again, its earlier log kept; dropped, it stays down.
    #[test]
    fn a_static_pod_that_exits_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let starts = dir.path().join("starts");
        let log = dir.path().join("pod.log");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("echo start >> {}; echo ran; sleep 0.2", starts.display()),
        ]);
        let process = Process::spawn("pod", rebuilt(&command), &log).unwrap();
        let pod = StaticPod::supervise(process, command, &log);
        let count = || {
            std::fs::read_to_string(&starts)
                .unwrap_or_default()
                .lines()
                .count()
        };
        eventually("three starts", Duration::from_secs(30), || {
            (count() >= 3).then_some(()).ok_or(count().to_string())
        });
        assert_eq!(
            std::fs::read_to_string(log.with_extension("previous.log")).unwrap(),
            "ran\n"
        );
        drop(pod);
        let after = count();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(count(), after, "started again after it was dropped");
    }
}
