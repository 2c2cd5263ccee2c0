//! Reads of the cluster's health that wait-for and the bootstrap agent share: which Nodes are
//! Ready, and which control-plane static pods run Ready on which masters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::client::ClusterError;

/// The control-plane static pods on every master. The kubelet publishes each as a mirror pod
/// named `<component>-<node name>` in kube-system.
pub const CONTROL_PLANE: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// One control-plane mirror pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlanePod {
    pub node: String,
    pub component: &'static str,
    /// `<component>-<node>`.
    pub pod: String,
    pub exists: bool,
    /// Its Ready condition is True.
    pub ready: bool,
}

/// Every Node's name, with whether its Ready condition is True.
pub async fn node_readiness(client: &kube::Client) -> Result<BTreeMap<String, bool>, ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing Nodes", e))?;
    Ok(list
        .items
        .iter()
        .map(|n| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (n.metadata.name.clone().unwrap_or_default(), ready)
        })
        .collect())
}

/// The control-plane mirror pods of `masters` (node names), one per master and component, in
/// that order.
pub async fn control_plane_pods(
    client: &kube::Client,
    masters: &[&str],
) -> Result<Vec<ControlPlanePod>, ClusterError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing kube-system pods", e))?;
    let ready: BTreeMap<String, bool> = list
        .items
        .iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (p.metadata.name.clone().unwrap_or_default(), ready)
        })
        .collect();
    let mut out = Vec::new();
    for node in masters {
        for component in CONTROL_PLANE {
            let pod = format!("{component}-{node}");
            let state = ready.get(&pod).copied();
            out.push(ControlPlanePod {
                node: node.to_string(),
                component,
                pod,
                exists: state.is_some(),
                ready: state == Some(true),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeApiServer;

    #[tokio::test]
    async fn readiness_is_read_from_nodes_and_mirror_pods() {
        let fake = FakeApiServer::new();
        fake.put_node("master0", true);
        fake.put_node("master1", false);
        fake.put_pod("kube-system", "kube-apiserver-master0", true);
        fake.put_pod("kube-system", "etcd-master0", false);
        let client = fake.client();
        let nodes = node_readiness(&client).await.unwrap();
        assert_eq!(
            nodes,
            BTreeMap::from([("master0".into(), true), ("master1".into(), false)])
        );
        let pods = control_plane_pods(&client, &["master0", "master1"])
            .await
            .unwrap();
        assert_eq!(pods.len(), 8);
        let find = |pod: &str| pods.iter().find(|p| p.pod == pod).unwrap().clone();
        assert!(find("kube-apiserver-master0").ready);
        assert!(find("etcd-master0").exists && !find("etcd-master0").ready);
        assert!(!find("kube-apiserver-master1").exists);
    }
}
