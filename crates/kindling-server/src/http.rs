//! The network-boot endpoints, with matchbox's paths and query parameters, and the API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kindling_config::{MacAddr, Role};
use kindling_ignition::PointerConfig;

use crate::catalog::{Catalog, Entry};
use crate::events::Event;
use crate::fleetlock;
use crate::profile::{BootProfile, ProfileInputs, Script};
use crate::{AppState, Failure};
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

/// The router of the boot server (plain HTTP: iPXE firmware has no TLS).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/boot.ipxe", get(boot_ipxe))
        .route("/boot.ipxe.0", get(boot_ipxe))
        .route("/ipxe", get(ipxe))
        .route("/grub", get(grub))
        .route("/ignition", get(ignition))
        .route("/metadata", get(metadata))
        .route("/generic", get(generic))
        .route("/assets/{*path}", get(crate::assets::serve))
        .route("/healthz", get(healthz))
        .route("/discovery/ignition", get(crate::discovery::ignition))
        .route("/discovery/status", get(crate::discovery::status))
        .route(
            "/v1/pre-reboot",
            post(crate::fleetlock::pre_reboot).layer(DefaultBodyLimit::max(fleetlock::BODY_LIMIT)),
        )
        .route(
            "/v1/steady-state",
            post(crate::fleetlock::steady_state)
                .layer(DefaultBodyLimit::max(fleetlock::BODY_LIMIT)),
        )
        .with_state(state.clone())
        .merge(api_router(state))
}

/// The API the dashboard and automation read (behind the admin gate, see [`crate::ui`]), and the
/// agents' reports. Served by the boot server and, over TLS, by the machine config server.
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/machines", get(machines))
        .route("/api/v1/machines/{name}", get(machine_detail))
        .route("/api/v1/certificates", get(certificates))
        .route(
            "/api/v1/discovery",
            get(crate::discovery::list)
                .post(crate::discovery::report)
                .layer(DefaultBodyLimit::max(crate::discovery::REPORT_LIMIT)),
        )
        .route(
            "/api/v1/doctor",
            get(crate::doctor::latest).post(crate::doctor::run),
        )
        .route(
            "/api/v1/events",
            get(event_stream)
                .post(report)
                .layer(axum::extract::DefaultBodyLimit::max(64 * 1024)),
        )
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

/// The MAC a request names with `mac=` (the key in any case, the address in any of its forms).
pub(crate) fn mac_param(params: &HashMap<String, String>) -> Result<MacAddr, Failure> {
    let text = params.get("mac").or_else(|| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("mac"))
            .map(|(_, v)| v)
    });
    let text = text.ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "the mac query parameter is required",
        )
    })?;
    text.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("mac={text} is not a MAC address"),
        )
    })
}

/// The machine a request names with `mac=`.
fn machine<'c>(
    catalog: &'c Catalog,
    params: &HashMap<String, String>,
) -> Result<&'c Entry, Failure> {
    machine_index(catalog, params).map(|i| &catalog.machines[i])
}

/// [`machine`], as its position in the catalog's machines.
fn machine_index(catalog: &Catalog, params: &HashMap<String, String>) -> Result<usize, Failure> {
    let mac = mac_param(params)?;
    catalog.index_of_mac(mac).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("no machine in inventory.yaml has MAC {mac}"),
        )
    })
}

/// `body` as text, or the one range of it the request asks for (206), or 416.
fn ranged_text(headers: &HeaderMap, body: String, what: &str) -> Result<Response, Failure> {
    let len = body.len() as u64;
    let Some((start, end)) = crate::assets::byte_range(headers, len, what)? else {
        return Ok(text(body));
    };
    let part = body.into_bytes()[start as usize..=end as usize].to_vec();
    let mut response = (
        StatusCode::PARTIAL_CONTENT,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        part,
    )
        .into_response();
    if let Ok(range) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, range);
    }
    response
        .headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(response)
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `/`: what matchbox answers there, byte for byte, so that probes and scripts written for it
/// (matchbox's own Kubernetes manifest probes `/` for liveness) keep working.
async fn home() -> Response {
    text("matchbox\n".into())
}

