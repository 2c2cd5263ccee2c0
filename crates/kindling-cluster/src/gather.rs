//! `kindling gather`: one tarball with what is needed to debug an install, without SSH and
//! without secrets.
//!
//! Members, under `gather-<time>/`:
//!
//! - `events.jsonl`: kindling serve's event log (`.kindling/events.jsonl`): every request from a
//!   known machine and every stage its agent reported;
//! - `agent-stages.jsonl`: the agents' reports alone (the events without an HTTP status);
//! - `versions.json`: this kindling's version, and each agent's as reported with stage
//!   [`AGENT_VERSION_STAGE`] (the report's result is the version);
//! - `description/`: `inventory.yaml`, `cluster.json` and `metadata.json` (none holds a
//!   secret; install-config.yaml is left out: it holds the pull secret);
//! - `cluster/`: when the API answers, `version.json`, `nodes.json`, `csrs.json`,
//!   `bootstrap-configmap.json` and `kube-system-pods.json`, as the API returns them;
//! - `gather.txt`: what was collected and what was not, and why.
//!
//! Never included: `tls/`, `auth/` (kubeconfigs, the bootstrap token), `bootstrap.ign`,
//! Ignition configs. Everything copied is redacted first: `token=<value>`, the cluster's
//! bootstrap token, and any PEM private key block.
//!
//! The tarball is written with `tar` and `flate2` (miniz_oxide, pure Rust): both small, and
//! `tar -tzf` reads the result.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams};
use serde::Serialize;

/// The stage name under which an agent reports its version (result: the version).
pub const AGENT_VERSION_STAGE: &str = "agent-version";

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to gather.
pub struct GatherRequest<'a> {
    /// The asset directory.
    pub dir: &'a Path,
    /// The tarball to write.
    pub output: PathBuf,
    /// The cluster, when a client could be made (the API may still not answer).
    pub client: Option<kube::Client>,
    /// This binary's version.
    pub version: &'a str,
    /// The time in the member names, e.g. `20261126T040000Z`.
    pub stamp: String,
}

/// What was written.
#[derive(Debug)]
pub struct Gathered {
    pub path: PathBuf,
    pub members: Vec<String>,
    /// What was left out and why (also in gather.txt).
    pub notes: Vec<String>,
}

/// Removes what must never leave the machine: `token=<value>`, each of `secrets`, and PEM
/// private key blocks.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    for line in text.split_inclusive('\n') {
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
            in_key = true;
            out.push_str("[private key redacted]\n");
        }
        if in_key {
            if line.contains("-----END") {
                in_key = false;
            }
            continue;
        }
        out.push_str(line);
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "REDACTED");
    }
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("token=") {
        let (before, after) = rest.split_at(at + "token=".len());
        redacted.push_str(before);
        let end = after
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace() || c == '\\')
            .unwrap_or(after.len());
        if end > 0 {
            redacted.push_str("REDACTED");
        }
        rest = &after[end..];
    }
    redacted.push_str(rest);
    redacted
}

/// The secrets known in the asset directory, to redact wherever they appear.
pub fn known_secrets(dir: &Path) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(kindling_assets::pki::BOOTSTRAP_TOKEN_FILE))
        && let Some(token) = kindling_pki::BootstrapToken::parse(&text)
    {
        secrets.push(token.token());
        secrets.push(token.secret.clone());
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(kindling_assets::ADMIN_TOKEN_FILE)) {
        secrets.push(text.trim().to_string());
    }
    secrets
}

#[derive(Serialize)]
struct Versions {
    kindling: String,
    /// machine → version, as its agent reported.
    agents: std::collections::BTreeMap<String, String>,
}

