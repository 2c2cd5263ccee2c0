//! The labels kindling gives Nodes, which a kubelet may not set on itself (NodeRestriction keeps
//! `node-role.kubernetes.io/*` from it): a machine's role and the inventory's labels. Whoever
//! sees a node register applies them: `approve-csrs` and `serve --approve-csrs` after approving
//! its CSRs, the bootstrap agent for the masters. All of them apply as one field manager, so
//! they never conflict with each other, and a user's other labels stay.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;

use crate::ClusterError;

/// The field manager of the labels kindling gives nodes.
pub const LABELS_MANAGER: &str = "kindling-labels";

/// The labels each node must have, by node name.
pub type NodeLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Gives each of the `registered` Nodes the labels `wanted` says (none for a name it does not
/// know), by server-side apply. Nodes that have them already are left alone. Returns the nodes
/// labelled now.
pub async fn apply<'a>(
    nodes: &Api<Node>,
    wanted: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    registered: &[PartialObjectMeta<Node>],
) -> Result<Vec<String>, ClusterError> {
    let mut labelled = Vec::new();
    for node in registered {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let Some(labels) = wanted(name) else {
            continue;
        };
        let has = node.metadata.labels.as_ref();
        if labels
            .iter()
            .all(|(k, v)| has.and_then(|l| l.get(k)) == Some(v))
        {
            continue;
        }
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
        });
        nodes
            .patch(
                name,
                &PatchParams::apply(LABELS_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| ClusterError::api(format!("labelling Node {name}"), e))?;
        tracing::info!(
            "node {name}: labelled {}",
            labels
                .iter()
                .map(|(k, v)| if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        labelled.push(name.to_string());
    }
    Ok(labelled)
}

/// [`apply`] to the registered Nodes among `wanted`'s.
pub async fn apply_registered(
    client: &kube::Client,
    wanted: &NodeLabels,
) -> Result<Vec<String>, ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let registered = nodes
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing Nodes", e))?;
    apply(&nodes, |name| wanted.get(name), &registered.items).await
}
