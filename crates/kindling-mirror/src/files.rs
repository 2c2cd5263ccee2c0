//! The node binaries in `D/mirror/files/`, recorded in `D/mirror/files.json` with their size and
//! digests: the kubelet, kubectl and crictl for a Kubernetes version, the CNI plugins, and
//! kindling's own agent. Ignition fetches each from `/assets/mirror/...` with its sha512.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::MirrorError;

pub const FILES_INDEX: &str = "files.json";

/// The CNI plugins every node needs: flannel delegates to `bridge` with `host-local` addresses,
/// its chain adds `portmap`, and the runtime sets up each pod's `loopback`.
pub const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// cri-tools (crictl) and CNI plugin releases kindling pairs with each Kubernetes minor.
/// crictl's minor follows Kubernetes'; the CNI plugins are the release current at that minor.
pub fn companion_versions(kubernetes_version: &str) -> (String, &'static str) {
    let v = kubernetes_version.trim_start_matches('v');
    let minor: String = v.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    (format!("v{minor}.0"), "v1.7.1")
}

/// One stored binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Under `files/`, e.g. `kubernetes/v1.34.1/kubelet`.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Lowercase hex; what Ignition's `verification.hash` is given.
    pub sha512: String,
    /// Where it came from (a URL or a local path), for people.
    pub source: String,
}

/// Where each binary a node needs is kept, for a Kubernetes version.
pub struct NodeFiles {
    pub kubelet: String,
    pub kubectl: String,
    pub crictl: String,
    /// `cni/<plugin>` for each of [`CNI_PLUGINS`].
    pub cni: Vec<String>,
}

impl NodeFiles {
    pub fn for_version(kubernetes_version: &str) -> NodeFiles {
        let v = format!("v{}", kubernetes_version.trim_start_matches('v'));
        NodeFiles {
            kubelet: format!("kubernetes/{v}/kubelet"),
            kubectl: format!("kubernetes/{v}/kubectl"),
            crictl: format!("kubernetes/{v}/crictl"),
            cni: CNI_PLUGINS.iter().map(|p| format!("cni/{p}")).collect(),
        }
    }

    /// Every path, the kubelet first.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        [&self.kubelet, &self.kubectl, &self.crictl]
            .into_iter()
            .chain(&self.cni)
            .map(String::as_str)
    }
}

/// `files.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files {
    pub files: BTreeMap<String, FileRecord>,
}

impl Files {
    pub fn read(root: &Path) -> Result<Files, MirrorError> {
        let path = root.join(FILES_INDEX);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MirrorError::invalid(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Files::default()),
            Err(e) => Err(MirrorError::io(&path, e)),
        }
    }

    pub fn get(&self, path: &str) -> Option<&FileRecord> {
        self.files.get(path)
    }

    pub(crate) fn insert(&mut self, record: FileRecord) {
        self.files.insert(record.path.clone(), record);
    }

    pub(crate) fn write(&self, root: &Path) -> Result<(), MirrorError> {
        let path = root.join(FILES_INDEX);
        let json = serde_json::to_vec_pretty(self).map_err(|e| MirrorError::invalid(&path, e))?;
        crate::store::write_atomic(&path, &json)
    }
}
