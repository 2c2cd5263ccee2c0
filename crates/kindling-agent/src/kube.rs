//! The Kubernetes API steps of the bootstrap agent, behind a trait: the stage runner and its
//! tests do not depend on how the API is reached.
//!
//! The implementation over the real API is kindling-cluster's client (`connect`,
//! `server_version`, `apply`, `bootstrap::write`). Until that is wired in, the binary can run
//! against [`FileStandIn`], a test stand-in that keeps objects as files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// ConfigMap `kube-system/bootstrap`: the contract between the bootstrap agent (writer) and
/// `kindling wait-for bootstrap-complete` (reader). Same keys as kindling-cluster's
/// `bootstrap` module, which owns the contract.
pub mod record_keys {
    pub const NAMESPACE: &str = "kube-system";
    pub const NAME: &str = "bootstrap";
    pub const STATUS: &str = "status";
    pub const STAGE: &str = "stage";
    pub const MESSAGE: &str = "message";
    pub const ETCD_MEMBERS: &str = "etcdMembers";
    pub const BOOTSTRAP_MEMBER_REMOVED: &str = "bootstrapMemberRemoved";
    pub const UPDATED: &str = "updated";
}

/// What the agent says about the bootstrap, written to ConfigMap `kube-system/bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapRecord {
    /// `progressing` or `complete`.
    pub status: String,
    pub stage: String,
    pub message: String,
    /// etcd member names at the last check.
    pub etcd_members: Vec<String>,
    pub bootstrap_member_removed: bool,
}

impl BootstrapRecord {
    /// The ConfigMap's data.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        use record_keys::*;
        BTreeMap::from([
            (STATUS.into(), self.status.clone()),
            (STAGE.into(), self.stage.clone()),
            (MESSAGE.into(), self.message.clone()),
            (ETCD_MEMBERS.into(), self.etcd_members.join(",")),
            (
                BOOTSTRAP_MEMBER_REMOVED.into(),
                self.bootstrap_member_removed.to_string(),
            ),
            (UPDATED.into(), crate::now_rfc3339()),
        ])
    }
}

/// An API failure, as the implementation words it.
pub type KubeError = String;

/// The Kubernetes API calls the bootstrap stages make.
pub trait Kubernetes {
    /// The apiserver's version: Ok once it answers.
    fn server_version(&self) -> Result<String, KubeError>;
    /// Server-side apply of one object (field manager `kindling-agent`, forcing conflicts):
    /// creating it or taking over the fields it sets, so applying twice is harmless.
    fn apply(&self, object: &Value) -> Result<(), KubeError>;
    /// The names of the nodes whose kube-apiserver pod is Ready.
    fn ready_apiservers(&self) -> Result<Vec<String>, KubeError>;
    /// Writes ConfigMap `kube-system/bootstrap`.
    fn write_record(&self, record: &BootstrapRecord) -> Result<(), KubeError>;
}

/// A stand-in for the API, for tests of the real binary until kindling-cluster's fake API server
/// is wired in: `version` (a file whose presence means the API answers), applied objects under
/// `applied/<kind>.<namespace>.<name>.json`, `ready-apiservers` (node names, one per line), and
/// the record as `bootstrap-configmap.json`. Not an apiserver; named a stand-in on purpose.
#[derive(Debug, Clone)]
pub struct FileStandIn {
    pub dir: PathBuf,
}

impl FileStandIn {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(path: &Path) -> Result<String, KubeError> {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn write(path: &Path, text: &str) -> Result<(), KubeError> {
        crate::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| e.to_string())
    }
}

impl Kubernetes for FileStandIn {
    fn server_version(&self) -> Result<String, KubeError> {
        Self::read(&self.path("version")).map(|v| v.trim().to_string())
    }

    fn apply(&self, object: &Value) -> Result<(), KubeError> {
        let field = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        let name = field("/metadata/name");
        if field("/kind").is_empty() || name.is_empty() {
            return Err("the object has no kind or metadata.name".into());
        }
        let file = format!(
            "applied/{}.{}.{}.json",
            field("/kind"),
            field("/metadata/namespace"),
            name
        );
        Self::write(&self.path(&file), &object.to_string())
    }

    fn ready_apiservers(&self) -> Result<Vec<String>, KubeError> {
        let path = self.path("ready-apiservers");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn write_record(&self, record: &BootstrapRecord) -> Result<(), KubeError> {
        let object = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "namespace": record_keys::NAMESPACE, "name": record_keys::NAME },
            "data": record.to_data(),
        });
        Self::write(
            &self.path("bootstrap-configmap.json"),
            &serde_json::to_string_pretty(&object).unwrap_or_default(),
        )
    }
}
