//! The event log of a `serve --store` replica. Events are not written to the local file when
//! they happen: they go to the store's journal (kindling-store's `journal`), and every
//! replica's events come back from it, in the journal's order and with its ids, into the local
//! file, which is so a mirror of the journal. A stream on any replica shows every replica's
//! events, and an id from one replica is good on another.
//!
//! Writes are batched by one task. While etcd cannot take them (no quorum), they are kept in a
//! local file of their own (`pending.jsonl`) and written once etcd is back: each has a key of its
//! own, so a write that is retried is still written once.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kindling_store::journal::{BATCH, Journal, Record};
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

/// The writing side: what is waiting to go to the journal.
pub(super) struct Outbox {
    /// `<replica>-<start>`: the start of this process's event keys.
    writer: String,
    next: AtomicU64,
    queue: Mutex<VecDeque<Waiting>>,
    wake: tokio::sync::Notify,
    pending: PathBuf,
    /// Why events cannot be written now, while they cannot.
    pub trouble: Mutex<Option<String>>,
}

struct Waiting {
    record: Record,
    /// Whether it is in the pending file already.
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
                if let Ok(record) = serde_json::from_str::<Record>(&line?) {
                    queue.push_back(Waiting {
                        record,
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

    /// Queues `event`, under `key` if it has one of its own (a machine's report), else under
    /// this process's next. The receiver is told once the event is safe.
    pub fn send(&self, event: &Event, key: Option<String>) -> oneshot::Receiver<()> {
        let (done, safe) = oneshot::channel();
        let Ok(json) = serde_json::to_string(event) else {
            return safe;
        };
        let key = key.unwrap_or_else(|| {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            format!("{}/{n:016x}", self.writer)
        });
        self.lock().push_back(Waiting {
            record: Record { key, json },
            kept: false,
            done: Some(done),
        });
        self.wake.notify_one();
        safe
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what is queued to `journal`, a batch at a time, until `stop`.
    pub async fn run(&self, journal: Journal, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let batch: Vec<Record> = self
                .lock()
                .iter()
                .take(BATCH)
                .map(|w| w.record.clone())
                .collect();
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
            match journal.append(&batch).await {
                Ok(()) => {
                    let left_kept = {
                        let mut queue = self.lock();
                        for waiting in queue.drain(..batch.len()) {
                            if let Some(done) = waiting.done {
                                let _ = done.send(());
                            }
                        }
                        queue.iter().any(|w| w.kept)
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
            if let Ok(line) = serde_json::to_string(&waiting.record) {
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
