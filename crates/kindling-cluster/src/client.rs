//! Connecting to the cluster: a kube client from a kubeconfig file, and the few generic calls
//! every command and the node agent make (is the API up; server-side apply of any object).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;

/// A failure talking to the cluster. Messages read after "failed to …".
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading the kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("making a client from the kubeconfig {}: {source}", path.display())]
    Client { path: PathBuf, source: kube::Error },
    /// A request the API refused or did not answer; `action` says which. The kube error's
    /// causes are in the message (down to "Connection refused"), so it is not also a source.
    #[error("{action}: {}", causes(error))]
    Api { action: String, error: kube::Error },
    /// An object that cannot be applied (no apiVersion, kind or name).
    #[error("applying an object: {0}")]
    Object(String),
    /// A manifest that is not YAML (or JSON) objects.
    #[error("reading manifest {name}: {message}")]
    Manifest { name: String, message: String },
    #[error("{action} took longer than {}s", timeout.as_secs())]
    Timeout { action: String, timeout: Duration },
}

impl ClusterError {
    /// Wraps a kube error with what was being done.
    pub fn api(action: impl Into<String>, source: kube::Error) -> ClusterError {
        ClusterError::Api {
            action: action.into(),
            error: source,
        }
    }

    /// When the API could not be reached at all (name, connection, TLS), one line that says why
    /// in the user's terms and what to run; `server` is the kubeconfig's server URL. The raw
    /// client error is no help to a user: "dns error: failed to lookup address information".
    pub fn unreachable(&self, server: &str) -> Option<String> {
        let ClusterError::Api { error, .. } = self else {
            return None;
        };
        if matches!(error, kube::Error::Api(_)) {
            return None;
        }
        Some(unreachable_hint(server, &causes(error)))
    }

    /// The API's HTTP status, when it answered with one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ClusterError::Api {
                error: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }
}

/// Why a server could not be reached, from the client's error text, as a user would say it.
pub fn unreachable_hint(server: &str, error: &str) -> String {
    let host_port = server
        .split("://")
        .nth(1)
        .unwrap_or(server)
        .trim_end_matches('/')
        .to_string();
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port.as_str(), |(h, _)| h)
        .to_string();
    let lower = error.to_ascii_lowercase();
    let why = if lower.contains("dns error")
        || lower.contains("lookup address")
        || lower.contains("name or service not known")
    {
        format!("{host} does not resolve from this host")
    } else if lower.contains("connection refused") {
        format!(
            "nothing accepts connections at {host_port} (the API, or the load balancer in front of it, is not up)"
        )
    } else if lower.contains("timed out") || lower.contains("deadline") || lower.contains("elapsed")
    {
        format!("{host_port} does not answer (a firewall, a wrong address, or no route)")
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!("{host_port} answers, but not with this cluster's certificate")
    } else if lower.contains("no route") || lower.contains("unreachable") {
        format!("there is no route to {host_port}")
    } else {
        format!("{host_port} cannot be reached")
    };
    format!("{why}; run kindling doctor")
}

/// An error and its causes on one line, without repeats (hyper's and kube's wrappers often
/// repeat their cause's text).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// How long to wait for the apiserver to accept a TCP connection: a dead API should fail a poll
/// quickly, and the next poll tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client from a kubeconfig file (its current context), e.g. `<dir>/auth/kubeconfig`.
pub async fn connect(kubeconfig: &Path) -> Result<kube::Client, ClusterError> {
    let file = Kubeconfig::read_from(kubeconfig).map_err(|source| ClusterError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        source,
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|source| ClusterError::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            source,
        })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    // kube retries 429, 503 and 504 itself, with back-off up to minutes: a refused eviction (a
    // PodDisruptionBudget says 429) would hang the call. Every kindling caller polls and says
    // what it waits on, so an answer is returned as it comes.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|source| ClusterError::Client {
        path: kubeconfig.to_path_buf(),
        source,
    })
}

/// The server URL of a kubeconfig's current context, to show where kindling connects.
pub fn kubeconfig_server(kubeconfig: &Path) -> Option<String> {
    let file = Kubeconfig::read_from(kubeconfig).ok()?;
    let context = file.current_context.as_deref()?;
    let cluster = file
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    file.clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()
}

/// The apiserver's version (`GET /version`): the API answers.
pub async fn server_version(client: &kube::Client) -> Result<String, ClusterError> {
    client
        .apiserver_version()
        .await
        .map(|info| info.git_version)
        .map_err(|e| ClusterError::api("asking the API for /version", e))
}

