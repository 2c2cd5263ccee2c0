//! `kindling serve`: the network-boot server (matchbox's HTTP API), the machine config server
//! (TLS), per-machine secrets, the event log, health and metrics.
//!
//! Everything is answered from an in-memory [`Catalog`] of the asset directory; requests are hash
//! lookups. Secret-bearing configs (bootstrap.ign, the pool configs) go only to the machine they
//! belong to, proven by its token (see [`token`]).

mod assets;
pub mod catalog;
pub mod client;
mod discovery;
mod doctor;
pub mod events;
pub mod fleet_view;
pub mod fleetlock;
mod http;
mod mcs;
mod metrics;
mod part;
pub mod profile;
mod registry;
pub mod token;
pub mod ui;
pub mod window;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use client::{ClientAcceptor, NodeAcceptor};

pub use catalog::{Catalog, CatalogError};
pub use events::{Event, EventLog};
pub use http::{Report, is_report_id, parse_report};
pub use mcs::version_from_accept;

/// How the machine config server tells machines apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McsAuth {
    /// Each machine presents its token (from its pointer config): the default.
    Token,
    /// The machine is the inventory machine with the client's address: the TCP peer, or the
    /// client a trusted load balancer names in a PROXY protocol header (see [`client`]). For
    /// pointer configs that carry no token. Chosen explicitly only.
    SourceIp,
    /// Anyone may fetch a pool's config, without a machine part: for pointer files copied to
    /// another web server. Chosen explicitly only.
    None,
}

/// What `kindling serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A kindling asset directory (or one made by openshift-install with an inventory.yaml).
    pub dir: Option<PathBuf>,
    /// An unchanged matchbox data directory, served for machines not in the inventory.
    pub data_path: Option<PathBuf>,
    pub http: SocketAddr,
    pub mcs: SocketAddr,
    pub mcs_auth: McsAuth,
    /// Load balancers that send a PROXY protocol header (v1 or v2) in front of every machine
    /// config server connection; only theirs are read, and from them one is required.
    pub proxy_from: Vec<std::net::IpAddr>,
    /// The kindling binary served at `/assets/kindling`.
    pub binary: PathBuf,
    /// Serve the revisions of a shared store rather than `dir` (several replicas).
    pub store: Option<StoreServing>,
    /// Give machines no inventory entry knows a discovery profile (see [`discovery`]).
    pub discover: bool,
}

/// `serve --store`: where the site's revisions come from, and where this replica keeps its copy.
#[derive(Debug, Clone)]
pub struct StoreServing {
    pub store: kindling_store::Store,
    /// The replica's local copy of the store (see [`kindling_store::Cache`]), and its own
    /// state under `state/`.
    pub cache: PathBuf,
    pub sources: kindling_store::BlobSources,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "{0}\nfix it: kindling serve starts only when the whole data directory loads, so that no machine is sent to another group than the one written for it (after the start, a bad edit keeps the version before it serving)"
    )]
    Matchbox(String),
    #[error(
        "nothing to serve: give an asset directory (--dir) or a matchbox data directory (--data-path)"
    )]
    Nothing,
    #[error(
        "--mcs-auth=none cannot serve this cluster: it has no bootstrap machine, so the first master's own config part starts the bootstrap agent, and without machine identities only pool configs are served; use --mcs-auth=token (the default) or --mcs-auth=source-ip"
    )]
    NoneWithoutBootstrap,
    #[error("opening the event log in {dir}: {source}")]
    Events {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("loading the machine config server's certificate {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] kindling_store::StoreError),
    #[error(
        "the store ({store}) did not answer ({reason}), and this replica has no copy of a revision yet ({cache}): start it once etcd has a quorum"
    )]
    StoreUnreachable {
        store: String,
        reason: String,
        cache: PathBuf,
    },
}

/// The server's shared state.
pub struct AppState {
    catalog: RwLock<Option<Arc<Catalog>>>,
    /// With `serve --store`: the revisions kept, by number, for requests pinned to one.
    kept: RwLock<std::collections::BTreeMap<u64, Arc<Catalog>>>,
    /// A matchbox data directory, consulted for requests no inventory machine matches (a
    /// reload swaps it whole; see [`AppState::matchbox`]).
    matchbox: RwLock<Option<Arc<kindling_matchbox::DataDir>>>,
    /// Why the data directory's latest edit is not served, if it is not.
    matchbox_trouble: std::sync::Mutex<Option<String>>,
    pub events: EventLog,
    /// Where the server keeps what it writes: the records of what was served, FleetLock's
    /// slots, arm requests. The asset directory itself, unless it serves a store's revisions.
    state_dir: std::sync::OnceLock<PathBuf>,
    pub mcs_auth: McsAuth,
    pub binary: PathBuf,
    /// Which machines may still be served their secrets, and to which address.
    pub window: window::InstallWindow,
    /// `serve --store`: why the store cannot be followed now, if it cannot.
    store_trouble: std::sync::Mutex<Option<String>>,
    /// `serve --store`: the store, for the state the replicas share (FleetLock's slots).
    store: std::sync::OnceLock<kindling_store::Store>,
    metrics: metrics::Metrics,
    /// Held while the dashboard's doctor runs: one run at a time.
    doctor_running: tokio::sync::Mutex<()>,
    /// `kindling status`'s view of the machines, read in the background (see [`fleet_view`]).
    fleet: RwLock<Option<Arc<fleet_view::FleetView>>>,
    /// When the view was last asked for, in seconds after `started` (`u64::MAX`: never).
    fleet_asked: std::sync::atomic::AtomicU64,
    /// Wakes the view's reader when someone looks after nobody did.
    pub(crate) fleet_wanted: tokio::sync::Notify,
    started: Instant,
    /// The rendering each machine was last served, as recorded under `.kindling/served/`
    /// (read when first needed); kept here so that a request writes only when it changes.
    served: std::sync::Mutex<Option<std::collections::BTreeMap<String, String>>>,
    /// `serve --discover`: set when unknown machines get the discovery profile.
    discovery: std::sync::OnceLock<discovery::Discovery>,
}

