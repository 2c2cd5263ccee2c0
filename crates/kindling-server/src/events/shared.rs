//! The event log of a `serve --store` replica. Events are not written to the local file when
//! they happen: they go to the store's journal (kindling-store's `journal`), and every
//! replica's events come back from it, in the journal's order and with its ids, into the local
//! file, which is so a mirror of the journal. A stream on any replica shows every replica's
//! events, and an id from one replica is good on another.
//!
//! Writes are batched by one task, a few hundred events to an entry. While etcd cannot take
//! them (no quorum), they are kept in a local file of their own (`pending.jsonl`) and written
//! once etcd is back. An entry's key is chosen when it is first sent, and it is sent again with
//! the same key and the same events, so an entry that is retried is still written once.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kindling_store::journal::{Journal, MAX_EVENTS};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Event;

/// A mirrored event as one line of the local file: its journal id and the event.
#[derive(Serialize, Deserialize)]
pub(super) struct Line<E> {
    pub id: u64,
    #[serde(flatten)]
    pub event: E,
}

/// The file events wait in while etcd cannot take them.
pub const PENDING_FILE: &str = "pending.jsonl";

/// The most bytes of events in one entry (etcd takes requests of up to 1.5 MiB).
const MAX_ENTRY_BYTES: usize = 512 * 1024;

/// One line of the pending file: an event, and the entry it was sent in, if it was.
#[derive(Serialize, Deserialize)]
struct Kept {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    json: String,
}

/// The writing side: what is waiting to go to the journal.
pub(super) struct Outbox {
    /// `<replica>-<start>`: the start of this process's entry keys.
    writer: String,
    next: AtomicU64,
    queue: Mutex<VecDeque<Waiting>>,
    wake: tokio::sync::Notify,
    pending: PathBuf,
    /// Why events cannot be written now, while they cannot.
    pub trouble: Mutex<Option<String>>,
}

struct Waiting {
    json: String,
    /// The entry it goes in: a report's own key from the start; for the others, chosen when
    /// it is first sent. Sent again, it goes with the same key and the same companions.
    entry: Option<String>,
    /// Whether it is in the pending file already. Those that are come first in the queue.
    kept: bool,
    /// Told once the event is in the journal or in the pending file.
    done: Option<oneshot::Sender<()>>,
}

impl Outbox {
    /// The outbox of a replica whose state is in `dir`, with the events a previous run left in
    /// its pending file queued first.
    pub fn open(dir: &Path, replica: &str) -> std::io::Result<Outbox> {
        let pending = dir.join(PENDING_FILE);
        let mut queue = VecDeque::new();
        if let Ok(file) = File::open(&pending) {
            for line in BufReader::new(file).lines() {
                // A torn last line (a crash while it was written) was never acknowledged.
                if let Ok(kept) = serde_json::from_str::<Kept>(&line?) {
                    queue.push_back(Waiting {
                        json: kept.json,
                        entry: kept.entry,
                        kept: true,
                        done: None,
                    });
                }
            }
        }
        let start = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        Ok(Outbox {
            writer: format!("{replica}-{start:x}"),
            next: AtomicU64::new(0),
            queue: Mutex::new(queue),
            wake: tokio::sync::Notify::new(),
            pending,
            trouble: Mutex::new(None),
        })
    }

    /// Queues `event`, in an entry of its own under `key` if it has one (a machine's report),
    /// else with the others. With `safe`, the receiver is told once the event is safe.
    pub fn send(&self, event: &Event, key: Option<String>, safe: Option<oneshot::Sender<()>>) {
        let Ok(json) = serde_json::to_string(event) else {
            return;
        };
        self.lock().push_back(Waiting {
            json,
            entry: key,
            kept: false,
            done: safe,
        });
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next entry to write, from the front of the queue: its key, its events as JSON lines,
    /// and how many there are. Events that have none yet get one here.
    fn next_entry(&self) -> Option<(String, String, usize)> {
        let mut queue = self.lock();
        let front = queue.front()?;
        let key = match &front.entry {
            Some(key) => key.clone(),
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let key = format!("{}/{n:016x}", self.writer);
                let mut bytes = 0;
                for waiting in queue.iter_mut().take(MAX_EVENTS) {
                    let full = bytes > 0 && bytes + waiting.json.len() > MAX_ENTRY_BYTES;
                    if waiting.entry.is_some() || full {
                        break;
                    }
                    bytes += waiting.json.len() + 1;
                    waiting.entry = Some(key.clone());
                }
                key
            }
        };
        let mut lines = String::new();
        let mut count = 0;
        for waiting in queue
            .iter()
            .take_while(|w| w.entry.as_deref() == Some(key.as_str()))
        {
            if count > 0 {
                lines.push('\n');
            }
            lines.push_str(&waiting.json);
            count += 1;
        }
        Some((key, lines, count))
    }

    /// Writes what is queued to `journal`, an entry at a time, until `stop`.
    pub async fn run(&self, journal: Journal, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let Some((key, lines, count)) = self.next_entry() else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            };
            match journal.append(&key, lines).await {
                Ok(()) => {
                    let left_kept = {
                        let mut queue = self.lock();
                        for waiting in queue.drain(..count) {
                            if let Some(done) = waiting.done {
                                let _ = done.send(());
                            }
                        }
                        queue.front().is_some_and(|w| w.kept)
                    };
                    if !left_kept {
                        self.recovered();
                    }
                }
                Err(e) => {
                    self.keep_locally(&e.to_string());
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
            }
        }
    }

    /// etcd refused: every queued event not yet in the pending file goes there, and its sender
    /// is told it is safe.
    fn keep_locally(&self, reason: &str) {
        {
            let mut trouble = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
            if trouble.is_none() {
                tracing::warn!(
                    "events cannot be written to the store ({reason}); they are kept in {} until it is back",
                    self.pending.display()
                );
            }
            *trouble = Some(format!("events are kept locally: {reason}"));
        }
        let mut queue = self.lock();
        let mut lines = Vec::new();
        for waiting in queue.iter().filter(|w| !w.kept) {
            let kept = Kept {
                entry: waiting.entry.clone(),
                json: waiting.json.clone(),
            };
            if let Ok(line) = serde_json::to_string(&kept) {
                lines.push(line);
            }
        }
        if lines.is_empty() {
            return;
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pending)
            .and_then(|mut file| {
                file.write_all(format!("{}\n", lines.join("\n")).as_bytes())?;
                file.sync_data()
            });
        match written {
            Ok(()) => {
                for waiting in queue.iter_mut().filter(|w| !w.kept) {
                    waiting.kept = true;
                    if let Some(done) = waiting.done.take() {
                        let _ = done.send(());
                    }
                }
            }
            Err(e) => tracing::error!(
                "keeping events in {}: {e}; they are held in memory only",
                self.pending.display()
            ),
        }
    }

    /// Everything kept locally has reached the journal: the pending file is emptied.
    fn recovered(&self) {
        let mut trouble = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        if trouble.take().is_some() {
            tracing::info!("the store takes events again; those kept locally are written");
        }
        let holds_some = std::fs::metadata(&self.pending).is_ok_and(|m| m.len() > 0);
        if holds_some && let Err(e) = File::create(&self.pending) {
            tracing::warn!("emptying {}: {e}", self.pending.display());
        }
    }
}
