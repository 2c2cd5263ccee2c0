//! The network-boot endpoints, with matchbox's paths and query parameters, and the API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kindling_config::{MacAddr, Role};
use kindling_ignition::PointerConfig;

use crate::catalog::{Catalog, Entry};
use crate::events::Event;
use crate::profile::{BootProfile, ProfileInputs};
use crate::{AppState, Failure};

/// The router of the boot server (plain HTTP: iPXE firmware has no TLS).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_ipxe))
        .route("/boot.ipxe.0", get(boot_ipxe))
        .route("/ipxe", get(ipxe))
        .route("/grub", get(grub))
        .route("/ignition", get(ignition))
        .route("/metadata", get(metadata))
        .route("/assets/{*path}", get(crate::assets::serve))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/machines", get(machines))
        .route(
            "/api/v1/events",
            get(event_stream)
                .post(report)
                .layer(axum::extract::DefaultBodyLimit::max(64 * 1024)),
        )
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

/// The machine a request names with `mac=` (in any of its forms).
fn machine<'c>(
    catalog: &'c Catalog,
    params: &HashMap<String, String>,
) -> Result<&'c Entry, Failure> {
    let text = params.get("mac").ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "the mac query parameter is required",
        )
    })?;
    let mac: MacAddr = text.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("mac={text} is not a MAC address"),
        )
    })?;
    catalog.by_mac(mac).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("no machine in inventory.yaml has MAC {mac}"),
        )
    })
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The first script iPXE fetches: it chains to `/ipxe` with the machine's own identity.
async fn boot_ipxe(State(state): State<Arc<AppState>>) -> Response {
    let catalog = state.catalog();
    text(format!(
        "#!ipxe\nchain {}/ipxe?mac=${{mac:hexhyp}}&uuid=${{uuid}}&hostname=${{hostname}}&serial=${{serial}}&arch=${{buildarch:uristring}}\n",
        catalog.server_url()
    ))
}

/// The profile of a machine, with its Ignition URL and token.
fn profile(catalog: &Catalog, entry: &Entry) -> BootProfile {
    let m = &entry.machine;
    let ignition_url = format!(
        "{}/ignition?mac={}&token={}",
        catalog.server_url(),
        m.macs[0].hexhyp(),
        catalog.token(entry)
    );
    let provisioning = &catalog.description.inventory.provisioning;
    BootProfile::for_machine(&ProfileInputs {
        os: provisioning.os,
        images: &provisioning.os_images,
        server_url: catalog.server_url(),
        install_disk: m.install_disk(provisioning),
        ignition_url: &ignition_url,
    })
}

async fn ipxe(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, Failure> {
    let catalog = state.catalog();
    let entry = state.known(&catalog, &params, "ipxe")?;
    Ok(text(profile(&catalog, entry).ipxe()))
}

async fn grub(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, Failure> {
    let catalog = state.catalog();
    let entry = state.known(&catalog, &params, "grub")?;
    Ok(text(profile(&catalog, entry).grub()))
}

/// A machine's first Ignition config: its pointer config (which carries its token to the
/// machine config server), or bootstrap.ign for the bootstrap machine, which holds secrets and
/// is served only with the machine's token.
async fn ignition(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, Failure> {
    let catalog = state.catalog();
    let entry = state.known(&catalog, &params, "ignition")?;
    let m = &entry.machine;
    let json = |bytes: Vec<u8>| {
        (
            [(header::CONTENT_TYPE, "application/vnd.coreos.ignition+json")],
            bytes,
        )
            .into_response()
    };

    if m.role == Role::Bootstrap {
        let token = params.get("token").map(String::as_str).unwrap_or_default();
        if !catalog.verify(entry, token) {
            return Err(state.deny(
                entry,
                "ignition",
                "bootstrap.ign asked for without this machine's token",
            ));
        }
        let config = catalog.as_is(Role::Bootstrap).ok_or_else(|| {
            Failure::unavailable(
                "bootstrap.ign does not exist yet; run kindling create ignition-configs",
            )
        })?;
        return Ok(json(config.as_ref().clone()));
    }
    if let Some(config) = catalog.as_is(m.role) {
        // OpenShift companion mode: openshift-install's own pointer configs, served as they are.
        return Ok(json(config.as_ref().clone()));
    }
    let pool = entry.pool.unwrap_or("worker");
    let version = catalog.description.inventory.provisioning.ignition_version;
    let token = catalog.token(entry);
    let mac = m.macs[0].hexhyp();
    let mut pointer = PointerConfig {
        source: format!("{}/config/{pool}", catalog.mcs_url().trim_end_matches('/')),
        root_ca_pem: catalog.root_ca_pem.clone(),
        http_headers: vec![
            ("X-Kindling-Mac".into(), mac.clone()),
            ("X-Kindling-Token".into(), token.clone()),
        ],
    };
    // Spec 3.0 has no headers for a merge: the identity goes into the URL instead.
    if version < kindling_ignition::IgnitionVersion::V3_1 {
        pointer.http_headers.clear();
        pointer.source = format!("{}?mac={mac}&token={token}", pointer.source);
    }
    let bytes = pointer.render(version).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the pointer config: {e}"),
        )
    })?;
    Ok(json(bytes))
}

