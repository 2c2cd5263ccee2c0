//! `kindling serve --discover`: machines that no inventory entry (and no matchbox group) knows
//! get a discovery profile from `/ipxe`: the OS's live system, whose Ignition config
//! (`/discovery/ignition`) runs `kindling agent discover`. Its kernel arguments carry a token
//! made for that boot alone; the agent's report (`POST /api/v1/discovery`) is taken only with
//! it, from the address that booted, for the MAC it was made for, and only once. The report is
//! kept under `.kindling/discovery/` (see [`kindling_discovery::pending`]) until
//! `kindling machines accept` adds the machine to inventory.yaml; then `/discovery/status`
//! tells the waiting agent to reboot into its install.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kindling_config::MacAddr;
use kindling_discovery::agent::{INSTALL, MAC_ARG, PENDING, SERVER_ARG, TOKEN_ARG};
use kindling_discovery::pending::{self, Discovered};

use crate::events::Event;
use crate::{AppState, Failure};

/// How long a token waits for its report.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The most tokens outstanding: anyone on the network can ask `/ipxe` for one.
const MAX_TOKENS: usize = 10_000;
/// The most a report may weigh (a machine with hundreds of disks is ~100 KB).
pub const REPORT_LIMIT: usize = 512 * 1024;
/// The unit the discovery config runs.
pub const UNIT: &str = "kindling-discover.service";

/// The tokens handed out, and the binary's digest for the live system's config.
#[derive(Default)]
pub struct Discovery {
    issued: Mutex<HashMap<MacAddr, Issued>>,
    binary_sha512: tokio::sync::OnceCell<String>,
    /// Every NIC's MAC in the reports kept, and the machine that reported it; read from the
    /// reports at the first report. Held across a report's checks and its write, so reports
    /// are taken one at a time.
    claims: tokio::sync::Mutex<Option<HashMap<MacAddr, MacAddr>>>,
}

struct Issued {
    token: String,
    address: IpAddr,
    at: Instant,
}

fn new_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Discovery {
    /// A fresh token for `mac` booting from `address`; an earlier one of the MAC is void.
    fn issue(&self, mac: MacAddr, address: IpAddr) -> Result<String, Failure> {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, i| i.at.elapsed() < TOKEN_LIFETIME);
        if issued.len() >= MAX_TOKENS && !issued.contains_key(&mac) {
            return Err(Failure::unavailable(
                "too many machines are being discovered at once; try again later",
            ));
        }
        let token = new_token().ok_or_else(|| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no randomness for a token",
            )
        })?;
        issued.insert(
            mac,
            Issued {
                token: token.clone(),
                address,
                at: Instant::now(),
            },
        );
        Ok(token)
    }

    /// Whether `token` is the one `mac`'s boot was given, and `address` is where it booted
    /// from. A wrong try leaves the token in place for the real machine.
    fn verify(&self, mac: MacAddr, token: &str, address: IpAddr) -> Result<(), String> {
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = issued.get(&mac).filter(|i| i.at.elapsed() < TOKEN_LIFETIME) else {
            return Err(format!(
                "no discovery token is outstanding for {mac} (none was given, it expired, or it was used): boot the machine again"
            ));
        };
        let same = aws_lc_rs::constant_time::verify_slices_are_equal(
            entry.token.as_bytes(),
            token.as_bytes(),
        )
        .is_ok();
        if !same {
            return Err(format!(
                "the token is not the one given to {mac} at its boot"
            ));
        }
        if entry.address != address {
            return Err(format!(
                "{mac} booted from {}, and this report comes from {address}",
                entry.address
            ));
        }
        Ok(())
    }

    /// Uses up `mac`'s token once its report is kept: one report per boot. (Only once it is
    /// kept: a report the server could not write is sent again with the same token.)
    fn spend(&self, mac: MacAddr) {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.remove(&mac);
    }
}

