//! `kindling update`: moves a pool's machines to a rendering, a few at a time.
//!
//! For each machine, in turn: take one of the pool's reboot slots (the same slots Zincati's
//! FleetLock takes: [`crate::slots`], which also keeps the maintenance windows), cordon, drain
//! through the Eviction API, pin the machine to the rendering (so that `kindling serve` serves
//! it) and tell its Node (`kindling.dev/desired-rendering`), wait until its node agent says it
//! runs it and the Node is Ready, uncordon, give the slot back.
//!
//! - **Resumable.** Each machine's step is written to `.kindling/fleet/<pool>.update.json`
//!   before the next one starts, and every step is safe to do twice, so an update killed at any
//!   point (or a provisioning host that rebooted) goes on from where it was when run again.
//! - **Windows.** No machine starts outside the pool's windows; a machine that has started
//!   finishes.
//! - **Liveness is progress.** A machine whose drain, node agent or Node shows no change for
//!   `stall` halts the update, which names the machine and its step. Nothing times out while
//!   it moves.
//! - **Drift is never updated over.** A machine whose agent reports drift halts the update,
//!   unless `--revert-drift` asked its agent to put the rendering back first.
//! - **Masters** go one at a time, and the next starts only when every etcd member is healthy.
//! - **With the replicas' store** (`--store`), the progress is the store's, written only while
//!   the update holds its lease, and each pin is pushed as a revision (see [`Shared`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use kindling_assets::renderings::{PoolState, RenderingError};
use kindling_assets::{AtomicFiles, Mode, Storage};
use kindling_cluster::drain::{self, Evicted};
use kindling_cluster::node_config::{self, State};
use serde::{Deserialize, Serialize};

use crate::slots::{self, FLEET_DIR, Refusal, SlotsError};

/// Test hook: after a machine's step with this name is first written, sleep until killed.
pub const PAUSE_AFTER: &str = "KINDLING_UPDATE_PAUSE_AFTER";
/// Who holds the slots this takes.
pub const HOLDER: &str = "kindling update";

/// Why an update could not go on.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Rendering(#[from] RenderingError),
    #[error(transparent)]
    Slots(#[from] SlotsError),
    #[error(transparent)]
    Cluster(#[from] kindling_cluster::ClusterError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not an update kindling wrote: {message}; delete it to start the update again"
    )]
    Damaged { path: PathBuf, message: String },
    #[error("the pool {0} has no machines in inventory.yaml")]
    EmptyPool(String),
    #[error("the {pool} pool's update in the store: {message}")]
    Store { pool: String, message: String },
}

/// A machine's step in the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Not started.
    Waiting,
    /// Holds a slot and is cordoned: its pods are being evicted.
    Cordoned,
    /// Drained: it is being pinned to the rendering and told so.
    Drained,
    /// Told: its agent writes the rendering, maybe reboots; waiting for it to say so, Ready.
    Applying,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Waiting => "waiting",
            Step::Cordoned => "cordoned",
            Step::Drained => "drained",
            Step::Applying => "applying",
            Step::Done => "done",
        }
    }

    fn in_flight(self) -> bool {
        matches!(self, Step::Cordoned | Step::Drained | Step::Applying)
    }
}

/// One machine's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub step: Step,
    /// When something last changed for it (RFC 3339).
    pub last_progress: String,
    /// What was last seen: pods left, the agent's state.
    #[serde(default)]
    pub seen: String,
}

/// Why an update stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub machine: String,
    pub step: Step,
    pub reason: String,
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} halted the update at step {}: {}",
            self.machine,
            self.step.as_str(),
            self.reason
        )
    }
}

/// An update, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateState {
    pub pool: String,
    pub target: String,
    #[serde(default)]
    pub revert_drift: bool,
    #[serde(default)]
    pub paused: bool,
    pub machines: BTreeMap<String, Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
}

/// `.kindling/fleet/<pool>.update.json`.
pub fn state_path(dir: &Path, pool: &str) -> PathBuf {
    dir.join(FLEET_DIR).join(format!("{pool}.update.json"))
}

