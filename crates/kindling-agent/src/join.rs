//! `kindling agent join-master`: on a master, before its etcd starts, make its member part of
//! the cluster and activate its etcd pod.
//!
//! 1. Read this master's pod (`--name`, `--initial-advertise-peer-urls`) from the member pod.
//! 2. Ask the cluster's current members (the bootstrap member and the other masters) for the
//!    member list. A member with this peer URL, started or not, is this master from an earlier
//!    run: it is not added twice. Otherwise `member add` it. etcd refuses an add while another
//!    added member has not started (strict reconfiguration); that, and no member answering, is
//!    retried until the deadline. A member that already started keeps the pod it runs with.
//! 3. Write the pod into the static pods directory as `etcd.yaml`, with `--initial-cluster` =
//!    every member's `name=peerURL` (itself included) and `--initial-cluster-state=existing`,
//!    then the `join-master.done` marker.
//!
//! Without a bootstrap machine, the first master founds the cluster: it is the first name of its
//! pod's `--initial-cluster`, and when no member answers it starts a new one-member cluster
//! (`--initial-cluster=<itself>`, state `new`); the other masters then join it as above.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::pod::EtcdPod;
use crate::record::Journal;
use crate::{AgentError, EtcdAccess};

/// How long after its own add a joining member reads the membership again: longer than etcd
/// takes to apply a membership change another master proposed at the same moment.
const SETTLE: Duration = Duration::from_secs(1);

/// The stage name in records and the marker `join-master.done`.
pub const STAGE: &str = "join-master";
/// The active etcd pod's file name in the static pods directory.
pub const ETCD_POD_FILE: &str = "etcd.yaml";

/// What `join-master` needs.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// This master's member pod (`/opt/kindling/etcd-member.yaml`).
    pub member_pod: PathBuf,
    /// Where the kubelet finds static pods (`/etc/kubernetes/manifests`).
    pub static_pods_dir: PathBuf,
    /// Where markers go (`/opt/kindling`).
    pub state_dir: PathBuf,
    /// The cluster's client URLs and the client certificate.
    pub etcd: EtcdAccess,
    /// Give up after this long (systemd starts the agent again).
    pub timeout: Duration,
    /// Time between tries.
    pub poll: Duration,
}

/// What `join-master` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The marker and the pod were there: nothing to do.
    AlreadyActive,
    /// The member was added now.
    Added { initial_cluster: String },
    /// The member was already in the list (an earlier run added it).
    AlreadyMember { initial_cluster: String },
    /// No bootstrap machine, first master, nobody answered: a new cluster.
    Founded { initial_cluster: String },
}

/// Runs `join-master`, recording its start and end in `journal`.
pub fn join_master(request: &JoinRequest, journal: &Journal) -> Result<JoinOutcome, AgentError> {
    let marker = request.state_dir.join(format!("{STAGE}.done"));
    let active = request.static_pods_dir.join(ETCD_POD_FILE);
    if marker.exists() && active.exists() {
        journal.skipped(
            STAGE,
            "already joined: the marker and the etcd pod are in place",
        )?;
        return Ok(JoinOutcome::AlreadyActive);
    }
    journal.start(STAGE)?;
    let result = join(request, &marker, &active);
    journal.end(STAGE, result.as_ref().map(|_| ()))?;
    result
}

