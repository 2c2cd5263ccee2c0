//! Taking a node out of service as `kubectl drain` does: cordon it, then evict its pods through
//! the Eviction API, so that PodDisruptionBudgets are honoured (an eviction they forbid is
//! answered 429 and asked again later), and wait until the pods are gone.
//!
//! Left on the node, as kubectl leaves them: pods of DaemonSets (their controller would put them
//! back), the kubelet's static pods (their mirror pods cannot be evicted), and pods that have
//! finished. The Eviction's API version is the one the server lists for `pods/eviction`, as
//! kubectl finds it (`policy/v1` since Kubernetes 1.22, `policy/v1beta1` before).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::ClusterError;

/// Marks node `name` unschedulable (or schedulable again).
pub async fn cordon(
    client: &kube::Client,
    name: &str,
    unschedulable: bool,
) -> Result<(), ClusterError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"spec": {"unschedulable": unschedulable}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            let what = if unschedulable {
                "cordoning"
            } else {
                "uncordoning"
            };
            ClusterError::api(format!("{what} Node {name}"), e)
        })?;
    Ok(())
}

/// A pod that draining evicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evictee {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Evictee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn stays(pod: &Pod) -> bool {
    let daemon_set = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    daemon_set || mirror || finished
}

/// The pods on node `name` that draining evicts.
pub async fn evictees(client: &kube::Client, name: &str) -> Result<Vec<Evictee>, ClusterError> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await
        .map_err(|e| ClusterError::api(format!("listing the pods on {name}"), e))?;
    Ok(list
        .items
        .iter()
        // Filtered here too: not every server filters by field (kindling's fake does not).
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
        .filter(|p| !stays(p))
        .filter_map(|p| {
            Some(Evictee {
                namespace: p.metadata.namespace.clone()?,
                name: p.metadata.name.clone()?,
            })
        })
        .collect())
}

/// The API version the server takes Evictions in, from its discovery of `pods/eviction`.
pub async fn eviction_version(client: &kube::Client) -> Result<String, ClusterError> {
    let resources = client
        .list_core_api_resources("v1")
        .await
        .map_err(|e| ClusterError::api("discovering the Eviction API", e))?;
    let eviction = resources
        .resources
        .iter()
        .find(|r| r.name == "pods/eviction")
        .ok_or_else(|| {
            ClusterError::Object("the server lists no pods/eviction subresource".into())
        })?;
    let group = eviction.group.as_deref().unwrap_or("policy");
    let version = eviction.version.as_deref().unwrap_or("v1");
    Ok(format!("{group}/{version}"))
}

/// What one eviction came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evicted {
    /// The pod is being deleted (or was gone already).
    Yes,
    /// A PodDisruptionBudget does not allow it now; the server's reason.
    Refused(String),
}

/// Asks the API to evict `pod`, in `api_version` ([`eviction_version`]).
pub async fn evict(
    client: &kube::Client,
    api_version: &str,
    pod: &Evictee,
) -> Result<Evicted, ClusterError> {
    let body = json!({
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| ClusterError::Object(e.to_string()))?;
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(bytes)
    .map_err(|e| ClusterError::Object(e.to_string()))?;
    match client.request::<serde_json::Value>(request).await {
        Ok(_) => Ok(Evicted::Yes),
        // The pod is gone already; a server without the subresource is not taken for that.
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
            match pods.get_opt(&pod.name).await {
                Ok(None) => Ok(Evicted::Yes),
                Ok(Some(_)) => Err(ClusterError::Object(format!(
                    "evicting {pod}: the server answered 404 for a pod it has ({})",
                    status.message
                ))),
                Err(e) => Err(ClusterError::api(format!("reading {pod}"), e)),
            }
        }
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(Evicted::Refused(status.message)),
        Err(e) => Err(ClusterError::api(format!("evicting {pod}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake::FakeApiServer;

    fn pod(fake: &FakeApiServer, name: &str, node: &str, extra: serde_json::Value) {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "hello"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running"},
        });
        if let (Some(pod), Some(extra)) = (pod["metadata"].as_object_mut(), extra.as_object()) {
            pod.extend(extra.clone());
        }
        fake.put(pod);
    }

    /// Against the fake: the real 1.20 control plane of the tests takes Evictions only as
    /// policy/v1beta1, which is what this discovers there; the budget's rules are the same.
    #[tokio::test]
    async fn drain_evicts_what_kubectl_drain_evicts_and_a_budget_holds_it() {
        let fake = FakeApiServer::new();
        let client = fake.client();
        fake.put_node("w0", true);
        pod(&fake, "web", "w0", json!({}));
        pod(&fake, "elsewhere", "w1", json!({}));
        pod(
            &fake,
            "agent",
            "w0",
            json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "a", "uid": "1"}]}),
        );
        pod(
            &fake,
            "static-w0",
            "w0",
            json!({"annotations": {"kubernetes.io/config.mirror": "x"}}),
        );
        fake.put(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "hello"}}},
            "status": {"disruptionsAllowed": 0},
        }));

        cordon(&client, "w0", true).await.unwrap();
        let node = fake.get("v1", "Node", None, "w0").unwrap();
        assert_eq!(node["spec"]["unschedulable"], true);
        let version = eviction_version(&client).await.unwrap();
        assert_eq!(version, "policy/v1");
        let pods = evictees(&client, "w0").await.unwrap();
        assert_eq!(
            pods.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["default/web"]
        );

        let refused = evict(&client, &version, &pods[0]).await.unwrap();
        assert!(
            matches!(&refused, Evicted::Refused(why) if why.contains("disruption budget")),
            "{refused:?}"
        );
        assert!(fake.get("v1", "Pod", Some("default"), "web").is_some());
        let mut budget = fake
            .get("policy/v1", "PodDisruptionBudget", Some("default"), "hello")
            .unwrap();
        budget["status"]["disruptionsAllowed"] = json!(1);
        fake.put(budget);
        assert_eq!(
            evict(&client, &version, &pods[0]).await.unwrap(),
            Evicted::Yes
        );
        assert!(fake.get("v1", "Pod", Some("default"), "web").is_none());
        assert_eq!(evictees(&client, "w0").await.unwrap(), []);
        // Evicting a pod that is gone is done.
        assert_eq!(
            evict(&client, &version, &pods[0]).await.unwrap(),
            Evicted::Yes
        );
    }
}
