//! A ComputerSystem over Redfish: its power state, `ComputerSystem.Reset`, and a one-time
//! network boot (`Boot.BootSourceOverrideTarget: Pxe`, `BootSourceOverrideEnabled: Once`). HTTP
//! Basic credentials on every request (not every BMC has a SessionService). Written over
//! kindling-http rather than a Redfish crate: each of those brings a second HTTP client, and
//! three calls are all kindling needs (README, "Power").

use serde_json::{Value, json};

use crate::credentials::Credentials;
use crate::{Action, PowerError, PowerState};

/// One system's BMC.
pub struct System {
    client: kindling_http::Client,
    target: kindling_http::Target,
    /// `/redfish/v1/Systems/<id>`.
    path: String,
    /// For messages: the system's URL.
    url: String,
}

/// What a BMC's error answer says, in words: Redfish's own message (the first extended one,
/// else the error's), or the start of the body when it is not Redfish's JSON.
pub fn said(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let error = &v["error"];
            let extended = error["@Message.ExtendedInfo"][0]["Message"].as_str();
            extended.or(error["message"].as_str()).map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// The host's CA bundle, read once however many BMCs are asked.
fn host_bundle() -> Result<&'static Vec<u8>, &'static str> {
    static BUNDLE: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    const PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
    BUNDLE
        .get_or_init(|| {
            std::fs::read(PATH).map_err(|e| {
                format!("{PATH}: {e}; install ca-certificates, or set insecure: true for a self-signed BMC")
            })
        })
        .as_ref()
        .map_err(String::as_str)
}

impl System {
    /// The system at `system_url` (`https://bmc/redfish/v1/Systems/1`), asked with
    /// `credentials`; `insecure` accepts a certificate that does not verify.
    pub fn new(
        system_url: &str,
        credentials: &Credentials,
        insecure: bool,
        timeouts: kindling_http::Timeouts,
    ) -> Result<System, PowerError> {
        let bad = |reason: &str| PowerError::Address {
            address: system_url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = system_url
            .split_once("://")
            .ok_or_else(|| bad("no scheme"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (port, tls) = match scheme {
            "https" if insecure => (443, kindling_http::Tls::Unverified),
            "https" => {
                // The host's CA bundle: a BMC whose certificate is signed by a CA it trusts.
                let bundle = host_bundle().map_err(&bad)?;
                (
                    443,
                    kindling_http::Tls::Roots {
                        ca_pem: bundle.clone(),
                        client_identity: None,
                    },
                )
            }
            "http" => (80, kindling_http::Tls::None),
            other => return Err(bad(&format!("scheme {other} is not https or http"))),
        };
        let target = kindling_http::Target::from_authority(authority, port)
            .ok_or_else(|| bad("no usable host and port"))?;
        let client = kindling_http::Client::new(tls, timeouts)
            .map_err(|e| bad(&e.to_string()))?
            .with_limit(1 << 20)
            .with_basic_auth(&credentials.username, &credentials.password);
        Ok(System {
            client,
            target,
            path: path.to_string(),
            url: system_url.to_string(),
        })
    }

    fn failed(&self, what: &str, reason: String) -> PowerError {
        PowerError::Bmc {
            bmc: self.url.clone(),
            what: what.to_string(),
            reason,
            retry: false,
        }
    }

    /// An answer that is not a success, in words: the status, and Redfish's own message.
    fn refused(&self, what: &str, response: &kindling_http::Response) -> PowerError {
        let said = said(&response.body);
        let reason = match response.status {
            401 | 403 => format!(
                "HTTP {}: the BMC refused the user and password of its credentials file",
                response.status
            ),
            status => format!("HTTP {status}: {}", said.trim()),
        };
        PowerError::Bmc {
            bmc: self.url.clone(),
            what: what.to_string(),
            reason,
            // A busy or restarting BMC answers 5xx; asking again may work.
            retry: response.status >= 500 && response.status != 501,
        }
    }

    fn transport(&self, what: &str, e: kindling_http::HttpError) -> PowerError {
        PowerError::Bmc {
            bmc: self.url.clone(),
            what: what.to_string(),
            reason: e.to_string(),
            retry: true,
        }
    }

    /// The system's resource (see [`System::state`] and [`System::act`]).
    pub async fn read(&self) -> Result<Value, PowerError> {
        let what = "reading the system";
        let response = self
            .client
            .get_async(&self.target, &self.path)
            .await
            .map_err(|e| self.transport(what, e))?;
        if !response.is_success() {
            return Err(self.refused(what, &response));
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| self.failed(what, format!("not a Redfish ComputerSystem: {e}")))
    }

    /// The reset type `action` (none for [`Action::Status`]) is for the system read as
    /// `system`, as it offers them, and where it says to post it, if it says.
    pub fn reset_of(system: &Value, action: Action) -> Option<(&'static str, Option<&str>)> {
        let reset = &system["Actions"]["#ComputerSystem.Reset"];
        let offered: Vec<&str> = reset["ResetType@Redfish.AllowableValues"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let offers = |kind: &str| offered.is_empty() || offered.contains(&kind);
        let kind = match action {
            Action::Status => return None,
            Action::On => "On",
            Action::Off => "ForceOff",
            Action::Cycle if System::state(system) == PowerState::Off => "On",
            Action::Cycle if offers("PowerCycle") => "PowerCycle",
            Action::Cycle => "ForceRestart",
        };
        Some((kind, reset["target"].as_str()))
    }

    /// The power state of `system`, as [`System::read`] gave it.
    pub fn state(system: &Value) -> PowerState {
        PowerState::of(system["PowerState"].as_str())
    }

    /// Boots from the network once, at the next power on or reset.
    pub async fn pxe_once(&self) -> Result<(), PowerError> {
        let what = "setting a one-time network boot";
        let body = json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}});
        let response = self
            .client
            .patch_json_async(&self.target, &self.path, body.to_string().into_bytes())
            .await
            .map_err(|e| self.transport(what, e))?;
        if !response.is_success() {
            return Err(self.refused(what, &response));
        }
        Ok(())
    }

    /// Does `action` (not [`Action::Status`]) to the system read as `system`, with the reset
    /// type it offers: On, ForceOff, and for a cycle PowerCycle where offered, else ForceRestart
    /// (or On when off).
    pub async fn act(&self, system: &Value, action: Action) -> Result<&'static str, PowerError> {
        let Some((kind, target)) = System::reset_of(system, action) else {
            return Ok("status");
        };
        let what = format!("{kind} (ComputerSystem.Reset)");
        let path = target
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/Actions/ComputerSystem.Reset", self.path));
        let body = json!({ "ResetType": kind }).to_string().into_bytes();
        let response = self
            .client
            .post_json_async(&self.target, &path, body)
            .await
            .map_err(|e| self.transport(&what, e))?;
        if !response.is_success() {
            return Err(self.refused(&what, &response));
        }
        Ok(kind)
    }
}