impl AppState {
    pub fn new(
        catalog: Option<Catalog>,
        matchbox: Option<kindling_matchbox::DataDir>,
        events: EventLog,
        mcs_auth: McsAuth,
        binary: PathBuf,
    ) -> Arc<AppState> {
        AppState::with_window(
            catalog,
            matchbox,
            events,
            window::InstallWindow::default(),
            mcs_auth,
            binary,
        )
    }

    /// [`AppState::new`] with the install window read back from the event log. At the first
    /// install (the log has no window event) every machine is armed, and the log says so.
    pub fn with_window(
        catalog: Option<Catalog>,
        matchbox: Option<kindling_matchbox::DataDir>,
        events: EventLog,
        window: window::InstallWindow,
        mcs_auth: McsAuth,
        binary: PathBuf,
    ) -> Arc<AppState> {
        if window.is_new()
            && let Some(catalog) = &catalog
        {
            window.arm_all();
            events.record_now(Event::now(
                None,
                window::ARMED,
                None,
                format!(
                    "every machine of the inventory ({}) is armed for its first install",
                    catalog.machines.len()
                ),
            ));
        }
        let catalog = catalog.map(Arc::new);
        Arc::new(AppState {
            kept: RwLock::new(
                catalog
                    .iter()
                    .filter_map(|c| Some((c.revision?, c.clone())))
                    .collect(),
            ),
            catalog: RwLock::new(catalog),
            matchbox: RwLock::new(matchbox.map(Arc::new)),
            matchbox_trouble: std::sync::Mutex::new(None),
            events,
            state_dir: std::sync::OnceLock::new(),
            store_trouble: std::sync::Mutex::new(None),
            store: std::sync::OnceLock::new(),
            mcs_auth,
            binary,
            window,
            metrics: metrics::Metrics::default(),
            fleet: RwLock::new(None),
            fleet_asked: std::sync::atomic::AtomicU64::new(u64::MAX),
            fleet_wanted: tokio::sync::Notify::new(),
            started: Instant::now(),
            doctor_running: tokio::sync::Mutex::new(()),
            served: std::sync::Mutex::new(None),
            discovery: std::sync::OnceLock::new(),
        })
    }

