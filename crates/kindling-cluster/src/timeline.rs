//! What the cluster says of one machine's join, for its timeline: its kubelet's certificate
//! requests (made, approved, denied) and its Node (registered, Ready), each at the time the API
//! gives.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use crate::ClusterError;

/// One step of a machine's join, as the API records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// RFC 3339.
    pub time: String,
    /// `csr`, `csr-approved`, `csr-denied`, `node-registered`, `node-ready`, `node-not-ready`.
    pub stage: &'static str,
    pub detail: String,
}

fn rfc3339(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    time.0.to_string()
}

/// The steps of the Node named `node`, oldest first.
pub async fn of_node(client: &kube::Client, node: &str) -> Result<Vec<Step>, ClusterError> {
    let mut steps = Vec::new();
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = csrs
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("listing CertificateSigningRequests", e))?;
    for csr in list.items {
        let kind = match csr.spec.signer_name.as_str() {
            "kubernetes.io/kube-apiserver-client-kubelet" => "client",
            "kubernetes.io/kubelet-serving" => "serving",
            _ => continue,
        };
        if crate::csr::subject_node(&csr.spec.request.0).as_deref() != Some(node) {
            continue;
        }
        let name = csr.metadata.name.clone().unwrap_or_default();
        if let Some(created) = &csr.metadata.creation_timestamp {
            steps.push(Step {
                time: rfc3339(created),
                stage: "csr",
                detail: format!("{name}: the kubelet asks for its {kind} certificate"),
            });
        }
        for condition in csr
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
        {
            let stage = match condition.type_.as_str() {
                "Approved" => "csr-approved",
                "Denied" => "csr-denied",
                _ => continue,
            };
            let Some(time) = condition
                .last_update_time
                .as_ref()
                .or(condition.last_transition_time.as_ref())
            else {
                continue;
            };
            steps.push(Step {
                time: rfc3339(time),
                stage,
                detail: format!("{name}: {}", condition.message.clone().unwrap_or_default()),
            });
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    if let Some(found) = nodes
        .get_opt(node)
        .await
        .map_err(|e| ClusterError::api("reading the Node", e))?
    {
        if let Some(created) = &found.metadata.creation_timestamp {
            steps.push(Step {
                time: rfc3339(created),
                stage: "node-registered",
                detail: String::new(),
            });
        }
        let ready = found
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .find(|c| c.type_ == "Ready");
        if let Some(ready) = ready
            && let Some(time) = &ready.last_transition_time
        {
            let is = ready.status == "True";
            steps.push(Step {
                time: rfc3339(time),
                stage: if is { "node-ready" } else { "node-not-ready" },
                detail: ready.message.clone().unwrap_or_default(),
            });
        }
    }
    steps.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(steps)
}