/// `ok`, or `degraded: <why>` while the replica serves from what it has (its store cannot be
/// followed, or cannot take events). Both are 200: a degraded replica still serves boot, and a
/// load balancer must keep sending machines to it.
async fn healthz(State(state): State<Arc<AppState>>) -> String {
    match state.degraded() {
        None => "ok\n".into(),
        Some(why) => format!("degraded: {why}\n"),
    }
}

/// The first script iPXE fetches: it chains to `/ipxe` with the machine's own identity.
async fn boot_ipxe(State(state): State<Arc<AppState>>) -> Response {
    // The firmware does not say who it is until it follows the chain.
    state
        .events
        .record(Event::now(None, "boot.ipxe", Some(200), ""));
    let Ok(catalog) = state.catalog() else {
        // matchbox's own chain script, relative to the server the firmware already reached.
        return text(kindling_matchbox::BOOT_IPXE.to_string());
    };
    text(kindling_matchbox::chain_with_retries(&catalog.pinned(format!(
        "{}/ipxe?mac=${{mac:hexhyp}}&uuid=${{uuid}}&hostname=${{hostname}}&serial=${{serial}}&arch=${{buildarch:uristring}}",
        catalog.server_url()
    ))))
}

/// A machine's boot script, with its Ignition URL and token.
fn boot_script(catalog: &Catalog, entry: &Entry, kind: Script) -> String {
    let m = &entry.machine;
    let ignition_url = catalog.pinned(format!(
        "{}/ignition?mac={}&token={}",
        catalog.server_url(),
        m.macs[0].hexhyp(),
        catalog.token(entry)
    ));
    let provisioning = &catalog.description.inventory.provisioning;
    let install_disk = m.install_disk(provisioning);
    catalog
        .scripts
        .get(kind, install_disk, &ignition_url, |ignition_url| {
            BootProfile::for_machine(&ProfileInputs {
                os: provisioning.os,
                images: &provisioning.os_images,
                server_url: catalog.server_url(),
                install_disk,
                ignition_url,
                extra_args: &provisioning.kernel_args,
            })
        })
}

/// Who a boot request is from: an inventory machine (its position in the catalog's machines),
/// or else a matchbox group it selects.
enum Who {
    Machine {
        catalog: Arc<Catalog>,
        index: usize,
    },
    Group {
        data: Arc<kindling_matchbox::DataDir>,
        labels: kindling_matchbox::Labels,
    },
}

impl AppState {
    fn who(
        &self,
        params: &HashMap<String, String>,
        raw_query: Option<&str>,
        stage: &str,
    ) -> Result<Who, Failure> {
        let revision = params.get(crate::catalog::REVISION_PARAM);
        let kindling = self.catalog_at(revision).and_then(|catalog| {
            let index = machine_index(&catalog, params)?;
            Ok(Who::Machine { catalog, index })
        });
        let failure = match kindling {
            Ok(who) => {
                if let Who::Machine { catalog, index } = &who {
                    let name = &catalog.machines[*index].machine.name;
                    self.events
                        .record(Event::now(Some(name), stage, Some(200), ""));
                }
                return Ok(who);
            }
            Err(failure) => failure,
        };
        let Some(data) = self.matchbox() else {
            self.events.record(Event::now(
                None,
                stage,
                Some(failure.status.as_u16()),
                failure.reason.clone(),
            ));
            return Err(failure);
        };
        let labels = kindling_matchbox::Labels::from_query(raw_query.unwrap_or_default());
        match data.select(&labels) {
            Ok(_) => Ok(Who::Group {
                data: data.clone(),
                labels,
            }),
            Err(no) => Err(Failure::new(StatusCode::NOT_FOUND, no.reason)),
        }
    }
}

/// A matchbox group's boot settings.
fn group_boot<'d>(
    data: &'d kindling_matchbox::DataDir,
    labels: &kindling_matchbox::Labels,
) -> Result<&'d kindling_matchbox::Boot, Failure> {
    let selected = data
        .select(labels)
        .map_err(|no| Failure::new(StatusCode::NOT_FOUND, no.reason))?;
    selected.profile.boot.as_ref().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("profile {} has no boot settings", selected.profile.id),
        )
    })
}

