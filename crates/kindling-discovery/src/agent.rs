//! `kindling agent discover`, on a machine that booted the discovery profile: it reports the
//! machine's hardware once, with the one-time token from its kernel arguments, then asks the
//! server every few seconds whether the machine has been accepted. When it has, the caller
//! reboots it into its install.

use std::path::Path;
use std::time::Duration;

use kindling_config::MacAddr;

use crate::{Hardware, Report};

/// Kernel arguments the discovery profile sets.
pub const SERVER_ARG: &str = "kindling.discovery.server";
pub const MAC_ARG: &str = "kindling.discovery.mac";
pub const TOKEN_ARG: &str = "kindling.discovery.token";

/// Where the server takes reports, and where it says whether a MAC has been accepted.
pub const REPORT_PATH: &str = "/api/v1/discovery";
pub const STATUS_PATH: &str = "/discovery/status";

/// What the status endpoint answers.
pub const PENDING: &str = "pending";
pub const INSTALL: &str = "install";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "the kernel arguments lack {0}: this machine did not boot kindling's discovery profile (kindling serve --discover gives it to machines it does not know)"
    )]
    Missing(&'static str),
    #[error("{arg}={value} is not {what}")]
    Malformed {
        arg: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(
        "kindling serve refused the report (HTTP {status}): {reason}; reboot the machine for a new token"
    )]
    Refused { status: u16, reason: String },
    #[error("kindling serve at {server} did not take the report after {attempts} tries: {last}")]
    Unreachable {
        server: String,
        attempts: u32,
        last: String,
    },
}

/// What the kernel arguments say of this boot.
#[derive(Clone)]
pub struct Boot {
    /// `http://host:port` of `kindling serve`.
    pub server: String,
    pub mac: MacAddr,
    token: String,
}

impl std::fmt::Debug for Boot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boot")
            .field("server", &self.server)
            .field("mac", &self.mac)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Boot {
    /// Reads `kindling.discovery.*` from a kernel command line (`/proc/cmdline`).
    pub fn from_cmdline(cmdline: &str) -> Result<Boot, AgentError> {
        let get = |key: &'static str| {
            cmdline
                .split_whitespace()
                .find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
                .filter(|v| !v.is_empty())
                .ok_or(AgentError::Missing(key))
        };
        let server = get(SERVER_ARG)?;
        if !server.starts_with("http://") {
            return Err(AgentError::Malformed {
                arg: SERVER_ARG,
                value: server.into(),
                what: "an http:// URL",
            });
        }
        let mac = get(MAC_ARG)?;
        Ok(Boot {
            server: server.trim_end_matches('/').to_string(),
            mac: mac.parse().map_err(|_| AgentError::Malformed {
                arg: MAC_ARG,
                value: mac.into(),
                what: "a MAC address",
            })?,
            token: get(TOKEN_ARG)?.to_string(),
        })
    }
}

/// Talks to the server for one boot.
pub struct Agent {
    boot: Boot,
    target: kindling_http::Target,
    client: kindling_http::Client,
    /// Between two tries of the report, and between two questions about the status.
    pub pause: Duration,
    /// How many times the report is tried while the server cannot be reached.
    pub attempts: u32,
}

impl Agent {
    pub fn new(boot: Boot) -> Result<Agent, AgentError> {
        let authority = boot.server.trim_start_matches("http://");
        let target = kindling_http::Target::from_authority(authority, 80).ok_or_else(|| {
            AgentError::Malformed {
                arg: SERVER_ARG,
                value: boot.server.clone(),
                what: "an http://host:port URL",
            }
        })?;
        let timeouts = kindling_http::Timeouts {
            connect: Duration::from_secs(5),
            exchange: Duration::from_secs(10),
        };
        Ok(Agent {
            boot,
            target,
            client: kindling_http::Client::plain(timeouts)
                .with_user_agent("kindling-discovery")
                .with_limit(64 * 1024),
            pause: Duration::from_secs(5),
            attempts: 120,
        })
    }

    /// Sends the report; tried again while the server cannot be reached or answers 5xx.
    pub fn report(&self, hardware: Hardware) -> Result<(), AgentError> {
        let body = serde_json::to_vec(&Report {
            mac: self.boot.mac.to_string(),
            token: self.boot.token.clone(),
            hardware,
        })
        .unwrap_or_default();
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.client.post_json(&self.target, REPORT_PATH, &body) {
                Ok(answer) if answer.is_success() => return Ok(()),
                Ok(answer) if answer.status < 500 => {
                    return Err(AgentError::Refused {
                        status: answer.status,
                        reason: String::from_utf8_lossy(&answer.body).trim().to_string(),
                    });
                }
                Ok(answer) => last = format!("HTTP {}", answer.status),
                Err(e) => last = e.to_string(),
            }
            tracing::info!("reporting to {} (try {attempt}): {last}", self.boot.server);
            std::thread::sleep(self.pause);
        }
        Err(AgentError::Unreachable {
            server: self.boot.server.clone(),
            attempts: self.attempts,
            last,
        })
    }

    /// Returns once the server says this machine has been accepted and has an install to boot.
    pub fn wait_for_install(&self) {
        let path = format!("{STATUS_PATH}?mac={}", self.boot.mac.hexhyp());
        loop {
            match self.client.get(&self.target, &path) {
                Ok(answer) if answer.is_success() => {
                    if String::from_utf8_lossy(&answer.body).trim() == INSTALL {
                        return;
                    }
                }
                Ok(answer) => tracing::info!("asking whether accepted: HTTP {}", answer.status),
                Err(e) => tracing::info!("asking whether accepted: {e}"),
            }
            std::thread::sleep(self.pause);
        }
    }
}

/// Reboots the machine: through systemd where it runs the system (the live OS), else at once
/// (`reboot -f`, as a minimal initramfs has it).
pub fn reboot() -> std::io::Result<()> {
    let mut command = if Path::new("/run/systemd/system").exists() {
        let mut c = std::process::Command::new("systemctl");
        c.arg("reboot");
        c
    } else {
        let mut c = std::process::Command::new("reboot");
        c.arg("-f");
        c
    };
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{command:?} failed: {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_is_read_from_the_kernel_arguments_and_what_lacks_is_named() {
        let line = "initrd=initrd.img kindling.discovery.server=http://10.0.2.2:8080/ kindling.discovery.mac=52-54-00-aa-bb-01 kindling.discovery.token=0123abcd console=ttyS0";
        let boot = Boot::from_cmdline(line).unwrap();
        assert_eq!(boot.server, "http://10.0.2.2:8080");
        assert_eq!(boot.mac.to_string(), "52:54:00:aa:bb:01");
        assert!(!format!("{boot:?}").contains("0123abcd"));
        let err = Boot::from_cmdline("console=ttyS0").unwrap_err().to_string();
        assert!(
            err.starts_with("the kernel arguments lack kindling.discovery.server"),
            "{err}"
        );
        let err = Boot::from_cmdline(&line.replace("52-54-00-aa-bb-01", "nope"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "kindling.discovery.mac=nope is not a MAC address");
    }
}
