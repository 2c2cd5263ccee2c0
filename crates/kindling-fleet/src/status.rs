//! `kindling status`: every machine of the inventory, where it is: its last event from
//! `kindling serve`, the rendering it runs and the one it is meant to be on, drift, readiness,
//! a rolling update's step, and when its first certificate expires. What the asset directory
//! knows comes first; the cluster's API adds the Nodes (one list) and the kubelets'
//! certificates (one list of CSRs) when it answers.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use kindling_assets::renderings::PoolState;
use kindling_cluster::node_config::NodeConfig;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use time::OffsetDateTime;

use crate::certs::{self, CertsError};
use crate::update::UpdateState;

/// kindling serve's event log.
const EVENTS_FILE: &str = ".kindling/events.jsonl";

/// One machine's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub name: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The last thing `kindling serve` saw of it (`mcs`, `agent ...`), and when (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_time: Option<String>,
    /// What its node agent says it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// What it is meant to be on: what its Node was told, else what the pool says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// Its node agent's state (`Done`, `Drifted`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The paths that drifted, as the Node's condition says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Whether its Node is Ready; `None` without a Node (or without the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    pub cordoned: bool,
    /// Its step in a rolling update of its pool, while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// When the first of its certificates expires (its own under `tls/`, its kubelet's).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificates_expire: Option<OffsetDateTime>,
}

/// The last event of each machine in the event log (what `kindling serve` keeps in memory).
fn last_events(dir: &Path) -> BTreeMap<String, (String, String)> {
    #[derive(serde::Deserialize)]
    struct Line {
        time: String,
        machine: Option<String>,
        stage: String,
    }
    let mut last = BTreeMap::new();
    let Ok(file) = std::fs::File::open(dir.join(EVENTS_FILE)) else {
        return last;
    };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        if let Ok(Line {
            time,
            machine: Some(machine),
            stage,
        }) = serde_json::from_str(&line)
        {
            last.insert(machine, (stage, time));
        }
    }
    last
}

/// Adds each machine's last event, from `kindling serve`'s event log in `dir` (which a running
/// serve keeps in memory: it does not read the log again).
pub fn add_last_events(dir: &Path, machines: &mut [MachineStatus]) {
    let events = last_events(dir);
    for m in machines {
        if let Some((stage, time)) = events.get(&m.name) {
            m.stage = Some(stage.clone());
            m.stage_time = Some(time.clone());
        }
    }
}

/// What the asset directory says of every machine, but its events (see [`add_last_events`]).
pub fn local(
    dir: &Path,
    description: &kindling_config::ClusterDescription,
) -> Result<Vec<MachineStatus>, CertsError> {
    Ok(with_credentials(
        dir,
        description,
        &certs::of_description(dir, description)?,
    ))
}

/// [`local`], with the asset directory's credentials already read (`certs::local`).
pub fn with_credentials(
    dir: &Path,
    description: &kindling_config::ClusterDescription,
    credentials: &[certs::Credential],
) -> Vec<MachineStatus> {
    let mut expiry: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    for c in credentials {
        if let Some(machine) = c.machine.clone() {
            let first = expiry.entry(machine).or_insert(c.not_after);
            *first = (*first).min(c.not_after);
        }
    }
    let mut pools: BTreeMap<&str, (Option<PoolState>, Option<UpdateState>)> = BTreeMap::new();
    let mut out = Vec::with_capacity(description.inventory.machines.len());
    for m in &description.inventory.machines {
        let pool = kindling_assets::ignition::pool_of(m.role);
        let (pool_state, update) = match pool {
            Some(p) => {
                let entry = pools.entry(p).or_insert_with(|| {
                    (
                        PoolState::load(dir, p).ok(),
                        UpdateState::load(dir, p).ok().flatten(),
                    )
                });
                (entry.0.as_ref(), entry.1.as_ref())
            }
            None => (None, None),
        };
        out.push(MachineStatus {
            name: m.name.clone(),
            role: m.role.to_string(),
            pool: pool.map(str::to_string),
            stage: None,
            stage_time: None,
            current: None,
            desired: pool_state
                .and_then(|s| s.desired(&m.name))
                .map(str::to_string),
            agent: None,
            drift: None,
            ready: None,
            cordoned: false,
            update: update
                .and_then(|u| u.machines.get(&m.name))
                .filter(|p| p.step != crate::update::Step::Done)
                .map(|p| p.step.as_str().to_string()),
            certificates_expire: expiry.get(&m.name).copied(),
        });
    }
    out
}

/// Adds what the cluster says: each machine's Node, and its kubelet's certificates.
pub async fn from_cluster(
    client: &kube::Client,
    machines: &mut [MachineStatus],
) -> Result<(), CertsError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| kindling_cluster::ClusterError::api("listing Nodes", e))?;
    let by_name: BTreeMap<String, NodeConfig> = list
        .items
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, NodeConfig::of(n))))
        .collect();
    let kubelets = certs::kubelets(client).await?;
    for m in machines.iter_mut() {
        if let Some(node) = by_name.get(&m.name) {
            m.current = node.current.clone();
            if node.desired.is_some() {
                m.desired = node.desired.clone();
            }
            m.agent = node.state.clone();
            m.drift = node.drift.clone();
            m.ready = Some(node.ready);
            m.cordoned = node.unschedulable;
        }
        for c in kubelets
            .iter()
            .filter(|c| c.machine.as_deref() == Some(&m.name))
        {
            let first = m.certificates_expire.get_or_insert(c.not_after);
            *first = (*first).min(c.not_after);
        }
    }
    Ok(())
}