async fn ipxe(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    RawQuery(raw): RawQuery,
    client: Option<axum::Extension<crate::client::ClientAddr>>,
) -> Result<Response, Failure> {
    let client = client.map(|axum::Extension(c)| c.0);
    if let Some(profile) = crate::discovery::profile(&state, &params, raw.as_deref(), client) {
        return profile.map(|p| text(p.ipxe()));
    }
    Ok(text(match state.who(&params, raw.as_deref(), "ipxe")? {
        Who::Machine { catalog, index } => {
            let entry = &catalog.machines[index];
            return Ok(served_to(
                text(boot_script(&catalog, entry, Script::Ipxe)),
                entry,
            ));
        }
        Who::Group { data, labels } => kindling_matchbox::ipxe_script(group_boot(&data, &labels)?),
    }))
}

async fn grub(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    RawQuery(raw): RawQuery,
    client: Option<axum::Extension<crate::client::ClientAddr>>,
) -> Result<Response, Failure> {
    let client = client.map(|axum::Extension(c)| c.0);
    if let Some(profile) = crate::discovery::profile(&state, &params, raw.as_deref(), client) {
        return profile.map(|p| text(p.grub()));
    }
    Ok(text(match state.who(&params, raw.as_deref(), "grub")? {
        Who::Machine { catalog, index } => {
            let entry = &catalog.machines[index];
            return Ok(served_to(
                text(boot_script(&catalog, entry, Script::Grub)),
                entry,
            ));
        }
        Who::Group { data, labels } => kindling_matchbox::grub_script(group_boot(&data, &labels)?),
    }))
}

/// `response`, marked as served to `entry`'s machine, which the access log names.
fn served_to(mut response: Response, entry: &Entry) -> Response {
    response
        .extensions_mut()
        .insert(crate::ServedMachine(entry.machine.name.clone()));
    response
}

fn ignition_json(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/vnd.coreos.ignition+json")],
        bytes,
    )
        .into_response()
}

/// A matchbox template, rendered for the group and request.
fn render_template(
    template: &kindling_matchbox::Template,
    data: &kindling_matchbox::DataDir,
    labels: &kindling_matchbox::Labels,
) -> Result<String, Failure> {
    let selected = data
        .select(labels)
        .map_err(|no| Failure::new(StatusCode::NOT_FOUND, no.reason))?;
    kindling_matchbox::render(template, &selected.vars(labels))
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A matchbox group's Ignition config: raw Ignition as it is, or a Butane template rendered and
/// translated (kindling's Butane subset).
fn group_ignition(
    data: &kindling_matchbox::DataDir,
    labels: &kindling_matchbox::Labels,
    version: kindling_ignition::IgnitionVersion,
) -> Result<Response, Failure> {
    let selected = data
        .select(labels)
        .map_err(|no| Failure::new(StatusCode::NOT_FOUND, no.reason))?;
    let template = data.ignition_for(selected.profile).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("profile {} has no Ignition config", selected.profile.id),
        )
    })?;
    let rendered = render_template(template, data, labels)?;
    if template.kind() != kindling_matchbox::TemplateKind::Butane {
        return Ok(ignition_json(rendered.into_bytes()));
    }
    let shown = template.path().display().to_string();
    let config = kindling_ignition::parse_snippet(&shown, &rendered)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let bytes = config
        .render(version)
        .map_err(|e| Failure::unrenderable(&shown, version, e))?;
    Ok(ignition_json(bytes))
}

async fn generic(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    match state.who(&params, raw.as_deref(), "generic")? {
        Who::Machine { catalog, index } => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} is a kindling machine; it has no generic config",
                catalog.machines[index].machine.name
            ),
        )),
        Who::Group { data, labels } => {
            let selected = data
                .select(&labels)
                .map_err(|no| Failure::new(StatusCode::NOT_FOUND, no.reason))?;
            let template = data.generic_for(selected.profile).ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    format!("profile {} has no generic config", selected.profile.id),
                )
            })?;
            let rendered = render_template(template, &data, &labels)?;
            // As matchbox serves it (Go's http.ServeContent): with Range.
            ranged_text(&headers, rendered, "the generic config")
        }
    }
}

