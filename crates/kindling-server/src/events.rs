//! The event log: every request from a known machine, and every stage its agent reports, in
//! order. It is appended to `.kindling/events.jsonl`, so it survives a restart, and each
//! machine's last event is kept in memory for `/api/v1/machines`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub const EVENTS_FILE: &str = ".kindling/events.jsonl";

/// One step of a machine's boot or install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339.
    pub time: String,
    /// The inventory name, when the request named a known machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// boot.ipxe, ipxe, grub, kernel, initrd, ignition, mcs, denied, or an agent's stage.
    pub stage: String,
    /// HTTP status, for requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What else is worth knowing: the reason for a refusal, an agent's result.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Event {
    pub fn now(
        machine: Option<&str>,
        stage: &str,
        status: Option<u16>,
        detail: impl Into<String>,
    ) -> Event {
        Event {
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            machine: machine.map(String::from),
            stage: stage.to_string(),
            status,
            detail: detail.into(),
        }
    }
}

pub struct EventLog {
    file: Mutex<Option<File>>,
    last: RwLock<BTreeMap<Box<str>, Last>>,
    stream: broadcast::Sender<Event>,
}

/// What is kept of a machine's last event, under its name: boxed strings and not the name
/// again, since there is one per machine (100,000 machines: ~19 MB rather than ~27 MB).
struct Last {
    time: Box<str>,
    stage: Box<str>,
    status: Option<u16>,
    detail: Box<str>,
}

/// A view of each machine's last event; see [`EventLog::last_stages`]. Events are recorded only
/// once it is dropped: hold it only to read.
pub struct LastStages<'a>(Option<RwLockReadGuard<'a, BTreeMap<Box<str>, Last>>>);

impl LastStages<'_> {
    /// The stage of `machine`'s last event, and its time.
    pub fn get(&self, machine: &str) -> Option<(&str, &str)> {
        let last = self.0.as_ref()?.get(machine)?;
        Some((&last.stage, &last.time))
    }
}

impl Last {
    fn of(event: &Event) -> Last {
        Last {
            time: event.time.as_str().into(),
            stage: event.stage.as_str().into(),
            status: event.status,
            detail: event.detail.as_str().into(),
        }
    }

    fn event(&self, machine: &str) -> Event {
        Event {
            time: self.time.to_string(),
            machine: Some(machine.to_string()),
            stage: self.stage.to_string(),
            status: self.status,
            detail: self.detail.to_string(),
        }
    }
}

impl EventLog {
    /// Opens the log of the asset directory `dir`, reading back each machine's last event.
    pub fn open(dir: &Path) -> std::io::Result<EventLog> {
        let path = dir.join(EVENTS_FILE);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        let mut last = BTreeMap::new();
        if let Ok(existing) = File::open(&path) {
            for line in BufReader::new(existing).lines() {
                // A torn last line from a crash is skipped, not fatal.
                if let Ok(event) = serde_json::from_str::<Event>(&line?)
                    && let Some(machine) = &event.machine
                {
                    last.insert(machine.as_str().into(), Last::of(&event));
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // After a torn last line, start the next event on a line of its own. (Only the last
        // byte is read: the log grows by every request.)
        let mut end = [0u8; 1];
        let length = file.metadata()?.len();
        let torn = length > 0
            && File::open(&path)?
                .read_exact_at(&mut end, length - 1)
                .is_ok()
            && end[0] != b'\n';
        if torn {
            writeln!(file)?;
        }
        Ok(EventLog {
            file: Mutex::new(Some(file)),
            last: RwLock::new(last),
            stream: broadcast::channel(1024).0,
        })
    }

    /// A log kept in memory only, for tests.
    pub fn in_memory() -> EventLog {
        EventLog {
            file: Mutex::new(None),
            last: RwLock::new(BTreeMap::new()),
            stream: broadcast::channel(1024).0,
        }
    }

    pub fn record(&self, event: Event) {
        // One write(2) per event, the newline included (writeln! on a File makes two), and the
        // JSON made before taking the lock.
        if let Ok(mut line) = serde_json::to_vec(&event) {
            line.push(b'\n');
            if let Ok(mut file) = self.file.lock()
                && let Some(file) = file.as_mut()
                && let Err(e) = file.write_all(&line)
            {
                tracing::warn!("appending to the event log: {e}");
            }
        }
        if let Some(machine) = &event.machine
            && let Ok(mut last) = self.last.write()
        {
            match last.get_mut(machine.as_str()) {
                Some(known) => *known = Last::of(&event),
                None => {
                    last.insert(machine.as_str().into(), Last::of(&event));
                }
            }
        }
        // Nobody listening is fine.
        let _ = self.stream.send(event);
    }

    /// Each machine's last event.
    pub fn machines(&self) -> BTreeMap<String, Event> {
        self.last
            .read()
            .map(|last| {
                last.iter()
                    .map(|(machine, kept)| (machine.to_string(), kept.event(machine)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Each machine's last stage and its time, read in place under one read lock: for lists of
    /// every machine, which [`EventLog::machines`] would copy whole first (100,000 machines:
    /// ~30 MB each time).
    pub fn last_stages(&self) -> LastStages<'_> {
        LastStages(self.last.read().ok())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.stream.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.record(Event::now(Some("worker0"), "ipxe", Some(200), ""));
        log.record(Event::now(Some("worker0"), "ignition", Some(200), ""));
        log.record(Event::now(None, "ipxe", Some(404), "unknown MAC"));
        drop(log);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(EVENTS_FILE))
            .unwrap();
        write!(file, "{{\"time\":\"2026").unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let machines = log.machines();
        assert_eq!(machines.len(), 1);
        assert_eq!(machines["worker0"].stage, "ignition");
        log.record(Event::now(Some("worker1"), "ipxe", Some(200), ""));
        drop(log);
        assert_eq!(
            EventLog::open(dir.path()).unwrap().machines()["worker1"].stage,
            "ipxe"
        );
    }
}