impl UpdateState {
    pub fn load(dir: &Path, pool: &str) -> Result<Option<UpdateState>, UpdateError> {
        let path = state_path(dir, pool);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| UpdateError::Damaged {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(UpdateError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), UpdateError> {
        let path = state_path(dir, &self.pool);
        let mut json = serde_json::to_vec_pretty(self).expect("an update serializes");
        json.push(b'\n');
        AtomicFiles
            .write(&path, &json, Mode::Public)
            .map_err(|source| UpdateError::Io {
                action: "writing",
                path,
                source,
            })
    }
}

/// The key of `pool`'s update in the store.
fn store_key(store: &kindling_store::Store, pool: &str) -> Vec<u8> {
    store.key(&format!("updates/{pool}"))
}

/// `pool`'s update where `home` keeps it.
pub async fn load(home: &slots::Home, pool: &str) -> Result<Option<UpdateState>, UpdateError> {
    let store = match home {
        slots::Home::Dir(dir) => return UpdateState::load(dir, pool),
        slots::Home::Store(store) => store,
    };
    let key = store_key(store, pool);
    let found = store
        .etcd()
        .get(&key)
        .await
        .map_err(|e| UpdateError::Store {
            pool: pool.to_string(),
            message: e.to_string(),
        })?;
    found
        .map(|kv| {
            serde_json::from_slice(&kv.value).map_err(|e| UpdateError::Damaged {
                path: PathBuf::from(format!(
                    "{} ({})",
                    String::from_utf8_lossy(&key),
                    store.describe()
                )),
                message: e.to_string(),
            })
        })
        .transpose()
}

/// Saves `state` where the request keeps it: in the store only while the update's lease holds.
async fn save(request: &UpdateRequest<'_>, state: &UpdateState) -> Result<(), UpdateError> {
    if let (slots::Home::Store(store), Some(shared)) = (&request.slots, &request.shared) {
        let json = serde_json::to_vec_pretty(state).expect("an update serializes");
        let txn = kindling_etcd::Txn {
            compare: vec![shared.held.clone()],
            success: vec![kindling_etcd::Op::put(store_key(store, &state.pool), json)],
            failure: Vec::new(),
        };
        let failed = |message: String| UpdateError::Store {
            pool: state.pool.clone(),
            message,
        };
        let written = store
            .etcd()
            .txn(&txn)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !written.succeeded {
            return Err(failed(
                "this update's lease ran out before the write (another kindling update may have \
                 taken over); nothing more was written"
                    .into(),
            ));
        }
    }
    state.save(&request.dir)
}

/// Pins `machine` to `target` in the pool's state (pushed to the store, with one).
async fn pin(request: &UpdateRequest<'_>, machine: &str, target: &str) -> Result<(), UpdateError> {
    let mut pool = PoolState::load(&request.dir, &request.pool)?;
    let before = pool.machines.get(machine).cloned();
    pool.pin(machine, target)?;
    if pool.machines.get(machine) == before.as_ref() {
        return Ok(());
    }
    pool.save(&request.dir, &AtomicFiles)?;
    publish(request).await
}

/// Pushes the asset directory when the update is the store's, so every replica has its pins.
async fn publish(request: &UpdateRequest<'_>) -> Result<(), UpdateError> {
    if let (slots::Home::Store(store), Some(shared)) = (&request.slots, &request.shared) {
        kindling_store::push(store, &request.dir, &shared.push)
            .await
            .map_err(|e| UpdateError::Store {
                pool: request.pool.clone(),
                message: format!("pushing the pool's pins: {e}"),
            })?;
    }
    Ok(())
}

/// What `kindling update` is asked.
pub struct UpdateRequest<'a> {
    pub dir: PathBuf,
    /// Where the pool's reboot slots are: shared with FleetLock. In the store, the update's
    /// progress is kept there too, and `shared` must be given.
    pub slots: slots::Home,
    /// For an update whose progress is in the store.
    pub shared: Option<Shared<'a>>,
    pub pool: String,
    /// The pool's machines, by name.
    pub members: Vec<String>,
    /// Masters: one at a time, etcd healthy before each.
    pub masters: bool,
    /// The rendering to move to; `None`: the pool's target.
    pub to: Option<String>,
    pub revert_drift: bool,
    /// No change for this long halts the update.
    pub stall: Duration,
    pub poll: Duration,
    /// Return once nothing is in flight and no machine may start now (outside the windows),
    /// rather than wait for the next window.
    pub stop_outside_window: bool,
    /// Whether every etcd member is healthy (masters only).
    pub etcd_healthy: Option<&'a dyn Fn() -> Result<(), String>>,
    /// Progress lines for the user.
    pub say: &'a dyn Fn(&str),
}

/// What an update run with `--store` holds: its progress is the store's `updates/<pool>` (and a
/// copy in the asset directory, for `kindling status` there), written only while the update's
/// lease is held, so that exactly one `kindling update` moves a pool; and each machine's pin is
/// pushed as a new revision, so that every replica serves it.
pub struct Shared<'a> {
    /// Holds while this update's lease does (see `kindling_store::election`).
    pub held: kindling_etcd::Compare,
    /// How the asset directory is pushed.
    pub push: kindling_store::PushOptions<'a>,
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Every machine runs the rendering.
    Done {
        target: String,
    },
    Halted(Halt),
    /// Paused (`--pause`), or outside the windows with `stop_outside_window`: nothing in flight.
    Waiting {
        reason: String,
    },
}

