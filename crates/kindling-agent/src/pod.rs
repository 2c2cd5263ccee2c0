//! A master's etcd member pod (`etcd-member.yaml`, installed at `/opt/kindling/etcd-member.yaml`):
//! what it says about the member, and the same pod with the membership etcd reported.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::AgentError;

/// The etcd static pod as written by `kindling create manifests`, with its container command.
#[derive(Debug, Clone)]
pub struct EtcdPod {
    path: PathBuf,
    /// The comment lines at the top of the file, kept when the pod is written again.
    header: String,
    pod: Value,
}

impl EtcdPod {
    /// Reads the pod at `path`.
    pub fn read(path: &Path) -> Result<EtcdPod, AgentError> {
        let text = std::fs::read_to_string(path).map_err(crate::io_error("reading", path))?;
        let bad = |reason: String| AgentError::Pod {
            path: path.to_path_buf(),
            reason,
        };
        let mut docs = crate::manifest::documents(&text).map_err(bad)?;
        if docs.len() != 1 {
            return Err(bad(format!(
                "expected one Pod, found {} documents",
                docs.len()
            )));
        }
        let pod = docs.remove(0);
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let etcd = EtcdPod {
            path: path.to_path_buf(),
            header,
            pod,
        };
        for flag in [
            "name",
            "initial-advertise-peer-urls",
            "advertise-client-urls",
        ] {
            if etcd.flag(flag).is_none() {
                return Err(bad(format!("its etcd command has no --{flag}")));
            }
        }
        Ok(etcd)
    }

    fn command(&self) -> Option<&Vec<Value>> {
        self.pod.pointer("/spec/containers/0/command")?.as_array()
    }

    /// The value of `--<name>=` in the container's command.
    pub fn flag(&self, name: &str) -> Option<&str> {
        let prefix = format!("--{name}=");
        self.command()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|a| a.strip_prefix(prefix.as_str()))
    }

    /// The member's name (`--name`).
    pub fn member_name(&self) -> &str {
        self.flag("name").unwrap_or_default()
    }

    /// The member's peer URLs (`--initial-advertise-peer-urls`).
    pub fn peer_urls(&self) -> Vec<String> {
        split_urls(self.flag("initial-advertise-peer-urls"))
    }

    /// The member's client URLs (`--advertise-client-urls`).
    pub fn client_urls(&self) -> Vec<String> {
        split_urls(self.flag("advertise-client-urls"))
    }

    /// The names in `--initial-cluster`, in order.
    pub fn initial_cluster_names(&self) -> Vec<String> {
        self.flag("initial-cluster")
            .unwrap_or_default()
            .split(',')
            .filter_map(|e| e.split_once('=').map(|(n, _)| n.trim().to_string()))
            .collect()
    }

    /// The pod with `--initial-cluster` and `--initial-cluster-state` set (added when missing).
    pub fn with_membership(&self, initial_cluster: &str, state: &str) -> EtcdPod {
        let mut pod = self.clone();
        let set = [
            ("initial-cluster", initial_cluster),
            ("initial-cluster-state", state),
        ];
        if let Some(command) = pod
            .pod
            .pointer_mut("/spec/containers/0/command")
            .and_then(Value::as_array_mut)
        {
            for (name, value) in set {
                let prefix = format!("--{name}=");
                let arg = Value::String(format!("{prefix}{value}"));
                match command
                    .iter_mut()
                    .find(|a| a.as_str().is_some_and(|s| s.starts_with(&prefix)))
                {
                    Some(existing) => *existing = arg,
                    None => command.push(arg),
                }
            }
        }
        pod
    }

    /// The pod as YAML, its header comments kept.
    pub fn to_yaml(&self) -> String {
        let body = serde_saphyr::to_string(&self.pod).unwrap_or_else(|_| format!("{}\n", self.pod));
        format!("{}{body}", self.header)
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn split_urls(flag: Option<&str>) -> Vec<String> {
    flag.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}
