//! `kindling remove machine <name>`: a machine out of the cluster and out of the description.
//!
//! 1. Refuse to go below the replicas install-config.yaml declares for its role, unless forced.
//! 2. Cordon its Node and drain it through the Eviction API (PodDisruptionBudgets honoured). A
//!    Node that is not Ready (a dead machine) cannot stop its pods: those already being deleted
//!    are not waited for.
//! 3. A master: remove its etcd member, only if the members left keep a healthy quorum.
//! 4. Delete the Node.
//! 5. Take it out of inventory.yaml (its lines only; the file before is kept under
//!    `.kindling/backups/`).
//!
//! Then the caller renders what depends on the inventory again (the configs, DNS, the load
//! balancer, DHCP). Each step is written to `.kindling/fleet/remove-<name>.json` once done and
//! is safe to do twice, so a removal killed at any point finishes when run again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kindling_assets::{AtomicFiles, Mode, Storage};
use kindling_cluster::drain::{self, Evicted};
use kindling_cluster::node_config::NodeConfig;
use kindling_config::{ClusterDescription, Role};
use kube::Api;
use serde::{Deserialize, Serialize};

use crate::slots::FLEET_DIR;

/// Why a machine could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("no machine named {name} in inventory.yaml; the machines are: {known}")]
    Unknown { name: String, known: String },
    #[error("{0}")]
    Refused(String),
    #[error("{machine} is still draining after {}s without progress: {left}", stall.as_secs())]
    Stalled {
        machine: String,
        stall: Duration,
        left: String,
    },
    #[error(transparent)]
    Cluster(#[from] kindling_cluster::ClusterError),
    #[error("etcd: {0}")]
    Etcd(#[from] kindling_etcd::EtcdError),
    #[error(transparent)]
    Edit(#[from] kindling_config::edit::EditError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a removal kindling wrote: {message}; delete it to start again")]
    Damaged { path: PathBuf, message: String },
}

/// How far a removal got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Started,
    Drained,
    EtcdMemberRemoved,
    NodeDeleted,
    OutOfInventory,
}

/// A removal, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub machine: String,
    pub role: String,
    pub ip: String,
    pub step: Step,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RemoveError {
    let path = path.to_path_buf();
    move |source| RemoveError::Io {
        action,
        path,
        source,
    }
}

/// `.kindling/fleet/remove-<name>.json`.
pub fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(FLEET_DIR).join(format!("remove-{name}.json"))
}

/// Test hook: after the step with this name is written, sleep until killed.
pub const PAUSE_AFTER: &str = "KINDLING_REMOVE_PAUSE_AFTER";