/// A machine's first Ignition config: its pointer config (which carries its token to the
/// machine config server), or bootstrap.ign for the bootstrap machine, which holds secrets and
/// is served only with the machine's token.
async fn ignition(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
    client: Option<axum::Extension<crate::client::ClientAddr>>,
) -> Result<Response, Failure> {
    let (catalog, index) = match state.who(&params, raw.as_deref(), "ignition")? {
        Who::Machine { catalog, index } => (catalog, index),
        Who::Group { data, labels } => {
            let version =
                crate::mcs::version_from_accept(&headers, kindling_ignition::IgnitionVersion::V3_3);
            return group_ignition(&data, &labels, version);
        }
    };
    let entry = &catalog.machines[index];
    let m = &entry.machine;
    let json = ignition_json;

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
        let client = client.map(|axum::Extension(c)| c.0).ok_or_else(|| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the client's address is unknown",
            )
        })?;
        state.admit(entry, client, "bootstrap.ign")?;
        if !catalog.kindling_configs {
            return Ok(json(config.as_ref().clone()));
        }
        // kindling's bootstrap.ign gets the machine's identity file for its agent; the file on
        // disk has no token, which only the server's key makes.
        let version = spec_for(&catalog, &headers);
        let mut config = kindling_ignition::Config::from_json(&config).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading bootstrap.ign back: {e}"),
            )
        })?;
        catalog.add_agent_identity(entry, &mut config);
        let credentials = state.mcs_auth == crate::McsAuth::Token;
        catalog.add_registry_access(Some(entry), credentials, &mut config);
        let bytes = config
            .render(version)
            .map_err(|e| Failure::unrenderable("bootstrap.ign", version, e))?;
        return Ok(json(bytes));
    }
    if let Some(config) = catalog.as_is(m.role) {
        // OpenShift companion mode: openshift-install's own pointer configs, served as they are.
        return Ok(json(config.as_ref().clone()));
    }
    let pool = entry.pool.unwrap_or("worker");
    let version = spec_for(&catalog, &headers);
    let token = catalog.token(entry);
    let mac = m.macs[0].hexhyp();
    let mut pointer = PointerConfig {
        source: catalog.pinned(format!(
            "{}/config/{pool}",
            catalog.mcs_url().trim_end_matches('/')
        )),
        root_ca_pem: catalog.root_ca_pem.clone(),
        http_headers: vec![
            ("X-Kindling-Mac".into(), mac.clone()),
            ("X-Kindling-Token".into(), token.clone()),
        ],
    };
    // Spec 3.0 has no headers for a merge: the identity goes into the URL instead.
    if version < kindling_ignition::IgnitionVersion::V3_1 {
        pointer.http_headers.clear();
        let joint = if pointer.source.contains('?') {
            '&'
        } else {
            '?'
        };
        pointer.source = format!("{}{joint}mac={mac}&token={token}", pointer.source);
    }
    let bytes = pointer
        .render(version)
        .map_err(|e| Failure::unrenderable("the pointer config", version, e))?;
    Ok(json(bytes))
}

/// The spec a machine's first config is served in: the highest the client's Ignition asks for
/// in its `Accept` header, as the machine config server does; without one (an OS installer
/// fetching `coreos.inst.ignition_url` with its own client), the inventory's `ignitionVersion`.
fn spec_for(catalog: &Catalog, headers: &HeaderMap) -> kindling_ignition::IgnitionVersion {
    crate::mcs::version_from_accept(
        headers,
        catalog.description.inventory.provisioning.ignition_version,
    )
}