/// The discovery profile for a machine `/ipxe` or `/grub` does not know, if discovery is on and
/// neither the inventory nor a matchbox group has it. None: answer as without discovery.
pub(crate) fn profile(
    state: &AppState,
    params: &HashMap<String, String>,
    raw_query: Option<&str>,
    client: Option<IpAddr>,
) -> Option<Result<crate::profile::BootProfile, Failure>> {
    let discovery = state.discovery.get()?;
    let mac = crate::http::mac_param(params).ok()?;
    let catalog = state.catalog().ok()?;
    if catalog.by_mac(mac).is_some() {
        return None;
    }
    if let Some(data) = state.matchbox()
        && data
            .select(&kindling_matchbox::Labels::from_query(
                raw_query.unwrap_or_default(),
            ))
            .is_ok()
    {
        return None;
    }
    let Some(address) = client else {
        return Some(Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the client's address is unknown",
        )));
    };
    let token = match discovery.issue(mac, address) {
        Ok(token) => token,
        Err(failure) => return Some(Err(failure)),
    };
    state.events.record(Event::now(
        None,
        "discovery",
        Some(200),
        format!("{mac} is not in the inventory: it boots the discovery profile (from {address})"),
    ));
    let provisioning = &catalog.description.inventory.provisioning;
    let server = catalog.server_url();
    let mut profile = crate::profile::BootProfile::live(&crate::profile::LiveInputs {
        os: provisioning.os,
        images: &provisioning.os_images,
        server_url: server,
        ignition_url: &format!("{server}/discovery/ignition"),
        extra_args: &provisioning.kernel_args,
    });
    profile.args.extend([
        format!("{SERVER_ARG}={server}"),
        format!("{MAC_ARG}={}", mac.hexhyp()),
        format!("{TOKEN_ARG}={token}"),
    ]);
    Some(Ok(profile))
}

/// `GET /discovery/ignition`: the live system's config: the kindling binary, checked by its
/// digest, and the unit that runs the agent. The same for every machine (the token is in the
/// kernel arguments), in the spec the client asks for.
pub(crate) async fn ignition(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let discovery = state.discovery.get().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            "discovery is off: start kindling serve with --discover",
        )
    })?;
    let catalog = state.catalog()?;
    let binary = state.binary.clone();
    let sha512 = discovery
        .binary_sha512
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || kindling_assets::file_sha512(&binary))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the kindling binary to serve: {e}"),
            )
        })?;
    let mut config = kindling_ignition::Config::new();
    config.add_remote_file(
        kindling_assets::layout::KINDLING_BIN,
        &format!("{}/assets/kindling", catalog.server_url()),
        sha512,
        0o755,
    );
    config.add_unit(UNIT, &unit(kindling_assets::layout::KINDLING_BIN), true);
    let version = crate::mcs::version_from_accept(
        &headers,
        catalog.description.inventory.provisioning.ignition_version,
    );
    let bytes = config
        .render(version)
        .map_err(|e| Failure::unrenderable("the discovery config", version, e))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.coreos.ignition+json",
        )],
        bytes,
    )
        .into_response())
}

