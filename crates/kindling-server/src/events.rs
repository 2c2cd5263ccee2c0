//! The event log: every request from a known machine, and every stage its agent reports, in
//! order. It is appended to `.kindling/events.jsonl`, so it survives a restart, and each
//! machine's last event is kept in memory for `/api/v1/machines`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Mutex, RwLock};

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
    last: RwLock<BTreeMap<String, Event>>,
    stream: broadcast::Sender<Event>,
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
                    last.insert(machine.clone(), event);
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        // After a torn last line, start the next event on a line of its own.
        let torn = std::fs::read(&path).is_ok_and(|b| b.last().is_some_and(|c| *c != b'\n'));
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
        if let Ok(mut file) = self.file.lock()
            && let Some(file) = file.as_mut()
            && let Ok(line) = serde_json::to_string(&event)
            && let Err(e) = writeln!(file, "{line}")
        {
            tracing::warn!("appending to the event log: {e}");
        }
        if let Some(machine) = &event.machine
            && let Ok(mut last) = self.last.write()
        {
            last.insert(machine.clone(), event.clone());
        }
        // Nobody listening is fine.
        let _ = self.stream.send(event);
    }

    /// Each machine's last event.
    pub fn machines(&self) -> BTreeMap<String, Event> {
        self.last.read().map(|l| l.clone()).unwrap_or_default()
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
