//! The node agent, `kindling agent`: the same binary as the CLI, run by systemd on the nodes.
//!
//! - [`bootstrap`]: on the bootstrap machine (or, without one, the first master), the staged
//!   hand-over from the temporary control plane to the masters. Each stage leaves a `.done`
//!   marker, so a restarted agent resumes where it stopped.
//! - [`join`]: on each master, before its etcd starts, adds its etcd member to the cluster and
//!   activates its etcd pod with the membership etcd reported.
//! - [`record`]: every stage's start and end as a JSON record in the log directory, also sent to
//!   `kindling serve` as an event (best effort).
//! - [`kube`]: the Kubernetes API steps, behind a trait; over the real API through
//!   kindling-cluster.
//! - [`node`]: on every machine, the rendering it runs: applied, and checked for drift.

pub mod bootstrap;
pub mod join;
pub mod kube;
pub mod node;
pub mod pod;
pub mod record;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

pub use bootstrap::{BootstrapAgent, BootstrapRequest, Stage};
pub use join::{JoinOutcome, JoinRequest, join_master};
pub use record::{Journal, StageRecord};

/// How the agent reaches etcd: client URLs and the TLS files.
#[derive(Debug, Clone)]
pub struct EtcdAccess {
    /// Client URLs, tried in order.
    pub endpoints: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EtcdAccess {
    /// A client for these endpoints (or others, with the same TLS identity).
    pub fn client(&self, endpoints: &[String]) -> Result<kindling_etcd::Client, AgentError> {
        let tls = kindling_etcd::ClientTls::from_files(&self.ca, &self.cert, &self.key)?;
        Ok(kindling_etcd::Client::new(endpoints, &tls)?)
    }
}

/// Why a stage failed. Messages read after "failed to …".
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("etcd: {0}")]
    Etcd(#[from] kindling_etcd::EtcdError),
    #[error("reading the kubeconfig {}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Pod { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Identity { path: PathBuf, reason: String },
    #[error("{what} did not happen within {}s; last: {last}", within.as_secs())]
    Timeout {
        what: String,
        within: Duration,
        last: String,
    },
    #[error("paused after stage {0} (KINDLING_AGENT_PAUSE_AFTER)")]
    Paused(String),
    /// A server (`kindling serve`, a download) or a local program did not do what was asked.
    #[error("{what}: {reason}")]
    Remote { what: String, reason: String },
    /// The Kubernetes API refused or did not answer.
    #[error("{0}")]
    Kubernetes(String),
}

pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.into();
    move |source| AgentError::Io {
        action,
        path,
        source,
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with `mode`.
pub(crate) fn write_atomic(
    path: &std::path::Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
    }
    // Beside the file, named after all of its name: `a.env` and `a.conf` never share one.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".kindling-tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("creating", &tmp))?;
    file.write_all(bytes).map_err(io_error("writing", &tmp))?;
    // The exact mode, whatever the umask took away when the file was created.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error("setting the mode of", &tmp))?;
    file.sync_all().map_err(io_error("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("renaming into place", path))
}

/// Now, RFC 3339 in UTC.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
