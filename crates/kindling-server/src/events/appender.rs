//! Appends events to the log file off the request path. A request queues its event and goes
//! on; one thread writes what has gathered, at most every [`GATHER`], in one write(2), then
//! gives the events their ids and sends them to the streams. A report that must be safe before
//! it is acknowledged is written at once, and its sender told when it is.
//!
//! When the file cannot be written (a full or read-only filesystem), what part of a batch got
//! in is cut off again, so the log never keeps a torn line; the events are held in memory (up to
//! [`HELD`]) and tried again every [`RETRY`]; `/healthz` says why, and the log says so once a
//! minute, not once an event. A report waiting to be acknowledged is told it failed (its agent
//! sends it again). Once the file can be written, the held events go in, in order.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

use super::{Json, Writer, json_of};

/// How long the thread lets events gather before it writes them.
const GATHER: Duration = Duration::from_millis(20);
/// How many events make the thread write without waiting out [`GATHER`].
const MAX_BATCH: usize = 4096;
/// How often a file that cannot be written is tried again.
pub(super) const RETRY: Duration = Duration::from_secs(1);
/// How many events are held while the file cannot be written (~20 MB); older ones are dropped,
/// and counted.
const HELD: usize = 50_000;
/// How often a file that still cannot be written is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// An acknowledgement: Ok once the event is in the file, or why it could not be written.
pub(super) type Done = oneshot::Sender<Result<(), String>>;

struct Queued {
    /// The event's JSON and its newline.
    line: Vec<u8>,
    done: Option<Done>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Queued>,
    /// Write now: somebody waits for it.
    urgent: bool,
    closed: bool,
    /// Events queued so far, and events written or given up so far: a flush waits for the
    /// second to reach the first.
    queued: u64,
    settled: u64,
    /// Why the file cannot be written, while it cannot.
    trouble: Option<String>,
}

/// The queue and its thread.
pub(super) struct Appender {
    queue: Mutex<Queue>,
    /// The thread waits on it for work.
    work: Condvar,
    /// Flushes wait on it for events to settle.
    settled: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the thread writes to.
pub(super) struct Target {
    pub writer: Arc<Mutex<Writer>>,
    pub stream: broadcast::Sender<(u64, Json)>,
    pub path: PathBuf,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Appender {
    /// Starts the thread that appends to `target`; `unopened` is why its file could not be
    /// opened, if it could not (a read-only or full disk), so that it is tried again.
    pub fn start(
        target: Target,
        unopened: Option<std::io::Error>,
    ) -> std::io::Result<Arc<Appender>> {
        let mut queue = Queue::default();
        let mut failing = None;
        if let Some(error) = unopened {
            let reason = format!(
                "the event log {} cannot be written: {error}",
                target.path.display()
            );
            let mut failed = Failing::default();
            failed.log(&reason, None);
            queue.trouble = Some(format!("{reason} (0 events held in memory)"));
            failing = Some(failed);
        }
        let appender = Arc::new(Appender {
            queue: Mutex::new(queue),
            work: Condvar::new(),
            settled: Condvar::new(),
            thread: Mutex::new(None),
        });
        let running = appender.clone();
        let thread = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || running.run(&target, failing))?;
        *lock(&appender.thread) = Some(thread);
        Ok(appender)
    }

    /// Queues an event's JSON `line`; `done` is told once it is written.
    pub fn send(&self, line: Vec<u8>, done: Option<Done>) {
        let mut queue = lock(&self.queue);
        let urgent = done.is_some();
        queue.waiting.push_back(Queued { line, done });
        queue.queued += 1;
        queue.urgent |= urgent;
        // The thread sleeps on an empty queue; once woken it gathers for a while on its own.
        let wake = queue.waiting.len() == 1 || queue.waiting.len() >= MAX_BATCH || urgent;
        drop(queue);
        if wake {
            self.work.notify_one();
        }
    }

