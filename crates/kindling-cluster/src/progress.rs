//! What `kindling serve` knows of each machine: `GET <serverURL>/api/v1/machines`, each
//! machine's last stage (PXE, Ignition, agent stages…). wait-for shows it, counts its changes as
//! progress, and names a stuck machine's last stage.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One row of `/api/v1/machines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineStage {
    pub name: String,
    #[serde(default)]
    pub role: String,
    /// The last stage kindling serve saw; none before the machine's first request.
    #[serde(default)]
    pub stage: Option<String>,
    /// RFC 3339 time of that stage.
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Deserialize)]
struct MachineList {
    machines: Vec<MachineStage>,
}

/// A reader of kindling serve's machine list.
#[derive(Debug, Clone)]
pub struct ServerProgress {
    /// `provisioning.serverURL`, e.g. `http://192.168.126.2:8080`.
    pub url: String,
}

/// How long one read of the list may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest list read (100,000 machines are ~15 MB).
const LIMIT: u64 = 64 << 20;

impl ServerProgress {
    pub fn new(server_url: &str) -> ServerProgress {
        ServerProgress {
            url: server_url.trim_end_matches('/').to_string(),
        }
    }

    /// Each machine's last stage; the error says why the server did not answer.
    pub async fn machines(&self) -> Result<Vec<MachineStage>, String> {
        tokio::time::timeout(TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())))
    }

    /// A plain HTTP/1.0 GET: kindling serve's boot server is plain HTTP (as PXE needs), and
    /// HTTP/1.0 gets the body unchunked, so no HTTP client library is needed.
    async fn fetch(&self) -> Result<Vec<MachineStage>, String> {
        let rest = self.url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{} is not an http:// URL (kindling serve's boot server)",
                self.url
            )
        })?;
        let (authority, base) = match rest.split_once('/') {
            Some((authority, path)) => (authority, format!("/{path}")),
            None => (rest, String::new()),
        };
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let address = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let request = format!(
            "GET {base}/api/v1/machines HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut raw = Vec::new();
        stream
            .take(LIMIT)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("the answer is not HTTP")?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head.split(' ').nth(1).unwrap_or_default();
        if status != "200" {
            let line = head.lines().next().unwrap_or_default();
            return Err(format!("/api/v1/machines answered {line:?}"));
        }
        serde_json::from_slice::<MachineList>(&raw[split + 4..])
            .map(|list| list.machines)
            .map_err(|e| format!("/api/v1/machines is not kindling serve's machine list: {e}"))
    }
}