fn now_text() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn since(text: &str) -> Duration {
    text.parse::<Timestamp>()
        .ok()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t)).ok())
        .unwrap_or_default()
}

/// Runs (or resumes) the update of `request.pool` against the cluster `client`.
pub async fn run(
    request: &UpdateRequest<'_>,
    client: &kube::Client,
) -> Result<Finished, UpdateError> {
    let dir = request.dir.as_path();
    if request.members.is_empty() {
        return Err(UpdateError::EmptyPool(request.pool.clone()));
    }
    let mut pool = PoolState::load(dir, &request.pool)?;
    let target = match &request.to {
        Some(name) => {
            pool.check(name)?;
            if pool.target.as_deref() != Some(name) {
                let served = kindling_assets::renderings::served(dir)?;
                let members: Vec<&str> = request.members.iter().map(String::as_str).collect();
                pool.retarget(name, &members, &served)?;
                pool.save(dir, &AtomicFiles)?;
                publish(request).await?;
            }
            name.clone()
        }
        None => pool
            .target
            .clone()
            .ok_or_else(|| RenderingError::NoRendering {
                pool: request.pool.clone(),
            })?,
    };
    let mut state = match load(&request.slots, &request.pool).await? {
        Some(mut state) if state.target == target => {
            state.revert_drift |= request.revert_drift;
            state.halted = None;
            state
        }
        // A new target: machines that finished the old one start again; those in flight (they
        // hold a slot and are cordoned) go on from their drain to the new target.
        previous => UpdateState {
            pool: request.pool.clone(),
            target: target.clone(),
            revert_drift: request.revert_drift,
            paused: false,
            machines: previous
                .map(|p| p.machines)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, p)| p.step.in_flight())
                .map(|(m, p)| {
                    (
                        m,
                        Progress {
                            step: Step::Cordoned,
                            ..p
                        },
                    )
                })
                .collect(),
            halted: None,
        },
    };
    // Progress is measured from now: while no update ran, nothing was expected to move.
    for progress in state.machines.values_mut() {
        progress.last_progress = now_text();
    }
    for m in &request.members {
        state.machines.entry(m.clone()).or_insert_with(|| Progress {
            step: Step::Waiting,
            last_progress: now_text(),
            seen: String::new(),
        });
    }
    state.machines.retain(|m, _| request.members.contains(m));
    save(request, &state).await?;
    (request.say)(&format!(
        "pool {}: moving {} machine(s) to {target}",
        request.pool,
        request.members.len()
    ));
    let eviction = drain::eviction_version(client).await?;
    loop {
        // Someone may have paused it, or changed the policy, since the last pass.
        if let Some(kept) = load(&request.slots, &request.pool).await? {
            state.paused = kept.paused;
        }
        let names: Vec<String> = state.machines.keys().cloned().collect();
        for name in &names {
            if state.machines[name].step.in_flight() {
                advance(request, client, &mut state, name, &eviction).await?;
                if let Some(halt) = &state.halted {
                    (request.say)(&halt.to_string());
                    return Ok(Finished::Halted(halt.clone()));
                }
            }
        }
        let waiting = start_machines(request, client, &mut state).await?;
        if let Some(halt) = &state.halted {
            (request.say)(&halt.to_string());
            return Ok(Finished::Halted(halt.clone()));
        }
        let in_flight = state
            .machines
            .values()
            .filter(|p| p.step.in_flight())
            .count();
        if state.machines.values().all(|p| p.step == Step::Done) {
            (request.say)(&format!(
                "pool {}: every machine runs {target}",
                request.pool
            ));
            return Ok(Finished::Done { target });
        }
        if in_flight == 0
            && let Some(reason) = waiting
            && (state.paused || request.stop_outside_window)
        {
            (request.say)(&format!("pool {}: {reason}", request.pool));
            return Ok(Finished::Waiting { reason });
        }
        tokio::time::sleep(request.poll).await;
    }
}

