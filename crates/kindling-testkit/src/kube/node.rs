//! A node: Debian's containerd and the real kubelet, each started as the machine's units start
//! them, from the files the real Ignition wrote under the machine's root (mapped by
//! [`mapping`]), in the site's network namespace.
//!
//! Pods live in cgroups under a root of the node's own (`cgroupRoot`, the one setting the
//! harness adds for isolation), so that nodes of tests running side by side do not meet, and
//! so that stopping the node can find and kill every container it started.

use std::path::{Path, PathBuf};
use std::process::Command;

use kindling_mirror::{NodeFiles, Store, import};

use super::{Binaries, Process, READY, Site, mapping, unit_command};
use crate::StartError;

/// A running node; dropping it stops the kubelet, every container, then containerd.
pub struct Node {
    kubelet: Option<Process>,
    containerd: Option<Process>,
    cgroups: Vec<PathBuf>,
    /// The machine's name.
    pub name: String,
}

/// The cgroup hierarchies the kubelet's cgroupfs driver and runc use: the v1 controllers, and
/// the hybrid host's v2 tree (`unified`), where runc makes the containers' cgroups too.
const CONTROLLERS: &[&str] = &[
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd",
    "unified",
];

impl Node {
    /// Starts containerd and the kubelet of the machine `name` whose root is `root`.
    pub fn start(site: &Site, name: &str, root: &Path, logs: &Path) -> Result<Node, StartError> {
        let root_text = root.display().to_string();
        let io =
            |path: &Path, e: std::io::Error| StartError::new(format!("{}: {e}", path.display()));
        // The machine's files stay as Ignition wrote them (the node agent checks them); the
        // processes run with mapped copies under run/kindling-test.
        let run = root.join("run/kindling-test");
        let mapped =
            |from: &Path, to: &Path, map: &dyn Fn(&str) -> String| -> Result<(), StartError> {
                let text = std::fs::read_to_string(from).map_err(|e| io(from, e))?;
                let dir = to.parent().unwrap_or(to);
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
                std::fs::write(to, map(&text)).map_err(|e| io(to, e))
            };

        // containerd's config and the per-registry hosts.toml kindling serve added; the config's
        // registry directory is the mapped copy's.
        let config = run.join("containerd/config.toml");
        let hosts = format!("{root_text}/etc/containerd/certs.d");
        let mapped_hosts = format!("{}/containerd/certs.d", run.display());
        mapped(&root.join("etc/containerd/config.toml"), &config, &|t| {
            mapping::containerd_config(t, &root_text).replace(&hosts, &mapped_hosts)
        })?;
        for entry in std::fs::read_dir(&hosts).into_iter().flatten().flatten() {
            let toml = entry.path().join("hosts.toml");
            if toml.exists() {
                let copy = Path::new(&mapped_hosts)
                    .join(entry.file_name())
                    .join("hosts.toml");
                mapped(&toml, &copy, &|t| mapping::containerd_config(t, &root_text))?;
            }
        }
        write_cni(root)?;
        let cgroups = make_cgroups(site.name())?;

        let mut command = site.command("containerd");
        command.arg("--config").arg(&config);
        let mut containerd = Process::spawn(
            &format!("containerd ({name})"),
            command,
            &logs.join(format!("containerd-{name}.log")),
        )?;
        let socket = root.join("run/containerd/containerd.sock");
        containerd
            .daemon()
            .wait_ready("answering on its socket", READY, |_| {
                Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })?;

        // The kubelet, as kubelet.service starts it.
        let command = unit_command(root, "kubelet.service");
        let config = command
            .iter()
            .find_map(|a| a.strip_prefix("--config="))
            .ok_or_else(|| StartError::new("kubelet.service names no --config".into()))?;
        let written = PathBuf::from(format!("{root_text}{config}"));
        let config = run.join("kubelet/config.yaml");
        let cgroup_root = format!("/{}", site.name());
        mapped(&written, &config, &|t| {
            mapping::kubelet_config(t, &root_text, &cgroup_root)
        })?;
        for dir in ["etc/kubernetes/manifests", "var/lib/kubelet/pki"] {
            std::fs::create_dir_all(root.join(dir)).map_err(|e| io(&root.join(dir), e))?;
        }
        let mut args = mapping::flags(mapping::Component::Kubelet, &command[1..], &root_text);
        for arg in &mut args {
            if arg.starts_with("--config=") {
                *arg = format!("--config={}", config.display());
            }
        }
        let mut cmd = site.command(format!("{root_text}{}", command[0]));
        cmd.args(&args);
        let kubelet = Process::spawn(
            &format!("kubelet ({name})"),
            cmd,
            &logs.join(format!("kubelet-{name}.log")),
        )?;
        Ok(Node {
            kubelet: Some(kubelet),
            containerd: Some(containerd),
            cgroups,
            name: name.to_string(),
        })
    }

    /// The kubelet's last log lines.
    pub fn kubelet_log(&self) -> String {
        self.kubelet.as_ref().map(Process::log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.kubelet.take());
        // Every container of the node, by the cgroups its pods are in.
        for dir in &self.cgroups {
            kill_cgroup_tree(dir);
        }
        drop(self.containerd.take());
        for dir in &self.cgroups {
            remove_cgroup_tree(dir);
        }
    }
}