    /// Waits until the events queued so far are written (or the file cannot be written), for
    /// a reader that must see its own writes.
    pub fn flush(&self) {
        let mut queue = lock(&self.queue);
        let target = queue.queued;
        queue.urgent = true;
        self.work.notify_one();
        let deadline = Instant::now() + Duration::from_secs(5);
        while queue.settled < target && queue.trouble.is_none() && !queue.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .settled
                .wait_timeout(queue, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Why the file cannot be written now, if it cannot.
    pub fn trouble(&self) -> Option<String> {
        lock(&self.queue).trouble.clone()
    }

    /// Writes what is queued and stops the thread.
    pub fn close(&self) {
        lock(&self.queue).closed = true;
        self.work.notify_one();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }

    fn run(&self, target: &Target, mut failing: Option<Failing>) {
        loop {
            let mut batch = {
                let mut queue = lock(&self.queue);
                while queue.waiting.is_empty() && !queue.closed {
                    queue = self.work.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.waiting.is_empty() {
                    return;
                }
                let deadline = Instant::now() + if failing.is_some() { RETRY } else { GATHER };
                loop {
                    let full = queue.urgent || queue.waiting.len() >= MAX_BATCH;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if queue.closed || left.is_zero() || (full && failing.is_none()) {
                        break;
                    }
                    queue = self
                        .work
                        .wait_timeout(queue, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                queue.urgent = false;
                std::mem::take(&mut queue.waiting)
            };
            let count = batch.len() as u64;
            match append(target, &mut batch) {
                Ok(()) => {
                    if let Some(failed) = failing.take() {
                        tracing::warn!(
                            "the event log {} is written again ({} events held were written{})",
                            target.path.display(),
                            failed.held,
                            dropped_text(failed.dropped)
                        );
                    }
                    let mut queue = lock(&self.queue);
                    queue.settled += count;
                    queue.trouble = None;
                }
                Err(e) => {
                    let reason = format!(
                        "the event log {} cannot be written: {e}",
                        target.path.display()
                    );
                    let mut queue = lock(&self.queue);
                    let closed = queue.closed;
                    // A report is told at once, so that its agent sends it again; the rest wait.
                    let mut given_up = 0;
                    for queued in batch.drain(..).rev() {
                        match queued.done {
                            Some(done) => {
                                let _ = done.send(Err(reason.clone()));
                                given_up += 1;
                            }
                            None if closed => given_up += 1,
                            None => queue.waiting.push_front(queued),
                        }
                    }
                    let mut dropped = 0;
                    while queue.waiting.len() > HELD {
                        queue.waiting.pop_front();
                        dropped += 1;
                    }
                    queue.settled += given_up + dropped;
                    queue.trouble = Some(format!(
                        "{reason} ({} events held in memory)",
                        queue.waiting.len()
                    ));
                    let held = queue.waiting.len();
                    drop(queue);
                    let failed = failing.get_or_insert_with(Failing::default);
                    failed.held = held;
                    failed.dropped += dropped;
                    failed.log(&reason, closed.then_some(given_up));
                }
            }
            self.settled.notify_all();
        }
    }
}

/// A spell of failed writes, for logging it once a minute.
#[derive(Default)]
struct Failing {
    logged: Option<Instant>,
    attempts: u64,
    held: usize,
    dropped: u64,
}

impl Failing {
    /// Logs the failure, if it is the first or a minute has passed; `lost` when closing.
    fn log(&mut self, reason: &str, lost: Option<u64>) {
        self.attempts += 1;
        if let Some(lost) = lost {
            tracing::error!("{reason}: {lost} events are lost as the server stops");
            return;
        }
        if self.logged.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        self.logged = Some(Instant::now());
        tracing::error!(
            "{reason}; {} events are held in memory and written once it can be (tried {} time(s){})",
            self.held,
            self.attempts,
            dropped_text(self.dropped)
        );
    }
}

fn dropped_text(dropped: u64) -> String {
    match dropped {
        0 => String::new(),
        n => format!("; {n} older ones were dropped"),
    }
}

/// Writes `batch` in one write, then gives each event its id, sends it to the streams and tells
/// its sender. On failure, the file is cut back to where it was and the batch left as it is.
fn append(target: &Target, batch: &mut VecDeque<Queued>) -> std::io::Result<()> {
    let mut writer = lock(&target.writer);
    let Writer { file, end, .. } = &mut *writer;
    // Not opened yet: the disk was read-only or full when the server started.
    let file = match file {
        Some(file) => file,
        None => file.insert(super::open_for_append(&target.path)?),
    };
    // A failed write whose cut failed too left part of a line in the file: the next event
    // starts on a line of its own, and ids go on from the file's real length.
    let length = file.metadata()?.len();
    let torn = length != *end;
    let mut bytes = Vec::with_capacity(batch.iter().map(|q| q.line.len()).sum::<usize>() + 1);
    if torn {
        bytes.push(b'\n');
    }
    for queued in batch.iter() {
        bytes.extend_from_slice(&queued.line);
    }
    if let Err(e) = file.write_all(&bytes) {
        let _ = file.set_len(length);
        return Err(e);
    }
    let mut id = length + u64::from(torn);
    for queued in batch.drain(..) {
        id += queued.line.len() as u64;
        // Under the lock, so that streams see the events in the order of their ids. Nobody
        // listening is fine.
        let _ = target.stream.send((id, json_of(&queued.line)));
        if let Some(done) = queued.done {
            let _ = done.send(Ok(()));
        }
    }
    *end = id;
    Ok(())
}