/// Writes a machine's new step, then (under the test hook) waits to be killed.
async fn step(
    request: &UpdateRequest<'_>,
    state: &mut UpdateState,
    machine: &str,
    to: Step,
    seen: &str,
) -> Result<(), UpdateError> {
    let progress = state.machines.get_mut(machine).expect("a member");
    progress.step = to;
    progress.last_progress = now_text();
    progress.seen = seen.to_string();
    save(request, state).await?;
    (request.say)(&format!(
        "{machine}: {}{}",
        to.as_str(),
        if seen.is_empty() {
            String::new()
        } else {
            format!(" ({seen})")
        }
    ));
    if std::env::var(PAUSE_AFTER).is_ok_and(|s| s == to.as_str()) {
        eprintln!(
            "{PAUSE_AFTER}: {machine} is {}; waiting to be killed",
            to.as_str()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}

/// Records what was seen of a machine; a change is progress.
async fn observe(
    request: &UpdateRequest<'_>,
    state: &mut UpdateState,
    machine: &str,
    seen: String,
) -> Result<(), UpdateError> {
    let progress = state.machines.get_mut(machine).expect("a member");
    if progress.seen != seen {
        progress.seen = seen;
        progress.last_progress = now_text();
        save(request, state).await?;
    }
    Ok(())
}

fn halt_if_stalled(request: &UpdateRequest<'_>, state: &mut UpdateState, machine: &str) {
    let progress = &state.machines[machine];
    if since(&progress.last_progress) > request.stall {
        state.halted = Some(Halt {
            machine: machine.to_string(),
            step: progress.step,
            reason: format!(
                "no progress for {}s (last seen: {})",
                request.stall.as_secs(),
                if progress.seen.is_empty() {
                    "nothing"
                } else {
                    &progress.seen
                }
            ),
        });
    }
}

/// Takes `machine` one step further, if it can go.
async fn advance(
    request: &UpdateRequest<'_>,
    client: &kube::Client,
    state: &mut UpdateState,
    machine: &str,
    eviction: &str,
) -> Result<(), UpdateError> {
    match state.machines[machine].step {
        Step::Cordoned => {
            drain::cordon(client, machine, true).await?;
            let pods = drain::evictees(client, machine).await?;
            let mut refused = Vec::new();
            for pod in &pods {
                if let Evicted::Refused(reason) = drain::evict(client, eviction, pod).await? {
                    refused.push(format!("{pod}: {reason}"));
                }
            }
            if pods.is_empty() {
                step(request, state, machine, Step::Drained, "").await?;
            } else {
                let seen = if refused.is_empty() {
                    format!("{} pod(s) leaving", pods.len())
                } else {
                    format!("{} pod(s) left; {}", pods.len(), refused.join("; "))
                };
                observe(request, state, machine, seen).await?;
                halt_if_stalled(request, state, machine);
            }
        }
        Step::Drained => {
            pin(request, machine, &state.target).await?;
            node_config::set_desired(client, machine, &state.target, state.revert_drift).await?;
            step(request, state, machine, Step::Applying, "").await?;
        }
        Step::Applying => {
            let node = node_config::read(client, machine).await?;
            let agent_state = node.state.as_deref().and_then(State::parse);
            let on_target = node.current.as_deref() == Some(state.target.as_str());
            if on_target && agent_state == Some(State::Done) && node.ready {
                drain::cordon(client, machine, false).await?;
                request
                    .slots
                    .change(&request.pool, |slots| {
                        slots.release(machine);
                        slots.save()
                    })
                    .await?;
                step(request, state, machine, Step::Done, "").await?;
                return Ok(());
            }
            let reason = node.reason.clone().unwrap_or_default();
            match agent_state {
                // Refused: the rendering does not adopt what drifted (else the agent moves).
                Some(State::Drifted)
                    if !state.revert_drift && node.refused.as_deref() == Some(&state.target) =>
                {
                    state.halted = Some(Halt {
                        machine: machine.to_string(),
                        step: Step::Applying,
                        reason: format!(
                            "its files drifted from {}: {reason}; run kindling update --revert-drift to put them back, or put the change into the description",
                            node.current.as_deref().unwrap_or("its rendering")
                        ),
                    });
                    return Ok(());
                }
                Some(State::Degraded) => {
                    state.halted = Some(Halt {
                        machine: machine.to_string(),
                        step: Step::Applying,
                        reason: format!("its agent could not apply {}: {reason}", state.target),
                    });
                    return Ok(());
                }
                _ => {}
            }
            let seen = format!(
                "agent {} on {}, {}",
                node.state.as_deref().unwrap_or("silent"),
                node.current.as_deref().unwrap_or("?"),
                if node.ready { "Ready" } else { "not Ready" }
            );
            observe(request, state, machine, seen).await?;
            halt_if_stalled(request, state, machine);
        }
        Step::Waiting | Step::Done => {}
    }
    Ok(())
}

/// Starts the next machines while slots, the windows, pausing and (for masters) etcd allow.
/// Returns why no more could start, if that is why it stopped.
async fn start_machines(
    request: &UpdateRequest<'_>,
    client: &kube::Client,
    state: &mut UpdateState,
) -> Result<Option<String>, UpdateError> {
    let names: Vec<String> = state.machines.keys().cloned().collect();
    for name in names {
        if state.machines[&name].step != Step::Waiting {
            continue;
        }
        if state.paused {
            return Ok(Some("paused (kindling update --resume goes on)".into()));
        }
        // A machine that never joined, or already runs the target, needs no slot.
        let node = match node_config::read(client, &name).await {
            Ok(node) => Some(node),
            Err(e) if e.status_code() == Some(404) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(node) = node else {
            pin(request, &name, &state.target).await?;
            step(
                request,
                state,
                &name,
                Step::Done,
                "no Node: it installs the rendering when it boots",
            )
            .await?;
            continue;
        };
        if node.current.as_deref() == Some(state.target.as_str())
            && node.state.as_deref() == Some("Done")
        {
            pin(request, &name, &state.target).await?;
            step(request, state, &name, Step::Done, "runs it already").await?;
            continue;
        }
        let in_flight = state
            .machines
            .values()
            .filter(|p| p.step.in_flight())
            .count();
        if request.masters {
            if in_flight > 0 {
                return Ok(None);
            }
            if let Some(healthy) = request.etcd_healthy
                && let Err(why) = healthy()
            {
                (request.say)(&format!("waiting for etcd before {name}: {why}"));
                return Ok(Some(format!("etcd is not healthy: {why}")));
            }
        }
        let members = request.members.len();
        let taken = request
            .slots
            .change(&request.pool, |slots| {
                let taken = slots.take(&name, HOLDER, members, Timestamp::now())?;
                if taken.is_ok() {
                    slots.save()?;
                }
                Ok(taken)
            })
            .await?;
        match taken {
            Ok(()) => {
                step(request, state, &name, Step::Cordoned, "").await?;
                if request.masters {
                    return Ok(None);
                }
            }
            Err(Refusal::Full { .. }) => return Ok(None),
            Err(refusal @ Refusal::OutsideWindow { .. }) => return Ok(Some(refusal.to_string())),
        }
    }
    Ok(None)
}

/// Pauses (or resumes) the pool's update: no machine starts while it is paused.
pub async fn set_paused(home: &slots::Home, pool: &str, paused: bool) -> Result<bool, UpdateError> {
    let Some(mut state) = load(home, pool).await? else {
        return Ok(false);
    };
    state.paused = paused;
    match home {
        slots::Home::Dir(dir) => state.save(dir)?,
        slots::Home::Store(store) => {
            let json = serde_json::to_vec_pretty(&state).expect("an update serializes");
            store
                .etcd()
                .put(&store_key(store, pool), &json, 0)
                .await
                .map_err(|e| UpdateError::Store {
                    pool: pool.to_string(),
                    message: e.to_string(),
                })?;
        }
    }
    Ok(true)
}

/// Whether every etcd member of the masters answers healthy, asked from the provisioning host
/// with the asset directory's etcd client certificate (the API server's).
pub fn etcd_health(
    dir: &Path,
    description: &kindling_config::ClusterDescription,
) -> impl Fn() -> Result<(), String> {
    let endpoints: Vec<String> = description
        .inventory
        .with_role(kindling_config::Role::Master)
        .map(|m| format!("https://{}:2379", m.ip))
        .collect();
    let ca = dir.join("tls/etcd-ca.crt");
    let cert = dir.join("tls/apiserver-etcd-client.crt");
    let key = dir.join("tls/apiserver-etcd-client.key");
    move || {
        let tls =
            kindling_etcd::ClientTls::from_files(&ca, &cert, &key).map_err(|e| e.to_string())?;
        let client = kindling_etcd::Client::new(&endpoints, &tls).map_err(|e| e.to_string())?;
        let members = client.member_list().map_err(|e| e.to_string())?;
        let sick: Vec<String> = members
            .members
            .iter()
            .filter(|m| !client.is_healthy(m))
            .map(|m| m.name.clone())
            .collect();
        if sick.is_empty() {
            Ok(())
        } else {
            Err(format!("member(s) {} not healthy", sick.join(", ")))
        }
    }
}
