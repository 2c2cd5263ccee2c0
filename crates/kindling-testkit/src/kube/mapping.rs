//! Every change the harness makes to what kindling wrote before it runs here, and why: the one
//! list. kindling targets the Kubernetes versions its README states (etcd 3.6, Kubernetes
//! 1.3x, a systemd host); the tests run Debian's etcd 3.4, Kubernetes 1.20.2 built from
//! Debian's source, and a host without systemd as PID 1. Nothing outside this list is changed,
//! and [`describe`] prints it at the start of every harness.
//!
//! One rule holds for every component and is not repeated below: an absolute path in a flag or
//! a setting names a file on the machine, so it is taken under the machine's root (the scratch
//! directory the real Ignition wrote), e.g. `/etc/kubernetes/pki/ca.crt` becomes
//! `<root>/etc/kubernetes/pki/ca.crt`. Addresses and ports are never changed: each machine's
//! address is on the loopback device of a network namespace the test makes.

use std::fmt::Write as _;

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The etcd static pod's command.
    Etcd,
    /// The kube-apiserver static pod's command.
    KubeApiserver,
    /// The kube-controller-manager static pod's command.
    KubeControllerManager,
    /// The kube-scheduler static pod's command.
    KubeScheduler,
    /// The kubelet unit's command line (with kubelet.env's arguments).
    Kubelet,
    /// The KubeletConfiguration (`/var/lib/kubelet/config.yaml`), by field.
    KubeletConfig,
    /// containerd's `/etc/containerd/config.toml`, by `table.key` (`key` at the top level).
    Containerd,
    /// The CNI configuration in `/etc/cni/net.d`.
    Cni,
    /// Both `kindling agent` units' command lines (their common arguments).
    Agent,
    /// The `kindling agent bootstrap` unit's command line.
    BootstrapAgent,
    /// The `kindling agent join-master` unit's command line.
    JoinMasterAgent,
    /// The `kindling agent node` unit's command line.
    NodeAgent,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::KubeletConfig => "kubelet config.yaml",
            Component::Containerd => "containerd config.toml",
            Component::Cni => "CNI",
            Component::Agent => "kindling agent",
            Component::BootstrapAgent => "kindling agent bootstrap",
            Component::JoinMasterAgent => "kindling agent join-master",
            Component::NodeAgent => "kindling agent node",
        }
    }
}

