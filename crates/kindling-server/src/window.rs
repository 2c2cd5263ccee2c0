//! The install window: what a machine's token is worth.
//!
//! A MAC address is no secret, and the token that `/ipxe` and `/ignition` hand out for a MAC is
//! therefore no better than the MAC. So the configs that hold secrets (a pool config, with a
//! master's keys; bootstrap.ign) are served for one install only:
//! - a machine is *armed* for its install: when the server first sees it, and again when a
//!   person says so (`kindling machines arm`);
//! - the first fetch *binds* its install to the address it came from; a retry from that address
//!   within [`RETRY_WINDOW`] is served (a first boot that failed), a fetch from any other
//!   address is refused and recorded as *replayed*, naming both addresses;
//! - the machine's report that it is installed *disarms* it: nothing secret is served for it
//!   again until it is armed again.
//!
//! If someone else fetches first, the real machine's install fails loudly, and the event log
//! names the address that took its config.
//!
//! The state lives in the event log (stages `armed`, `bound`, `disarmed`), so it survives a
//! restart without a second file; this module keeps it in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::Event;

/// How long after its first fetch a machine may fetch again from the same address.
pub const RETRY_WINDOW: Duration = Duration::from_secs(3600);

/// Where `kindling machines arm` leaves its requests for `kindling serve`.
pub const ARM_REQUESTS_DIR: &str = ".kindling/arm";

/// The event stages of the window.
pub const ARMED: &str = "armed";
pub const BOUND: &str = "bound";
pub const DISARMED: &str = "disarmed";
pub const REPLAYED: &str = "replayed";

/// A machine's window, where it is not simply armed and unbound (the state of every machine
/// the log says nothing of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Bound { addr: IpAddr, at: OffsetDateTime },
    Disarmed { at: OffsetDateTime },
}

/// Whether a secret-bearing config may go to a machine at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it; `first` when this fetch bound the machine's install to the address.
    Serve { first: bool },
    /// The machine is installed; a person must arm it again.
    Disarmed { at: String },
    /// Its install is bound to another address.
    Replayed { bound: IpAddr, at: String },
    /// Its install is bound to this address, but the retry window has closed.
    Closed { at: String },
}

/// Every machine's window.
#[derive(Debug, Default)]
pub struct InstallWindow {
    states: Mutex<HashMap<Box<str>, State>>,
    /// Whether the log held any window event: a server that saw none arms every machine, and
    /// says so once.
    seen_any: AtomicBool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl InstallWindow {
    /// Applies one event read back from the log, in the log's order.
    pub fn replay(&mut self, event: &Event) {
        self.apply(event);
    }

    /// Applies one event another replica recorded (it comes back through the store's
    /// journal), or this one did: applying an event twice changes nothing.
    pub fn apply(&self, event: &Event) {
        let Some(machine) = &event.machine else {
            if event.stage == ARMED {
                // "Every machine armed" at a first install.
                self.seen_any.store(true, Ordering::Relaxed);
                self.states
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            return;
        };
        if ![ARMED, BOUND, DISARMED].contains(&event.stage.as_str()) {
            return;
        }
        let at = OffsetDateTime::parse(&event.time, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match event.stage.as_str() {
            ARMED => {
                states.remove(machine.as_str());
            }
            BOUND => {
                if let Ok(addr) = event.detail.parse() {
                    states.insert(machine.as_str().into(), State::Bound { addr, at });
                }
            }
            DISARMED => {
                states.insert(machine.as_str().into(), State::Disarmed { at });
            }
            _ => return,
        }
        self.seen_any.store(true, Ordering::Relaxed);
    }

    /// Whether the log had no window event: the server's first install, at which it arms
    /// every machine (and records that once).
    pub fn is_new(&self) -> bool {
        !self.seen_any.load(Ordering::Relaxed)
    }

    /// The verdict for `machine` fetching from `addr` at `now`; a first fetch binds it. The
    /// caller records the event the verdict calls for (see [`Verdict::event`]).
    pub fn admit(&self, machine: &str, addr: IpAddr, now: OffsetDateTime) -> Verdict {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get(machine).copied() {
            None => {
                states.insert(machine.into(), State::Bound { addr, at: now });
                Verdict::Serve { first: true }
            }
            Some(State::Bound { addr: bound, at }) if bound != addr => Verdict::Replayed {
                bound,
                at: rfc3339(at),
            },
            Some(State::Bound { at, .. }) => {
                if now - at <= RETRY_WINDOW {
                    Verdict::Serve { first: false }
                } else {
                    Verdict::Closed { at: rfc3339(at) }
                }
            }
            Some(State::Disarmed { at }) => Verdict::Disarmed { at: rfc3339(at) },
        }
    }

    /// The one machine whose install is bound to `addr` (a download that names no machine, such
    /// as Ignition fetching a binary, is then its); `None` when none is, or several are.
    pub fn installing_at(&self, addr: IpAddr) -> Option<String> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = states.iter().filter_map(|(name, state)| match state {
            State::Bound { addr: bound, .. } if *bound == addr => Some(name),
            _ => None,
        });
        let first = found.next()?;
        found.next().is_none().then(|| first.to_string())
    }

    /// Disarms `machine` (its install is done); false when it already was.
    pub fn disarm(&self, machine: &str, now: OffsetDateTime) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let was = states.insert(machine.into(), State::Disarmed { at: now });
        !matches!(was, Some(State::Disarmed { .. }))
    }

    /// Arms `machine` for an install: its next fetch binds it anew.
    pub fn arm(&self, machine: &str) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(machine);
        self.seen_any.store(true, Ordering::Relaxed);
    }

