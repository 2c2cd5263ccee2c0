//! Stage records sent to `kindling serve` (`POST /api/v1/events` with the machine's MAC and
//! token): best effort, with short timeouts, so a server that is down or slow never holds a
//! stage up. The token is never logged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::record::StageRecord;
use crate::{AgentError, io_error};

/// At most this long to connect, and this long for each read or write.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The machine's identity towards `kindling serve`.
#[derive(Clone)]
pub struct MachineIdentity {
    pub mac: String,
    pub token: String,
}

impl std::fmt::Debug for MachineIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineIdentity")
            .field("mac", &self.mac)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl MachineIdentity {
    /// Reads the identity file that Ignition writes (root-only): `mac=<MAC>` and
    /// `token=<token>` lines. None when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<MachineIdentity>, AgentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", path)(e)),
        };
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match (get("mac"), get("token")) {
            (Some(mac), Some(token)) => Ok(Some(MachineIdentity { mac, token })),
            _ => Err(AgentError::Pod {
                path: path.to_path_buf(),
                reason: "needs a mac= and a token= line".into(),
            }),
        }
    }
}

/// Sends records to one server.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `host:port` of the server's plain-HTTP listener.
    authority: String,
    identity: MachineIdentity,
}

impl Reporter {
    /// A reporter for `server_url` (`http://host:port`, `kindling serve`'s boot server).
    pub fn new(server_url: &str, identity: MachineIdentity) -> Option<Reporter> {
        let authority = server_url
            .strip_prefix("http://")?
            .trim_end_matches('/')
            .to_string();
        if authority.is_empty() || authority.contains('/') {
            return None;
        }
        Some(Reporter {
            authority,
            identity,
        })
    }

    /// Sends one record; failures are logged at debug level and otherwise ignored.
    pub fn send(&self, record: &StageRecord) {
        let stage = format!("agent {}: {} {}", record.agent, record.stage, record.phase);
        self.send_event(&stage, &record.result, &record.error_message);
    }

    /// Sends an event with this stage name and result.
    pub fn send_event(&self, stage: &str, result: &str, error: &str) {
        let body = serde_json::json!({
            "mac": self.identity.mac,
            "token": self.identity.token,
            "stage": stage,
            "result": result,
            "errorMessage": error,
        })
        .to_string();
        if let Err(e) = self.post(&body) {
            tracing::debug!("reporting '{stage}' to http://{}: {e}", self.authority);
        }
    }

    fn post(&self, body: &str) -> std::io::Result<()> {
        let addr: SocketAddr = self
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        tcp.set_write_timeout(Some(TIMEOUT))?;
        let request = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nUser-Agent: kindling-agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        tcp.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        tcp.take(4096).read_to_end(&mut answer)?;
        let status = answer
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("?");
        if status.starts_with('2') {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("HTTP {status}")))
        }
    }
}