/// matchbox's `/metadata`: what the server knows of a machine, as KEY=value lines.
async fn metadata(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, Failure> {
    let catalog = state.catalog();
    let entry = machine(&catalog, &params)?;
    let m = &entry.machine;
    let mut out = format!(
        "NAME={}\nFQDN={}\nROLE={}\nIP={}\nMAC={}\n",
        m.name, entry.fqdn, m.role, m.ip, m.macs[0]
    );
    for (key, value) in &params {
        if key != "token" {
            out.push_str(&format!(
                "REQUEST_QUERY_{}={value}\n",
                key.to_ascii_uppercase()
            ));
        }
    }
    Ok(text(out))
}

async fn machines(State(state): State<Arc<AppState>>) -> Response {
    let catalog = state.catalog();
    let last = state.events.machines();
    let list: Vec<serde_json::Value> = catalog
        .machines
        .iter()
        .map(|e| {
            let event = last.get(&e.machine.name);
            serde_json::json!({
                "name": e.machine.name,
                "role": e.machine.role,
                "mac": e.machine.macs[0].to_string(),
                "ip": e.machine.ip.to_string(),
                "stage": event.map(|ev| ev.stage.as_str()),
                "time": event.map(|ev| ev.time.as_str()),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "machines": list })).into_response()
}

/// `GET /api/v1/events`: every new event, as server-sent events.
async fn event_stream(
    State(state): State<Arc<AppState>>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event as Sse, KeepAlive};
    use tokio::sync::broadcast::error::RecvError;
    let stream = futures_util::stream::unfold(state.events.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    return Some((Ok(Sse::default().event("event").data(data)), rx));
                }
                // A slow reader misses events rather than holding the server up.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    axum::response::sse::Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What a machine's agent reports to `POST /api/v1/events`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Report {
    mac: String,
    token: String,
    stage: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    error_message: String,
}

async fn report(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Failure> {
    let report: Report = serde_json::from_slice(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("not an event report: {e}")))?;
    let catalog = state.catalog();
    let params = HashMap::from([("mac".to_string(), report.mac.clone())]);
    let entry = machine(&catalog, &params)?;
    if !catalog.verify(entry, &report.token) {
        return Err(state.deny(entry, "report", "wrong or missing machine token"));
    }
    let detail = match (report.result.as_str(), report.error_message.as_str()) {
        (result, "") => result.to_string(),
        (result, error) => format!("{result}: {error}"),
    };
    state.events.record(Event::now(
        Some(&entry.machine.name),
        &report.stage,
        None,
        detail,
    ));
    Ok(StatusCode::NO_CONTENT)
}

impl AppState {
    /// The machine a request names, recording the request in its timeline.
    pub(crate) fn known<'c>(
        &self,
        catalog: &'c Catalog,
        params: &HashMap<String, String>,
        stage: &str,
    ) -> Result<&'c Entry, Failure> {
        match machine(catalog, params) {
            Ok(entry) => {
                self.events
                    .record(Event::now(Some(&entry.machine.name), stage, Some(200), ""));
                Ok(entry)
            }
            Err(failure) => {
                self.events.record(Event::now(
                    None,
                    stage,
                    Some(failure.status.as_u16()),
                    failure.reason.clone(),
                ));
                Err(failure)
            }
        }
    }

    /// A refusal: 403, with the reason in the body and in the machine's timeline.
    pub(crate) fn deny(&self, entry: &Entry, stage: &str, reason: &str) -> Failure {
        self.events.record(Event::now(
            Some(&entry.machine.name),
            "denied",
            Some(403),
            format!("{stage}: {reason}"),
        ));
        Failure::new(StatusCode::FORBIDDEN, reason.to_string())
    }
}

impl Failure {
    pub(crate) fn unavailable(reason: &str) -> Failure {
        let mut failure = Failure::new(StatusCode::SERVICE_UNAVAILABLE, reason.to_string());
        failure.retry_after = Some(30);
        failure
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(format!("{}\n", self.reason)));
        *response.status_mut() = self.status;
        let headers: &mut HeaderMap = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