/// The change. In values, `{root}` is the machine's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The flag or setting gets another name; its value is kept.
    Rename(&'static str),
    /// The whole flag (`--name=value`) or setting line is replaced by this.
    Replace(&'static str),
    /// The setting's value becomes this.
    Set(&'static str),
    /// Left out.
    Drop,
    /// Added: a flag, or a setting line in the table `name`, or a file.
    Add(&'static str),
}

/// One change to one component.
pub struct Rule {
    pub component: Component,
    /// The flag (`--name`), setting (`field`, `table.key`) or, for [`Change::Add`] to a config
    /// file, the table it goes in.
    pub name: &'static str,
    pub change: Change,
    pub why: &'static str,
}

const AGENT_DEFAULTS: &str = "the unit leaves this path at the agent's default, a path on the \
                              machine; here the machine's files are under its root";

const CRI: &str = "plugins.\"io.containerd.grpc.v1.cri\"";

/// The list.
pub const RULES: &[Rule] = &[
    Rule {
        component: Component::Etcd,
        name: "--feature-gates",
        change: Change::Replace("--experimental-initial-corrupt-check=true"),
        why: "etcd 3.6 turns the initial corruption check on as the feature gate \
              InitialCorruptCheck=true; etcd 3.4 has no --feature-gates and calls it \
              --experimental-initial-corrupt-check",
    },
    Rule {
        component: Component::Etcd,
        name: "--watch-progress-notify-interval",
        change: Change::Rename("--experimental-watch-progress-notify-interval"),
        why: "etcd 3.4 spells it with the experimental- prefix",
    },
    Rule {
        component: Component::KubeletConfig,
        name: "cgroupDriver",
        change: Change::Set("cgroupfs"),
        why: "the test host does not run systemd as PID 1, so there is no systemd cgroup manager",
    },
    Rule {
        component: Component::KubeletConfig,
        name: "containerRuntimeEndpoint",
        change: Change::Drop,
        why: "the field is new in 1.27; the 1.20 kubelet takes the endpoint as a flag (below)",
    },
    Rule {
        component: Component::KubeletConfig,
        name: "resolvConf",
        change: Change::Set("/etc/resolv.conf"),
        why: "the test host runs no systemd-resolved, so /run/systemd/resolve/resolv.conf does not exist",
    },
    Rule {
        component: Component::KubeletConfig,
        name: "cgroupRoot",
        change: Change::Add("cgroupRoot: {cgroup}"),
        why: "pods go under a cgroup of the node's own, so that the nodes of tests running side \
              by side do not meet, and stopping a node finds every container it started",
    },
    Rule {
        component: Component::KubeletConfig,
        name: "evictionHard",
        change: Change::Add(
            "evictionHard: {imagefs.available: \"1%\", nodefs.available: \"1%\", memory.available: \"100Mi\"}",
        ),
        why: "the test host's disk is shared with the builds: the default thresholds (imagefs \
              15% free) evict every pod for the host's fill level, not the test's",
    },
    Rule {
        component: Component::Kubelet,
        name: "--container-runtime",
        change: Change::Add("--container-runtime=remote"),
        why: "1.20 defaults to the built-in dockershim; from 1.24 remote is the only runtime",
    },
    Rule {
        component: Component::Kubelet,
        name: "--container-runtime-endpoint",
        change: Change::Add(
            "--container-runtime-endpoint=unix://{root}/run/containerd/containerd.sock",
        ),
        why: "the config field containerRuntimeEndpoint (dropped above) as 1.20 takes it",
    },
    Rule {
        component: Component::Kubelet,
        name: "--root-dir",
        change: Change::Add("--root-dir={root}/var/lib/kubelet"),
        why: "the kubelet's state directory (default /var/lib/kubelet) is the machine's, under its root",
    },
    Rule {
        component: Component::Containerd,
        name: "oom_score",
        change: Change::Drop,
        why: "this VM lacks CAP_SYS_RESOURCE, so no process may lower its OOM score",
    },
    Rule {
        component: Component::Containerd,
        name: CRI,
        change: Change::Add("restrict_oom_score_adj = true"),
        why: "this VM lacks CAP_SYS_RESOURCE: without it every pod sandbox fails with \
              \"nsexec: failed to update /proc/self/oom_score_adj: Permission denied\"",
    },
    Rule {
        component: Component::Containerd,
        name: CRI,
        change: Change::Add("netns_mounts_under_state_dir = true"),
        why: "pods' network namespaces are the machine's: under its state directory (its root), \
              not in the host's /run/netns",
    },
    Rule {
        component: Component::Containerd,
        name: "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options.SystemdCgroup",
        change: Change::Set("false"),
        why: "cgroupfs, as the kubelet (above): no systemd as PID 1",
    },
    Rule {
        component: Component::Agent,
        name: "--state-dir",
        change: Change::Add("--state-dir={root}/opt/kindling"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--log-dir",
        change: Change::Add("--log-dir={root}/var/log/kindling"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--static-pods-dir",
        change: Change::Add("--static-pods-dir={root}/etc/kubernetes/manifests"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--etcd-ca",
        change: Change::Add("--etcd-ca={root}/etc/kubernetes/pki/etcd/ca.crt"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--etcd-cert",
        change: Change::Add("--etcd-cert={root}/etc/kubernetes/pki/apiserver-etcd-client.crt"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--etcd-key",
        change: Change::Add("--etcd-key={root}/etc/kubernetes/pki/apiserver-etcd-client.key"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::BootstrapAgent,
        name: "--node-labels",
        change: Change::Add("--node-labels={root}/opt/kindling/node-labels.json"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::JoinMasterAgent,
        name: "--member-pod",
        change: Change::Add("--member-pod={root}/opt/kindling/etcd-member.yaml"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::Agent,
        name: "--identity-file",
        change: Change::Add("--identity-file={root}/etc/kindling/identity"),
        why: AGENT_DEFAULTS,
    },
    Rule {
        component: Component::NodeAgent,
        name: "--root",
        change: Change::Add("--root={root}"),
        why: "every path the node agent reads and writes is under the machine's root",
    },
    Rule {
        component: Component::NodeAgent,
        name: "--systemctl",
        change: Change::Add("--systemctl={root}/run/kindling-test/systemctl"),
        why: "no systemd runs as PID 1 here: a stand-in (kube::systemctl_stand_in) records each \
              call, and the test restarts what the agent asked for",
    },
    Rule {
        component: Component::Cni,
        name: "10-bridge.conflist",
        change: Change::Add("a bridge network (Debian's bridge, host-local and loopback plugins)"),
        why: "flannel's DaemonSet writes the node's CNI configuration on a real cluster; its \
              image cannot be had here",
    },
];

/// The list, as the harness prints it.
pub fn describe() -> String {
    let mut text = String::from(
        "kindling's output is run here with these changes (kindling-testkit kube/mapping.rs); \
         every absolute path is taken under the machine's root:\n",
    );
    for rule in RULES {
        let change = match rule.change {
            Change::Rename(to) => format!("{} -> {to}", rule.name),
            Change::Replace(with) => format!("{} -> {with}", rule.name),
            Change::Set(value) => format!("{} = {value}", rule.name),
            Change::Drop => format!("{} dropped", rule.name),
            Change::Add(what) if rule.component == Component::Containerd => {
                format!("[{}] + {what}", rule.name)
            }
            Change::Add(what) => format!("+ {what}"),
        };
        let _ = writeln!(
            text,
            "  {:<24} {change}\n  {:<24}   ({})",
            rule.component.name(),
            "",
            rule.why
        );
    }
    text
}

fn rules(component: Component) -> impl Iterator<Item = &'static Rule> {
    let agent = matches!(
        component,
        Component::BootstrapAgent | Component::JoinMasterAgent
    );
    RULES
        .iter()
        .filter(move |r| r.component == component || (agent && r.component == Component::Agent))
}

fn under_root(value: &str, root: &str) -> String {
    if value.starts_with('/') {
        format!("{root}{value}")
    } else {
        value.to_string()
    }
}

/// A command line (`--flag=value`, `--flag value` and bare `--flag` arguments) as it runs here.
pub fn flags(component: Component, args: &[String], root: &str) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        if !arg.starts_with('-') {
            // The value of the flag before it.
            out.push(under_root(arg, root));
            continue;
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let rule = rules(component).find(|r| r.name == name);
        let name = match rule.map(|r| r.change) {
            Some(Change::Drop) => continue,
            Some(Change::Replace(with)) => {
                out.push(with.replace("{root}", root));
                continue;
            }
            Some(Change::Rename(to)) => to,
            _ => name,
        };
        out.push(match value {
            Some(v) => format!("{name}={}", under_root(v, root)),
            None => name.to_string(),
        });
    }
    for rule in rules(component) {
        if let Change::Add(flag) = rule.change {
            out.push(flag.replace("{root}", root));
        }
    }
    out
}

/// A static pod manifest as the kubelet runs it here: its command's flags as [`flags`] maps
/// them (inside the container the paths are the pod's own), and its `hostPath` volumes under
/// the machine's root.
pub fn static_pod(component: Component, text: &str, root: &str) -> String {
    let mut out = String::new();
    let mut in_host_path = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let host_path = std::mem::replace(&mut in_host_path, trimmed.ends_with("hostPath:"));
        if let Some(arg) = trimmed.strip_prefix("- --") {
            for mapped in flags(component, &[format!("--{arg}")], "") {
                let _ = writeln!(out, "{indent}- {mapped}");
            }
        } else if let Some(path) = trimmed.strip_prefix("path: /").filter(|_| host_path) {
            // A probe's `path:` is a URL path; only a hostPath's names a file.
            let _ = writeln!(out, "{indent}path: {root}/{path}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The component a static pod manifest runs, by its file name (`etcd.yaml`, …).
pub fn pod_component(file_name: &str) -> Option<Component> {
    match file_name {
        "etcd.yaml" => Some(Component::Etcd),
        "kube-apiserver.yaml" => Some(Component::KubeApiserver),
        "kube-controller-manager.yaml" => Some(Component::KubeControllerManager),
        "kube-scheduler.yaml" => Some(Component::KubeScheduler),
        _ => None,
    }
}

/// kindling's KubeletConfiguration (block-style YAML, as kindling writes it) as it runs here,
/// its pods under the cgroup `cgroup`.
pub fn kubelet_config(text: &str, root: &str, cgroup: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some((key, value)) = trimmed.split_once(": ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let value = value.trim_matches('"');
        match rules(Component::KubeletConfig)
            .find(|r| r.name == key)
            .map(|r| r.change)
        {
            Some(Change::Drop) => continue,
            Some(Change::Set(v)) => {
                let _ = writeln!(out, "{indent}{key}: {v}");
            }
            _ => {
                let _ = writeln!(out, "{indent}{key}: {}", under_root(value, root));
            }
        }
    }
    for rule in rules(Component::KubeletConfig) {
        if let Change::Add(line) = rule.change {
            let _ = writeln!(out, "{}", line.replace("{cgroup}", cgroup));
        }
    }
    out
}

/// kindling's containerd config.toml as it runs here.
pub fn containerd_config(text: &str, root: &str) -> String {
    let mut out = String::new();
    let mut table = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = header.to_string();
            out.push_str(line);
            out.push('\n');
            for rule in rules(Component::Containerd).filter(|r| r.name == table) {
                if let Change::Add(setting) = rule.change {
                    let _ = writeln!(out, "  {setting}");
                }
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(" = ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let full = if table.is_empty() {
            key.to_string()
        } else {
            format!("{table}.{key}")
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        match rules(Component::Containerd)
            .find(|r| r.name == full)
            .map(|r| r.change)
        {
            Some(Change::Drop) => continue,
            Some(Change::Set(v)) => {
                let _ = writeln!(out, "{indent}{key} = {v}");
            }
            _ => {
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(path) => format!("\"{}\"", under_root(path, root)),
                    None => value.to_string(),
                };
                let _ = writeln!(out, "{indent}{key} = {value}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn etcd_flags_are_spelled_as_3_4_spells_them_and_paths_go_under_the_root() {
        let mapped = flags(
            Component::Etcd,
            &args(&[
                "--data-dir=/var/lib/etcd",
                "--feature-gates=InitialCorruptCheck=true",
                "--watch-progress-notify-interval=5s",
                "--listen-client-urls=https://127.0.0.1:2379",
                "--client-cert-auth=true",
                "--name",
                "/not/a/name",
            ]),
            "/r",
        );
        assert_eq!(
            mapped,
            args(&[
                "--data-dir=/r/var/lib/etcd",
                "--experimental-initial-corrupt-check=true",
                "--experimental-watch-progress-notify-interval=5s",
                "--listen-client-urls=https://127.0.0.1:2379",
                "--client-cert-auth=true",
                "--name",
                "/r/not/a/name",
            ])
        );
    }

    #[test]
    fn the_kubelet_gets_its_runtime_as_flags_and_its_config_loses_what_1_20_lacks() {
        let mapped = flags(
            Component::Kubelet,
            &args(&["--config=/var/lib/kubelet/config.yaml"]),
            "/r",
        );
        assert_eq!(mapped[0], "--config=/r/var/lib/kubelet/config.yaml");
        assert!(mapped.contains(
            &"--container-runtime-endpoint=unix:///r/run/containerd/containerd.sock".to_string()
        ));
        let config = kubelet_config(
            "cgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nclusterDNS:\n- \"172.30.0.10\"\n",
            "/r",
            "/t1",
        );
        assert_eq!(
            config,
            "cgroupDriver: cgroupfs\nauthentication:\n  x509:\n    clientCAFile: /r/etc/kubernetes/pki/ca.crt\nclusterDNS:\n- \"172.30.0.10\"\ncgroupRoot: /t1\nevictionHard: {imagefs.available: \"1%\", nodefs.available: \"1%\", memory.available: \"100Mi\"}\n"
        );
    }

    #[test]
    fn containerd_runs_with_cgroupfs_and_without_lowering_oom_scores() {
        let mapped = containerd_config(
            "version = 2\nroot = \"/var/lib/containerd\"\noom_score = -999\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
            "/r",
        );
        assert_eq!(
            mapped,
            "version = 2\nroot = \"/r/var/lib/containerd\"\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n  sandbox_image = \"registry.k8s.io/pause:3.10.1\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n"
        );
    }

    #[test]
    fn a_static_pod_keeps_its_paths_inside_the_container_and_takes_host_paths_under_the_root() {
        let pod = "  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    - --watch-progress-notify-interval=5s\n    livenessProbe:\n      httpGet:\n        path: /health\n  volumes:\n  - hostPath:\n      path: /var/lib/etcd\n";
        assert_eq!(
            static_pod(Component::Etcd, pod, "/r"),
            "  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    - --experimental-watch-progress-notify-interval=5s\n    livenessProbe:\n      httpGet:\n        path: /health\n  volumes:\n  - hostPath:\n      path: /r/var/lib/etcd\n"
        );
    }

    #[test]
    fn every_rule_is_printed_with_its_reason() {
        let text = describe();
        for rule in RULES {
            assert!(text.contains(rule.why), "{}", rule.name);
        }
    }
}