    /// The matchbox data directory in force, if one is served.
    pub fn matchbox(&self) -> Option<Arc<kindling_matchbox::DataDir>> {
        self.matchbox
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Gives machines that no inventory entry or matchbox group knows the discovery profile.
    pub fn enable_discovery(&self) {
        let _ = self.discovery.set(discovery::Discovery::default());
    }

    /// Whether `entry`'s secret-bearing `what` ("master config", "bootstrap.ign") may go to
    /// `addr` now (see [`window`]); records the binding, or the refusal.
    pub(crate) fn admit(
        &self,
        entry: &catalog::Entry,
        addr: std::net::IpAddr,
        what: &str,
    ) -> Result<(), Failure> {
        let name = &entry.machine.name;
        let verdict = self
            .window
            .admit(name, addr, time::OffsetDateTime::now_utc());
        let (event, refusal) = verdict.event(name, addr, what);
        if let Some(event) = event {
            // Before the secrets go out: a restart must still know where they went.
            self.events.record_now(event);
        }
        match refusal {
            None => Ok(()),
            Some(reason) if matches!(verdict, window::Verdict::Replayed { .. }) => {
                Err(Failure::new(StatusCode::FORBIDDEN, reason))
            }
            Some(reason) => Err(self.deny(entry, what, &reason)),
        }
    }

    /// Records that `machine` was served `rendering` in the asset directory, where
    /// `create ignition-configs` and `kindling update` read it (see
    /// [`kindling_assets::renderings`]). A failure is logged: the machine still gets its config,
    /// and a rolling update finds where it is from its agent.
    pub(crate) async fn record_served(
        &self,
        dir: &std::path::Path,
        machine: &str,
        rendering: &str,
    ) {
        {
            let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
            let served = served.get_or_insert_with(|| {
                kindling_assets::renderings::served(dir).unwrap_or_default()
            });
            if served.get(machine).map(String::as_str) == Some(rendering) {
                return;
            }
            served.insert(machine.to_string(), rendering.to_string());
        }
        let (dir, machine_name, name) = (
            dir.to_path_buf(),
            machine.to_string(),
            rendering.to_string(),
        );
        let written = tokio::task::spawn_blocking(move || {
            kindling_assets::renderings::record_served(
                &dir,
                &kindling_assets::AtomicFiles,
                &machine_name,
                &name,
            )
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(machine, "{e}"),
            Err(e) => tracing::error!(machine, "recording its rendering: {e}"),
        }
    }

    /// Where the server keeps what it writes (see the field): as set by [`serve`], else the
    /// served asset directory.
    pub(crate) fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir
            .get()
            .cloned()
            .or_else(|| self.catalog().ok().map(|c| c.dir.clone()))
    }

    /// What keeps this replica from working fully, if anything: it then serves boot from what
    /// it has, read-only, and `/healthz` says so.
    pub fn degraded(&self) -> Option<String> {
        let store = self
            .store_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let matchbox = self
            .matchbox_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let reasons: Vec<String> = store
            .into_iter()
            .chain(matchbox)
            .chain(self.events.trouble())
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The latest reading of the machines' status, if one was made. Asking for it keeps it
    /// current for a while (see [`fleet_view::WATCHED`]).
    pub fn fleet_view(&self) -> Option<Arc<fleet_view::FleetView>> {
        if !self.fleet_watched(fleet_view::WATCHED) {
            // Nobody looked for a while: read it now, not at the next turn.
            self.fleet_wanted.notify_one();
        }
        let now = self.started.elapsed().as_secs();
        self.fleet_asked
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.fleet.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the view was asked for within `within`.
    pub(crate) fn fleet_watched(&self, within: std::time::Duration) -> bool {
        let asked = self.fleet_asked.load(std::sync::atomic::Ordering::Relaxed);
        asked != u64::MAX
            && self.started.elapsed().as_secs().saturating_sub(asked) <= within.as_secs()
    }

    pub fn set_fleet_view(&self, view: fleet_view::FleetView) {
        *self.fleet.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(view));
    }

    /// Arms `machine` for a new install, and records it.
    pub fn arm(&self, machine: &str, why: &str) {
        self.window.arm(machine);
        self.events
            .record_now(Event::now(Some(machine), window::ARMED, None, why));
    }

    /// Disarms `machine` (its install is done), and records it once.
    pub(crate) fn disarm(&self, machine: &str, why: &str) {
        if self.window.disarm(machine, time::OffsetDateTime::now_utc()) {
            self.events
                .record_now(Event::now(Some(machine), window::DISARMED, None, why));
        }
    }

    /// The catalog in force (a reload swaps it whole); 404 when only a matchbox data directory
    /// is served.
    pub fn catalog(&self) -> Result<Arc<Catalog>, Failure> {
        let catalog = match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        catalog.ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "no kindling asset directory is served here (only a matchbox data directory)",
            )
        })
    }

    /// Replaces the catalog, e.g. after the asset directory changed. A store revision is also
    /// kept, with the [`KEPT_REVISIONS`] before it, for requests pinned to it.
    pub fn replace_catalog(&self, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        if let Some(number) = catalog.revision {
            let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
            kept.insert(number, catalog.clone());
            while kept.len() > KEPT_REVISIONS {
                kept.pop_first();
            }
        }
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Some(catalog);
    }

    /// The catalog a request is answered from: the one in force, or with `rev=N` (a boot chain
    /// begun on store revision N), revision N's. A revision newer than this replica's is
    /// 503 (the replica is still laying it out: ask again); one no longer kept is 410, since
    /// answering from another would mix two revisions in one boot.
    pub fn catalog_at(&self, revision: Option<&String>) -> Result<Arc<Catalog>, Failure> {
        let current = self.catalog()?;
        let (Some(asked), Some(serving)) = (revision, current.revision) else {
            return Ok(current);
        };
        let asked: u64 = asked.parse().map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("rev={asked:?} is not a revision number"),
            )
        })?;
        if asked == serving {
            return Ok(current);
        }
        if asked > serving {
            let mut failure = Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "revision {asked} is not laid out on this replica yet (it serves {serving}); ask again"
                ),
            );
            failure.retry_after = Some(1);
            return Err(failure);
        }
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
        kept.get(&asked).cloned().ok_or_else(|| {
            Failure::new(
                StatusCode::GONE,
                format!(
                    "revision {asked} is no longer kept here (revisions {} to {serving} are); boot the machine again",
                    kept.keys().next().copied().unwrap_or(serving)
                ),
            )
        })
    }
}

/// Store revisions kept for requests pinned to one, the one in force included.
pub const KEPT_REVISIONS: usize = 3;

