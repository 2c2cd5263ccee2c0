//! The event log: every request from a known machine, and every stage its agent reports, in
//! order. It is appended to `.kindling/events.jsonl`, so it survives a restart, and each
//! machine's last event is kept in memory for `/api/v1/machines`.
//!
//! An event's id is the log's length in bytes once it is written: ids grow, and the events
//! after an id are read back from the file, so a stream that reconnects (or falls behind)
//! misses nothing. The file is written off the request path, in batches (see [`appender`]). A `serve --store` replica's log mirrors the store's journal instead, with
//! the journal's ids (see [`shared`]).

mod appender;
mod shared;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub const EVENTS_FILE: &str = ".kindling/events.jsonl";

/// The directory `file` (relative to `dir`) is in.
fn path_parent(dir: &Path, file: &str) -> PathBuf {
    dir.join(file).parent().unwrap_or(dir).to_path_buf()
}

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

/// Whether `event` is a step of its machine's boot or install, which the machine list shows as
/// its stage: not the install window's bookkeeping (armed, disarmed), which says what the server
/// will serve it, not where the machine is.
pub fn is_stage(event: &Event) -> bool {
    event.stage != crate::window::ARMED && event.stage != crate::window::DISARMED
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
    writer: Arc<Mutex<Writer>>,
    /// Writes the file of a log that is not a replica's mirror.
    appender: Option<Arc<appender::Appender>>,
    /// The file, for reading events back; none for a log kept in memory.
    path: Option<PathBuf>,
    last: RwLock<BTreeMap<Box<str>, Last>>,
    stream: broadcast::Sender<(u64, Json)>,
    /// `serve --store`: events go to the store's journal, which this log mirrors.
    shared: Option<shared::Outbox>,
}

/// An event from the store's journal, for [`EventLog::mirror`].
pub struct Mirrored<'a> {
    pub id: u64,
    /// The event's JSON as the journal has it; None for one that is not an event.
    pub json: Option<&'a [u8]>,
    pub event: Event,
}

/// The appending end of the log.
struct Writer {
    file: Option<File>,
    /// The events of a log kept in memory.
    kept: Vec<Event>,
    /// The id of the last event written: the log's length in bytes; in a mirror of the
    /// journal, the journal's id of the last event.
    end: u64,
    /// In a mirror: each event's id and where its line starts, in order.
    index: Vec<(u64, u64)>,
    /// In a mirror: the file's length in bytes.
    length: u64,
}

/// The log file `path`, opened for appending (made, and its directory, if need be). After a
/// torn last line (a crash in the middle of a write) the next event starts on a line of its
/// own. (Only the last byte is read: the log grows by every request.)
fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let length = file.metadata()?.len();
    let mut end = [0u8; 1];
    let torn = length > 0
        && File::open(path)?
            .read_exact_at(&mut end, length - 1)
            .is_ok()
        && end[0] != b'\n';
    if torn {
        writeln!(file)?;
    }
    Ok(file)
}

/// Whether `error` is the disk's (full, or read-only), which the server outlives.
fn is_disk_fault(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ReadOnlyFilesystem, StorageFull};
    matches!(error.kind(), ReadOnlyFilesystem | StorageFull)
}

/// An event as JSON, made once and shared by every stream that sends it.
pub type Json = Arc<str>;

/// The JSON of an event's line (which serde_json wrote: UTF-8), without its newline.
fn json_of(line: &[u8]) -> Json {
    String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into()
}