/// Writes the tarball.
pub async fn gather(request: GatherRequest<'_>) -> Result<Gathered, GatherError> {
    let dir = request.dir;
    let secrets = known_secrets(dir);
    let root = format!("gather-{}", request.stamp);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut notes = Vec::new();

    let events_path = dir.join(EVENTS_FILE);
    let mut versions = Versions {
        kindling: request.version.to_string(),
        agents: Default::default(),
    };
    match std::fs::read_to_string(&events_path) {
        Ok(text) => {
            let text = redact(&text, &secrets);
            let mut agent = String::new();
            for line in text.lines() {
                let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if event.get("status").is_none_or(serde_json::Value::is_null) {
                    agent.push_str(line);
                    agent.push('\n');
                    if event["stage"] == AGENT_VERSION_STAGE
                        && let (Some(machine), Some(version)) =
                            (event["machine"].as_str(), event["detail"].as_str())
                    {
                        versions
                            .agents
                            .insert(machine.to_string(), version.to_string());
                    }
                }
            }
            files.push(("events.jsonl".into(), text.into_bytes()));
            files.push(("agent-stages.jsonl".into(), agent.into_bytes()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => notes.push(format!(
            "no {}: kindling serve has not run in this directory",
            events_path.display()
        )),
        Err(source) => {
            return Err(GatherError::Read {
                path: events_path,
                source,
            });
        }
    }
    files.push((
        "versions.json".into(),
        serde_json::to_vec_pretty(&versions).unwrap_or_default(),
    ));
    for name in ["inventory.yaml", "cluster.json", "metadata.json"] {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((
                format!("description/{name}"),
                redact(&text, &secrets).into_bytes(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                notes.push(format!("no {}", path.display()));
            }
            Err(source) => return Err(GatherError::Read { path, source }),
        }
    }
    match &request.client {
        Some(client) => match cluster_state(client).await {
            Ok(state) => {
                for (name, value) in state {
                    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                    files.push((
                        format!("cluster/{name}"),
                        redact(&text, &secrets).into_bytes(),
                    ));
                }
            }
            Err(e) => notes.push(format!("no cluster state: {e}")),
        },
        None => notes.push("no cluster state: no usable kubeconfig".into()),
    }
    let mut summary = format!(
        "kindling gather {} of {}\nkindling {}\n\n",
        request.stamp,
        dir.display(),
        request.version
    );
    for (name, _) in &files {
        summary.push_str(&format!("collected {name}\n"));
    }
    for note in &notes {
        summary.push_str(&format!("not collected: {note}\n"));
    }
    summary.push_str("\nnever collected: tls/, auth/, bootstrap.ign, Ignition configs, install-config.yaml (secrets)\n");
    files.push(("gather.txt".into(), summary.into_bytes()));

    let members = write_tarball(&request.output, &root, &files)?;
    Ok(Gathered {
        path: request.output,
        members,
        notes,
    })
}

/// Where kindling serve keeps its events (kindling-server's `EVENTS_FILE`; read here as a file
/// so that this crate need not depend on the server).
const EVENTS_FILE: &str = ".kindling/events.jsonl";

/// The cluster's state as JSON documents, by member name.
async fn cluster_state(
    client: &kube::Client,
) -> Result<Vec<(&'static str, serde_json::Value)>, crate::ClusterError> {
    use crate::ClusterError;
    let budget = std::time::Duration::from_secs(20);
    let read = async {
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| ClusterError::api("asking the API for /version", e))?;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::api("listing Nodes", e))?;
        let csrs = Api::<CertificateSigningRequest>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::api("listing CertificateSigningRequests", e))?;
        let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::api("listing kube-system pods", e))?;
        let bootstrap = Api::<ConfigMap>::namespaced(client.clone(), crate::bootstrap::NAMESPACE)
            .get_opt(crate::bootstrap::NAME)
            .await
            .map_err(|e| ClusterError::api("reading the bootstrap ConfigMap", e))?;
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
        Ok(vec![
            ("version.json", json(serde_json::to_value(&version))),
            ("nodes.json", json(serde_json::to_value(&nodes))),
            ("csrs.json", json(serde_json::to_value(&csrs))),
            ("kube-system-pods.json", json(serde_json::to_value(&pods))),
            (
                "bootstrap-configmap.json",
                json(serde_json::to_value(&bootstrap)),
            ),
        ])
    };
    tokio::time::timeout(budget, read)
        .await
        .unwrap_or_else(|_| {
            Err(ClusterError::Timeout {
                action: "reading the cluster's state".into(),
                timeout: budget,
            })
        })
}

/// Writes `files` under `root/` into a gzip-compressed tarball at `path`, via a temporary file
/// renamed into place.
fn write_tarball(
    path: &Path,
    root: &str,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<String>, GatherError> {
    let err = |source| GatherError::Write {
        path: path.to_path_buf(),
        source,
    };
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(err)?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut members = Vec::new();
    for (name, contents) in files {
        let member = format!("{root}/{name}");
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &member, contents.as_slice())
            .map_err(err)?;
        members.push(member);
    }
    let gzip = tar.into_inner().map_err(err)?;
    let mut file = gzip.finish().map_err(err)?;
    file.flush().map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&partial, path).map_err(err)?;
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_tokens_secrets_and_private_keys() {
        let text = "GET /ignition?mac=52:54:00:00:00:01&token=abc123 200\n\
                    {\"detail\":\"token=s3cret\"}\n\
                    -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n\
                    bootstrap abcdef.0123456789abcdef here\n";
        let out = redact(text, &["abcdef.0123456789abcdef".into()]);
        assert!(!out.contains("abc123") && !out.contains("s3cret"), "{out}");
        assert!(
            !out.contains("PRIVATE KEY") && !out.contains("MHcCAQEE"),
            "{out}"
        );
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(
            out.contains("token=REDACTED&") || out.contains("token=REDACTED 200"),
            "{out}"
        );
        assert!(out.contains("[private key redacted]"));
    }
}