impl Removal {
    fn save(&self, dir: &Path) -> Result<(), RemoveError> {
        let path = record_path(dir, &self.machine);
        let mut json = serde_json::to_vec_pretty(self).expect("a removal serializes");
        json.push(b'\n');
        AtomicFiles
            .write(&path, &json, Mode::Public)
            .map_err(io("writing", &path))?;
        let step = serde_json::to_value(self.step).expect("a step serializes");
        if std::env::var(PAUSE_AFTER).is_ok_and(|s| step == s.as_str()) {
            eprintln!(
                "{PAUSE_AFTER}: {} is {step}; waiting to be killed",
                self.machine
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(())
    }

    fn load(dir: &Path, name: &str) -> Result<Option<Removal>, RemoveError> {
        let path = record_path(dir, name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RemoveError::Damaged {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }
}

/// What `remove machine` is asked.
pub struct RemoveRequest<'a> {
    pub dir: PathBuf,
    pub name: String,
    /// Go below the replicas install-config.yaml declares.
    pub force: bool,
    /// A drain with no progress for this long stops the removal (run it again to go on).
    pub stall: Duration,
    pub poll: Duration,
    pub say: &'a dyn Fn(&str),
}

/// Whether removing this many-th member keeps etcd's quorum: of `members`, `healthy` answer,
/// and the one removed is healthy or not.
pub fn quorum_survives(members: usize, healthy: usize, removed_is_healthy: bool) -> bool {
    let left = members.saturating_sub(1);
    let healthy_left = healthy - usize::from(removed_is_healthy);
    // A quorum of `left` members is more than half of them.
    left > 0 && healthy_left > left / 2
}

/// Runs (or resumes) the removal; returns once the machine is out of the inventory.
pub async fn run(
    request: &RemoveRequest<'_>,
    description: &ClusterDescription,
    client: &kube::Client,
) -> Result<Removal, RemoveError> {
    let dir = request.dir.as_path();
    let name = request.name.as_str();
    let mut removal = match Removal::load(dir, name)? {
        Some(removal) => {
            (request.say)(&format!("{name}: going on from step {:?}", removal.step));
            removal
        }
        None => {
            let machine = description
                .inventory
                .machines
                .iter()
                .find(|m| m.name == name)
                .ok_or_else(|| RemoveError::Unknown {
                    name: name.to_string(),
                    known: description
                        .inventory
                        .machines
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            check_replicas(description, machine.role, request.force)?;
            let removal = Removal {
                machine: name.to_string(),
                role: machine.role.to_string(),
                ip: machine.ip.to_string(),
                step: Step::Started,
            };
            removal.save(dir)?;
            removal
        }
    };
    if removal.step < Step::Drained {
        drain_node(request, client).await?;
        removal.step = Step::Drained;
        removal.save(dir)?;
        (request.say)(&format!("{name}: cordoned and drained"));
    }
    if removal.step < Step::EtcdMemberRemoved {
        if removal.role == Role::Master.to_string() {
            remove_member(request, description, &removal)?;
        }
        removal.step = Step::EtcdMemberRemoved;
        removal.save(dir)?;
    }
    if removal.step < Step::NodeDeleted {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.delete(name, &Default::default()).await {
            Ok(_) => (request.say)(&format!("{name}: Node deleted")),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(kindling_cluster::ClusterError::api(
                    format!("deleting Node {name}"),
                    e,
                )
                .into());
            }
        }
        removal.step = Step::NodeDeleted;
        removal.save(dir)?;
    }
    if removal.step < Step::OutOfInventory {
        out_of_inventory(dir, name)?;
        removal.step = Step::OutOfInventory;
        removal.save(dir)?;
        (request.say)(&format!("{name}: taken out of inventory.yaml"));
    }
    Ok(removal)
}

/// Refuses a removal that leaves fewer machines of the role than install-config.yaml declares.
fn check_replicas(d: &ClusterDescription, role: Role, force: bool) -> Result<(), RemoveError> {
    let declared = match role {
        Role::Master => d.install_config.control_plane.replicas,
        Role::Worker => d.install_config.compute.iter().map(|p| p.replicas).sum(),
        Role::Bootstrap | Role::Infra => return Ok(()),
    };
    let left = d.inventory.with_role(role).count().saturating_sub(1) as u32;
    if left < declared && !force {
        let field = if role == Role::Master {
            "controlPlane.replicas"
        } else {
            "compute[].replicas"
        };
        return Err(RemoveError::Refused(format!(
            "removing it leaves {left} {role}(s), and install-config.yaml's {field} is {declared}; \
             add a machine first, lower {field}, or give --force"
        )));
    }
    Ok(())
}

async fn drain_node(request: &RemoveRequest<'_>, client: &kube::Client) -> Result<(), RemoveError> {
    let name = request.name.as_str();
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes
        .get_opt(name)
        .await
        .map_err(|e| kindling_cluster::ClusterError::api(format!("reading Node {name}"), e))?
    else {
        (request.say)(&format!("{name}: no Node, nothing to drain"));
        return Ok(());
    };
    let ready = NodeConfig::of(&node).ready;
    drain::cordon(client, name, true).await?;
    let eviction = drain::eviction_version(client).await?;
    let (mut last, mut since) = (String::new(), std::time::Instant::now());
    loop {
        let mut left = Vec::new();
        for pod in drain::evictees(client, name).await? {
            // A dead node never confirms a deletion: what is being deleted is gone for it.
            if !ready {
                let terminating = Api::<Pod>::namespaced(client.clone(), &pod.namespace)
                    .get_opt(&pod.name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.metadata.deletion_timestamp.is_some());
                if terminating {
                    continue;
                }
            }
            match drain::evict(client, &eviction, &pod).await? {
                Evicted::Yes => left.push(format!("{pod} leaving")),
                Evicted::Refused(why) => left.push(format!("{pod}: {why}")),
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        let seen = left.join("; ");
        if seen != last {
            (request.say)(&format!("{name}: {seen}"));
            (last, since) = (seen, std::time::Instant::now());
        } else if since.elapsed() > request.stall {
            return Err(RemoveError::Stalled {
                machine: name.to_string(),
                stall: request.stall,
                left: last,
            });
        }
        tokio::time::sleep(request.poll).await;
    }
}

/// Removes a master's etcd member, if the members left keep a healthy quorum. The other
/// masters are asked, with the asset directory's etcd client certificate.
fn remove_member(
    request: &RemoveRequest<'_>,
    description: &ClusterDescription,
    removal: &Removal,
) -> Result<(), RemoveError> {
    let dir = request.dir.as_path();
    let endpoints: Vec<String> = description
        .inventory
        .with_role(Role::Master)
        .filter(|m| m.name != removal.machine)
        .map(|m| format!("https://{}:2379", m.ip))
        .collect();
    let tls = kindling_etcd::ClientTls::from_files(
        &dir.join("tls/etcd-ca.crt"),
        &dir.join("tls/apiserver-etcd-client.crt"),
        &dir.join("tls/apiserver-etcd-client.key"),
    )?;
    let client = kindling_etcd::Client::new(&endpoints, &tls)?;
    let members = client.member_list()?;
    let peer = format!("https://{}:2380", removal.ip);
    let Some(member) = members
        .by_name(&removal.machine)
        .or_else(|| members.by_peer_url(&peer))
        .cloned()
    else {
        (request.say)(&format!(
            "{}: no etcd member (removed already)",
            removal.machine
        ));
        return Ok(());
    };
    let healthy = members
        .members
        .iter()
        .filter(|m| client.is_healthy(m))
        .count();
    let removed_is_healthy = client.is_healthy(&member);
    let n = members.members.len();
    if !quorum_survives(n, healthy, removed_is_healthy) {
        return Err(RemoveError::Refused(format!(
            "etcd has {n} members and {healthy} healthy; without {} the {} left would have {} healthy, \
             below their quorum of {}: bring the other members back first",
            removal.machine,
            n - 1,
            healthy - usize::from(removed_is_healthy),
            (n - 1) / 2 + 1
        )));
    }
    client.member_remove(member.id)?;
    (request.say)(&format!(
        "{}: etcd member removed; {} member(s) left",
        removal.machine,
        n - 1
    ));
    Ok(())
}

/// Takes the machine out of inventory.yaml, keeping the file as it was under
/// `.kindling/backups/`.
fn out_of_inventory(dir: &Path, name: &str) -> Result<(), RemoveError> {
    let path = dir.join(kindling_config::INVENTORY_FILE);
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    let edited = match kindling_config::edit::remove_machine(&text, name) {
        Ok(edited) => edited,
        // Taken out by a run that was killed before it said so.
        Err(kindling_config::edit::EditError::NoSuchMachine(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    kindling_assets::inventory_file::rewrite(dir, &text, &edited)
        .map(drop)
        .map_err(|(path, source)| RemoveError::Io {
            action: "writing",
            path,
            source,
        })
}

/// Forgets a finished removal (after the caller has rendered again).
pub fn finish(dir: &Path, name: &str) -> Result<(), RemoveError> {
    let path = record_path(dir, name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_kept() {
        // Three healthy members: one may go.
        assert!(quorum_survives(3, 3, true));
        // Three members, one dead: removing the dead one leaves 2 healthy of 2.
        assert!(quorum_survives(3, 2, false));
        // Three members, one dead: removing a healthy one leaves 1 healthy of 2.
        assert!(!quorum_survives(3, 2, true));
        // Five members, two dead: removing a healthy one leaves 2 of 4 (needs 3).
        assert!(!quorum_survives(5, 3, true));
        assert!(quorum_survives(5, 3, false));
        // The last member never goes.
        assert!(!quorum_survives(1, 1, true));
    }
}
