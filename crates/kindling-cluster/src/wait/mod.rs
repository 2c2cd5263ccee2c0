//! `kindling wait-for bootstrap-complete | install-complete`: polls the API (and kindling serve's
//! machine list) until the goal holds, within per-phase deadlines that stretch while the install
//! is visibly making progress.
//!
//! Every check is a read, so a re-run resumes wherever the install stands. Each phase has a
//! timeout; when it runs out while something still changed within the last quarter of it (a
//! machine's stage at kindling serve, the bootstrap record, the count of Ready nodes…), the
//! deadline moves a quarter-timeout past now, up to a cap (twice the timeout by default), and
//! the observer is told so.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kindling_config::{ClusterDescription, Role};
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::time::Instant;

use crate::bootstrap::{self, BootstrapStatus};
use crate::client::ClusterError;
use crate::progress::{MachineStage, ServerProgress};

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    BootstrapComplete,
    InstallComplete,
    /// One machine's Node (added on day 2): [`Wait::node`] names it.
    Node,
}

/// A stretch of the wait, with its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The API answers `/version`.
    Api,
    /// ConfigMap kube-system/bootstrap says complete, the bootstrap etcd member removed.
    Bootstrap,
    /// Every node Ready, the control plane and CoreDNS up, no inventory CSR pending.
    Install,
    /// One Node registered, Ready, with its labels.
    Node,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Api => "api",
            Phase::Bootstrap => "bootstrap",
            Phase::Install => "install",
            Phase::Node => "node",
        }
    }
}

/// Timeouts and the poll interval; tests make them short.
#[derive(Debug, Clone)]
pub struct Timing {
    pub poll: Duration,
    pub api: Duration,
    pub bootstrap: Duration,
    pub install: Duration,
    /// A phase's deadline may stretch to this many times its timeout while it makes progress.
    pub cap_factor: u32,
}

impl Default for Timing {
    /// openshift-install's bare-metal timeouts: 20 m for the API, 60 m for bootstrap, 60 m for
    /// the install.
    fn default() -> Timing {
        Timing {
            poll: Duration::from_secs(5),
            api: Duration::from_secs(20 * 60),
            bootstrap: Duration::from_secs(60 * 60),
            install: Duration::from_secs(60 * 60),
            cap_factor: 2,
        }
    }
}

/// What wait-for reports as it goes; `--json` prints each as one line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Report {
    #[serde(rename_all = "camelCase")]
    PhaseStarted {
        phase: Phase,
        timeout_secs: u64,
        cap_secs: u64,
        waiting_for: String,
    },
    /// What the phase waits on now (changes only).
    #[serde(rename_all = "camelCase")]
    Status { phase: Phase, message: String },
    /// A machine's last stage at kindling serve changed.
    #[serde(rename_all = "camelCase")]
    Machine {
        name: String,
        role: String,
        stage: Option<String>,
        time: Option<String>,
    },
    /// kindling serve did not answer (said once, until it answers again).
    #[serde(rename_all = "camelCase")]
    ServerUnreachable { url: String, error: String },
    /// The deadline moved because the phase is still making progress.
    #[serde(rename_all = "camelCase")]
    Extended {
        phase: Phase,
        /// Seconds since the phase started, at the new deadline.
        deadline_secs: u64,
        cap_secs: u64,
        because: String,
    },
    #[serde(rename_all = "camelCase")]
    PhaseDone {
        phase: Phase,
        elapsed_secs: u64,
        message: String,
    },
    #[serde(rename_all = "camelCase")]
    Failed { phase: Phase, message: String },
}

/// Receives reports; `tick` is called on every poll, for spinners.
pub trait Observer {
    fn report(&mut self, report: &Report);
    fn tick(&mut self) {}
}

/// Why a wait ended without its goal.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The phase's deadline passed (after any extension).
    #[error("{}: {message}", phase.as_str())]
    TimedOut { phase: Phase, message: String },
    /// The cluster said it failed (the bootstrap record's status `failed`).
    #[error("{}: {message}", phase.as_str())]
    Failed { phase: Phase, message: String },
}

impl WaitError {
    pub fn phase(&self) -> Phase {
        match self {
            WaitError::TimedOut { phase, .. } | WaitError::Failed { phase, .. } => *phase,
        }
    }
}

/// A phase's deadline, stretched while progress continues.
#[derive(Debug, Clone)]
pub struct Deadline {
    start: Instant,
    timeout: Duration,
    cap: Duration,
    deadline: Instant,
    last_progress: Option<Instant>,
}