/// A request that cannot be answered: a real status and a one-line reason for the body.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub reason: String,
    pub retry_after: Option<u32>,
    pub content_range: Option<String>,
}

impl Failure {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason.into(),
            retry_after: None,
            content_range: None,
        }
    }
}

impl AppState {
    /// The inventory machine at `ip`: by its inventory address where the server knows machines
    /// by address, else the one machine whose install is bound to it.
    pub fn machine_at(&self, ip: std::net::IpAddr) -> Option<String> {
        if self.mcs_auth == McsAuth::SourceIp
            && let Ok(catalog) = self.catalog()
            && let Some(entry) = catalog.by_ip(ip)
        {
            return Some(entry.machine.name.clone());
        }
        self.window.installing_at(ip)
    }
}

impl Failure {
    /// `what` could not be rendered for the spec the client reads. Where the spec cannot express
    /// the config (a 2.x client and a 3.x-only field), that is 406 and a log line naming the
    /// field, as the machine-config-operator answers; anything else is kindling's fault (500).
    pub fn unrenderable(
        what: &str,
        version: kindling_ignition::IgnitionVersion,
        error: kindling_ignition::IgnitionError,
    ) -> Failure {
        use kindling_ignition::IgnitionError::{UnknownField, Unsupported};
        let reason = format!("{what} cannot be served as Ignition spec {version}: {error}");
        if matches!(error, Unsupported { .. } | UnknownField { .. }) {
            tracing::warn!("{reason}");
            Failure::new(StatusCode::NOT_ACCEPTABLE, reason)
        } else {
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, reason)
        }
    }
}

/// The boot server's router, with access log and metrics.
pub fn http_router(state: Arc<AppState>) -> Router {
    http::router(state.clone())
        .merge(metrics::router(state.clone()))
        .merge(ui::router(state.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), ui::gate))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The machine config server's router (and the image registry, on the same TLS listener), with
/// access log and metrics.
pub fn mcs_router(state: Arc<AppState>) -> Router {
    mcs::router(state.clone())
        .merge(registry::router(state.clone()))
        // The dashboard and its API over TLS too: a login there is not sent in the clear
        // across the boot network, and its session cookie is Secure.
        .merge(http::api_router(state.clone()))
        .merge(ui::router(state.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), ui::gate))
        .layer(axum::Extension(ui::OverTls))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// A path no route answers: 404 naming it, not an empty body.
async fn no_route(uri: axum::http::Uri) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        format!(
            "nothing is served at {}: see docs/openapi.yaml and the README for kindling serve's paths",
            uri.path()
        ),
    )
}

/// A path served, asked with a method it does not take: 405 saying so.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// The request path with any token replaced, for logs.
pub fn redact(path_and_query: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = path_and_query
        .split_once('?')
        .filter(|(_, query)| query.split('&').any(|pair| pair.starts_with("token=")))
    else {
        return path_and_query.into();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("token", _)) => "token=REDACTED".to_string(),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

/// How long a handler may take to produce its response (bodies then stream on their own).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Access log and metrics for every request.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    // (An Arc inside: no copy of the path per request.)
    let endpoint = request.extensions().get::<MatchedPath>().cloned();
    let mac_header = request.headers().get("x-kindling-mac").cloned();
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, "the request took too long")
            .into_response(),
    };
    let elapsed = start.elapsed();
    let endpoint = endpoint.as_ref().map_or("unmatched", MatchedPath::as_str);
    state
        .metrics
        .observe(endpoint, response.status().as_u16(), elapsed);
    let shown = redact(uri.path_and_query().map_or("/", |p| p.as_str()));
    let machine = match response.extensions_mut().remove::<ServedMachine>() {
        Some(ServedMachine(name)) => Some(name),
        None => claimed_machine(&state, uri.query(), mac_header.as_ref()),
    };
    tracing::info!(
        target: "access",
        "{method} {shown} {} {:.1}ms {}",
        response.status().as_u16(),
        elapsed.as_secs_f64() * 1e3,
        machine.as_deref().unwrap_or("-")
    );
    response
}

/// The inventory machine a response was for, as its handler knew it, for the access log.
#[derive(Clone)]
pub(crate) struct ServedMachine(pub String);

/// The inventory machine a request names by MAC (query, else `X-Kindling-Mac`), for the log of
/// a response whose handler did not say ([`ServedMachine`]).
fn claimed_machine(
    state: &AppState,
    query: Option<&str>,
    header: Option<&axum::http::HeaderValue>,
) -> Option<String> {
    let from_query = query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("mac=")));
    let from_header = || header.and_then(|v| v.to_str().ok());
    let mac: kindling_config::MacAddr = from_query.or_else(from_header)?.parse().ok()?;
    let catalog = state.catalog().ok()?;
    catalog.by_mac(mac).map(|e| e.machine.name.clone())
}