    /// Arms every machine: the first install.
    pub fn arm_all(&self) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.seen_any.store(true, Ordering::Relaxed);
    }

    /// Whether `machine` is armed (bound or not).
    pub fn is_armed(&self, machine: &str) -> bool {
        !matches!(
            self.states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(machine),
            Some(State::Disarmed { .. })
        )
    }
}

impl Verdict {
    /// The event this verdict calls for, and for a refusal, the reason to answer with.
    pub fn event(
        &self,
        machine: &str,
        addr: IpAddr,
        what: &str,
    ) -> (Option<Event>, Option<String>) {
        match self {
            Verdict::Serve { first: true } => (
                Some(Event::now(Some(machine), BOUND, None, addr.to_string())),
                None,
            ),
            Verdict::Serve { first: false } => (None, None),
            Verdict::Replayed { bound, at } => {
                let reason = format!(
                    "{machine}'s {what} was already fetched from {bound} at {at}; refused to {addr}. If {bound} is not {machine}, someone else holds its secrets: rotate them. If {machine} moved, run `kindling machines arm {machine}`"
                );
                (
                    Some(Event::now(
                        Some(machine),
                        REPLAYED,
                        Some(403),
                        format!("first {bound} at {at}, now {addr}"),
                    )),
                    Some(reason),
                )
            }
            Verdict::Closed { at } => (
                None,
                Some(format!(
                    "{machine}'s install began at {at} and its retry window of {} minutes has closed; to install it again run `kindling machines arm {machine}`",
                    RETRY_WINDOW.as_secs() / 60
                )),
            ),
            Verdict::Disarmed { at } => (
                None,
                Some(format!(
                    "{machine} reported its install done at {at}, so its {what} is no longer served; to install it again run `kindling machines arm {machine}`"
                )),
            ),
        }
    }
}

/// Leaves a request for `kindling serve` to arm `machine` (it picks requests up within seconds,
/// or when it next starts); returns the request's path.
pub fn request_arm(dir: &Path, machine: &str) -> std::io::Result<PathBuf> {
    let requests = dir.join(ARM_REQUESTS_DIR);
    std::fs::create_dir_all(&requests)?;
    let path = requests.join(machine);
    std::fs::write(&path, b"")?;
    Ok(path)
}

/// The machines whose arm requests wait in `dir`, each removed as it is taken.
pub fn take_arm_requests(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(ARM_REQUESTS_DIR)) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str()
            && std::fs::remove_file(entry.path()).is_ok()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_address_binds_the_install_and_another_is_refused_naming_both() {
        let w = InstallWindow::default();
        let t0 = OffsetDateTime::now_utc();
        assert_eq!(
            w.admit("master0", ip("10.0.0.10"), t0),
            Verdict::Serve { first: true }
        );
        // The same machine retrying (its first boot failed) is served.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(
            w.admit("master0", ip("10.0.0.10"), later),
            Verdict::Serve { first: false }
        );
        let v = w.admit("master0", ip("10.0.0.66"), later);
        let Verdict::Replayed { bound, .. } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(*bound, ip("10.0.0.10"));
        let (event, reason) = v.event("master0", ip("10.0.0.66"), "master config");
        let event = event.unwrap();
        assert_eq!((event.stage.as_str(), event.status), (REPLAYED, Some(403)));
        assert!(event.detail.contains("10.0.0.10") && event.detail.contains("10.0.0.66"));
        assert!(reason.unwrap().contains("kindling machines arm master0"));
        // Past the retry window, not even the same address.
        let v = w.admit(
            "master0",
            ip("10.0.0.10"),
            t0 + RETRY_WINDOW + Duration::from_secs(1),
        );
        assert!(matches!(v, Verdict::Closed { .. }), "{v:?}");
        // Other machines are their own.
        assert_eq!(
            w.admit("master1", ip("10.0.0.66"), later),
            Verdict::Serve { first: true }
        );
    }

    #[test]
    fn disarmed_until_armed_again_and_the_log_rebuilds_it() {
        let w = InstallWindow::default();
        let now = OffsetDateTime::now_utc();
        let mut log = Vec::new();
        let v = w.admit("worker0", ip("10.0.0.20"), now);
        log.extend(v.event("worker0", ip("10.0.0.20"), "worker config").0);
        assert!(w.disarm("worker0", now));
        assert!(!w.disarm("worker0", now), "once");
        log.push(Event::now(Some("worker0"), DISARMED, None, ""));
        assert!(matches!(
            w.admit("worker0", ip("10.0.0.20"), now),
            Verdict::Disarmed { .. }
        ));
        assert!(!w.is_armed("worker0"));

        // A restarted server, from the log.
        let mut again = InstallWindow::default();
        assert!(again.is_new());
        for e in &log {
            again.replay(e);
        }
        assert!(!again.is_new());
        assert!(matches!(
            again.admit("worker0", ip("10.0.0.20"), now),
            Verdict::Disarmed { .. }
        ));

        // Armed by a person: the next fetch binds anew, from wherever the machine now is.
        again.arm("worker0");
        assert_eq!(
            again.admit("worker0", ip("10.0.0.99"), now),
            Verdict::Serve { first: true }
        );
        let mut replayed = InstallWindow::default();
        for e in log
            .iter()
            .chain([&Event::now(Some("worker0"), ARMED, None, "")])
        {
            replayed.replay(e);
        }
        assert!(replayed.is_armed("worker0"));
    }

    #[test]
    fn arm_requests_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        request_arm(dir.path(), "worker1").unwrap();
        request_arm(dir.path(), "worker0").unwrap();
        assert_eq!(take_arm_requests(dir.path()), ["worker0", "worker1"]);
        assert!(take_arm_requests(dir.path()).is_empty());
    }
}
