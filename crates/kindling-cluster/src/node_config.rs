//! Where each Node says which rendering it runs, as annotations (the machine-config-operator's
//! scheme, under `kindling.dev/`), and its drift as a Node condition and events.
//!
//! - `kindling.dev/desired-rendering`: set by `kindling update` (or `remove`): what the node is
//!   to move to. The node agent acts on it.
//! - `kindling.dev/current-rendering`: set by the node agent: what is on its disk.
//! - `kindling.dev/state`: the agent's state ([`State`]), and `kindling.dev/reason` why.
//! - `kindling.dev/refused-rendering`: the desired rendering the agent will not write over
//!   drift (unless the rendering itself has what drifted: the description adopted it).
//! - `kindling.dev/revert-drift`: `"true"` asks the agent to put its rendering back over the
//!   files that drifted; the agent removes it once done.
//! - The condition `KindlingConfigDrift`: `True` while files or units differ from the
//!   rendering, with the paths in its message.
//!
//! A node may change all of this on its own Node object (NodeRestriction allows it), so the
//! agent uses the kubelet's credentials.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::ClusterError;

pub const DESIRED: &str = "kindling.dev/desired-rendering";
pub const CURRENT: &str = "kindling.dev/current-rendering";
pub const STATE: &str = "kindling.dev/state";
pub const REASON: &str = "kindling.dev/reason";
pub const REVERT_DRIFT: &str = "kindling.dev/revert-drift";
/// Set by the agent to the desired rendering it will not write over drift.
pub const REFUSED: &str = "kindling.dev/refused-rendering";
/// The Node condition that reports drift.
pub const DRIFT_CONDITION: &str = "KindlingConfigDrift";
/// The component named in the agent's events.
pub const COMPONENT: &str = "kindling-node-agent";

/// The node agent's state, as `kindling.dev/state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// On its desired rendering, and no drift.
    Done,
    /// Writing a new rendering.
    Working,
    /// Rebooting into a new rendering.
    Rebooting,
    /// Files or units differ from the rendering; nothing new is applied over them.
    Drifted,
    /// It could not apply its desired rendering; the reason says why.
    Degraded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Done => "Done",
            State::Working => "Working",
            State::Rebooting => "Rebooting",
            State::Drifted => "Drifted",
            State::Degraded => "Degraded",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        [
            State::Done,
            State::Working,
            State::Rebooting,
            State::Drifted,
            State::Degraded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a Node says of its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub desired: Option<String>,
    pub current: Option<String>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub revert_drift: bool,
    /// The desired rendering the agent refuses to write over drift.
    pub refused: Option<String>,
    /// The drift condition's message while it is `True`.
    pub drift: Option<String>,
    pub ready: bool,
    pub unschedulable: bool,
}

impl NodeConfig {
    /// Reads it from a Node object.
    pub fn of(node: &Node) -> NodeConfig {
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let get = |key: &str| annotations.get(key).cloned();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind).cloned();
        NodeConfig {
            desired: get(DESIRED),
            current: get(CURRENT),
            state: get(STATE),
            reason: get(REASON),
            revert_drift: get(REVERT_DRIFT).as_deref() == Some("true"),
            refused: get(REFUSED),
            drift: condition(DRIFT_CONDITION)
                .filter(|c| c.status == "True")
                .map(|c| c.message.unwrap_or_default()),
            ready: condition("Ready").is_some_and(|c| c.status == "True"),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
        }
    }
}

/// Reads node `name`'s configuration.
pub async fn read(client: &kube::Client, name: &str) -> Result<NodeConfig, ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .get(name)
        .await
        .map_err(|e| ClusterError::api(format!("reading Node {name}"), e))?;
    Ok(NodeConfig::of(&node))
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    pub current: &'a str,
    pub state: State,
    pub reason: &'a str,
    /// The paths that drifted, one per line; `None` when there is no drift.
    pub drift: Option<&'a str>,
    /// Drop the revert request (it was carried out).
    pub reverted: bool,
    /// The desired rendering it will not write over the drift.
    pub refused: Option<&'a str>,
}

impl<'a> Report<'a> {
    /// On `current`, nothing to say.
    pub fn done(current: &'a str) -> Report<'a> {
        Report {
            current,
            state: State::Done,
            reason: "",
            drift: None,
            reverted: false,
            refused: None,
        }
    }
}

/// Sets the agent's annotations and the drift condition on node `name`. The condition goes
/// through a strategic merge patch of the status, which merges by condition type, so the
/// kubelet's own conditions stay.
pub async fn report(
    client: &kube::Client,
    name: &str,
    before: &NodeConfig,
    report: &Report<'_>,
) -> Result<(), ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(CURRENT, json!(report.current));
    annotations.insert(STATE, json!(report.state.as_str()));
    annotations.insert(REASON, json!(report.reason));
    if report.reverted {
        annotations.insert(REVERT_DRIFT, serde_json::Value::Null);
    }
    annotations.insert(
        REFUSED,
        report.refused.map_or(serde_json::Value::Null, |r| json!(r)),
    );
    let patch = json!({"metadata": {"annotations": annotations}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ClusterError::api(format!("annotating Node {name}"), e))?;

    let drifted = report.drift.is_some();
    if before.drift.is_some() == drifted && before.drift.as_deref() == report.drift {
        return Ok(());
    }
    let now = now_rfc3339();
    let (status, reason, message) = match report.drift {
        Some(paths) => (
            "True",
            "FilesChanged",
            format!("differs from {}:\n{paths}", report.current),
        ),
        None => ("False", "AsRendered", format!("as {} says", report.current)),
    };
    let patch = json!({"status": {"conditions": [{
        "type": DRIFT_CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|e| {
            ClusterError::api(
                format!("setting Node {name}'s {DRIFT_CONDITION} condition"),
                e,
            )
        })?;
    Ok(())
}

/// Records a Kubernetes event on node `name`, as the kubelet does for its own (the node's name
/// as its uid, in the `default` namespace), so that `kubectl describe node` lists it.
pub async fn event(
    client: &kube::Client,
    name: &str,
    warning: bool,
    reason: &str,
    message: &str,
) -> Result<(), ClusterError> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let now = now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{name}.kindling-"), "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": name, "uid": name},
        "reason": reason,
        "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": COMPONENT, "host": name},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let event = serde_json::from_value(event).map_err(|e| ClusterError::Object(e.to_string()))?;
    events
        .create(&PostParams::default(), &event)
        .await
        .map_err(|e| ClusterError::api(format!("recording an event on Node {name}"), e))?;
    Ok(())
}

/// Asks node `name` to move to `rendering` (what `kindling update` does).
pub async fn set_desired(
    client: &kube::Client,
    name: &str,
    rendering: &str,
    revert_drift: bool,
) -> Result<(), ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(DESIRED, json!(rendering));
    if revert_drift {
        annotations.insert(REVERT_DRIFT, json!("true"));
    }
    let patch = json!({"metadata": {"annotations": annotations}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ClusterError::api(format!("annotating Node {name}"), e))?;
    Ok(())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
