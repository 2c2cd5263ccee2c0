//! `kindling agent bootstrap`: the hand-over from the temporary control plane to the masters,
//! as stages that each leave a marker `<state dir>/<stage>.done`. A restarted agent skips the
//! stages with a marker, and every stage is safe to run again after a crash midway (applying is
//! server-side apply; removing a member that is gone is done; moving pods that moved is done).
//!
//! The hand-over rule: the bootstrap etcd member is removed only once every master is a started
//! etcd member that answers its health check, and at least two masters' apiservers are Ready
//! (one with a single master). The bootstrap machine then says so in ConfigMap
//! `kube-system/bootstrap` (through the masters' API, since its own apiserver loses its etcd)
//! and stops its temporary control plane.
//!
//! Without a bootstrap machine, the first master runs these stages: there is no member to
//! remove (the record still says `bootstrapMemberRemoved: "true"`: nothing is left to remove),
//! and its control plane is the real one, so it is not stopped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kindling_etcd::Membership;

use crate::kube::{BootstrapRecord, BootstrapStatus, Kubernetes, NodeLabels};
use crate::record::Journal;
use crate::{AgentError, EtcdAccess, io_error};

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The local apiserver answers.
    WaitApiserver,
    /// The cluster manifests are applied: namespaces, then CRDs, then the rest.
    ApplyManifests,
    /// Every master is a started etcd member.
    WaitMasters,
    /// The bootstrap etcd member is removed, by the hand-over rule.
    RemoveBootstrapMember,
    /// ConfigMap `kube-system/bootstrap` says `status: complete`.
    MarkComplete,
    /// The bootstrap static pods are moved out of the static pods directory.
    StopTemporaryControlPlane,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::WaitApiserver,
        Stage::ApplyManifests,
        Stage::WaitMasters,
        Stage::RemoveBootstrapMember,
        Stage::MarkComplete,
        Stage::StopTemporaryControlPlane,
    ];

    /// The stage's name in markers, records and events.
    pub fn name(self) -> &'static str {
        match self {
            Stage::WaitApiserver => "wait-apiserver",
            Stage::ApplyManifests => "apply-manifests",
            Stage::WaitMasters => "wait-masters",
            Stage::RemoveBootstrapMember => "remove-bootstrap-member",
            Stage::MarkComplete => "bootstrap-complete",
            Stage::StopTemporaryControlPlane => "stop-temporary-control-plane",
        }
    }

    /// The stage with this name.
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where a test hook stops the agent (it then sleeps until killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// After the stage's work, before its marker: the worst moment to crash.
    Before(Stage),
    /// After the stage's marker.
    After(Stage),
}

/// What the bootstrap stages need.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    /// Markers (`/opt/kindling`); stopped static pods go to `stopped-static-pods/` under it.
    pub state_dir: PathBuf,
    /// The cluster manifests (`/opt/kindling/manifests`), applied in file-name order.
    pub manifests_dir: PathBuf,
    /// The kubelet's static pods directory (`/etc/kubernetes/manifests`).
    pub static_pods_dir: PathBuf,
    /// etcd: the local member first, then the masters' client URLs.
    pub etcd: EtcdAccess,
    /// The masters' etcd member names.
    pub masters: Vec<String>,
    /// The bootstrap machine's etcd member name; None when the first master bootstraps.
    pub bootstrap_member: Option<String>,
    /// The labels the masters' Nodes must have and their kubelets may not set on themselves
    /// (their role and the inventory's): given as each Node registers.
    pub node_labels: NodeLabels,
    /// Each stage gives up after this long (systemd starts the agent again).
    pub stage_timeout: Duration,
    /// Time between checks.
    pub poll: Duration,
    pub pause: Option<Pause>,
}

/// The bootstrap stages over two API handles: `local` (this machine's apiserver) and `cluster`
/// (the masters' apiservers through api-int), used once the bootstrap member is gone.
pub struct BootstrapAgent<'a> {
    pub request: &'a BootstrapRequest,
    pub local: &'a dyn Kubernetes,
    pub cluster: &'a dyn Kubernetes,
    pub journal: &'a Journal,
}

