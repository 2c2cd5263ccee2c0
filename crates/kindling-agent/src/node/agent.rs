//! The node agent's loop: one [`NodeAgent::tick`] every interval.
//!
//! Each tick reads the rendering the machine runs (`/etc/kindling/rendering`, which every
//! rendering writes last), checks the disk against it, and reads the Node's annotations:
//! - drift, and a revert asked for (`--revert-drift`, or the Node's `kindling.dev/revert-drift`):
//!   the rendering is written back over what drifted, and what that calls for is done;
//! - drift otherwise: reported (the Node's `KindlingConfigDrift` condition, an event on the
//!   Node and one to `kindling serve`, state `Drifted`), and nothing is applied over it;
//! - a desired rendering that is not the current one: it is written, touching only what
//!   changed, then units are restarted or the machine reboots, as [`super::action`] says;
//! - otherwise the Node says `Done`.
//!
//! A write is resumable: `<state dir>/applying` names both renderings before anything is
//! written, so an agent killed midway writes the rest when it starts again; `rebooting` names
//! the rendering it rebooted into.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kindling_assets::layout;
use kindling_assets::renderings::pool_of_name;
use kindling_cluster::node_config::{NodeConfig, Report, State};
use kindling_ignition::Config;

use super::action::{self, Action};
use super::disk::{self, Drift, Fetch};
use crate::report::Reporter;
use crate::{AgentError, io_error, write_atomic};

/// Where the agent gets renderings: `kindling serve`'s machine config server.
pub trait Renderings {
    /// The rendering `name` of `pool`, with this machine's part, as the server serves it.
    fn fetch(&self, pool: &str, name: &str) -> Result<Config, AgentError>;
}

/// The Node object, through the API.
pub trait NodeApi {
    fn read(&self) -> Result<NodeConfig, AgentError>;
    fn report(&self, before: &NodeConfig, report: &Report<'_>) -> Result<(), AgentError>;
    fn event(&self, warning: bool, reason: &str, message: &str) -> Result<(), AgentError>;
}

/// What the machine does after a write: systemd's restarts and reboot.
pub trait Host {
    fn restart(&self, units: &BTreeSet<String>) -> Result<(), AgentError>;
    fn reboot(&self) -> Result<(), AgentError>;
}

/// The node agent of one machine.
pub struct NodeAgent<'a> {
    /// The machine's `/`.
    pub root: PathBuf,
    /// Where the agent keeps its markers and the renderings it fetched (root only).
    pub state_dir: PathBuf,
    pub revert_drift: bool,
    pub renderings: &'a dyn Renderings,
    pub node: &'a dyn NodeApi,
    pub host: &'a dyn Host,
    pub files: &'a dyn Fetch,
    pub reporter: Option<&'a Reporter>,
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do.
    Done,
    Drifted(Vec<Drift>),
    Reverted(Vec<String>),
    /// Moved to a rendering; the action taken.
    Moved {
        to: String,
        action: Action,
    },
}

