//! HAProxy in the foreground.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::{Daemon, Proto, READY_TIMEOUT, StartError};

/// A real `haproxy -db` with a configuration file, stopped when dropped.
pub struct Haproxy {
    daemon: Daemon,
    _log: tempfile::TempDir,
}

impl Haproxy {
    /// Checks `config` with `haproxy -c`, starts it, and waits until its own process listens
    /// on every `bind` address of the file. The error carries haproxy's output.
    pub fn start(config: &Path) -> Result<Haproxy, StartError> {
        let text = std::fs::read_to_string(config)
            .map_err(|e| StartError::new(format!("{}: {e}", config.display())))?;
        let check = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(config)
            .output()
            .map_err(|e| {
                StartError::new(format!("haproxy does not run ({e}); ./test.sh installs it"))
            })?;
        if !check.status.success() {
            return Err(StartError::new(format!(
                "haproxy -c refused {}:\n{}{}",
                config.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let binds = binds(&text);
        let mut command = Command::new("haproxy");
        command.args(["-db", "-f"]).arg(config);
        let log = tempfile::tempdir().map_err(|e| StartError::new(format!("tempdir: {e}")))?;
        let mut daemon = Daemon::spawn("haproxy", command, &log.path().join("haproxy.log"))?;
        daemon.wait_listening(&binds, READY_TIMEOUT, |_| true)?;
        Ok(Haproxy { daemon, _log: log })
    }

    /// A generated configuration with its statistics page moved from `127.0.0.1:1936` (where
    /// `kindling create infra` puts it) to `port`, so that tests running at once do not meet.
    pub fn with_stats_port(generated: &str, port: u16) -> String {
        generated.replace("bind 127.0.0.1:1936", &format!("bind 127.0.0.1:{port}"))
    }

    /// The end of its log.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// The `bind ADDRESS:PORT` addresses of a configuration.
fn binds(config: &str) -> Vec<(SocketAddr, Proto)> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("bind "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .map(|addr| (addr, Proto::Tcp))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn binds_are_read_with_their_options() {
        let b = super::binds(
            "frontend a\n  bind 127.0.0.10:6443\n    bind 127.0.0.1:1936 name stats\n  bind *:80\n",
        );
        let addrs: Vec<String> = b.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.10:6443", "127.0.0.1:1936"]);
    }
}
