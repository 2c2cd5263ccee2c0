//! A log writer for `serve`, whose access log has a line per request: lines are appended to
//! a buffer, and a thread writes what has gathered at most every [`GATHER`], in one write(2),
//! instead of a write per line on the request path. No line is dropped: a buffer past
//! [`LIMIT`] (stderr not read) makes the logging thread wait for the writer, and the buffer is
//! written out when the command ends.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long lines gather before they are written.
const GATHER: Duration = Duration::from_millis(20);
/// The most bytes held before a logging thread waits for them to be written.
const LIMIT: usize = 4 << 20;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// The writing thread waits on it for lines; logging threads, for room.
    changed: Condvar,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Buffer> {
    shared.buffer.lock().unwrap_or_else(|p| p.into_inner())
}

/// The logging side: a `MakeWriter` for tracing-subscriber.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

/// Writes out what is left when dropped: hold it until the command ends.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A batched writer to `out`, and the guard that ends it.
pub fn writer(mut out: impl Write + Send + 'static) -> (Batched, Guard) {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Buffer::default()),
        changed: Condvar::new(),
    });
    let writing = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            loop {
                let bytes = {
                    let mut buffer = lock(&writing);
                    while buffer.bytes.is_empty() && !buffer.closed {
                        buffer = writing
                            .changed
                            .wait(buffer)
                            .unwrap_or_else(|p| p.into_inner());
                    }
                    if buffer.bytes.is_empty() {
                        return;
                    }
                    if !buffer.closed {
                        buffer = writing
                            .changed
                            .wait_timeout_while(buffer, GATHER, |b| {
                                !b.closed && b.bytes.len() < LIMIT
                            })
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    std::mem::take(&mut buffer.bytes)
                };
                // A log that cannot be written has nowhere to say so.
                let _ = out.write_all(&bytes);
                let _ = out.flush();
                // Room again for a logging thread that waited.
                writing.changed.notify_all();
            }
        })
        .ok();
    (
        Batched {
            shared: shared.clone(),
        },
        Guard { shared, thread },
    )
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log record's writer.
pub struct Line {
    shared: Arc<Shared>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = lock(&self.shared);
        if buffer.closed {
            // The writing thread is gone (the command is ending): straight to stderr, which
            // is what it writes to outside the tests.
            drop(buffer);
            return std::io::stderr().write(bytes);
        }
        while buffer.bytes.len() >= LIMIT && !buffer.closed {
            buffer = self
                .shared
                .changed
                .wait(buffer)
                .unwrap_or_else(|p| p.into_inner());
        }
        let first = buffer.bytes.is_empty();
        buffer.bytes.extend_from_slice(bytes);
        drop(buffer);
        if first {
            self.shared.changed.notify_all();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that many threads' handles append to, for reading back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_each_threads_order() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (batched, guard) = writer(sink.clone());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let batched = batched.clone();
                scope.spawn(move || {
                    for i in 0..20_000 {
                        // One write per record, as tracing makes it.
                        let line = format!("thread {t} line {i}\n");
                        batched.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 80_000);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..20_000).collect::<Vec<_>>());
        }
    }
}
