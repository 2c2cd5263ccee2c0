//! What `kindling serve` knows of each machine: `GET <serverURL>/api/v1/machines`, each
//! machine's last stage (PXE, Ignition, agent stages…). wait-for shows it, counts its changes as
//! progress, and names a stuck machine's last stage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
const LIMIT: usize = 64 << 20;

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

    /// `GET <serverURL>/api/v1/machines` over plain HTTP (kindling serve's boot server is plain
    /// HTTP, as PXE needs).
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
        let target = kindling_http::Target::from_authority(authority, 80)
            .ok_or_else(|| format!("{} has no usable host and port", self.url))?;
        let timeouts = kindling_http::Timeouts {
            connect: TIMEOUT,
            exchange: TIMEOUT,
        };
        let response = kindling_http::Client::plain(timeouts)
            .with_limit(LIMIT)
            .get_async(&target, &format!("{base}/api/v1/machines"))
            .await
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!(
                "/api/v1/machines answered HTTP {}",
                response.status
            ));
        }
        serde_json::from_slice::<MachineList>(&response.body)
            .map(|list| list.machines)
            .map_err(|e| format!("/api/v1/machines is not kindling serve's machine list: {e}"))
    }
}