/// Runs both servers until `shutdown` completes, then drains them.
pub async fn serve(
    mut options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let first_revision = match &options.store {
        Some(serving) => {
            let (dir, number) = first_revision(serving).await?;
            options.dir = Some(dir);
            Some(number)
        }
        None => None,
    };
    // Loaded on a runtime worker rather than on this (the main) thread: glibc gives each thread
    // its own malloc arena, and so the request handlers, which run on the workers, reuse what
    // the description's parser freed (~40 MB at 100,000 machines) for the events they keep,
    // instead of growing a second arena (bench/serve.sh: 121 -> 96 MB RSS after load).
    let catalog = match options.dir.clone() {
        Some(dir) => match tokio::spawn(async move { Catalog::load(&dir) }).await {
            Ok(loaded) => {
                let mut catalog = loaded?;
                catalog.revision = first_revision;
                Some(catalog)
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        None => None,
    };
    let matchbox = match &options.data_path {
        Some(path) => {
            let data = kindling_matchbox::DataDir::load(path)
                .map_err(|e| ServeError::Matchbox(e.to_string()))?;
            for warning in data.warnings() {
                tracing::warn!("{}: {warning}", path.display());
            }
            Some(data)
        }
        None => None,
    };
    let state_dir = match &options.store {
        Some(serving) => {
            let dir = serving.cache.join("state");
            std::fs::create_dir_all(&dir).map_err(|source| ServeError::Events {
                dir: dir.clone(),
                source,
            })?;
            dir
        }
        None => match options.dir.clone().or_else(|| options.data_path.clone()) {
            Some(dir) => dir,
            None => return Err(ServeError::Nothing),
        },
    };
    let mut window = window::InstallWindow::default();
    let events_error = |source| ServeError::Events {
        dir: state_dir.clone(),
        source,
    };
    let events = match &options.store {
        Some(serving) => {
            let replica = replica_name(options.http);
            let events = EventLog::open_shared(&state_dir, &replica, |e| window.replay(e))
                .map_err(events_error)?;
            // Every replica's events so far, before the install window is judged: a replica
            // that starts fresh must not take itself for the first install.
            let journal = kindling_store::journal::Journal::new(serving.store.clone());
            let caught_up = catch_up(&journal, &events, |e| window.replay(e));
            match tokio::time::timeout(std::time::Duration::from_secs(15), caught_up).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    "the store's events could not be read ({e}); going on with this replica's copy"
                ),
                Err(_) => tracing::warn!(
                    "the store's events could not be read within 15 s; going on with this replica's copy"
                ),
            }
            events
        }
        None => {
            EventLog::open_with(&state_dir, |event| window.replay(event)).map_err(events_error)?
        }
    };
    if options.mcs_auth == McsAuth::None
        && let Some(catalog) = &catalog
        && catalog.kindling_configs
        && !catalog
            .machines
            .iter()
            .any(|e| e.machine.role == kindling_config::Role::Bootstrap)
    {
        return Err(ServeError::NoneWithoutBootstrap);
    }
    if let Some(catalog) = &catalog {
        for missing in catalog.missing_boot_assets() {
            tracing::warn!(
                "{} is missing: machines that network-boot will get 404 for it; download it there (README: \"OS images\"), or set provisioning.osImages",
                missing.display()
            );
        }
    }
    let kindling_dir = options.dir.clone();
    let companion = catalog
        .as_ref()
        .is_some_and(|c| c.as_is(kindling_config::Role::Master).is_some());
    let state = AppState::with_window(
        catalog,
        matchbox,
        events,
        window,
        options.mcs_auth,
        options.binary.clone(),
    );
    let _ = state.state_dir.set(state_dir.clone());
    if options.discover {
        state.enable_discovery();
    }
    if let Some(serving) = &options.store {
        let _ = state.store.set(serving.store.clone());
    }

    // OpenShift companion mode has no kindling MCS certificate: OpenShift serves its own. Nor
    // does a matchbox data directory alone.
    let tls = match &kindling_dir {
        Some(dir) if dir.join(MCS_CERT).exists() || !companion => Some(tls_config(dir)?),
        Some(_) => {
            tracing::info!(
                "no {MCS_CERT}: serving openshift-install's configs, without a machine config server"
            );
            None
        }
        None => None,
    };
    let bind = |addr: SocketAddr| {
        let listen = || {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            // A boot storm connects faster than connections are accepted: a queue as long as
            // the kernel allows (net.core.somaxconn), as Go servers such as matchbox ask, not
            // std's 128, past which the kernel drops connections the client thinks are open.
            socket.listen(LISTEN_BACKLOG)?.into_std()
        };
        listen().map_err(|source| ServeError::Listen { addr, source })
    };
    let http_listener = bind(options.http)?;
    let mcs_listener = match tls {
        Some(_) => Some(bind(options.mcs)?),
        None => None,
    };
    tracing::info!("boot server on http://{}", options.http);
    if mcs_listener.is_some() {
        tracing::info!("machine config server on https://{}", options.mcs);
    }

    // One handle stops both servers: new connections are refused, requests in flight finish.
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        stopping.graceful_shutdown(Some(DRAIN));
    });
    if kindling_dir.is_some() || options.store.is_some() {
        tokio::spawn(fleet_view::follow(state.clone()));
    }
    match (&options.store, first_revision) {
        (Some(serving), Some(number)) => {
            let journal = kindling_store::journal::Journal::new(serving.store.clone());
            let (writer, stop) = (state.clone(), stop_rx.clone());
            let writing = journal.clone();
            tokio::spawn(async move { writer.events.run_shared(writing, stop).await });
            tokio::spawn(replicate_events(state.clone(), journal, stop_rx.clone()));
            tokio::spawn(follow_store(
                state.clone(),
                serving.clone(),
                number,
                stop_rx.clone(),
            ));
        }
        _ => {
            if let Some(dir) = kindling_dir {
                tokio::spawn(watch(state.clone(), dir, stop_rx.clone()));
            }
        }
    }
    if let Some(path) = options.data_path.clone() {
        tokio::spawn(watch_data_path(state.clone(), path, stop_rx));
    }
    let mcs_app = mcs_router(state.clone());
    let trouble = Arc::new(client::AcceptTrouble::new("machine config server"));
    let http_trouble = Arc::new(client::AcceptTrouble::new("boot server"));
    let mcs_handle = handle.clone();
    let proxy_from = options.proxy_from.clone();
    let mcs = tokio::spawn(async move {
        let (Some(listener), Some(tls)) = (mcs_listener, tls) else {
            return Ok(());
        };
        let mut server = axum_server::from_tcp_rustls(listener, tls)
            .map_err(|e| e.to_string())?
            // TCP_NODELAY on both servers: TLS 1.3 sends its session tickets in a small write
            // of their own, and Nagle's algorithm then holds the response back until the
            // client's delayed ACK, 40 ms later on Linux, on every connection.
            .map(|tls| {
                NodeAcceptor(tls.acceptor(ClientAcceptor::new(proxy_from, trouble.clone())))
            });
        limit_connections(server.http_builder());
        server
            .accept_error_handler(move |peer, error| trouble.failed(peer, error))
            .handle(mcs_handle)
            .serve(mcs_app.into_make_service())
            .await
            .map_err(|e| e.to_string())
    });
    let mut http = axum_server::from_tcp(http_listener)
        .map_err(|source| ServeError::Listen {
            addr: options.http,
            source,
        })?
        // The client's address, for the install window of bootstrap.ign.
        .acceptor(ClientAcceptor::new(Vec::new(), http_trouble.clone()));
    limit_connections(http.http_builder());
    if let Err(e) = http
        .accept_error_handler(move |peer, error| http_trouble.failed(peer, error))
        .handle(handle)
        .serve(http_router(state.clone()).into_make_service())
        .await
    {
        tracing::error!("boot server: {e}");
    }
    match mcs.await {
        Ok(Err(e)) => tracing::error!("machine config server: {e}"),
        Err(e) => tracing::error!("machine config server: {e}"),
        Ok(Ok(())) => {}
    }
    // The events of the last requests, still queued.
    state.events.close();
    Ok(())
}