/// Server-side apply of one object of any kind the API serves, as `kubectl apply
/// --server-side --force-conflicts --field-manager <field_manager>`: the object is created, or
/// the fields it sets are taken over. The resource and its scope come from API discovery, so a
/// kind the API does not serve (a CRD not yet established) fails with the API's answer.
/// Returns the object as stored.
pub async fn apply(
    client: &kube::Client,
    object: &Value,
    field_manager: &str,
) -> Result<Value, ClusterError> {
    let field = |path: &str| {
        object
            .pointer(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let missing = |what: &str| ClusterError::Object(format!("the object has no {what}"));
    let api_version = field("/apiVersion").ok_or_else(|| missing("apiVersion"))?;
    let kind = field("/kind").ok_or_else(|| missing("kind"))?;
    let name = field("/metadata/name").ok_or_else(|| missing("metadata.name"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let what = match field("/metadata/namespace") {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| ClusterError::api(format!("finding {api_version} {kind} in the API"), e))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            field("/metadata/namespace").unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let stored = api
        .patch(
            name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|e| ClusterError::api(format!("applying {what}"), e))?;
    serde_json::to_value(stored).map_err(|e| ClusterError::Object(e.to_string()))
}

/// The objects of a manifest file: one or more YAML (or JSON) documents; empty documents are
/// skipped. `name` is the file's name, for messages.
pub fn parse_manifests(name: &str, text: &str) -> Result<Vec<Value>, ClusterError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ClusterError::Manifest {
            name: name.to_string(),
            message: e.to_string(),
        })?;
    documents
        .into_iter()
        .filter(|d| !d.is_null())
        .enumerate()
        .map(|(i, d)| {
            if d.is_object() {
                Ok(d)
            } else {
                Err(ClusterError::Manifest {
                    name: name.to_string(),
                    message: format!("document {} is not an object", i + 1),
                })
            }
        })
        .collect()
}

/// Applies every object of a manifest file, in order (see [`apply`]); returns them as stored.
pub async fn apply_manifests(
    client: &kube::Client,
    name: &str,
    text: &str,
    field_manager: &str,
) -> Result<Vec<Value>, ClusterError> {
    let mut stored = Vec::new();
    for object in parse_manifests(name, text)? {
        stored.push(apply(client, &object, field_manager).await?);
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeApiServer;
    use serde_json::json;

    #[tokio::test]
    async fn apply_creates_then_updates_objects_of_any_scope() {
        let fake = FakeApiServer::new();
        let client = fake.client();
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "kindling:node-bootstrapper"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-bootstrapper"},
        });
        apply(&client, &role, "kindling-agent").await.unwrap();
        let ds = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "spec": {"template": {"spec": {"hostNetwork": true}}},
        });
        apply(&client, &ds, "kindling-agent").await.unwrap();
        let mut changed = ds.clone();
        changed["spec"]["template"]["spec"]["priorityClassName"] = json!("system-node-critical");
        let stored = apply(&client, &changed, "kindling-agent").await.unwrap();
        assert_eq!(stored["spec"]["template"]["spec"]["hostNetwork"], true);
        assert_eq!(
            fake.get("apps/v1", "DaemonSet", Some("kube-system"), "kube-proxy")
                .unwrap()["spec"]["template"]["spec"]["priorityClassName"],
            "system-node-critical"
        );
        assert!(
            fake.get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "kindling:node-bootstrapper"
            )
            .is_some()
        );
        let unknown =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let err = apply(&client, &unknown, "kindling-agent")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("finding example.com/v1 Widget"),
            "{err}"
        );
        let nameless = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        assert!(
            apply(&client, &nameless, "m")
                .await
                .unwrap_err()
                .to_string()
                .contains("metadata.name")
        );
    }

    #[tokio::test]
    async fn manifest_files_with_several_documents_are_applied_in_order() {
        let fake = FakeApiServer::new();
        let text = "# flannel\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n  labels:\n    pod-security.kubernetes.io/enforce: privileged\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-flannel-cfg\n  namespace: kube-flannel\ndata:\n  mode: \"0600\"\n";
        let stored = apply_manifests(&fake.client(), "00-flannel.yaml", text, "kindling-agent")
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        let cm = fake
            .get("v1", "ConfigMap", Some("kube-flannel"), "kube-flannel-cfg")
            .unwrap();
        assert_eq!(cm["data"]["mode"], "0600");
        let err = parse_manifests("bad.yaml", "- 1\n- 2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading manifest bad.yaml: document 1 is not an object"
        );
        assert!(
            parse_manifests("bad.yaml", "a: [\n")
                .unwrap_err()
                .to_string()
                .starts_with("reading manifest bad.yaml: ")
        );
    }

    #[tokio::test]
    async fn connect_reads_a_kubeconfig_for_a_plain_http_server() {
        let fake = FakeApiServer::new();
        let addr = fake.listen().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, FakeApiServer::kubeconfig(addr)).unwrap();
        let client = connect(&path).await.unwrap();
        assert_eq!(server_version(&client).await.unwrap(), "v1.33.0-fake");
        let Err(err) = connect(&dir.path().join("missing")).await else {
            panic!("a missing kubeconfig is an error")
        };
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