/// What a deadline says at a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Running,
    /// Moved; the new deadline, measured from the phase's start.
    Extended(Duration),
    Expired,
}

impl Deadline {
    pub fn new(start: Instant, timeout: Duration, cap_factor: u32) -> Deadline {
        Deadline {
            start,
            timeout,
            cap: timeout * cap_factor.max(1),
            deadline: start + timeout,
            last_progress: None,
        }
    }

    /// How far past now the deadline moves when progress was seen within that long.
    fn window(&self) -> Duration {
        self.timeout / 4
    }

    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Called on every poll: `progressed` says whether anything changed since the last one.
    pub fn check(&mut self, now: Instant, progressed: bool) -> Verdict {
        if progressed {
            self.last_progress = Some(now);
        }
        if now < self.deadline {
            return Verdict::Running;
        }
        let hard_stop = self.start + self.cap;
        let recent = self
            .last_progress
            .is_some_and(|at| now.saturating_duration_since(at) <= self.window());
        if recent && now < hard_stop {
            self.deadline = (now + self.window()).min(hard_stop);
            return Verdict::Extended(self.deadline - self.start);
        }
        Verdict::Expired
    }
}

/// A wait: the cluster, where kindling serve is, and the timing.
pub struct Wait<'a> {
    pub client: kube::Client,
    pub description: &'a ClusterDescription,
    /// The API's URL, as shown to the user (the kubeconfig's server).
    pub api_url: String,
    /// kindling serve, for machine stages; `None` to skip them.
    pub server: Option<ServerProgress>,
    pub timing: Timing,
    /// The id of the bootstrap token kubelets joined with: its Secret is deleted once the
    /// install is complete, as nothing may join with it after.
    pub join_token_id: Option<String>,
    /// The machine [`Goal::Node`] waits for.
    pub node: Option<String>,
}

/// What the install phase found missing; empty when done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct InstallState {
    /// Inventory machines (no bootstrap) that are not Ready Nodes, with why.
    nodes: Vec<(String, String)>,
    /// Control-plane mirror pods not Ready: (master, pod).
    pods: Vec<(String, String)>,
    coredns: Option<String>,
    /// Pending CSRs of inventory machines: (csr, machine).
    csrs: Vec<(String, String)>,
    ready_nodes: usize,
    expected_nodes: usize,
}

impl InstallState {
    fn done(&self) -> bool {
        self.nodes.is_empty()
            && self.pods.is_empty()
            && self.coredns.is_none()
            && self.csrs.is_empty()
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{}/{} nodes Ready",
            self.ready_nodes, self.expected_nodes
        )];
        if let Some((name, why)) = self.nodes.first() {
            parts.push(format!("{name} {why}"));
        }
        if !self.pods.is_empty() {
            let names: Vec<&str> = self.pods.iter().map(|(_, p)| p.as_str()).collect();
            parts.push(format!(
                "control plane pods not Ready: {}",
                names.join(", ")
            ));
        }
        if let Some(why) = &self.coredns {
            parts.push(format!("CoreDNS {why}"));
        }
        if !self.csrs.is_empty() {
            let names: Vec<String> = self
                .csrs
                .iter()
                .map(|(c, m)| format!("{c} ({m})"))
                .collect();
            parts.push(format!(
                "pending CSRs: {} (kindling approve-csrs)",
                names.join(", ")
            ));
        }
        parts.join("; ")
    }
}

pub use crate::health::CONTROL_PLANE;

/// What one poll of a phase found.
enum Poll {
    Done(String),
    /// Not yet: what it waits on, and the machines it waits on (to name their last stage).
    Waiting(String, Vec<String>),
    /// The cluster says it failed.
    Failed(String),
}