/// An event's line in the file: its JSON and a newline.
fn line(event: &Event) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    Ok(line)
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The most bytes of the file read back at once.
const READ_BACK_CHUNK: u64 = 1 << 20;

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
        EventLog::open_with(dir, |_| {})
    }

    /// [`EventLog::open`], showing `visit` every event read back, in order: for state that is
    /// kept in the log, such as the install window.
    pub fn open_with(dir: &Path, mut visit: impl FnMut(&Event)) -> std::io::Result<EventLog> {
        let path = dir.join(EVENTS_FILE);
        let mut last = BTreeMap::new();
        if let Ok(existing) = File::open(&path) {
            for line in BufReader::new(existing).lines() {
                // A torn last line from a crash is skipped, not fatal.
                let Ok(event) = serde_json::from_str::<Event>(&line?) else {
                    continue;
                };
                visit(&event);
                if let Some(machine) = event.machine.as_ref().filter(|_| is_stage(&event)) {
                    last.insert(machine.as_str().into(), Last::of(&event));
                }
            }
        }
        // On a read-only or full disk the server still starts, and serves boot: events are
        // held until the file can be written (see [`appender`]).
        let (file, trouble) = match open_for_append(&path) {
            Ok(file) => (Some(file), None),
            Err(e) if is_disk_fault(&e) => (None, Some(e)),
            Err(e) => return Err(e),
        };
        let end = std::fs::metadata(&path).map_or(0, |m| m.len());
        let writer = Arc::new(Mutex::new(Writer {
            file,
            kept: Vec::new(),
            end,
            index: Vec::new(),
            length: end,
        }));
        let stream = broadcast::channel(1024).0;
        let appender = appender::Appender::start(
            appender::Target {
                writer: writer.clone(),
                stream: stream.clone(),
                path: path.clone(),
            },
            trouble,
        )?;
        Ok(EventLog {
            writer,
            appender: Some(appender),
            path: Some(path),
            last: RwLock::new(last),
            stream,
            shared: None,
        })
    }

    /// The log of a `serve --store` replica whose own state is in `dir`: the local mirror of
    /// the journal read back (`visit` sees each event, in order), and the events a previous
    /// run could not write yet queued again. [`EventLog::run_shared`] writes them, and the
    /// replica feeds what the journal gives back to [`EventLog::mirror`].
    pub fn open_shared(
        dir: &Path,
        replica: &str,
        mut visit: impl FnMut(&Event),
    ) -> std::io::Result<EventLog> {
        let path = dir.join(EVENTS_FILE);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        let mut last = BTreeMap::new();
        let (mut index, mut length, mut end) = (Vec::new(), 0u64, 0u64);
        if let Ok(existing) = File::open(&path) {
            let mut reader = BufReader::new(existing);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                let whole = line.ends_with('\n');
                let parsed = serde_json::from_str::<shared::Line<Event>>(&line).ok();
                match parsed {
                    Some(mirrored) if whole && mirrored.id > end => {
                        visit(&mirrored.event);
                        if let Some(machine) = mirrored
                            .event
                            .machine
                            .as_ref()
                            .filter(|_| is_stage(&mirrored.event))
                        {
                            last.insert(machine.as_str().into(), Last::of(&mirrored.event));
                        }
                        index.push((mirrored.id, length));
                        end = mirrored.id;
                        length += line.len() as u64;
                    }
                    // A torn line from a crash, and all after it, is fetched again.
                    _ => break,
                }
                line.clear();
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.set_len(length)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        Ok(EventLog {
            writer: Arc::new(Mutex::new(Writer {
                file: Some(file),
                kept: Vec::new(),
                end,
                index,
                length,
            })),
            appender: None,
            path: Some(path),
            last: RwLock::new(last),
            stream: broadcast::channel(1024).0,
            shared: Some(shared::Outbox::open(
                &path_parent(dir, EVENTS_FILE),
                replica,
            )?),
        })
    }

    /// Writes the events recorded to `journal`, until `stop` (a `serve --store` replica's
    /// log only).
    pub async fn run_shared(
        &self,
        journal: kindling_store::journal::Journal,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if let Some(outbox) = &self.shared {
            outbox.run(journal, stop).await;
        }
    }

    /// Why events cannot be written now (to the file, or to the store), if they cannot.
    pub fn trouble(&self) -> Option<String> {
        if let Some(appender) = &self.appender {
            return appender.trouble();
        }
        let outbox = self.shared.as_ref()?;
        outbox
            .trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the events recorded so far are in the file (or it cannot be written).
    pub fn flush(&self) {
        if let Some(appender) = &self.appender {
            appender.flush();
        }
    }

    /// Writes the events recorded so far, and stops writing: when the server stops.
    pub fn close(&self) {
        if let Some(appender) = &self.appender {
            appender.close();
        }
    }

    /// The last journal id this log has, in a replica's mirror.
    pub fn mirrored_to(&self) -> u64 {
        self.lock_writer().end
    }

    /// Adds events that came from the journal to a replica's mirror, in one write: each with
    /// its id, and the event as the journal has it when it is one. Those it has already
    /// (an id not above the last) are left out.
    pub fn mirror(&self, events: Vec<Mirrored<'_>>) {
        let mut writer = self.lock_writer();
        let mut lines = Vec::new();
        let mut added = Vec::with_capacity(events.len());
        let mut end = writer.end;
        for Mirrored { id, json, event } in events {
            if id <= end {
                continue;
            }
            let start = writer.length + lines.len() as u64;
            // The journal's JSON is what kindling wrote (one line, an object with the event's
            // fields, which parsed): its line is that with the id in front, without writing
            // the event out again.
            let shown = match json {
                Some(json) if json.first() == Some(&b'{') && !json.contains(&b'\n') => {
                    lines.extend_from_slice(format!("{{\"id\":{id},").as_bytes());
                    lines.extend_from_slice(&json[1..]);
                    json_of(json)
                }
                _ => match serde_json::to_vec(&shared::Line { id, event: &event }) {
                    Ok(mirrored) => {
                        lines.extend_from_slice(&mirrored);
                        match line(&event) {
                            Ok(plain) => json_of(&plain),
                            Err(_) => continue,
                        }
                    }
                    Err(_) => continue,
                },
            };
            lines.push(b'\n');
            added.push((id, start, event, shown));
            end = id;
        }
        if added.is_empty() {
            return;
        }
        if let Some(file) = writer.file.as_mut()
            && let Err(e) = file.write_all(&lines)
        {
            tracing::warn!("appending to the event log's mirror: {e}");
            return;
        }
        writer.length += lines.len() as u64;
        writer.end = end;
        for (id, start, event, shown) in added {
            writer.index.push((id, start));
            self.remember(&event);
            // Under the lock, so that streams see the events in the order of their ids.
            let _ = self.stream.send((id, shown));
        }
    }

    /// Records `event` and waits until it is safe: in the journal, or kept in the local
    /// pending file while the store cannot take it. Under `key` if it has one (a machine's
    /// report with its own id), so that the same report sent twice is recorded once.
    pub async fn record_durably(&self, event: Event, key: Option<String>) -> Result<(), String> {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
        if let Some(outbox) = &self.shared {
            let (tell, safe) = tokio::sync::oneshot::channel();
            outbox.send(&event, key, Some(tell));
            return match tokio::time::timeout(WAIT, safe).await {
                Ok(Ok(())) => Ok(()),
                _ => Err("the event could be neither written to the store nor kept locally".into()),
            };
        }
        let Some(appender) = &self.appender else {
            self.record(event);
            return Ok(());
        };
        let line = line(&event).map_err(|e| e.to_string())?;
        self.remember(&event);
        let (tell, written) = tokio::sync::oneshot::channel();
        appender.send(line, Some(tell));
        match tokio::time::timeout(WAIT, written).await {
            Ok(Ok(result)) => result,
            _ => Err("the event could not be written to the event log in time".into()),
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, event: &Event) {
        if let Some(machine) = &event.machine
            && is_stage(event)
            && let Ok(mut last) = self.last.write()
        {
            match last.get_mut(machine.as_str()) {
                Some(known) => *known = Last::of(event),
                None => {
                    last.insert(machine.as_str().into(), Last::of(event));
                }
            }
        }
    }

    /// A log kept in memory only, for tests.
    pub fn in_memory() -> EventLog {
        EventLog {
            writer: Arc::new(Mutex::new(Writer {
                file: None,
                kept: Vec::new(),
                end: 0,
                index: Vec::new(),
                length: 0,
            })),
            appender: None,
            path: None,
            last: RwLock::new(BTreeMap::new()),
            stream: broadcast::channel(1024).0,
            shared: None,
        }
    }

    /// Records `event` and waits until it is in the file: for an event that server state is
    /// kept in (the install window's), which a crash right after the answer must not forget.
    pub fn record_now(&self, event: Event) {
        self.record(event);
        self.flush();
    }

    /// Records `event`: in the file within a few milliseconds (see [`appender`]), in memory at
    /// once.
    pub fn record(&self, event: Event) {
        if let Some(outbox) = &self.shared {
            // Back through the journal, with its id, into the mirror.
            outbox.send(&event, None, None);
            return;
        }
        self.remember(&event);
        let Ok(line) = line(&event) else {
            return;
        };
        if let Some(appender) = &self.appender {
            appender.send(line, None);
            return;
        }
        let mut writer = self.lock_writer();
        writer.kept.push(event);
        writer.end += line.len() as u64;
        // Sent under the lock, so that streams see the events in the order of their ids. Nobody
        // listening is fine.
        let _ = self.stream.send((writer.end, json_of(&line)));
    }

    /// New events, with their ids, from now on; and the id of the last event before them.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<(u64, Json)>) {
        let writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(poisoned) => poisoned.into_inner(),
        };
        (writer.end, self.stream.subscribe())
    }

    /// The events after id `from` up to id `to` at the most, read back from the file, and the id
    /// they reach: up to about a megabyte of them, so call again from there until it is `to`.
    /// A log kept in memory has none to give.
    pub fn read_back(&self, from: u64, to: u64) -> std::io::Result<(Vec<(u64, Event)>, u64)> {
        self.read_back_at_most(from, to, READ_BACK_CHUNK)
    }

    /// [`EventLog::read_back`], reading at most `chunk` bytes of the file.
    pub fn read_back_at_most(
        &self,
        from: u64,
        to: u64,
        chunk: u64,
    ) -> std::io::Result<(Vec<(u64, Event)>, u64)> {
        let Some(path) = &self.path else {
            return Ok((Vec::new(), to));
        };
        if from >= to {
            return Ok((Vec::new(), from));
        }
        if self.shared.is_some() {
            return self.read_back_mirrored(path, from, to, chunk);
        }
        let mut bytes = vec![0u8; (to - from).min(chunk) as usize];
        File::open(path)?.read_exact_at(&mut bytes, from)?;
        let mut events = Vec::new();
        let mut reached = from;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let length = line.len() as u64;
            if !line.ends_with(b"\n") && reached + length < to {
                // Cut by the chunk's end: read whole next time; unless the line is longer than
                // a chunk, which no event is: skip it.
                if reached == from {
                    reached += length;
                }
                break;
            }
            reached += length;
            // A torn line from a crash, or a start inside a line (an id from another log), is
            // skipped.
            if let Ok(event) = serde_json::from_slice::<Event>(line) {
                events.push((reached, event));
            }
        }
        Ok((events, reached))
    }

    /// [`EventLog::read_back`] in a replica's mirror: ids are the journal's, found through the
    /// index.
    fn read_back_mirrored(
        &self,
        path: &Path,
        from: u64,
        to: u64,
        chunk: u64,
    ) -> std::io::Result<(Vec<(u64, Event)>, u64)> {
        let (start, stop) = {
            let writer = self.lock_writer();
            let first = writer.index.partition_point(|(id, _)| *id <= from);
            let past = writer.index.partition_point(|(id, _)| *id <= to);
            if first >= past {
                return Ok((Vec::new(), to));
            }
            let stop = match writer.index.get(past) {
                Some((_, offset)) => *offset,
                None => writer.length,
            };
            (writer.index[first].1, stop)
        };
        let mut bytes = vec![0u8; (stop - start).min(chunk) as usize];
        File::open(path)?.read_exact_at(&mut bytes, start)?;
        let mut events = Vec::new();
        let mut reached = from;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            if let Ok(mirrored) = serde_json::from_slice::<shared::Line<Event>>(line) {
                reached = mirrored.id;
                events.push((mirrored.id, mirrored.event));
            }
        }
        if events.is_empty() {
            // A line longer than a chunk, which no event is: past it.
            return Ok((Vec::new(), to));
        }
        Ok((events, reached))
    }

    /// Every event so far, in order (from the file, or kept in memory).
    pub fn recorded(&self) -> Vec<Event> {
        let mut events = Vec::new();
        self.each(|_, event| events.push(event));
        events
    }

    /// The last `limit` events of `machine`, in order, with their ids (0 in a log kept in
    /// memory). Reads the whole log: for a person's look at one machine, not the hot path.
    pub fn history(&self, machine: &str, limit: usize) -> Vec<(u64, Event)> {
        let mut events = std::collections::VecDeque::new();
        self.each(|id, event| {
            if event.machine.as_deref() == Some(machine) {
                if events.len() == limit {
                    events.pop_front();
                }
                events.push_back((id, event));
            }
        });
        events.into()
    }

    /// Calls `visit` with every event so far, in order, and its id.
    fn each(&self, mut visit: impl FnMut(u64, Event)) {
        self.flush();
        let (kept, end) = {
            let writer = match self.writer.lock() {
                Ok(writer) => writer,
                Err(poisoned) => poisoned.into_inner(),
            };
            (writer.kept.clone(), writer.end)
        };
        if self.path.is_none() {
            kept.into_iter().for_each(|e| visit(0, e));
            return;
        }
        let mut from = 0;
        while from < end {
            match self.read_back(from, end) {
                Ok((read, reached)) if reached > from => {
                    read.into_iter().for_each(|(id, e)| visit(id, e));
                    from = reached;
                }
                _ => break,
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_back_by_id_in_chunks_past_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.record(Event::now(Some("worker0"), "ipxe", Some(200), ""));
        drop(log);
        // A crash tore the next line; the log goes on after it.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(EVENTS_FILE))
            .unwrap();
        write!(file, "{{\"time\":\"2026").unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        // Enough events for more than one chunk.
        let detail = "x".repeat(500);
        let count = (READ_BACK_CHUNK as usize / 500) * 3 / 2;
        for i in 0..count {
            log.record(Event::now(
                Some(&format!("worker{i}")),
                "ipxe",
                Some(200),
                detail.clone(),
            ));
        }
        log.flush();
        let (end, _) = log.subscribe();
        assert_eq!(
            end,
            std::fs::metadata(dir.path().join(EVENTS_FILE))
                .unwrap()
                .len()
        );

        let mut read = Vec::new();
        let (mut from, mut calls) = (0, 0);
        while from < end {
            let (events, reached) = log.read_back(from, end).unwrap();
            assert!(reached > from, "no progress from {from}");
            read.extend(events);
            from = reached;
            calls += 1;
        }
        assert!(calls >= 2, "{calls} read(s)");
        assert_eq!(
            read.len(),
            count + 1,
            "every whole event, the torn line skipped"
        );
        assert_eq!(read[0].1.machine.as_deref(), Some("worker0"));
        assert_eq!(read.last().unwrap().0, end);
        assert!(read.windows(2).all(|w| w[0].0 < w[1].0), "ids grow");
        // From an event's id, the events after it.
        let (after, _) = log.read_back(read[5].0, end).unwrap();
        assert_eq!(after[0], read[6]);
    }

    #[test]
    fn events_from_many_threads_are_each_written_once_with_growing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let log = &log;
                scope.spawn(move || {
                    for i in 0..2000 {
                        let machine = format!("worker{t}");
                        log.record(Event::now(Some(&machine), "ipxe", Some(200), i.to_string()));
                    }
                });
            }
        });
        log.flush();
        let (end, _) = log.subscribe();
        let mut read = Vec::new();
        let mut from = 0;
        while from < end {
            let (events, reached) = log.read_back(from, end).unwrap();
            read.extend(events);
            from = reached;
        }
        assert_eq!(read.len(), 8000);
        assert!(read.windows(2).all(|w| w[0].0 < w[1].0), "ids grow");
        assert_eq!(read.last().unwrap().0, end);
        for t in 0..4 {
            let machine = format!("worker{t}");
            let mine: Vec<String> = read
                .iter()
                .filter(|(_, e)| e.machine.as_deref() == Some(machine.as_str()))
                .map(|(_, e)| e.detail.clone())
                .collect();
            let expected: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
            assert_eq!(
                mine, expected,
                "{machine}'s events, in the order it recorded them"
            );
        }
    }

    #[tokio::test]
    async fn a_report_is_acknowledged_once_it_is_in_the_file_and_refused_when_it_cannot_be() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.record_durably(Event::now(Some("worker0"), "installed", None, "done"), None)
            .await
            .unwrap();
        let file = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        assert!(file.contains("\"installed\""), "{file}");
        drop(log);

        // The disk fills up: the log's file is swapped for a device that is always full.
        let log = EventLog::open(dir.path()).unwrap();
        let real = log.lock_writer().file.take();
        log.lock_writer().file = Some(OpenOptions::new().append(true).open("/dev/full").unwrap());
        log.record(Event::now(Some("worker0"), "ipxe", Some(200), ""));
        let refused = log
            .record_durably(
                Event::now(Some("worker0"), "installed", None, "again"),
                None,
            )
            .await
            .unwrap_err();
        assert!(refused.contains("No space left on device"), "{refused}");
        assert!(refused.contains(EVENTS_FILE), "{refused}");
        let trouble = log.trouble().unwrap();
        assert!(trouble.contains("1 events held in memory"), "{trouble}");
        // What the machine list shows is kept in memory all the same.
        assert_eq!(log.machines()["worker0"].stage, "installed");

        // Space again: the held event is written, after the acknowledged one, on a line of
        // its own; the refused report is not (its agent sends it again).
        log.lock_writer().file = real;
        log.flush();
        tokio::time::sleep(appender::RETRY * 2).await;
        assert_eq!(log.trouble(), None);
        let stages: Vec<(String, String)> = log
            .recorded()
            .into_iter()
            .map(|e| (e.stage, e.detail))
            .collect();
        let expected = [("installed", "done"), ("ipxe", "")].map(|(s, d)| (s.into(), d.into()));
        assert_eq!(stages, expected);
    }

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