/// How long requests in flight may take to finish after a shutdown signal.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take to send a request's headers; also how long an idle keep-alive
/// connection is kept, since the wait for the next request's headers is the same wait.
/// The listen queue asked for; the kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 65_535;

pub(crate) const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn limit_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder
        .http1()
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
}

/// The files whose change means the catalog must be rebuilt: the description, the assets, the
/// mirror, and the pools' states (a rolling update moves machines between renderings without
/// any other change).
fn fingerprint(dir: &std::path::Path) -> Vec<Option<(std::time::SystemTime, u64)>> {
    let pools = ["master", "worker", "infra"].map(kindling_assets::renderings::state_path);
    [
        "inventory.yaml",
        "install-config.yaml",
        kindling_assets::state::STATE_FILE,
        "mirror/index.json",
        "mirror/files.json",
    ]
    .iter()
    .copied()
    .chain(pools.iter().map(String::as_str))
    .map(|f| {
        std::fs::metadata(dir.join(f))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
    .collect()
}

/// Rebuilds the catalog when the description or the assets change. A bad edit keeps the old
/// catalog serving, and says why.
async fn watch(state: Arc<AppState>, dir: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut seen = fingerprint(&dir);
    loop {
        take_arm_requests(&state, &dir);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let now = fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        let load_dir = dir.clone();
        match tokio::task::spawn_blocking(move || Catalog::load(&load_dir)).await {
            Ok(Ok(catalog)) => take_catalog(&state, catalog, &format!("{} changed", dir.display())),
            Ok(Err(e)) => tracing::error!(
                "{} changed but cannot be served; still serving the previous version: {e}",
                dir.display()
            ),
            Err(e) => tracing::error!("reloading {}: {e}", dir.display()),
        }
    }
}

/// What a matchbox data directory's files are, for [`watch_data_path`]: every file under its
/// groups, profiles, ignition and generic directories, by path, modification time and size.
fn data_path_fingerprint(root: &std::path::Path) -> Vec<(PathBuf, std::time::SystemTime, u64)> {
    let mut seen = Vec::new();
    let mut dirs: Vec<PathBuf> = ["groups", "profiles", "ignition", "generic"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(path),
                Ok(m) => seen.push((path, m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len())),
                Err(_) => {}
            }
        }
    }
    seen.sort();
    seen
}