impl Wait<'_> {
    /// Waits for `goal`; the phases run in order, each with its own deadline.
    pub async fn run(&self, goal: Goal, observer: &mut dyn Observer) -> Result<(), WaitError> {
        let mut machines = Machines::default();
        self.phase(Phase::Api, observer, &mut machines).await?;
        match goal {
            Goal::BootstrapComplete => self.phase(Phase::Bootstrap, observer, &mut machines).await,
            Goal::InstallComplete => {
                self.phase(Phase::Install, observer, &mut machines).await?;
                self.delete_join_token().await
            }
            Goal::Node => self.phase(Phase::Node, observer, &mut machines).await,
        }
    }

    /// Deletes the bootstrap token's Secret (gone already is fine): with it, anyone could get a
    /// client certificate for an inventory machine that has not joined.
    async fn delete_join_token(&self) -> Result<(), WaitError> {
        let Some(id) = &self.join_token_id else {
            return Ok(());
        };
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), "kube-system");
        let name = format!("bootstrap-token-{id}");
        match secrets.delete(&name, &Default::default()).await {
            Ok(_) => {
                tracing::info!(
                    "deleted Secret kube-system/{name}: kubelets can no longer join with the bootstrap token"
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(WaitError::Failed {
                phase: Phase::Install,
                message: ClusterError::Api {
                    action: format!(
                        "the install is complete, but deleting Secret kube-system/{name} failed; delete it by hand"
                    ),
                    error: e,
                }
                .to_string(),
            }),
        }
    }

    fn timeout(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Api => self.timing.api,
            Phase::Bootstrap => self.timing.bootstrap,
            Phase::Install | Phase::Node => self.timing.install,
        }
    }

    async fn phase(
        &self,
        phase: Phase,
        observer: &mut dyn Observer,
        machines: &mut Machines,
    ) -> Result<(), WaitError> {
        let start = Instant::now();
        let mut deadline = Deadline::new(start, self.timeout(phase), self.timing.cap_factor);
        observer.report(&Report::PhaseStarted {
            phase,
            timeout_secs: self.timeout(phase).as_secs(),
            cap_secs: deadline.cap().as_secs(),
            waiting_for: match phase {
                Phase::Api => format!("the API ({}) to answer /version", self.api_url),
                Phase::Bootstrap => format!(
                    "ConfigMap {}/{} to say status complete, the bootstrap etcd member removed",
                    bootstrap::NAMESPACE,
                    bootstrap::NAME
                ),
                Phase::Install => {
                    "every node Ready, the control plane and CoreDNS up, no inventory CSR pending"
                        .into()
                }
                Phase::Node => format!(
                    "Node {} to register and be Ready with its labels",
                    self.node.as_deref().unwrap_or_default()
                ),
            },
        });
        let mut last_status = String::new();
        let mut last_change = None::<String>;
        loop {
            let poll_budget = self.timing.poll.max(Duration::from_secs(5));
            let polled = tokio::time::timeout(poll_budget, self.poll(phase))
                .await
                .unwrap_or_else(|_| {
                    Ok(Poll::Waiting(
                        format!("the API did not answer within {}s", poll_budget.as_secs()),
                        Vec::new(),
                    ))
                });
            let polled = match polled {
                Ok(p) => p,
                Err(e) => Poll::Waiting(
                    e.unreachable(&self.api_url)
                        .unwrap_or_else(|| e.to_string()),
                    Vec::new(),
                ),
            };
            let moved = self.refresh_machines(machines, observer).await;
            let status = match polled {
                Poll::Done(message) => {
                    observer.report(&Report::PhaseDone {
                        phase,
                        elapsed_secs: start.elapsed().as_secs(),
                        message,
                    });
                    return Ok(());
                }
                Poll::Failed(message) => {
                    let message = format!("{message}{}", self.stuck_note(phase, machines));
                    observer.report(&Report::Failed {
                        phase,
                        message: message.clone(),
                    });
                    return Err(WaitError::Failed { phase, message });
                }
                Poll::Waiting(status, waiting_on) => {
                    machines.waiting_on = waiting_on;
                    status
                }
            };
            // An error text from a dead API is not progress; a changed condition is.
            let status_changed = status != last_status;
            if status_changed {
                observer.report(&Report::Status {
                    phase,
                    message: status.clone(),
                });
                last_status = status.clone();
            }
            let progressed = moved.is_some() || (status_changed && phase != Phase::Api);
            if let Some(what) = moved {
                last_change = Some(what);
            } else if status_changed && phase != Phase::Api {
                last_change = Some(status.clone());
            }
            match deadline.check(Instant::now(), progressed) {
                Verdict::Running => {}
                Verdict::Extended(to) => observer.report(&Report::Extended {
                    phase,
                    deadline_secs: to.as_secs(),
                    cap_secs: deadline.cap().as_secs(),
                    because: last_change.clone().unwrap_or_default(),
                }),
                Verdict::Expired => {
                    let message = format!(
                        "not done after {}: {status}{}",
                        human(start.elapsed()),
                        self.stuck_note(phase, machines)
                    );
                    observer.report(&Report::Failed {
                        phase,
                        message: message.clone(),
                    });
                    return Err(WaitError::TimedOut { phase, message });
                }
            }
            observer.tick();
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    async fn poll(&self, phase: Phase) -> Result<Poll, ClusterError> {
        match phase {
            Phase::Node => self.poll_node().await,
            Phase::Api => Ok(match crate::client::server_version(&self.client).await {
                Ok(version) => Poll::Done(format!("the API answers ({version})")),
                Err(e) => Poll::Waiting(
                    e.unreachable(&self.api_url)
                        .unwrap_or_else(|| e.to_string()),
                    Vec::new(),
                ),
            }),
            Phase::Bootstrap => Ok(match bootstrap::read(&self.client).await? {
                None => Poll::Waiting(
                    format!(
                        "ConfigMap {}/{} does not exist yet: the bootstrap agent has not written it",
                        bootstrap::NAMESPACE,
                        bootstrap::NAME
                    ),
                    Vec::new(),
                ),
                Some(record) if record.is_complete() => Poll::Done(format!(
                    "bootstrap complete; etcd members: {}",
                    record.etcd_members.join(", ")
                )),
                Some(record) if record.status == BootstrapStatus::Failed => Poll::Failed(format!(
                    "the bootstrap agent failed at stage {:?}: {}",
                    record.stage, record.message
                )),
                Some(record) => {
                    let mut text = format!(
                        "agent stage {:?} ({})",
                        record.stage,
                        record.status.as_str()
                    );
                    if !record.message.is_empty() {
                        text.push_str(&format!(": {}", record.message));
                    }
                    if !record.etcd_members.is_empty() {
                        text.push_str(&format!(
                            "; etcd members: {}",
                            record.etcd_members.join(",")
                        ));
                    }
                    if record.status == BootstrapStatus::Complete {
                        text.push_str(
                            "; status complete but bootstrapMemberRemoved is not \"true\"",
                        );
                    }
                    Poll::Waiting(text, Vec::new())
                }
            }),
            Phase::Install => {
                let state = self.install_state().await?;
                Ok(if state.done() {
                    Poll::Done(format!(
                        "{} nodes Ready, the control plane and CoreDNS up, no CSR pending",
                        state.ready_nodes
                    ))
                } else {
                    let waiting_on = state.nodes.iter().map(|(n, _)| n.clone()).take(1).collect();
                    Poll::Waiting(state.summary(), waiting_on)
                })
            }
        }
    }

    async fn install_state(&self) -> Result<InstallState, ClusterError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), "kube-system");
        let csrs: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let node_ready = crate::health::node_readiness(&self.client).await?;
        let mut state = InstallState::default();
        for m in self
            .description
            .inventory
            .machines
            .iter()
            .filter(|m| m.role != Role::Bootstrap)
        {
            state.expected_nodes += 1;
            match node_ready.get(&m.name) {
                Some(true) => state.ready_nodes += 1,
                Some(false) => state
                    .nodes
                    .push((m.name.clone(), "is registered but not Ready".into())),
                None => state
                    .nodes
                    .push((m.name.clone(), "is not a Node yet".into())),
            }
        }
        let masters: Vec<&str> = self
            .description
            .inventory
            .with_role(Role::Master)
            .map(|m| m.name.as_str())
            .collect();
        for pod in crate::health::control_plane_pods(&self.client, &masters).await? {
            if !pod.ready {
                state.pods.push((pod.node, pod.pod));
            }
        }
        state.coredns = match deployments
            .get_opt("coredns")
            .await
            .map_err(|e| ClusterError::api("reading Deployment kube-system/coredns", e))?
        {
            None => Some("is not deployed yet (Deployment kube-system/coredns)".into()),
            Some(d) => {
                let status = d.status.unwrap_or_default();
                let available = status.conditions.as_ref().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                }) || status.available_replicas.unwrap_or(0) > 0;
                (!available).then(|| "has no available replica yet".to_string())
            }
        };
        let csr_list = csrs
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::api("listing CertificateSigningRequests", e))?;
        let inventory: std::collections::BTreeSet<&str> = self
            .description
            .inventory
            .machines
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        for csr in &csr_list.items {
            let view = crate::csr::Csr::from_api(csr);
            if view.decided.is_some() {
                continue;
            }
            if let Some(node) = crate::csr::subject_node(&view.request)
                && inventory.contains(node.as_str())
            {
                state.csrs.push((view.name, node));
            }
        }
        Ok(state)
    }

    /// Reads kindling serve's machine list; reports changed machines, and the server going
    /// away once. Returns what changed, if anything did.
    async fn refresh_machines(
        &self,
        machines: &mut Machines,
        observer: &mut dyn Observer,
    ) -> Option<String> {
        let server = self.server.as_ref()?;
        match server.machines().await {
            Ok(list) => {
                machines.unreachable = false;
                let mut changed = None;
                for m in list {
                    let known = machines.stages.get(&m.name);
                    if known.is_some_and(|k| k.stage == m.stage && k.time == m.time) {
                        continue;
                    }
                    let first_sight = known.is_none() && m.stage.is_none();
                    if !first_sight {
                        changed = Some(format!(
                            "{} reached stage {}",
                            m.name,
                            m.stage.as_deref().unwrap_or("-")
                        ));
                    }
                    observer.report(&Report::Machine {
                        name: m.name.clone(),
                        role: m.role.clone(),
                        stage: m.stage.clone(),
                        time: m.time.clone(),
                    });
                    machines.stages.insert(m.name.clone(), m);
                }
                // The first read shows where things stand; it is not progress.
                if !machines.seen {
                    machines.seen = true;
                    return None;
                }
                changed
            }
            Err(error) => {
                if !machines.unreachable {
                    machines.unreachable = true;
                    observer.report(&Report::ServerUnreachable {
                        url: format!("{}/api/v1/machines", server.url),
                        error,
                    });
                }
                None
            }
        }
    }

    /// "; <machine> last seen at stage <s> (time)", for the machine the phase waits on.
    /// Whether the machine [`Wait::node`] names has registered, is Ready, and has the labels
    /// kindling gives it (its role, the inventory's).
    async fn poll_node(&self) -> Result<Poll, ClusterError> {
        let name = self.node.clone().unwrap_or_default();
        let waiting = |why: String| Poll::Waiting(why, vec![name.clone()]);
        let Some(machine) = self
            .description
            .inventory
            .machines
            .iter()
            .find(|m| m.name == name)
        else {
            return Ok(Poll::Failed(format!(
                "no machine named {name} in inventory.yaml"
            )));
        };
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let node = nodes
            .get_opt(&name)
            .await
            .map_err(|e| ClusterError::api(format!("reading Node {name}"), e))?;
        let Some(node) = node else {
            return Ok(waiting(format!("{name} has not registered its Node yet")));
        };
        let config = crate::node_config::NodeConfig::of(&node);
        if !config.ready {
            return Ok(waiting(format!("{name} registered, not Ready yet")));
        }
        let has = node.metadata.labels.unwrap_or_default();
        let wanted = kindling_assets::manifests::node_labels(self.description, machine);
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|(k, v)| has.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        if let Some(label) = missing.first() {
            return Ok(waiting(format!(
                "{name} is Ready, without its label {label} yet (kindling approve-csrs, or serve --approve-csrs, gives it)"
            )));
        }
        Ok(Poll::Done(format!("{name} is Ready, with its labels")))
    }

    fn stuck_note(&self, phase: Phase, machines: &Machines) -> String {
        let inventory = &self.description.inventory;
        let who: Vec<&str> = match phase {
            Phase::Api | Phase::Bootstrap => inventory
                .with_role(Role::Bootstrap)
                .chain(inventory.with_role(Role::Master))
                .take(1)
                .map(|m| m.name.as_str())
                .collect(),
            Phase::Install | Phase::Node => {
                machines.waiting_on.iter().map(String::as_str).collect()
            }
        };
        let mut notes = Vec::new();
        for name in who {
            notes.push(match machines.stages.get(name) {
                Some(MachineStage {
                    stage: Some(stage),
                    time,
                    ..
                }) => format!(
                    "{name} last seen by kindling serve at stage {stage}{}",
                    time.as_deref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                ),
                Some(_) => format!("{name} has not contacted kindling serve"),
                None if machines.stages.is_empty() => continue,
                None => format!("{name} is unknown to kindling serve"),
            });
        }
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    }
}

/// kindling serve's view of the machines, as last read.
#[derive(Debug, Default)]
struct Machines {
    stages: BTreeMap<String, MachineStage>,
    unreachable: bool,
    seen: bool,
    waiting_on: Vec<String>,
}

/// `1h5m`, `20m`, `3s`, `250ms`: how durations are shown and read.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Reads `90s`, `20m`, `1h30m`, `250ms` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("an empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 90s, 20m or 1h30m"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
