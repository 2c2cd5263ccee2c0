//! What the node agent reaches on a real machine: `kindling serve` for renderings (with the
//! kubelet's client certificate) and node binaries, the Node through the API (with the
//! kubelet's kubeconfig), and systemd.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kindling_cluster::node_config::{self, NodeConfig, Report};
use kindling_ignition::Config;

use super::agent::{Host, NodeApi, Renderings};
use super::disk::Fetch;
use crate::kube::Cluster;
use crate::{AgentError, io_error};

const TIMEOUTS: kindling_http::Timeouts = kindling_http::Timeouts {
    connect: Duration::from_secs(10),
    exchange: Duration::from_secs(60),
};
/// The largest rendering read (a master's, with its keys and static pods, is ~100 KB).
const RENDERING_LIMIT: usize = 16 << 20;
/// The largest node binary read (the kubelet is ~80 MB).
const FILE_LIMIT: usize = 512 << 20;

fn remote(what: impl Into<String>, reason: impl Into<String>) -> AgentError {
    AgentError::Remote {
        what: what.into(),
        reason: reason.into(),
    }
}

fn http_error(what: String) -> impl FnOnce(kindling_http::HttpError) -> AgentError {
    move |e| remote(what, e.to_string())
}

/// The machine config server, asked with the kubelet's client certificate.
pub struct Mcs {
    target: kindling_http::Target,
    client: kindling_http::Client,
}

impl Mcs {
    /// `url` is the MCS (`https://api-int.<cluster>:22623`); `ca` the cluster's root CA;
    /// `credentials` the kubelet's current client certificate and key (one PEM file).
    pub fn new(url: &str, ca: &Path, credentials: &Path) -> Result<Mcs, AgentError> {
        let authority = url
            .strip_prefix("https://")
            .map(|a| a.trim_end_matches('/'))
            .ok_or_else(|| {
                remote(
                    url,
                    "the machine config server's URL must be https://host:port",
                )
            })?;
        let target = kindling_http::Target::from_authority(authority, 22623)
            .ok_or_else(|| remote(url, "not https://host:port"))?;
        let ca_pem = std::fs::read(ca).map_err(io_error("reading", ca))?;
        let pem = std::fs::read(credentials).map_err(io_error("reading", credentials))?;
        let tls = kindling_http::Tls::Roots {
            ca_pem,
            client_identity: Some(kindling_http::Identity {
                cert_pem: pem.clone(),
                key_pem: pem,
            }),
        };
        let client = kindling_http::Client::new(tls, TIMEOUTS)
            .map_err(|e| remote(format!("using {}", credentials.display()), e.to_string()))?
            .with_user_agent("kindling-node-agent")
            .with_limit(RENDERING_LIMIT);
        Ok(Mcs { target, client })
    }
}

impl Renderings for Mcs {
    fn fetch(&self, pool: &str, name: &str) -> Result<Config, AgentError> {
        let path = format!("/config/{pool}?rendering={name}");
        let what = format!("fetching {name} from the machine config server");
        let response = self
            .client
            .get(&self.target, &path)
            .map_err(http_error(what.clone()))?;
        if !response.is_success() {
            let body = String::from_utf8_lossy(&response.body);
            return Err(remote(
                what,
                format!("HTTP {}: {}", response.status, body.trim()),
            ));
        }
        Config::from_json(&response.body).map_err(|e| AgentError::Manifest {
            path: PathBuf::from(path),
            reason: e.to_string(),
        })
    }
}

/// Node binaries from `kindling serve`'s `/assets/mirror/`, checked against their sha512 as
/// Ignition checks them.
pub struct Files(kindling_http::Client);

impl Default for Files {
    fn default() -> Self {
        Files(
            kindling_http::Client::plain(TIMEOUTS)
                .with_user_agent("kindling-node-agent")
                .with_limit(FILE_LIMIT),
        )
    }
}

impl Fetch for Files {
    fn fetch(&self, url: &str, sha512: Option<&str>) -> Result<Vec<u8>, AgentError> {
        let bad = |reason: String| remote(format!("downloading {url}"), reason);
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// downloads are served by kindling serve".into()))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let target = kindling_http::Target::from_authority(authority, 80)
            .ok_or_else(|| bad("not host:port".into()))?;
        let response = self
            .0
            .get(&target, if path.is_empty() { "/" } else { path })
            .map_err(http_error(format!("downloading {url}")))?;
        if !response.is_success() {
            return Err(bad(format!("HTTP {}", response.status)));
        }
        if let Some(want) = sha512 {
            use sha2::Digest as _;
            let got = format!("{:x}", sha2::Sha512::digest(&response.body));
            if got != want {
                return Err(bad(format!("its sha512 is {got}, not {want}")));
            }
        }
        Ok(response.body)
    }
}

/// systemd, through `systemctl`.
pub struct Systemd {
    pub systemctl: PathBuf,
}

impl Systemd {
    fn run(&self, args: &[&str]) -> Result<(), AgentError> {
        let status = Command::new(&self.systemctl)
            .args(args)
            .status()
            .map_err(io_error("running", &self.systemctl))?;
        if status.success() {
            Ok(())
        } else {
            Err(remote(
                format!("systemctl {}", args.join(" ")),
                status.to_string(),
            ))
        }
    }
}

impl Host for Systemd {
    fn restart(&self, units: &BTreeSet<String>) -> Result<(), AgentError> {
        self.run(&["daemon-reload"])?;
        let mut args = vec!["restart"];
        args.extend(units.iter().map(String::as_str));
        self.run(&args)
    }

    fn reboot(&self) -> Result<(), AgentError> {
        self.run(&["reboot"])
    }
}

/// The agent's own Node, through the API with the kubelet's credentials.
pub struct OwnNode {
    pub cluster: Cluster,
    pub name: String,
}

impl NodeApi for OwnNode {
    fn read(&self) -> Result<NodeConfig, AgentError> {
        self.cluster
            .run(node_config::read(self.cluster.client(), &self.name))
    }

    fn report(&self, before: &NodeConfig, report: &Report<'_>) -> Result<(), AgentError> {
        self.cluster.run(node_config::report(
            self.cluster.client(),
            &self.name,
            before,
            report,
        ))
    }

    fn event(&self, warning: bool, reason: &str, message: &str) -> Result<(), AgentError> {
        self.cluster.run(node_config::event(
            self.cluster.client(),
            &self.name,
            warning,
            reason,
            message,
        ))
    }
}