fn drift_lines(drift: &[Drift]) -> String {
    drift
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl NodeAgent<'_> {
    fn marker(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }

    fn read_marker(&self, name: &str) -> Result<Option<String>, AgentError> {
        let path = self.marker(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &path)(e)),
        }
    }

    fn remove_marker(&self, name: &str) -> Result<(), AgentError> {
        let path = self.marker(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("removing", &path)(e))
            }
            _ => Ok(()),
        }
    }

    /// The rendering the disk holds, by the file every rendering writes last.
    pub fn current(&self) -> Result<String, AgentError> {
        let path = disk::on_disk(&self.root, layout::RENDERING);
        let text = std::fs::read_to_string(&path).map_err(io_error("reading", &path))?;
        let name = text.trim().to_string();
        if pool_of_name(&name).is_none() {
            return Err(AgentError::Identity {
                path,
                reason: format!("{name:?} is not a rendering's name"),
            });
        }
        Ok(name)
    }

    /// A rendering, from the agent's own copy or else from the server (then kept, root only).
    fn rendering(&self, name: &str) -> Result<Config, AgentError> {
        let kept = self
            .state_dir
            .join("renderings")
            .join(format!("{name}.json"));
        if let Ok(bytes) = std::fs::read(&kept)
            && let Ok(config) = Config::from_json(&bytes)
        {
            return Ok(config);
        }
        let pool = pool_of_name(name).unwrap_or_default();
        let config = self.renderings.fetch(pool, name)?;
        let json = config
            .render(kindling_ignition::IgnitionVersion::V3_3)
            .map_err(|e| AgentError::Manifest {
                path: kept.clone(),
                reason: e.to_string(),
            })?;
        write_atomic(&kept, &json, 0o600)?;
        Ok(config)
    }

    fn say(&self, stage: &str, result: &str, detail: &str) {
        if let Some(reporter) = self.reporter {
            reporter.send_event(&format!("node-agent {stage}"), result, detail);
        }
    }

    /// One pass: see the module documentation.
    pub fn tick(&self) -> Result<Outcome, AgentError> {
        if let Some(applying) = self.read_marker("applying")? {
            // Killed while writing: finish the job.
            let (from, to) = applying.split_once(' ').unwrap_or(("", &applying));
            let (from, to) = (from.to_string(), to.to_string());
            let before = self.node.read()?;
            return self.apply(&before, Some(from.as_str()).filter(|f| !f.is_empty()), &to);
        }
        if let Some(into) = self.read_marker("rebooting")? {
            tracing::info!("rebooted into {into}");
            self.remove_marker("rebooting")?;
        }
        let current = self.current()?;
        let config = self.rendering(&current)?;
        let drift = disk::check(&self.root, &config)?;
        let node = self.node.read()?;
        if !drift.is_empty() {
            let lines = drift_lines(&drift);
            if self.revert_drift || node.revert_drift {
                let written = disk::write(&self.root, None, &config, self.files)?;
                let message = format!("reverted to {current}:\n{lines}");
                self.node.event(false, "DriftReverted", &message)?;
                self.say("drift", "reverted", &message);
                self.carry_out(&action_for(&written, &config))?;
                self.node.report(
                    &node,
                    &Report {
                        reverted: true,
                        ..Report::done(&current)
                    },
                )?;
                return Ok(Outcome::Reverted(written.changed));
            }
            // The description adopted the change: the rendering it is to move to has, at every
            // path that drifted, what is on disk. Nothing is updated over; it simply moves.
            if let Some(desired) = node.desired.as_deref().filter(|d| *d != current) {
                let target = self.rendering(desired)?;
                let theirs = disk::check(&self.root, &target)?;
                if drift
                    .iter()
                    .all(|d| !theirs.iter().any(|t| t.path == d.path))
                {
                    let message = format!("{desired} adopts what changed on disk:\n{lines}");
                    self.node.event(false, "DriftAdopted", &message)?;
                    self.say("drift", "adopted", &message);
                    return self.apply(&node, Some(&current), desired);
                }
            }
            let mut reason = format!(
                "{} path(s) differ from {current}; revert them with kindling update --revert-drift, or put the change into the description",
                drift.len()
            );
            let refused = node.desired.as_deref().filter(|d| *d != current);
            if let Some(desired) = refused {
                reason.push_str(&format!("; {desired} is not applied over them"));
            }
            if node.drift.as_deref() != Some(&format!("differs from {current}:\n{lines}")[..]) {
                self.node
                    .event(true, "ConfigDrift", &format!("{reason}:\n{lines}"))?;
                self.say("drift", "drifted", &lines);
            }
            self.node.report(
                &node,
                &Report {
                    current: &current,
                    state: State::Drifted,
                    reason: &reason,
                    drift: Some(&lines),
                    reverted: false,
                    refused,
                },
            )?;
            return Ok(Outcome::Drifted(drift));
        }
        match node.desired.as_deref() {
            Some(desired) if desired != current => self.apply(&node, Some(&current), desired),
            _ => {
                let done = node.current.as_deref() == Some(&current)
                    && node.state.as_deref() == Some(State::Done.as_str())
                    && node.drift.is_none();
                if !done {
                    self.node.report(&node, &Report::done(&current))?;
                }
                Ok(Outcome::Done)
            }
        }
    }

    /// Writes rendering `to` over `from` (what the machine ran), then does what that calls for.
    fn apply(
        &self,
        node: &NodeConfig,
        from: Option<&str>,
        to: &str,
    ) -> Result<Outcome, AgentError> {
        if let Some(from) = from
            && pool_of_name(from) != pool_of_name(to)
        {
            return Err(AgentError::Identity {
                path: self.marker("applying"),
                reason: format!("{to} is another pool's rendering than {from}"),
            });
        }
        write_atomic(
            &self.marker("applying"),
            format!("{} {to}\n", from.unwrap_or_default()).as_bytes(),
            0o600,
        )?;
        let report = |state, reason: &str| {
            self.node.report(
                node,
                &Report {
                    current: from.unwrap_or(to),
                    state,
                    reason,
                    drift: None,
                    reverted: false,
                    refused: None,
                },
            )
        };
        report(State::Working, &format!("writing {to}"))?;
        let earlier = from.map(|f| self.rendering(f)).transpose()?;
        let target = match self.rendering(to) {
            Ok(target) => target,
            Err(e) => {
                self.remove_marker("applying")?;
                report(State::Degraded, &format!("cannot get {to}: {e}"))?;
                return Err(e);
            }
        };
        let written = disk::write(&self.root, earlier.as_ref(), &target, self.files)?;
        let changes = earlier
            .as_ref()
            .map_or(written, |e| disk::changes(e, &target));
        let action = action_for(&changes, &target);
        let then = match &action {
            Action::Nothing => String::new(),
            Action::Restart(units) => format!("; restarting {}", join(units)),
            Action::Reboot { because } => format!("; rebooting, as {because}"),
        };
        let message = format!("{} -> {to}{then}", from.unwrap_or("?"));
        self.node.event(false, "RenderingApplied", &message)?;
        self.say("rendering", "applied", &message);
        if let Action::Reboot { because } = &action {
            // The agent that starts after the reboot finds itself on `to` and says Done.
            write_atomic(&self.marker("rebooting"), to.as_bytes(), 0o600)?;
            self.remove_marker("applying")?;
            self.node.report(
                node,
                &Report {
                    current: to,
                    state: State::Rebooting,
                    reason: because,
                    drift: None,
                    reverted: false,
                    refused: None,
                },
            )?;
            self.host.reboot()?;
        } else {
            self.carry_out(&action)?;
            self.remove_marker("applying")?;
            self.node.report(node, &Report::done(to))?;
        }
        Ok(Outcome::Moved {
            to: to.to_string(),
            action,
        })
    }

    /// Restarts units, or reboots, as `action` says.
    fn carry_out(&self, action: &Action) -> Result<(), AgentError> {
        match action {
            Action::Nothing => Ok(()),
            Action::Restart(units) => self.host.restart(units),
            Action::Reboot { because } => {
                tracing::info!("rebooting: {because}");
                self.host.reboot()
            }
        }
    }
}