/// Loads the matchbox data directory again when its files change, as matchbox serves an added
/// group or an edited profile on the next request. A bad edit keeps the last good one serving,
/// is logged with its file, and makes `/healthz` say `degraded` until it is fixed.
async fn watch_data_path(
    state: Arc<AppState>,
    root: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = data_path_fingerprint(&root);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let now = data_path_fingerprint(&root);
        if now == seen {
            continue;
        }
        seen = now;
        let load = root.clone();
        let trouble = match tokio::task::spawn_blocking(move || {
            kindling_matchbox::DataDir::load(&load)
        })
        .await
        {
            Ok(Ok(data)) => {
                for warning in data.warnings() {
                    tracing::warn!("{}: {warning}", root.display());
                }
                tracing::info!(
                    "{} changed: now serving {} groups",
                    root.display(),
                    data.groups().len()
                );
                *state.matchbox.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(data));
                None
            }
            Ok(Err(e)) => {
                tracing::error!(
                    "{} changed but cannot be served; still serving the previous version:\n{e}",
                    root.display()
                );
                Some(format!(
                    "the matchbox data directory {} has an edit that cannot be served (the previous version is): {}",
                    root.display(),
                    e.to_string().replace('\n', "; ")
                ))
            }
            Err(e) => Some(format!("reloading {}: {e}", root.display())),
        };
        *state
            .matchbox_trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = trouble;
    }
}

/// Serves `catalog` from now on; the machines it adds to the inventory are armed for their
/// first install.
fn take_catalog(state: &AppState, catalog: Catalog, why: &str) {
    tracing::info!("{why}: now serving {} machines", catalog.machines.len());
    let before = state.catalog().ok();
    for entry in &catalog.machines {
        let name = &entry.machine.name;
        if before.as_ref().is_some_and(|b| b.by_name(name).is_none()) {
            state.arm(name, "added to the inventory");
        }
    }
    state.replace_catalog(catalog);
}