/// The bridge network that flannel would configure on a real cluster (mapping: CNI).
fn write_cni(root: &Path) -> Result<(), StartError> {
    let dir = root.join("etc/cni/net.d");
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::new(format!("{}: {e}", dir.display())))?;
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kindling-test",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.128.0.0/24"}]],
                      "dataDir": root.join("var/lib/cni/networks").display().to_string()}},
            {"type": "loopback"}
        ]
    });
    let path = dir.join("10-bridge.conflist");
    std::fs::write(&path, conf.to_string())
        .map_err(|e| StartError::new(format!("{}: {e}", path.display())))
}

/// The node's own cgroup root in every hierarchy, as the kubelet requires it to exist.
fn make_cgroups(name: &str) -> Result<Vec<PathBuf>, StartError> {
    let mut made = Vec::new();
    for controller in CONTROLLERS {
        let base = Path::new("/sys/fs/cgroup").join(controller);
        if !base.is_dir() {
            continue;
        }
        let dir = base.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StartError::new(format!("{}: {e}", dir.display())))?;
        if *controller == "cpuset" {
            // A new cpuset has no CPUs and no memory nodes until given its parent's.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(base.join(file)).unwrap_or_default();
                let _ = std::fs::write(dir.join(file), value.trim());
            }
        }
        made.push(dir);
    }
    Ok(made)
}

fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            all.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        i += 1;
    }
    all
}

fn kill_cgroup_tree(dir: &Path) {
    for _ in 0..50 {
        let mut any = false;
        for cgroup in cgroup_dirs(dir) {
            let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                any = true;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                eprintln!(
                    "kube harness: killing {} (pid {pid}), left in cgroup {}",
                    comm.trim(),
                    cgroup.display()
                );
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for _ in 0..50 {
        let mut dirs = cgroup_dirs(dir);
        dirs.reverse();
        for cgroup in &dirs {
            let _ = std::fs::remove_dir(cgroup);
        }
        if !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("kube harness: could not remove cgroup {}", dir.display());
}

/// Puts what a real node runs into the asset directory's mirror, over the stand-ins of
/// [`crate::mirror::seed`]: the real kubelet, Debian's CNI plugins (the same upstream plugins
/// the mirror takes from GitHub), and the pause image built from the Kubernetes source, under
/// the name kindling pins (`pause_image`).
pub fn seed_mirror(dir: &Path, kubernetes_version: &str, bins: &Binaries, pause_image: &str) {
    let store = Store::open(&dir.join("mirror")).unwrap();
    for path in NodeFiles::for_version(kubernetes_version).all() {
        let name = path.rsplit('/').next().unwrap_or(path);
        let real = if name == "kubelet" {
            bins.path("kubelet")
        } else if path.starts_with("cni/") {
            Path::new("/usr/lib/cni").join(name)
        } else {
            continue;
        };
        let file = std::fs::File::open(&real).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; ./test.sh installs containernetworking-plugins",
                real.display()
            )
        });
        store
            .put_file(path, file, None, "kindling-testkit")
            .unwrap();
    }
    let layout = tempfile::tempdir().unwrap();
    let pause = std::fs::read(bins.path("pause")).unwrap();
    crate::oci::write_image(
        layout.path(),
        pause_image,
        &[crate::oci::ImageFile {
            path: "pause",
            contents: &pause,
            mode: 0o755,
        }],
        &[],
        &["/pause"],
    );
    import::archive(&store, layout.path(), None, &mut |_| {}).unwrap();
}

/// Puts control-plane images into the asset directory's mirror, each under the name kindling
/// pins (`images`: reference and program): the program in `/usr/local/bin`, from the built
/// Kubernetes binaries, or Debian's `etcd` in `/usr/bin` with the libraries it links. Made here
/// because no image can come from the internet; run by the kubelet with the commands kindling's
/// static pods give.
pub fn seed_control_plane_images(dir: &Path, bins: &Binaries, images: &[(&str, &str)]) {
    let store = Store::open(&dir.join("mirror")).unwrap();
    for (reference, program) in images {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if *program == "etcd" {
            files.push((
                "usr/bin/etcd".into(),
                std::fs::read("/usr/bin/etcd").unwrap(),
            ));
            for lib in linked_libraries(Path::new("/usr/bin/etcd")) {
                let bytes = std::fs::read(&lib).unwrap();
                files.push((lib.trim_start_matches('/').to_string(), bytes));
            }
        } else {
            files.push((
                format!("usr/local/bin/{program}"),
                std::fs::read(bins.path(program)).unwrap(),
            ));
        }
        let image_files: Vec<crate::oci::ImageFile<'_>> = files
            .iter()
            .map(|(path, contents)| crate::oci::ImageFile {
                path,
                contents,
                mode: 0o755,
            })
            .collect();
        let layout = tempfile::tempdir().unwrap();
        crate::oci::write_image(layout.path(), reference, &image_files, &[], &[program]);
        import::archive(&store, layout.path(), None, &mut |_| {}).unwrap();
    }
}

/// The shared libraries `program` loads, as `ldd` lists them (the dynamic loader included).
fn linked_libraries(program: &Path) -> Vec<String> {
    let out = Command::new("ldd").arg(program).output().expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}
