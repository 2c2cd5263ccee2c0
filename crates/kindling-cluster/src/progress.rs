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
#[derive(Clone)]
pub struct ServerProgress {
    /// `provisioning.serverURL`, e.g. `http://192.168.126.2:8080`.
    pub url: String,
    /// The file holding the admin token the list needs (the asset directory's
    /// `auth/kindling-admin-token`), read at each request: serve makes it when it first starts.
    admin_token: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServerProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProgress")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How long one read of the list may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest list read (100,000 machines are ~15 MB).
const LIMIT: usize = 64 << 20;

impl ServerProgress {
    pub fn new(server_url: &str) -> ServerProgress {
        ServerProgress {
            url: server_url.trim_end_matches('/').to_string(),
            admin_token: None,
        }
    }

    /// Reads the list with the admin token in the file `path`.
    pub fn with_admin_token_file(mut self, path: std::path::PathBuf) -> ServerProgress {
        self.admin_token = Some(path);
        self
    }

    /// Each machine's last stage; the error says why the server did not answer.
    pub async fn machines(&self) -> Result<Vec<MachineStage>, String> {
        tokio::time::timeout(TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())))
    }

    /// Whether kindling serve answers `/healthz` there (healthy or degraded).
    pub async fn answers(&self) -> bool {
        let Ok((target, base)) = self.endpoint() else {
            return false;
        };
        let timeouts = kindling_http::Timeouts {
            connect: TIMEOUT,
            exchange: TIMEOUT,
        };
        kindling_http::Client::plain(timeouts)
            .get_async(&target, &format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.is_success())
    }

    /// The server, and the path under which it serves (kindling serve's boot server is plain
    /// HTTP, as PXE needs).
    fn endpoint(&self) -> Result<(kindling_http::Target, String), String> {
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
        Ok((target, base))
    }

    /// `GET <serverURL>/api/v1/machines`.
    async fn fetch(&self) -> Result<Vec<MachineStage>, String> {
        let (target, base) = self.endpoint()?;
        let timeouts = kindling_http::Timeouts {
            connect: TIMEOUT,
            exchange: TIMEOUT,
        };
        let mut client = kindling_http::Client::plain(timeouts).with_limit(LIMIT);
        let token = self
            .admin_token
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok());
        if let Some(token) = &token {
            client = client.with_bearer(token);
        }
        let response = client
            .get_async(&target, &format!("{base}/api/v1/machines"))
            .await
            .map_err(|e| e.to_string())?;
        if response.status == 401 {
            return Err(format!(
                "/api/v1/machines needs the admin token, and {}",
                if token.is_some() {
                    "kindling serve refused the asset directory's auth/kindling-admin-token (is it serving another directory?)"
                } else {
                    "the asset directory has no auth/kindling-admin-token yet (kindling serve makes it when it starts)"
                }
            ));
        }
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
