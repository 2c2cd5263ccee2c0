//! `kindling agent node`: on every machine, the rendering of its pool it runs.
//!
//! - [`disk`]: a rendering on disk as Ignition writes it; drift found and reverted; a new
//!   rendering written, touching only what changed.
//! - [`action`]: after a new rendering, whether to do nothing, restart units, or reboot.
//! - [`agent`]: the loop: drift reported or reverted, the desired rendering applied, the Node
//!   told.
//! - [`remote`]: what it reaches on a real machine: the machine config server, node binaries,
//!   the API, systemd.

pub mod action;
pub mod agent;
pub mod disk;
pub mod remote;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AgentError;
use crate::kube::Cluster;
use crate::report::{MachineIdentity, Reporter};

/// Where the kubelet keeps its current client certificate and key: the agent's identity
/// towards the API and the machine config server.
pub const KUBELET_CREDENTIALS: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
/// The agent's markers and the renderings it fetched.
pub const STATE_DIR: &str = "/var/lib/kindling/node";

/// What `kindling agent node` is told. Paths are the machine's, under `root`.
#[derive(Debug, Clone)]
pub struct NodeRequest {
    pub root: PathBuf,
    /// The machine config server (`https://api-int.<cluster>:22623`).
    pub mcs: String,
    /// `kindling serve`'s boot server, where events are sent too.
    pub server: Option<String>,
    pub revert_drift: bool,
    pub systemctl: PathBuf,
    pub interval: Duration,
    /// One pass, then exit.
    pub once: bool,
}

impl NodeRequest {
    fn path(&self, on_machine: &str) -> PathBuf {
        disk::on_disk(&self.root, on_machine)
    }
}

/// The node a kubelet client certificate names (`CN=system:node:<name>`).
pub fn node_name(credentials: &Path) -> Result<String, AgentError> {
    let pem =
        std::fs::read_to_string(credentials).map_err(crate::io_error("reading", credentials))?;
    let certs = kindling_pki::inspect::inspect_pem(&pem).map_err(|e| AgentError::Identity {
        path: credentials.to_path_buf(),
        reason: e.to_string(),
    })?;
    certs[0]
        .common_name
        .as_deref()
        .and_then(|cn| cn.strip_prefix("system:node:"))
        .map(str::to_string)
        .ok_or_else(|| AgentError::Identity {
            path: credentials.to_path_buf(),
            reason: "not a node's certificate (CN=system:node:<name>)".into(),
        })
}

/// Runs the agent: a pass every interval (or one, with `once`). Until the kubelet has its
/// client certificate (its CSR approved) there is nothing to do but wait.
pub fn run(request: &NodeRequest) -> Result<(), AgentError> {
    let credentials = request.path(KUBELET_CREDENTIALS);
    let files = remote::Files::default();
    let host = remote::Systemd {
        systemctl: request.systemctl.clone(),
    };
    let reporter = match &request.server {
        Some(url) => MachineIdentity::read(&request.path(kindling_assets::layout::AGENT_IDENTITY))?
            .and_then(|identity| Reporter::new(url, identity)),
        None => None,
    };
    loop {
        if credentials.exists() {
            let pass = || -> Result<agent::Outcome, AgentError> {
                let name = node_name(&credentials)?;
                let kubeconfig = request.path(kindling_assets::layout::KUBELET_KUBECONFIG);
                let node = remote::OwnNode {
                    cluster: Cluster::connect(&kubeconfig, None)?,
                    name,
                };
                let mcs = remote::Mcs::new(
                    &request.mcs,
                    &request.path(kindling_assets::layout::CA_CERT),
                    &credentials,
                )?;
                let agent = agent::NodeAgent {
                    root: request.root.clone(),
                    state_dir: request.path(STATE_DIR),
                    revert_drift: request.revert_drift,
                    renderings: &mcs,
                    node: &node,
                    host: &host,
                    files: &files,
                    reporter: reporter.as_ref(),
                };
                agent.tick()
            };
            match pass() {
                Ok(outcome) => tracing::info!("{outcome:?}"),
                Err(e) if request.once => return Err(e),
                Err(e) => tracing::warn!("{e}; trying again in {}s", request.interval.as_secs()),
            }
        } else {
            tracing::info!(
                "no kubelet client certificate at {} yet (its CSR is not approved)",
                credentials.display()
            );
            if request.once {
                return Ok(());
            }
        }
        if request.once {
            return Ok(());
        }
        std::thread::sleep(request.interval);
    }
}
