//! Test support: the real daemons kindling's tests drive, started so that a loaded machine cannot
//! make a test fail at random.
//!
//! Three rules, each against a way such tests flake:
//! - [`port`] hands out each port once per test process, from below the kernel's ephemeral
//!   range, so neither another test nor an outgoing connection's source port takes it between
//!   the choice and the daemon's bind.
//! - A daemon is ready only when [`Daemon::listens`] proves that *its* process holds the socket
//!   on *its* port (the kernel's socket tables against the process's file descriptors), and it
//!   still runs. A log line such as named's "running" is not proof: named says it even when it
//!   could not bind.
//! - Every wait is bounded, and a failure carries the daemon's own log. [`retry`] starts again on
//!   a new port where the test can choose one.

mod daemon;
mod etcd;
mod haproxy;
pub mod kube;
pub mod mirror;
mod named;
pub mod oci;
mod ports;
mod sockets;

pub use daemon::{Daemon, StartError, retry};
pub use etcd::{EtcdCluster, EtcdTls};
pub use haproxy::Haproxy;
pub use named::Named;
pub use ports::port;
pub use sockets::Proto;

use std::time::Duration;

/// How long a daemon may take to become ready. Generous: two busy processes on a 2-core machine
/// slow a start-up from a second to several.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether `program` can be run (it answers `--version`).
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// A program from `../shared/tools` beside the repository (real third-party builds that CI
/// always has, such as Ignition 0.35 and 2.26), or from `$KINDLING_SHARED_TOOLS`. Where it is
/// absent the test says that it is skipped and why, on stderr, and gets `None`.
pub fn shared_tool(test: &str, relative: &str) -> Option<std::path::PathBuf> {
    let root = std::env::var_os("KINDLING_SHARED_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools")
        });
    let path = root.join(relative);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED {test}: {} is not here (the tests take real third-party builds from \
             ../shared/tools beside the repository, or from $KINDLING_SHARED_TOOLS)",
            path.display()
        );
        None
    }
}