/// The masters' labels from `path` (JSON: node name → labels), as `create` writes them into
/// the bootstrap machine's config; none when the file is absent (a config made before it was).
pub fn read_node_labels(path: &Path) -> Result<NodeLabels, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(
                "no {}: the masters' nodes are labelled by approve-csrs only",
                path.display()
            );
            return Ok(NodeLabels::new());
        }
        Err(e) => return Err(io_error("reading", path)(e)),
    };
    serde_json::from_str(&text).map_err(|e| AgentError::Manifest {
        path: path.to_path_buf(),
        reason: format!("not a map of node names to labels: {e}"),
    })
}

/// The marker file of a stage.
pub fn marker(state_dir: &Path, stage: Stage) -> PathBuf {
    state_dir.join(format!("{}.done", stage.name()))
}

impl BootstrapAgent<'_> {
    /// Runs every stage without a marker, in order.
    pub fn run(&self) -> Result<(), AgentError> {
        let state = &self.request.state_dir;
        std::fs::create_dir_all(state).map_err(io_error("creating", state))?;
        for stage in Stage::ALL {
            let marker = marker(state, stage);
            if marker.exists() {
                self.journal
                    .skipped(stage.name(), "done earlier (marker)")?;
                continue;
            }
            self.journal.start(stage.name())?;
            let result = self.run_stage(stage);
            self.journal
                .end(stage.name(), result.as_ref().map(|_| ()))?;
            if let Err(e) = &result {
                // wait-for ends on `failed`; a restarted agent says `progressing` again.
                let api = if stage <= Stage::RemoveBootstrapMember {
                    self.local
                } else {
                    self.cluster
                };
                self.progress(api, stage, BootstrapStatus::Failed, &e.to_string());
            }
            let note = result?;
            self.pause_if(Pause::Before(stage));
            let text = serde_json::json!({ "time": crate::now_rfc3339(), "note": note });
            crate::write_atomic(&marker, format!("{text}\n").as_bytes(), 0o644)?;
            self.pause_if(Pause::After(stage));
        }
        Ok(())
    }

    fn pause_if(&self, here: Pause) {
        if self.request.pause == Some(here) {
            tracing::warn!("pausing at {here:?} (test hook); waiting to be killed");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }

    /// Runs one stage; Ok carries a note for its marker.
    fn run_stage(&self, stage: Stage) -> Result<String, AgentError> {
        if stage <= Stage::RemoveBootstrapMember {
            self.progress(self.local, stage, BootstrapStatus::Progressing, "running");
        }
        match stage {
            Stage::WaitApiserver => {
                let version = self.wait("the local apiserver to answer", || {
                    self.local
                        .server_version()
                        .map_err(|e| e.to_string())
                        .map(Some)
                })?;
                Ok(format!("apiserver {version}"))
            }
            Stage::ApplyManifests => self.apply_manifests(),
            Stage::WaitMasters => {
                let members = self.wait("every master to join etcd", || {
                    self.label_masters(self.local);
                    let members = self.members(&self.request.etcd.endpoints)?;
                    let missing = self.missing_masters(&members);
                    if missing.is_empty() {
                        Ok(Some(members))
                    } else {
                        Err(format!("not yet started members: {}", missing.join(", ")))
                    }
                })?;
                Ok(format!("members: {}", names(&members).join(",")))
            }
            Stage::RemoveBootstrapMember => self.remove_bootstrap_member(),
            Stage::MarkComplete => {
                let endpoints = self.endpoints_after_removal();
                let members = self.wait("the etcd member list", || {
                    self.members(&endpoints).map(Some)
                })?;
                let record = BootstrapRecord {
                    status: BootstrapStatus::Complete,
                    stage: stage.name().into(),
                    message: "the masters run the control plane; the bootstrap machine can go"
                        .into(),
                    etcd_members: names(&members),
                    bootstrap_member_removed: true,
                    updated: String::new(),
                };
                self.wait("ConfigMap kube-system/bootstrap to be written", || {
                    self.cluster.write_record(&record).map(Some)
                })?;
                Ok("status: complete".into())
            }
            Stage::StopTemporaryControlPlane => self.stop_temporary_control_plane(),
        }
    }

    /// Best effort, on every check while the masters come up: their Nodes get kindling's labels
    /// as they register. A failure is tried again at the next check.
    fn label_masters(&self, api: &dyn Kubernetes) {
        if self.request.node_labels.is_empty() {
            return;
        }
        if let Err(e) = api.label_nodes(&self.request.node_labels) {
            tracing::debug!("labelling the masters' nodes: {e}");
        }
    }

    /// Best effort: the record says which stage runs, or why it failed.
    fn progress(&self, api: &dyn Kubernetes, stage: Stage, status: BootstrapStatus, message: &str) {
        let record = BootstrapRecord {
            status,
            stage: stage.name().into(),
            message: message.into(),
            etcd_members: Vec::new(),
            bootstrap_member_removed: false,
            updated: String::new(),
        };
        if let Err(e) = api.write_record(&record) {
            tracing::debug!("writing the bootstrap record: {e}");
        }
    }

    /// Calls `check` until it gives Some, for at most the stage timeout.
    fn wait<T>(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<Option<T>, String>,
    ) -> Result<T, AgentError> {
        let deadline = Instant::now() + self.request.stage_timeout;
        let mut last = String::from("not checked yet");
        loop {
            match check() {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(AgentError::Timeout {
                    what: what.to_string(),
                    within: self.request.stage_timeout,
                    last,
                });
            }
            tracing::info!("waiting for {what}: {last}");
            std::thread::sleep(self.request.poll);
        }
    }

    fn members(&self, endpoints: &[String]) -> Result<Membership, String> {
        self.request
            .etcd
            .client(endpoints)
            .and_then(|c| Ok(c.member_list()?))
            .map_err(|e| e.to_string())
    }

    fn missing_masters(&self, members: &Membership) -> Vec<String> {
        self.request
            .masters
            .iter()
            .filter(|m| members.by_name(m).is_none())
            .cloned()
            .collect()
    }

    fn apply_manifests(&self) -> Result<String, AgentError> {
        let dir = &self.request.manifests_dir;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_error("listing", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        files.sort();
        let mut objects = Vec::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(io_error("reading", path))?;
            let name = path.display().to_string();
            let docs = kindling_cluster::parse_manifests(&name, &text).map_err(|e| {
                AgentError::Manifest {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            objects.extend(docs.into_iter().map(|d| (path.clone(), d)));
        }
        // A stable sort: within a rank, file-name and document order.
        objects.sort_by_key(|(_, o)| apply_rank(o));
        for (path, object) in &objects {
            let what = format!(
                "{} {} from {}",
                object["kind"].as_str().unwrap_or("?"),
                object
                    .pointer("/metadata/name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?"),
                path.display()
            );
            // A custom resource fails until its CRD is established: retried.
            self.wait(&format!("{what} to be applied"), || {
                self.local.apply(object).map(Some)
            })?;
        }
        Ok(format!(
            "{} objects from {} files",
            objects.len(),
            files.len()
        ))
    }

    fn remove_bootstrap_member(&self) -> Result<String, AgentError> {
        let masters: BTreeSet<&str> = self.request.masters.iter().map(String::as_str).collect();
        let needed = masters.len().min(2);
        let client = self.request.etcd.client(&self.request.etcd.endpoints)?;
        let bootstrap = self.request.bootstrap_member.as_deref();
        let outcome = self.wait("the hand-over rule to hold", || {
            let members = self.members(&self.endpoints_after_removal())?;
            let Some(bootstrap) = bootstrap else {
                return self
                    .handover_ready(&client, &members, &masters, needed)
                    .map(|()| Some("no bootstrap member: nothing to remove".to_string()));
            };
            let Some(member) = members.by_name(bootstrap) else {
                return Ok(Some(format!(
                    "{bootstrap} is not a member (removed earlier)"
                )));
            };
            self.handover_ready(&client, &members, &masters, needed)?;
            // Through the masters: the bootstrap member stops serving once removed.
            let through: Vec<String> = master_client_urls(&members, &masters);
            let masters_client = self
                .request
                .etcd
                .client(&through)
                .map_err(|e| e.to_string())?;
            let after = masters_client
                .member_remove(member.id)
                .map_err(|e| format!("member remove {bootstrap}: {e}"))?;
            Ok(Some(format!(
                "removed {bootstrap} ({}); members: {}",
                member.id,
                names(&after).join(",")
            )))
        })?;
        // Where the next stages find etcd once the bootstrap member is gone.
        if let Ok(members) = self.members(&self.endpoints_after_removal()) {
            let urls = master_client_urls(&members, &masters);
            let path = self.request.state_dir.join("master-endpoints");
            crate::write_atomic(&path, format!("{}\n", urls.join(",")).as_bytes(), 0o644)?;
        }
        Ok(outcome)
    }

    /// Ok when every master member is healthy and enough master apiservers are Ready.
    fn handover_ready(
        &self,
        client: &kindling_etcd::Client,
        members: &Membership,
        masters: &BTreeSet<&str>,
        needed: usize,
    ) -> Result<(), String> {
        let missing = self.missing_masters(members);
        if !missing.is_empty() {
            return Err(format!("not yet started members: {}", missing.join(", ")));
        }
        let unhealthy: Vec<&str> = members
            .members
            .iter()
            .filter(|m| masters.contains(m.name.as_str()) && !client.is_healthy(m))
            .map(|m| m.name.as_str())
            .collect();
        if !unhealthy.is_empty() {
            return Err(format!(
                "unhealthy master members: {}",
                unhealthy.join(", ")
            ));
        }
        self.label_masters(self.local);
        let ready = self
            .local
            .ready_apiservers(&self.request.masters)
            .or_else(|local| {
                self.cluster
                    .ready_apiservers(&self.request.masters)
                    .map_err(|cluster| {
                        format!("ready apiservers: {local}; through api-int: {cluster}")
                    })
            })?;
        let ready: BTreeSet<&str> = ready
            .iter()
            .map(String::as_str)
            .filter(|n| masters.contains(n))
            .collect();
        if ready.len() < needed {
            return Err(format!(
                "{} of {needed} master apiservers Ready ({})",
                ready.len(),
                ready.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// The configured endpoints, after the masters' client URLs once they are known.
    fn endpoints_after_removal(&self) -> Vec<String> {
        let path = self.request.state_dir.join("master-endpoints");
        let mut endpoints: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .split(',')
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        for e in &self.request.etcd.endpoints {
            if !endpoints.contains(e) {
                endpoints.push(e.clone());
            }
        }
        endpoints
    }

    fn stop_temporary_control_plane(&self) -> Result<String, AgentError> {
        if self.request.bootstrap_member.is_none() {
            return Ok("no bootstrap machine: this control plane is the real one".into());
        }
        let from = &self.request.static_pods_dir;
        let to = self.request.state_dir.join("stopped-static-pods");
        std::fs::create_dir_all(&to).map_err(io_error("creating", &to))?;
        let mut moved = Vec::new();
        let entries = match std::fs::read_dir(from) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok("no static pods left".into());
            }
            Err(e) => return Err(io_error("listing", from)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io_error("listing", from))?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            let target = to.join(name);
            std::fs::rename(&path, &target).map_err(io_error("moving", &path))?;
            moved.push(name.to_string_lossy().into_owned());
        }
        moved.sort();
        Ok(format!(
            "moved {} to {}",
            if moved.is_empty() {
                "nothing".to_string()
            } else {
                moved.join(", ")
            },
            to.display()
        ))
    }
}

/// The order objects are applied in: namespaces, then CRDs, then the rest (a stable sort keeps
/// file and document order within each). A namespaced object needs its namespace, and a custom
/// resource its definition.
fn apply_rank(object: &serde_json::Value) -> u8 {
    match object.get("kind").and_then(serde_json::Value::as_str) {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    }
}

/// The started members' names, sorted (etcd lists members by ID).
fn names(members: &Membership) -> Vec<String> {
    let mut names: Vec<String> = members
        .members
        .iter()
        .filter(|m| m.started())
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    names
}

fn master_client_urls(members: &Membership, masters: &BTreeSet<&str>) -> Vec<String> {
    members
        .members
        .iter()
        .filter(|m| masters.contains(m.name.as_str()))
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::Value;

    use super::*;
    use crate::kube::KubeError;

    /// An API that records what is applied, and serves kind Widget only once its CRD is applied.
    #[derive(Default)]
    struct Recorder {
        applied: RefCell<Vec<String>>,
        refusals: RefCell<usize>,
    }

    impl Kubernetes for Recorder {
        fn server_version(&self) -> Result<String, KubeError> {
            Ok("v1.34.1".into())
        }
        fn apply(&self, object: &Value) -> Result<(), KubeError> {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let crd_applied = self
                .applied
                .borrow()
                .iter()
                .any(|k| k == "CustomResourceDefinition");
            if kind == "Widget" && !crd_applied {
                *self.refusals.borrow_mut() += 1;
                return Err("the server could not find the requested resource".into());
            }
            self.applied.borrow_mut().push(kind);
            Ok(())
        }
        fn ready_apiservers(&self, _: &[String]) -> Result<Vec<String>, KubeError> {
            Ok(Vec::new())
        }
        fn label_nodes(&self, _: &NodeLabels) -> Result<Vec<String>, KubeError> {
            Ok(Vec::new())
        }
        fn write_record(&self, _: &BootstrapRecord) -> Result<(), KubeError> {
            Ok(())
        }
    }

    #[test]
    fn namespaces_then_crds_then_the_rest_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("10-a.yaml"),
            "kind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\nkind: Widget\nmetadata: {name: w}\n",
        )
        .unwrap();
        std::fs::write(
            manifests.join("20-b.yaml"),
            "kind: Namespace\nmetadata: {name: x}\n---\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n",
        )
        .unwrap();
        std::fs::write(manifests.join("README"), "not a manifest").unwrap();
        let request = BootstrapRequest {
            state_dir: dir.path().join("state"),
            manifests_dir: manifests,
            static_pods_dir: dir.path().join("pods"),
            etcd: EtcdAccess {
                endpoints: vec![],
                ca: PathBuf::new(),
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            masters: vec!["master0".into()],
            bootstrap_member: Some("bootstrap".into()),
            node_labels: NodeLabels::new(),
            stage_timeout: Duration::from_secs(5),
            poll: Duration::from_millis(10),
            pause: None,
        };
        let api = Recorder::default();
        let journal = Journal::new("bootstrap", &dir.path().join("log"), None).unwrap();
        let agent = BootstrapAgent {
            request: &request,
            local: &api,
            cluster: &api,
            journal: &journal,
        };
        let note = agent.apply_manifests().unwrap();
        assert_eq!(note, "4 objects from 2 files");
        assert_eq!(
            *api.applied.borrow(),
            [
                "Namespace",
                "CustomResourceDefinition",
                "ConfigMap",
                "Widget"
            ]
        );
        assert_eq!(*api.refusals.borrow(), 0);
    }

    #[test]
    fn stage_names_are_unique_and_parse_back() {
        let names: BTreeSet<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Stage::ALL.len());
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.name()), Some(stage));
        }
        assert_eq!(Stage::parse("nope"), None);
        assert!(Stage::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