/// matchbox's `/metadata`: what the server knows of a machine, as KEY=value lines.
async fn metadata(
    State(state): State<Arc<AppState>>,
    Query(params): Params,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let (catalog, index) = match state.who(&params, raw.as_deref(), "metadata")? {
        Who::Machine { catalog, index } => (catalog, index),
        Who::Group { data, labels } => {
            let selected = data
                .select(&labels)
                .map_err(|no| Failure::new(StatusCode::NOT_FOUND, no.reason))?;
            return Ok(text(kindling_matchbox::metadata_env(
                &selected.vars(&labels),
            )));
        }
    };
    let entry = &catalog.machines[index];
    let m = &entry.machine;
    let mut out = format!(
        "NAME={}\nFQDN={}\nROLE={}\nIP={}\nMAC={}\n",
        m.name,
        catalog.fqdn(entry),
        m.role,
        m.ip,
        m.macs[0]
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

/// A row of `/api/v1/machines`. The fields are in the order serde_json's own maps give them.
#[derive(serde::Serialize)]
struct MachineRow<'a> {
    ip: String,
    mac: String,
    name: &'a str,
    role: Role,
    stage: Option<&'a str>,
    time: Option<&'a str>,
    /// What `kindling status` says of it, once the server has read it (see [`crate::fleet_view`]).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
}

/// A machine's rendering, drift, readiness and certificate expiry, as `kindling status` has them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    /// The rendering its node agent says it runs.
    rendering: Option<&'a str>,
    /// The rendering it is meant to be on.
    desired: Option<&'a str>,
    /// Its agent's state (Done, Drifted, ...).
    agent: Option<&'a str>,
    /// What drifted, when its files did.
    drift: Option<&'a str>,
    /// Whether its Node is Ready; null without a Node, or while the API does not answer.
    ready: Option<bool>,
    /// When the first of its certificates expires (RFC 3339).
    certificates_expire: Option<String>,
    /// Its step in a rolling update of its pool.
    update: Option<&'a str>,
}

impl<'a> Status<'a> {
    fn of(m: &'a kindling_fleet::status::MachineStatus) -> Status<'a> {
        Status {
            rendering: m.current.as_deref(),
            desired: m.desired.as_deref(),
            agent: m.agent.as_deref(),
            drift: m.drift.as_deref(),
            ready: m.ready,
            certificates_expire: m.certificates_expire.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            update: m.update.as_deref(),
        }
    }
}

#[derive(serde::Serialize)]
struct MachineList<'a> {
    machines: Vec<MachineRow<'a>>,
}

async fn machines(State(state): State<Arc<AppState>>) -> Result<Response, Failure> {
    let catalog = state.catalog()?;
    // Rows that borrow, not a serde_json::Value per machine: with 100,000 machines that took
    // ~200 MB, which the allocator then kept.
    let view = state.fleet_view();
    let response = {
        let last = state.events.last_stages();
        let rows: Vec<MachineRow> = catalog
            .machines
            .iter()
            .map(|e| {
                let event = last.get(&e.machine.name);
                MachineRow {
                    ip: e.machine.ip.to_string(),
                    mac: e.machine.macs[0].to_string(),
                    name: &e.machine.name,
                    role: e.machine.role,
                    stage: event.map(|(stage, _)| stage),
                    time: event.map(|(_, time)| time),
                    status: view
                        .as_ref()
                        .and_then(|v| v.machines.get(&e.machine.name))
                        .map(Status::of),
                }
            })
            .collect();
        axum::Json(MachineList { machines: rows }).into_response()
    };
    Ok(response)
}

/// `GET /api/v1/certificates`: what `kindling certs` lists, soonest expiry first, as last read.
async fn certificates(State(state): State<Arc<AppState>>) -> Result<Response, Failure> {
    let view = match state.fleet_view() {
        Some(view) => view,
        None => Arc::new(
            crate::fleet_view::read(&state)
                .await
                .map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e))?,
        ),
    };
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Certificates<'a> {
        certificates: &'a [kindling_fleet::certs::Credential],
        read_at: String,
        api_trouble: Option<&'a str>,
    }
    Ok(axum::Json(Certificates {
        certificates: &view.certificates,
        read_at: view
            .read_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        api_trouble: view.api_trouble.as_deref(),
    })
    .into_response())
}

/// How many of a machine's events its page shows at the most (the newest).
const HISTORY: usize = 1000;

/// One event with its id, for [`MachineDetail`].
#[derive(serde::Serialize)]
struct Numbered {
    id: u64,
    #[serde(flatten)]
    event: Event,
}

/// `GET /api/v1/machines/{name}`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MachineDetail<'a> {
    machine: MachineRow<'a>,
    /// Its events, oldest first (the newest [`HISTORY`]).
    events: Vec<Numbered>,
    /// The iPXE script `/ipxe` answers it, its token redacted.
    ipxe: String,
    /// What the cluster says of its join: its kubelet's certificate requests and its Node.
    cluster: Vec<Event>,
    /// Why `cluster` is empty, when the API was not read.
    cluster_trouble: Option<String>,
}