fn join(units: &BTreeSet<String>) -> String {
    units
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the changed paths of `config` call for (units it masks are not restarted).
fn action_for(changes: &disk::Written, config: &Config) -> Action {
    let masks: BTreeSet<String> = config
        .units()
        .filter(|u| config.unit(u).is_some_and(|u| u.mask == Some(true)))
        .map(str::to_string)
        .collect();
    action::after(&changes.changed, &changes.removed, &masks)
}
#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    /// Renderings held in memory, as the server would serve them.
    struct Served(BTreeMap<String, Config>);
    impl Renderings for Served {
        fn fetch(&self, pool: &str, name: &str) -> Result<Config, AgentError> {
            assert_eq!(pool, "worker");
            Ok(self.0.get(name).cloned().expect("a known rendering"))
        }
    }

    /// A Node kept in memory: what the agent reported is what it reads next.
    #[derive(Default)]
    struct Node {
        config: RefCell<NodeConfig>,
        events: RefCell<Vec<(bool, String)>>,
    }
    impl NodeApi for Node {
        fn read(&self) -> Result<NodeConfig, AgentError> {
            Ok(self.config.borrow().clone())
        }
        fn report(&self, _: &NodeConfig, r: &Report<'_>) -> Result<(), AgentError> {
            let mut c = self.config.borrow_mut();
            c.current = Some(r.current.into());
            c.state = Some(r.state.as_str().into());
            c.reason = Some(r.reason.into());
            c.drift = r.drift.map(|d| format!("differs from {}:\n{d}", r.current));
            if r.reverted {
                c.revert_drift = false;
            }
            c.refused = r.refused.map(str::to_string);
            Ok(())
        }
        fn event(&self, warning: bool, reason: &str, _: &str) -> Result<(), AgentError> {
            self.events.borrow_mut().push((warning, reason.into()));
            Ok(())
        }
    }

    #[derive(Default)]
    struct Systemd(RefCell<Vec<String>>);
    impl Host for Systemd {
        fn restart(&self, units: &BTreeSet<String>) -> Result<(), AgentError> {
            for u in units {
                self.0.borrow_mut().push(format!("restart {u}"));
            }
            Ok(())
        }
        fn reboot(&self) -> Result<(), AgentError> {
            self.0.borrow_mut().push("reboot".into());
            Ok(())
        }
    }

    struct NoFiles;
    impl Fetch for NoFiles {
        fn fetch(&self, url: &str, _: Option<&str>) -> Result<Vec<u8>, AgentError> {
            panic!("{url} was downloaded")
        }
    }

    fn rendering(name: &str, kubelet_env: &str, extra: Option<&str>) -> Config {
        let mut c = Config::new();
        c.add_file(layout::KUBELET_ENV, kubelet_env.as_bytes(), 0o644);
        c.add_unit(
            "kubelet.service",
            "[Service]\nExecStart=/usr/local/bin/kubelet\n",
            true,
        );
        if let Some(path) = extra {
            c.add_file(path, b"x", 0o644);
        }
        c.add_file(layout::RENDERING, format!("{name}\n").as_bytes(), 0o644);
        c
    }

    /// A machine whose disk holds the first of `renderings`, its Node, systemd and the server.
    struct Machine {
        tmp: tempfile::TempDir,
        served: Served,
        node: Node,
        host: Systemd,
    }

    impl Machine {
        fn new(renderings: Vec<(&str, Config)>) -> Machine {
            let tmp = tempfile::tempdir().unwrap();
            disk::write(&tmp.path().join("root"), None, &renderings[0].1, &NoFiles).unwrap();
            let served = renderings.into_iter().map(|(n, c)| (n.to_string(), c));
            Machine {
                tmp,
                served: Served(served.collect()),
                node: Node::default(),
                host: Systemd::default(),
            }
        }

        fn root(&self) -> PathBuf {
            self.tmp.path().join("root")
        }

        fn agent(&self, revert_drift: bool) -> NodeAgent<'_> {
            NodeAgent {
                root: self.root(),
                state_dir: self.tmp.path().join("state"),
                revert_drift,
                renderings: &self.served,
                node: &self.node,
                host: &self.host,
                files: &NoFiles,
                reporter: None,
            }
        }
    }

    const A: &str = "rendered-worker-aaaaaaaaaaaaaaaa";
    const B: &str = "rendered-worker-bbbbbbbbbbbbbbbb";
    const C: &str = "rendered-worker-cccccccccccccccc";

    #[test]
    fn drift_is_reported_once_reverted_on_request_and_updates_wait_for_it() {
        let machine = Machine::new(vec![
            (A, rendering(A, "V=1\n", None)),
            (B, rendering(B, "V=2\n", None)),
            (C, rendering(C, "V=2\n", Some("/etc/sysctl.d/90-x.conf"))),
        ]);
        let (root, node, host) = (machine.root(), &machine.node, &machine.host);
        let agent = |revert_drift| machine.agent(revert_drift);
        assert_eq!(agent(false).tick().unwrap(), Outcome::Done);
        assert_eq!(node.config.borrow().current.as_deref(), Some(A));
        assert_eq!(node.config.borrow().state.as_deref(), Some("Done"));

        // Someone edits the kubelet's arguments; an update is asked for meanwhile.
        let env = root.join("etc/kubernetes/kubelet.env");
        std::fs::write(&env, "V=evil\n").unwrap();
        node.config.borrow_mut().desired = Some(B.into());
        for _ in 0..2 {
            let Outcome::Drifted(drift) = agent(false).tick().unwrap() else {
                panic!("the drift was not found")
            };
            assert_eq!(drift[0].path, layout::KUBELET_ENV);
        }
        let reported = node.config.borrow().clone();
        assert_eq!(reported.state.as_deref(), Some("Drifted"));
        assert!(
            reported
                .reason
                .as_ref()
                .unwrap()
                .contains(&format!("{B} is not applied over them"))
        );
        assert_eq!(
            std::fs::read_to_string(&env).unwrap(),
            "V=evil\n",
            "not updated over"
        );
        assert_eq!(
            *node.events.borrow(),
            [(true, "ConfigDrift".to_string())],
            "one event"
        );

        // kindling update --revert-drift: the file comes back, the kubelet restarts.
        node.config.borrow_mut().revert_drift = true;
        assert!(matches!(agent(false).tick().unwrap(), Outcome::Reverted(_)));
        assert_eq!(std::fs::read_to_string(&env).unwrap(), "V=1\n");
        assert_eq!(*host.0.borrow(), ["restart kubelet.service"]);
        assert!(!node.config.borrow().revert_drift);

        // Now B applies: only a restart; then C, which needs a reboot.
        let moved = agent(false).tick().unwrap();
        assert!(
            matches!(&moved, Outcome::Moved { to, action: Action::Restart(_) } if to == B),
            "{moved:?}"
        );
        assert_eq!(node.config.borrow().current.as_deref(), Some(B));
        node.config.borrow_mut().desired = Some(C.into());
        let moved = agent(false).tick().unwrap();
        assert!(
            matches!(&moved, Outcome::Moved { to, action: Action::Reboot { .. } } if to == C),
            "{moved:?}"
        );
        assert_eq!(host.0.borrow().last().unwrap(), "reboot");
        // After the reboot: on C, and it says so.
        assert_eq!(agent(false).tick().unwrap(), Outcome::Done);
        assert_eq!(node.config.borrow().current.as_deref(), Some(C));
        assert!(!machine.tmp.path().join("state/rebooting").exists());
    }

    #[test]
    fn drift_that_the_next_rendering_adopts_is_not_in_the_way() {
        // B says what someone wrote on the machine by hand.
        let machine = Machine::new(vec![
            (A, rendering(A, "V=1\n", None)),
            (B, rendering(B, "V=by hand\n", None)),
        ]);
        let (root, node) = (machine.root(), &machine.node);
        std::fs::write(root.join("etc/kubernetes/kubelet.env"), "V=by hand\n").unwrap();
        let agent = machine.agent(false);
        assert!(matches!(agent.tick().unwrap(), Outcome::Drifted(_)));
        node.config.borrow_mut().desired = Some(B.into());
        assert!(matches!(agent.tick().unwrap(), Outcome::Moved { .. }));
        assert_eq!(agent.current().unwrap(), B);
        assert!(
            node.events
                .borrow()
                .iter()
                .any(|(_, r)| r == "DriftAdopted")
        );
        assert_eq!(agent.tick().unwrap(), Outcome::Done);
        assert_eq!(
            std::fs::read_to_string(root.join("etc/kubernetes/kubelet.env")).unwrap(),
            "V=by hand\n"
        );
    }

    #[test]
    fn an_agent_killed_while_writing_finishes_the_job() {
        let machine = Machine::new(vec![
            (A, rendering(A, "V=1\n", None)),
            (B, rendering(B, "V=2\n", None)),
        ]);
        let (root, state) = (machine.root(), machine.tmp.path().join("state"));
        // It had said it moves A -> B, and written one file of B, when it was killed.
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("applying"), format!("{A} {B}\n")).unwrap();
        std::fs::write(root.join("etc/kubernetes/kubelet.env"), "V=2\n").unwrap();
        machine.node.config.borrow_mut().desired = Some(B.into());
        let agent = machine.agent(false);
        assert!(matches!(agent.tick().unwrap(), Outcome::Moved { .. }));
        assert_eq!(agent.current().unwrap(), B);
        // The kubelet restarts for the file written before the kill, too.
        assert_eq!(*machine.host.0.borrow(), ["restart kubelet.service"]);
        assert!(!state.join("applying").exists());
        assert_eq!(disk::check(&root, &machine.served.0[B]).unwrap(), []);
        assert_eq!(agent.tick().unwrap(), Outcome::Done);
    }
}
