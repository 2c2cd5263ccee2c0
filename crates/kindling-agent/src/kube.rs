//! The Kubernetes API steps of the bootstrap agent, behind a trait: the stage runner and its unit
//! tests do not depend on how the API is reached. [`Cluster`] is the implementation over the
//! real API, through kindling-cluster.

use std::path::Path;
use std::time::Duration;

use kindling_cluster::bootstrap;
pub use kindling_cluster::bootstrap::{BootstrapRecord, BootstrapStatus};
pub use kindling_cluster::labels::NodeLabels;
use serde_json::Value;

use crate::AgentError;

/// The field manager of the agent's server-side applies.
pub const FIELD_MANAGER: &str = bootstrap::FIELD_MANAGER;

/// An API failure, as the implementation words it.
pub type KubeError = String;

/// The Kubernetes API calls the bootstrap stages make.
pub trait Kubernetes {
    /// The apiserver's version: Ok once it answers.
    fn server_version(&self) -> Result<String, KubeError>;
    /// Server-side apply of one object (field manager [`FIELD_MANAGER`], forcing conflicts):
    /// creating it or taking over the fields it sets, so applying twice is harmless.
    fn apply(&self, object: &Value) -> Result<(), KubeError>;
    /// Which of `masters` (node names) run a Ready kube-apiserver (its mirror pod).
    fn ready_apiservers(&self, masters: &[String]) -> Result<Vec<String>, KubeError>;
    /// Gives the registered Nodes among `wanted`'s their labels (kindling-cluster's `labels`);
    /// returns the nodes labelled now.
    fn label_nodes(&self, wanted: &NodeLabels) -> Result<Vec<String>, KubeError>;
    /// Writes ConfigMap `kube-system/bootstrap` (kindling-cluster's `bootstrap` module owns the
    /// contract with `wait-for`).
    fn write_record(&self, record: &BootstrapRecord) -> Result<(), KubeError>;
}

/// How long to wait for the apiserver to accept a connection: a poll should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one API call may take before the stage's next poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The real API, through kindling-cluster, driven from the agent's synchronous stages.
pub struct Cluster {
    client: kube::Client,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// A client from `kubeconfig`'s current context; with `server`, that context's credentials
    /// against another apiserver URL (api-int, once the local apiserver has lost its etcd).
    pub fn connect(kubeconfig: &Path, server: Option<&str>) -> Result<Cluster, AgentError> {
        let bad = |reason: String| AgentError::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the async runtime: {e}")))?;
        let client = runtime.block_on(async {
            let file =
                kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
            let mut config = kube::Config::from_custom_kubeconfig(
                file,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| bad(e.to_string()))?;
            if let Some(server) = server {
                config.cluster_url = server
                    .parse()
                    .map_err(|e| bad(format!("--api-server {server}: {e}")))?;
            }
            config.connect_timeout = Some(CONNECT_TIMEOUT);
            config.read_timeout = Some(CALL_TIMEOUT);
            // The stages poll; kube's own retries of 429 and 503 would only hide the wait.
            config.default_retry = false;
            // The client's request buffer is a task: it must be made inside the runtime.
            kube::Client::try_from(config).map_err(|e| bad(e.to_string()))
        })?;
        Ok(Cluster { client, runtime })
    }

    /// The client, for calls of kindling-cluster's.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Runs one of kindling-cluster's calls to its end, bounded like every call.
    pub fn run<T>(
        &self,
        future: impl Future<Output = Result<T, kindling_cluster::ClusterError>>,
    ) -> Result<T, AgentError> {
        self.call(future).map_err(AgentError::Kubernetes)
    }

    fn call<T>(
        &self,
        future: impl Future<Output = Result<T, kindling_cluster::ClusterError>>,
    ) -> Result<T, KubeError> {
        self.runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, future).await })
            .map_err(|_| format!("no answer within {}s", CALL_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())
    }
}

impl Kubernetes for Cluster {
    fn server_version(&self) -> Result<String, KubeError> {
        self.call(kindling_cluster::server_version(&self.client))
    }

    fn apply(&self, object: &Value) -> Result<(), KubeError> {
        self.call(kindling_cluster::apply(&self.client, object, FIELD_MANAGER))
            .map(|_| ())
    }

    fn ready_apiservers(&self, masters: &[String]) -> Result<Vec<String>, KubeError> {
        let masters: Vec<&str> = masters.iter().map(String::as_str).collect();
        let pods = self.call(kindling_cluster::health::control_plane_pods(
            &self.client,
            &masters,
        ))?;
        Ok(pods
            .into_iter()
            .filter(|p| p.component == "kube-apiserver" && p.ready)
            .map(|p| p.node)
            .collect())
    }

    fn label_nodes(&self, wanted: &NodeLabels) -> Result<Vec<String>, KubeError> {
        self.call(kindling_cluster::labels::apply_registered(
            &self.client,
            wanted,
        ))
    }

    fn write_record(&self, record: &BootstrapRecord) -> Result<(), KubeError> {
        self.call(bootstrap::write(&self.client, record, FIELD_MANAGER))
    }
}