/// `GET /api/v1/machines/{name}`: one machine, its events, and the boot script it is given.
async fn machine_detail(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, Failure> {
    let catalog = state.catalog()?;
    let entry = catalog.by_name(&name).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("no machine named {name} in inventory.yaml"),
        )
    })?;
    let events = {
        let (state, name) = (state.clone(), name.clone());
        tokio::task::spawn_blocking(move || state.events.history(&name, HISTORY))
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let last = events
        .iter()
        .rev()
        .find(|(_, e)| crate::events::is_stage(e))
        .map(|(_, e)| (e.stage.clone(), e.time.clone()));
    let m = &entry.machine;
    let view = state.fleet_view();
    let (cluster, cluster_trouble) = match crate::fleet_view::join_steps(&catalog, &m.name).await {
        Ok(steps) => (steps, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    let detail = MachineDetail {
        cluster,
        cluster_trouble,
        machine: MachineRow {
            ip: m.ip.to_string(),
            mac: m.macs[0].to_string(),
            name: &m.name,
            role: m.role,
            stage: last.as_ref().map(|(stage, _)| stage.as_str()),
            time: last.as_ref().map(|(_, time)| time.as_str()),
            status: view
                .as_ref()
                .and_then(|v| v.machines.get(&m.name))
                .map(Status::of),
        },
        ipxe: boot_script(&catalog, entry, Script::Ipxe).replace(&catalog.token(entry), "REDACTED"),
        events: events
            .into_iter()
            .map(|(id, event)| Numbered { id, event })
            .collect(),
    };
    Ok(axum::Json(detail).into_response())
}

/// `GET /api/v1/events`: events as server-sent events, each with its id. With `Last-Event-ID`
/// (which EventSource sends when it reconnects) or `?since=<id>` (0: the whole log), the events
/// after that id come first, read back from the log; a stream that falls behind catches up the
/// same way. So a watcher misses nothing.
///
/// Events go out in batches, one write each (see [`EventStream::batch`]): in a boot storm a
/// write per event cost the server as much again per boot request, on loopback most of it the
/// watcher's TCP receive path, which the sender pays for.
async fn event_stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.get("since").map(String::as_str))
        .and_then(|id| id.trim().parse::<u64>().ok());
    let (end, live) = state.events.subscribe();
    let from = match since {
        Some(id) if id <= end => id,
        // An id beyond the end is from a log that has since been replaced: all of this one.
        Some(_) => 0,
        None => end,
    };
    let stream = EventStream {
        state,
        live,
        read_to: from,
        catch_up_to: end,
        pending: std::collections::VecDeque::new(),
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let batch = stream.batch().await?;
        Some((Ok::<_, std::convert::Infallible>(batch), stream))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// How long a batch of events waits for more after its first.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);
/// The most bytes of one batch: a thousand streams hold up to this much each while their
/// batch waits to be written.
const BATCH_BYTES: usize = 32 * 1024;
/// A comment is sent after this long without an event, so that proxies keep the stream open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// One event, as its JSON (one line: serde_json escapes every newline), as a server-sent
/// event.
fn frame(out: &mut String, id: u64, json: &str) {
    use std::fmt::Write as _;
    let _ = write!(out, "id: {id}\nevent: event\ndata: {json}\n\n");
}

/// The most bytes of the log a stream reads back at once: a thousand streams that fell behind
/// together hold this much each.
const STREAM_READ_BACK: u64 = 64 * 1024;

/// One watcher's place in the event log: events read back from the file up to `catch_up_to`,
/// then live ones.
struct EventStream {
    state: Arc<AppState>,
    live: tokio::sync::broadcast::Receiver<(u64, crate::events::Json)>,
    /// How far the file has been read back.
    read_to: u64,
    /// Live events up to this id are read back from the file instead.
    catch_up_to: u64,
    pending: std::collections::VecDeque<(u64, crate::events::Json)>,
}

impl EventStream {
    /// The next events as server-sent events: the first one, and those that come within
    /// [`BATCH_WINDOW`] after it (up to [`BATCH_BYTES`]); or a keep-alive comment after
    /// [`KEEP_ALIVE`] without any. `None` once the log is closed.
    async fn batch(&mut self) -> Option<String> {
        let Ok(first) = tokio::time::timeout(KEEP_ALIVE, self.next()).await else {
            return Some(":\n\n".into());
        };
        let (id, event) = first?;
        let mut out = String::new();
        frame(&mut out, id, &event);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while out.len() < BATCH_BYTES {
            // `next` may be dropped at the deadline: its receive loses nothing, and a read-back
            // not yet taken is read again.
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some((id, event))) => frame(&mut out, id, &event),
                Ok(None) | Err(_) => break,
            }
        }
        Some(out)
    }

    async fn next(&mut self) -> Option<(u64, crate::events::Json)> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Some(next);
            }
            if self.read_to < self.catch_up_to {
                let (state, from, to) = (self.state.clone(), self.read_to, self.catch_up_to);
                let read = tokio::task::spawn_blocking(move || {
                    let (events, reached) =
                        state.events.read_back_at_most(from, to, STREAM_READ_BACK)?;
                    let framed = events.into_iter().filter_map(|(id, event)| {
                        Some((id, serde_json::to_string(&event).ok()?.into()))
                    });
                    Ok::<_, std::io::Error>((framed.collect::<Vec<_>>(), reached))
                });
                match read.await {
                    Ok(Ok((events, reached))) => {
                        self.pending.extend(events);
                        self.read_to = reached;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("reading back the event log: {e}");
                        self.read_to = self.catch_up_to;
                    }
                    Err(_) => return None,
                }
                continue;
            }
            match self.live.recv().await {
                Ok((id, _)) if id <= self.catch_up_to => continue,
                Ok(next) => {
                    self.catch_up_to = next.0;
                    self.read_to = next.0;
                    return Some(next);
                }
                // Fallen behind: the log has what was missed.
                Err(RecvError::Lagged(_)) => {
                    let (end, live) = self.state.events.subscribe();
                    self.live = live;
                    self.catch_up_to = end;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The stage a machine reports, with result `done`, once its first boot from disk is up: its
/// install window closes.
pub const INSTALLED: &str = "installed";

/// What a machine's agent reports to `POST /api/v1/events`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    pub mac: String,
    pub token: String,
    pub stage: String,
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub error_message: String,
    /// The report's own id, the same each time the agent sends it again: a report that
    /// reaches two replicas (the first died before it answered) is recorded once.
    #[serde(default)]
    pub id: Option<String>,
}

/// A report's body, read and checked (its machine and token are the handler's to check).
pub fn parse_report(body: &[u8]) -> Result<Report, Failure> {
    let report: Report = serde_json::from_slice(body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("not an event report: {e}")))?;
    if let Some(id) = report.id.as_deref()
        && !is_report_id(id)
    {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "a report's id is 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(report)
}

/// Whether a report id can be part of a key: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn is_report_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn report(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Failure> {
    let report = parse_report(&body)?;
    let catalog = state.catalog()?;
    let params = HashMap::from([("mac".to_string(), report.mac.clone())]);
    let entry = machine(&catalog, &params)?;
    if !catalog.verify(entry, &report.token) {
        return Err(state.deny(entry, "report", "wrong or missing machine token"));
    }
    let detail = match (report.result.as_str(), report.error_message.as_str()) {
        (result, "") => result.to_string(),
        (result, error) => format!("{result}: {error}"),
    };
    let event = Event::now(Some(&entry.machine.name), &report.stage, None, detail);
    let key = report
        .id
        .as_deref()
        .map(|id| format!("report/{}/{id}", entry.machine.name));
    // Acknowledged only once it is safe, so that an agent that is told 204 never has to send
    // it again.
    state
        .events
        .record_durably(event, key)
        .await
        .map_err(|reason| Failure::new(StatusCode::SERVICE_UNAVAILABLE, reason))?;
    if report.stage == INSTALLED && report.result == "done" {
        state.disarm(&entry.machine.name, "it reported its install done");
    }
    Ok(StatusCode::NO_CONTENT)
}

impl AppState {
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
        if let Some(range) = self
            .content_range
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            headers.insert(header::CONTENT_RANGE, range);
        }
        response
    }
}