/// `serve --store`'s first revision: the store's current one, laid out here; or, when etcd
/// does not answer, the newest this replica laid out before (boot keeps working without a
/// quorum).
async fn first_revision(serving: &StoreServing) -> Result<(PathBuf, u64), ServeError> {
    let cache = kindling_store::Cache::open(&serving.cache)?;
    let wait = std::time::Duration::from_secs(15);
    let reason = match tokio::time::timeout(wait, serving.store.current()).await {
        Ok(Ok(Some((revision, _)))) => {
            let laid = cache
                .materialize(&serving.store, &revision, &serving.sources)
                .await?;
            warn_missing(&laid);
            return Ok((laid.dir, laid.number));
        }
        Ok(Ok(None)) => return Err(kindling_store::StoreError::Empty.into()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", wait.as_secs()),
    };
    match cache.newest() {
        Some((number, dir)) => {
            tracing::warn!(
                "the store ({}) did not answer ({reason}): serving revision {number} from this replica's copy until it is back",
                serving.store.describe()
            );
            Ok((dir, number))
        }
        None => Err(ServeError::StoreUnreachable {
            store: serving.store.describe(),
            reason,
            cache: serving.cache.clone(),
        }),
    }
}

fn warn_missing(laid: &kindling_store::cache::Materialized) {
    for entry in &laid.missing {
        tracing::warn!(
            "revision {}: {} ({}) is kept outside etcd and no blob source has it: machines get 404 for it; give its directory with --blobs-from",
            laid.number,
            entry.path,
            entry.digest
        );
    }
}

/// Follows the store from revision `after`: each new revision is laid out, loaded, and served
/// whole from then on. A revision that cannot be loaded is not served, and says why.
async fn follow_store(
    state: Arc<AppState>,
    serving: StoreServing,
    after: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let cache = match kindling_store::Cache::open(&serving.cache) {
        Ok(cache) => cache,
        Err(e) => {
            tracing::error!("following the store: {e}");
            return;
        }
    };
    let (laid_out, mut revisions) = tokio::sync::mpsc::unbounded_channel();
    let troubled = state.clone();
    tokio::spawn(kindling_store::follow::follow(
        serving.store.clone(),
        cache,
        serving.sources.clone(),
        after,
        move |laid| {
            let _ = laid_out.send(laid);
        },
        move |trouble| {
            *troubled
                .store_trouble
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = trouble;
        },
        stop,
    ));
    while let Some(laid) = revisions.recv().await {
        warn_missing(&laid);
        let (dir, number) = (laid.dir.clone(), laid.number);
        match tokio::task::spawn_blocking(move || Catalog::load(&dir)).await {
            Ok(Ok(mut catalog)) => {
                catalog.revision = Some(number);
                take_catalog(&state, catalog, &format!("store revision {number}"));
            }
            Ok(Err(e)) => tracing::error!(
                "store revision {number} cannot be served; still serving the previous one: {e}"
            ),
            Err(e) => tracing::error!("loading store revision {number}: {e}"),
        }
    }
}

/// Mirrors the journal's events after the last one this replica has, a page at a time;
/// `visit` sees each new one. The store's revision at the end.
async fn catch_up(
    journal: &kindling_store::journal::Journal,
    events: &EventLog,
    mut visit: impl FnMut(&Event),
) -> Result<i64, kindling_store::StoreError> {
    loop {
        let after = events.mirrored_to();
        let (page, more, revision) = journal.read_after(after, 5_000).await?;
        mirror(events, &page, &mut visit);
        if !more {
            return Ok(revision);
        }
    }
}

/// Adds the journal's events to the mirror, but those it has; `visit` sees each first. An entry
/// that is not an event is kept as one that says so, so that ids still follow each other.
fn mirror(events: &EventLog, page: &[(u64, Vec<u8>)], visit: &mut impl FnMut(&Event)) {
    let after = events.mirrored_to();
    let mut batch = Vec::with_capacity(page.len());
    for (id, json) in page.iter().filter(|(id, _)| *id > after) {
        let mirrored = match serde_json::from_slice::<Event>(json) {
            Ok(event) => events::Mirrored {
                id: *id,
                json: Some(json),
                event,
            },
            Err(e) => events::Mirrored {
                id: *id,
                json: None,
                event: Event::now(None, "unreadable", None, format!("journal entry {id}: {e}")),
            },
        };
        visit(&mirrored.event);
        batch.push(mirrored);
    }
    events.mirror(batch);
}

/// Keeps the replica's event log a mirror of the journal: every replica's events, in the
/// journal's order, applied to the install window as they come.
async fn replicate_events(
    state: Arc<AppState>,
    journal: kindling_store::journal::Journal,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing: Option<String> = None;
    loop {
        let following = async {
            let mut visit = |e: &Event| state.window.apply(e);
            let revision = catch_up(&journal, &state.events, &mut visit).await?;
            let mut watch = journal.watch(revision + 1).await?;
            if failing.take().is_some() {
                tracing::info!("reading the store's events again");
            }
            loop {
                let changes = watch
                    .next()
                    .await
                    .map_err(|e| kindling_store::StoreError::Etcd {
                        what: "watching the events".into(),
                        source: Box::new(e),
                    })?;
                let page = kindling_store::journal::events(changes.changes);
                mirror(&state.events, &page, &mut visit);
            }
        };
        let ended: Result<std::convert::Infallible, kindling_store::StoreError> = tokio::select! {
            ended = following => ended,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let Err(e) = ended;
        if e.is_quiet_watch() {
            continue;
        }
        let message = e.to_string();
        if failing.as_deref() != Some(message.as_str()) {
            tracing::warn!("reading the store's events: {message}; trying again");
            failing = Some(message);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// What a replica calls itself in the store (its events' keys, elections): its host and the
/// boot server's address.
pub fn replica_name(http: SocketAddr) -> String {
    format!("{}-{http}", kindling_store::hostname())
}

/// Arms the machines `kindling machines arm` asked for.
fn take_arm_requests(state: &AppState, dir: &std::path::Path) {
    for name in window::take_arm_requests(dir) {
        match state.catalog() {
            Ok(catalog) if catalog.by_name(&name).is_some() => {
                tracing::info!("{name} armed for a new install (kindling machines arm)");
                state.arm(&name, "by kindling machines arm");
            }
            _ => tracing::warn!("kindling machines arm {name}: no such machine in the inventory"),
        }
    }
}

/// The machine config server's certificate and key, in the asset directory.
const MCS_CERT: &str = "tls/mcs.crt";
const MCS_KEY: &str = "tls/mcs.key";

fn tls_config(dir: &std::path::Path) -> Result<axum_server::tls_rustls::RustlsConfig, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_path = dir.join(MCS_CERT);
    let key_path = dir.join(MCS_KEY);
    let err = |path: &std::path::Path, message: String| ServeError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect())
        .map_err(|e| err(&cert_path, format!("{e}; run kindling create manifests")))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| err(&key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&cert_path, e.to_string()))?;
    // Nodes may present their kubelet's client certificate (see client::PeerNode); everyone
    // else connects without one, as before. The CAs are the API server's client CAs.
    let bundle_path = dir.join(kindling_assets::pki::CLIENT_CA_BUNDLE);
    let client_cas: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(&bundle_path)
    {
        Ok(certs) => certs
            .collect::<Result<_, _>>()
            .map_err(|e| err(&bundle_path, e.to_string()))?,
        // openshift-install's asset directories have no such bundle: no node identities.
        Err(_) => Vec::new(),
    };
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in client_cas {
            roots
                .add(ca)
                .map_err(|e| err(&bundle_path, e.to_string()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| err(&bundle_path, e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| err(&cert_path, e.to_string()))?;
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

#[cfg(test)]
mod tests;