fn unit(binary: &str) -> String {
    format!(
        "[Unit]\n\
         Description=kindling discovery: report this machine's hardware, then wait to be accepted\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         [Service]\n\
         ExecStart={binary} agent discover\n\
         Restart=on-failure\n\
         RestartSec=30\n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// `POST /api/v1/discovery`: a discovery agent's report.
pub(crate) async fn report(
    State(state): State<Arc<AppState>>,
    client: Option<axum::Extension<crate::client::ClientAddr>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Failure> {
    let discovery = state.discovery.get().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            "discovery is off: start kindling serve with --discover",
        )
    })?;
    let report: kindling_discovery::Report = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("not a discovery report: {e}"),
        )
    })?;
    let mac: MacAddr = report.mac.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("mac {} is not a MAC address", report.mac),
        )
    })?;
    let address = client.map(|axum::Extension(c)| c.0).ok_or_else(|| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the client's address is unknown",
        )
    })?;
    let catalog = state.catalog()?;
    let refuse = |reason: String| {
        state.events.record(Event::now(
            None,
            "denied",
            Some(403),
            format!("discovery report for {mac} from {address}: {reason}"),
        ));
        Failure::new(StatusCode::FORBIDDEN, reason)
    };
    // Every MAC the report claims: none may be another machine's.
    let mut claimed = Vec::new();
    for nic in &report.hardware.nics {
        let nic_mac: MacAddr = nic.mac.parse().map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("NIC {}'s MAC {} is not a MAC address", nic.name, nic.mac),
            )
        })?;
        claimed.push(nic_mac);
    }
    if !claimed.contains(&mac) {
        return Err(refuse(format!(
            "the report lists no NIC with the MAC it booted with ({mac})"
        )));
    }
    if let Some((other, entry)) = claimed
        .iter()
        .find_map(|m| catalog.by_mac(*m).map(|e| (m, e)))
    {
        return Err(refuse(format!(
            "the report claims {other}, the MAC of inventory machine {}",
            entry.machine.name
        )));
    }
    discovery
        .verify(mac, &report.token, address)
        .map_err(refuse)?;
    let state_dir = state
        .state_dir()
        .ok_or_else(|| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "no state directory"))?;
    let mut claims = discovery.claims.lock().await;
    if claims.is_none() {
        let dir = state_dir.clone();
        let kept = tokio::task::spawn_blocking(move || pending::list(&dir))
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut by_nic = HashMap::new();
        for d in kept {
            for nic in &d.hardware.nics {
                if let Ok(nic_mac) = nic.mac.parse::<MacAddr>() {
                    by_nic.insert(nic_mac, d.mac);
                }
            }
        }
        *claims = Some(by_nic);
    }
    let by_nic = claims.get_or_insert_with(HashMap::new);
    // Claimed by no other discovered machine either: two reports of one MAC replace each other.
    if let Some(other) = claimed
        .iter()
        .find_map(|m| by_nic.get(m).filter(|owner| **owner != mac))
    {
        return Err(refuse(format!(
            "the report claims a MAC of discovered machine {other}"
        )));
    }
    let record = Discovered {
        mac,
        address,
        reported_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        hardware: report.hardware,
    };
    let summary = format!(
        "{mac} reported {} NICs, {} disks, {} CPUs, {} of memory",
        record.hardware.nics.len(),
        record.hardware.disks.len(),
        record.hardware.cpu.count,
        kindling_config::inventory::size_text(record.hardware.memory_bytes)
    );
    tokio::task::spawn_blocking(move || pending::save(&state_dir, &record))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    by_nic.retain(|_, owner| *owner != mac);
    by_nic.extend(claimed.iter().map(|m| (*m, mac)));
    drop(claims);
    discovery.spend(mac);
    state
        .events
        .record(Event::now(None, "discovered", None, summary));
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /discovery/status?mac=`: `install` once the MAC is an inventory machine's (accepted,
/// and its configs made), else `pending`.
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<String, Failure> {
    let mac = crate::http::mac_param(&params)?;
    let known = state.catalog()?.by_mac(mac).is_some();
    Ok(format!("{}\n", if known { INSTALL } else { PENDING }))
}

/// `GET /api/v1/discovery` (admin): the machines that reported and are not in the inventory.
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Result<Response, Failure> {
    let catalog = state.catalog()?;
    let dir = state
        .state_dir()
        .ok_or_else(|| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "no state directory"))?;
    let all = tokio::task::spawn_blocking(move || pending::list(&dir))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let machines: Vec<Discovered> = all
        .into_iter()
        .filter(|d| catalog.by_mac(d.mac).is_none())
        .collect();
    Ok(axum::Json(serde_json::json!({ "machines": machines })).into_response())
}