fn join(
    request: &JoinRequest,
    marker: &std::path::Path,
    active: &std::path::Path,
) -> Result<JoinOutcome, AgentError> {
    let pod = EtcdPod::read(&request.member_pod)?;
    let name = pod.member_name().to_string();
    let Some(peer_url) = pod.peer_urls().into_iter().next() else {
        return Err(AgentError::Pod {
            path: request.member_pod.clone(),
            reason: "--initial-advertise-peer-urls is empty".into(),
        });
    };
    let founder = pod.initial_cluster_names().first() == Some(&name);
    // Its own client URL last: it answers only when this member already runs.
    let own = pod.client_urls();
    let mut endpoints: Vec<String> = request
        .etcd
        .endpoints
        .iter()
        .filter(|e| !own.iter().any(|o| same_url(o, e)))
        .cloned()
        .collect();
    endpoints.extend(own.iter().cloned());
    let client = request.etcd.client(&endpoints)?;
    let deadline = Instant::now() + request.timeout;
    let mut last: String;
    let outcome = loop {
        match client.member_list() {
            Ok(members) => {
                if let Some(member) = members.by_peer_url(&peer_url) {
                    tracing::info!("{name} ({peer_url}) is already an etcd member");
                    // A member that has started has a data directory, where etcd ignores
                    // --initial-cluster; rewriting its pod would only restart it.
                    if member.started() && active.exists() {
                        let initial_cluster = pod_initial_cluster(active)?;
                        write_marker(marker, &initial_cluster)?;
                        return Ok(JoinOutcome::AlreadyMember { initial_cluster });
                    }
                    break JoinOutcome::AlreadyMember {
                        initial_cluster: members.initial_cluster(&name, &peer_url),
                    };
                }
                match client.member_add(std::slice::from_ref(&peer_url)) {
                    Ok((added, members)) => {
                        tracing::info!("added etcd member {name} ({peer_url}), ID {}", added.id);
                        // etcd checks an add against the membership before it proposes it, so
                        // two masters adding at the same moment can both pass, and the answer
                        // to the first may not list the second yet. Its etcd would then refuse
                        // to start ("member count is unequal"), for good. Any later add is
                        // refused while this member has not started, so the membership read
                        // once the other's change has applied is the one to start with.
                        std::thread::sleep(SETTLE);
                        let members = match client.member_list() {
                            Ok(now) if now.by_peer_url(&peer_url).is_some() => now,
                            _ => members,
                        };
                        break JoinOutcome::Added {
                            initial_cluster: members.initial_cluster(&name, &peer_url),
                        };
                    }
                    Err(e) => last = format!("member add: {e}"),
                }
            }
            Err(e) if founder => {
                tracing::info!(
                    "no etcd member answers ({e}); {name} is the first member of a new cluster"
                );
                let initial_cluster = format!("{name}={peer_url}");
                write_pod(&pod.with_membership(&initial_cluster, "new"), active)?;
                write_marker(marker, &initial_cluster)?;
                return Ok(JoinOutcome::Founded { initial_cluster });
            }
            Err(e) => last = format!("member list: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(AgentError::Timeout {
                what: format!("adding etcd member {name}"),
                within: request.timeout,
                last,
            });
        }
        tracing::info!("waiting to add etcd member {name}: {last}");
        std::thread::sleep(request.poll);
    };
    let initial_cluster = match &outcome {
        JoinOutcome::Added { initial_cluster } | JoinOutcome::AlreadyMember { initial_cluster } => {
            initial_cluster.clone()
        }
        _ => String::new(),
    };
    write_pod(&pod.with_membership(&initial_cluster, "existing"), active)?;
    write_marker(marker, &initial_cluster)?;
    Ok(outcome)
}

/// The `--initial-cluster` of the pod already activated.
fn pod_initial_cluster(active: &std::path::Path) -> Result<String, AgentError> {
    let pod = EtcdPod::read(active)?;
    Ok(pod.flag("initial-cluster").unwrap_or_default().to_string())
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Writes the pod unless the file already says exactly this: a rewrite restarts etcd.
fn write_pod(pod: &EtcdPod, path: &std::path::Path) -> Result<(), AgentError> {
    let yaml = pod.to_yaml();
    if std::fs::read_to_string(path).is_ok_and(|old| old == yaml) {
        return Ok(());
    }
    crate::write_atomic(path, yaml.as_bytes(), 0o600)
}

fn write_marker(marker: &std::path::Path, initial_cluster: &str) -> Result<(), AgentError> {
    let text =
        serde_json::json!({ "initialCluster": initial_cluster, "time": crate::now_rfc3339() });
    crate::write_atomic(marker, format!("{text}\n").as_bytes(), 0o644)
}
