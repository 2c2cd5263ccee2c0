//! A daemon process under test: its log kept, its readiness proven, and stopped when dropped.

use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sockets::{self, Proto};

/// How many lines of a daemon's log a failure shows.
const LOG_TAIL: usize = 60;

/// A started daemon: stdout and stderr go to its log file. Dropping it stops it: SIGKILL, or
/// SIGTERM first for one made with [`Daemon::terminate_on_drop`].
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    terminate: bool,
}

/// Why a daemon did not become ready, with its log.
#[derive(Debug)]
pub struct StartError(String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// An error before the daemon ran (its configuration could not be written, say).
    pub fn new(message: String) -> StartError {
        StartError(message)
    }
}

impl Daemon {
    /// Starts `command` as `name`, stdin closed, stdout and stderr to `log` (created).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Daemon, StartError> {
        let open = || {
            File::create(log)
                .map_err(|e| StartError(format!("{name}: creating {}: {e}", log.display())))
        };
        let out = open()?;
        let err = out
            .try_clone()
            .map_err(|e| StartError(format!("{name}: {}: {e}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                StartError(format!(
                    "{name} does not run ({e}): is it installed? ./test.sh installs it"
                ))
            })?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            terminate: false,
        })
    }

    /// Stops the daemon with SIGTERM when dropped (SIGKILL after 15 s), so that it can finish
    /// what it is doing.
    pub fn terminate_on_drop(mut self) -> Daemon {
        self.terminate = true;
        self
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process, for tests that signal it or wait for it themselves.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The last lines of the daemon's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }

    /// The last lines of the daemon's log once `done` holds of them, or after 10 s: for a line
    /// that a request causes, since a server may write its log just after it answers (kindling
    /// serve does, in batches).
    pub fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if done(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this daemon's own process holds a socket on `addr`.
    pub fn listens(&self, addr: SocketAddr, proto: Proto) -> bool {
        sockets::listens(self.child.id(), addr, proto)
    }

    /// Waits up to `timeout` for `ready`, while the daemon runs. `what` says what is awaited
    /// ("listening on 127.0.0.1:10053"), for the error.
    pub fn wait_ready(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Daemon) -> bool,
    ) -> Result<(), StartError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(self.failure(what, &format!("it exited ({status})")));
            }
            if ready(self) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(self.failure(what, &format!("not ready after {} s", timeout.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until this daemon's process listens on every one of `addrs` and `ready` holds.
    pub fn wait_listening(
        &mut self,
        addrs: &[(SocketAddr, Proto)],
        timeout: Duration,
        mut ready: impl FnMut(&Daemon) -> bool,
    ) -> Result<(), StartError> {
        let what = addrs
            .iter()
            .map(|(a, p)| format!("{a}/{}", if *p == Proto::Tcp { "tcp" } else { "udp" }))
            .collect::<Vec<_>>()
            .join(", ");
        self.wait_ready(&format!("listening on {what}"), timeout, |d| {
            addrs.iter().all(|(a, p)| d.listens(*a, *p)) && ready(d)
        })
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error that names the daemon, what was awaited and why it failed, with its log.
    pub fn failure(&self, what: &str, why: &str) -> StartError {
        StartError(format!(
            "{} (pid {}) was not {what}: {why}\n--- {}'s log ({}) ---\n{}\n---",
            self.name,
            self.child.id(),
            self.name,
            self.log.display(),
            self.log()
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.terminate && self.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `start` up to `attempts` times, each time with a fresh choice of ports (the closure
/// calls [`crate::port`]), until one start is ready. Panics with every attempt's error.
pub fn retry<T>(attempts: usize, mut start: impl FnMut() -> Result<T, StartError>) -> T {
    let mut errors = Vec::new();
    for _ in 0..attempts {
        match start() {
            Ok(started) => return started,
            Err(e) => errors.push(e.to_string()),
        }
    }
    panic!("no start in {attempts} attempts:\n{}", errors.join("\n\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_exits_fails_at_once_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'cannot bind: address in use' >&2; exit 3"]);
        let mut d = Daemon::spawn("fake-daemon", command, &dir.path().join("log")).unwrap();
        let started = Instant::now();
        let e = d
            .wait_ready("listening", Duration::from_secs(30), |_| false)
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(e.contains("fake-daemon"), "{e}");
        assert!(e.contains("exited (exit status: 3)"), "{e}");
        assert!(e.contains("cannot bind: address in use"), "{e}");
    }

    #[test]
    fn a_daemon_that_never_listens_times_out_naming_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut d = Daemon::spawn("sleeper", command, &dir.path().join("log")).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], crate::port()));
        let e = d
            .wait_listening(&[(addr, Proto::Tcp)], Duration::from_millis(300), |_| true)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("listening on {addr}/tcp")), "{e}");
        assert!(e.contains("not ready after 0 s"), "{e}");
    }

    #[test]
    fn a_missing_program_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let e = Daemon::spawn(
            "nope",
            Command::new("/nonexistent/daemon"),
            &dir.path().join("log"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("nope does not run"), "{e}");
    }
}
