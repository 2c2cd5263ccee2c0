//! The server's endpoints, called in-process on the demo cluster's assets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kindling_assets::{AtomicFiles, Settings, Target};
use kindling_config::ClusterDescription;
use tower::ServiceExt;

use crate::client::ClientAddr;
use crate::{AppState, Catalog, Event, EventLog, McsAuth};

const DEMO_IC: &str = include_str!("../../../examples/demo/install-config.yaml");
const DEMO_INV: &str = include_str!("../../../examples/demo/inventory.yaml");

fn demo(target: Target) -> tempfile::TempDir {
    demo_with(target, DEMO_INV)
}

/// [`demo`] with another inventory.
fn demo_with(target: Target, inventory: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("install-config.yaml"), DEMO_IC).unwrap();
    std::fs::write(dir.path().join("inventory.yaml"), inventory).unwrap();
    let description = ClusterDescription::load(dir.path()).unwrap().description;
    let version = &description.inventory.kubernetes.version;
    let images = kindling_assets::manifests::Images::for_version(version);
    kindling_testkit::mirror::seed(dir.path(), version, &images.all());
    let settings = Settings {
        now: time::OffsetDateTime::now_utc(),
        key_algorithm: Default::default(),
        lifetimes: Default::default(),
        agent_sha512: Some("0".repeat(128)),
        rotate_ca: false,
        renew_before: time::Duration::ZERO,
    };
    kindling_assets::create(dir.path(), &description, target, &settings, &AtomicFiles).unwrap();
    dir
}

fn state(dir: &Path, auth: McsAuth) -> Arc<AppState> {
    let binary = dir.join("fake-kindling");
    std::fs::write(&binary, b"0123456789abcdef").unwrap();
    AppState::new(
        Some(Catalog::load(dir).unwrap()),
        None,
        EventLog::in_memory(),
        auth,
        binary,
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// The address requests come from unless they say otherwise: worker0's.
const FROM: [u8; 4] = [192, 168, 126, 120];

async fn call(router: axum::Router, mut request: Request<Body>) -> Reply {
    if request.extensions().get::<ClientAddr>().is_none() {
        request.extensions_mut().insert(ClientAddr(FROM.into()));
    }
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(state: &Arc<AppState>, uri: &str) -> Reply {
    call(
        crate::http_router(state.clone()),
        Request::get(uri).body(Body::empty()).unwrap(),
    )
    .await
}

/// The admin's `Authorization` header for the asset directory `state` serves.
fn bearer(state: &Arc<AppState>) -> String {
    let dir = &state.catalog().unwrap().dir;
    let token = std::fs::read_to_string(dir.join(crate::ui::auth::TOKEN_FILE)).unwrap();
    format!("Bearer {}", token.trim())
}

/// [`get`] as the admin.
async fn admin_get(state: &Arc<AppState>, uri: &str) -> Reply {
    call(
        crate::http_router(state.clone()),
        Request::get(uri)
            .header(header::AUTHORIZATION, bearer(state))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn mcs(state: &Arc<AppState>, pool: &str, identity: Option<(&str, &str)>) -> Reply {
    mcs_from(state, pool, identity, FROM).await
}

/// `mcs`, from the client address `from`.
async fn mcs_from(
    state: &Arc<AppState>,
    pool: &str,
    identity: Option<(&str, &str)>,
    from: [u8; 4],
) -> Reply {
    let mut request = Request::get(format!("/config/{pool}")).header(
        header::ACCEPT,
        "application/vnd.coreos.ignition+json;version=3.3.0, */*;q=0.1",
    );
    if let Some((mac, token)) = identity {
        request = request
            .header("X-Kindling-Mac", mac)
            .header("X-Kindling-Token", token);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ClientAddr(from.into()));
    call(crate::mcs_router(state.clone()), request).await
}

fn token_of(state: &Arc<AppState>, name: &str) -> String {
    let catalog = state.catalog().unwrap();
    catalog.token(catalog.by_name(name).unwrap())
}

#[tokio::test]
async fn ipxe_chains_to_the_machine_and_boots_its_profile() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let boot = get(&state, "/boot.ipxe").await;
    assert_eq!(boot.status, StatusCode::OK);
    let text = boot.text();
    assert!(text.starts_with("#!ipxe\n"), "{text}");
    assert!(
        text.contains("\nchain http://192.168.126.2:8080/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring} ||\n"),
        "{text}"
    );
    // Tried again when the chain fails: a replica may have died mid-boot.
    assert!(
        text.contains("iseq ${tries} 10 && goto failed ||\n"),
        "{text}"
    );
    assert_eq!(get(&state, "/boot.ipxe.0").await.text(), boot.text());
    // The root answers as matchbox's does: its liveness probe asks there.
    let home = get(&state, "/").await;
    assert_eq!(
        (home.status, home.text().as_str()),
        (StatusCode::OK, "matchbox\n")
    );

    // A path nothing answers, and a method a path does not take, say so.
    let nothing = get(&state, "/assets/").await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(
        nothing
            .text()
            .starts_with("nothing is served at /assets/: "),
        "{}",
        nothing.text()
    );
    let delete = call(
        crate::http_router(state.clone()),
        Request::delete("/ipxe").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (delete.status, delete.text().as_str()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "/ipxe does not take DELETE\n"
        )
    );
    assert_eq!(delete.headers[header::ALLOW], "GET,HEAD");

    // worker0's MAC, written upper-case with colons: the same machine as iPXE's hyphens.
    let ipxe = get(&state, "/ipxe?mac=52:54:00:7E:01:20&uuid=x").await;
    assert_eq!(ipxe.status, StatusCode::OK, "{}", ipxe.text());
    let script = ipxe.text();
    let token = token_of(&state, "worker0");
    assert!(script.starts_with("#!ipxe\nkernel http://192.168.126.2:8080/assets/fcos/fedora-coreos-live-kernel-x86_64 initrd=fedora-coreos-live-initramfs.x86_64.img "), "{script}");
    assert!(script.contains(&format!("coreos.inst.ignition_url=http://192.168.126.2:8080/ignition?mac=52-54-00-7e-01-20&token={token} ")), "{script}");
    assert!(
        script.contains("coreos.inst.install_dev=/dev/vda"),
        "{script}"
    );

    // The key in any case, as people type it and some firmware sends it.
    for key in ["MAC", "Mac"] {
        let same = get(&state, &format!("/ipxe?{key}=52-54-00-7e-01-20")).await;
        assert_eq!(same.text(), script, "{key}=");
    }

    let unknown = get(&state, "/ipxe?mac=52-54-00-ff-ff-ff").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.text(),
        "no machine in inventory.yaml has MAC 52:54:00:ff:ff:ff\n"
    );
    assert_eq!(get(&state, "/ipxe").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&state, "/ipxe?mac=nonsense").await.status,
        StatusCode::BAD_REQUEST
    );
    assert!(
        get(&state, "/grub?mac=52-54-00-7e-01-20")
            .await
            .text()
            .contains("linux \"http://192.168.126.2:8080/assets/fcos/")
    );
}

#[tokio::test]
async fn a_machine_gets_a_pointer_with_its_token_and_the_mcs_serves_only_it() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "worker0");

    let pointer = get(&state, "/ignition?mac=52-54-00-7e-01-20").await;
    assert_eq!(pointer.status, StatusCode::OK);
    let pointer = pointer.json();
    let merge = &pointer["ignition"]["config"]["merge"][0];
    assert_eq!(
        merge["source"],
        "https://api-int.demo.example.localdomain:22623/config/worker"
    );
    assert_eq!(merge["httpHeaders"][1]["value"], token.as_str());
    assert!(
        pointer["ignition"]["security"]["tls"]["certificateAuthorities"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("data:")
    );

    let served = mcs(&state, "worker", Some(("52-54-00-7e-01-20", &token))).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    let config = served.json();
    assert_eq!(config["ignition"]["version"], "3.3.0");
    let files = config["storage"]["files"].as_array().unwrap();
    let hostname = files.iter().find(|f| f["path"] == "/etc/hostname").unwrap();
    let hostname =
        kindling_ignition::data_url::decode(hostname["contents"]["source"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        String::from_utf8(hostname).unwrap().trim(),
        "worker0.demo.example.localdomain"
    );
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "/etc/kubernetes/bootstrap-kubelet.conf")
    );

    // Another machine's token, a wrong token, or none: 403, and the timeline says so.
    let worker1 = token_of(&state, "worker1");
    assert_eq!(
        mcs(&state, "worker", Some(("52-54-00-7e-01-20", &worker1)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        mcs(&state, "worker", Some(("52-54-00-7e-01-20", "00")))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        mcs(&state, "worker", None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(state.events.machines()["worker0"].stage, "denied");
    // A worker may not fetch the master pool, even with its own token.
    assert_eq!(
        mcs(&state, "master", Some(("52-54-00-7e-01-20", &token)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let unknown = mcs(&state, "storage", Some(("52-54-00-7e-01-20", &token))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown
            .text()
            .contains("no machine config pool \"storage\"")
    );
}

#[tokio::test]
async fn bootstrap_ign_needs_the_bootstrap_machines_token() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "bootstrap");
    let denied = get(&state, "/ignition?mac=52-54-00-7e-01-00").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let worker_token = token_of(&state, "worker0");
    let denied = get(
        &state,
        &format!("/ignition?mac=52-54-00-7e-01-00&token={worker_token}"),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let served = get(
        &state,
        &format!("/ignition?mac=52-54-00-7e-01-00&token={token}"),
    )
    .await;
    assert_eq!(served.status, StatusCode::OK);
    // bootstrap.ign as written, plus what only the server can make: the agent's identity file,
    // and the runtime's registry hosts with the machine's own credentials.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bootstrap.ign")).unwrap()).unwrap();
    let mut served = served.json();
    assert_eq!(
        agent_identity(&served).as_deref(),
        Some(format!("mac=52:54:00:7e:01:00\ntoken={token}\n").as_str())
    );
    let files = served["storage"]["files"].as_array_mut().unwrap();
    let hosts: Vec<String> = files
        .iter()
        .filter_map(|f| f["path"].as_str())
        .filter(|p| p.starts_with("/etc/containerd/certs.d/"))
        .map(String::from)
        .collect();
    assert_eq!(
        hosts,
        [
            "/etc/containerd/certs.d/ghcr.io/hosts.toml",
            "/etc/containerd/certs.d/registry.k8s.io/hosts.toml"
        ]
    );
    files.retain(|f| {
        f["path"] != kindling_assets::layout::AGENT_IDENTITY
            && !f["path"]
                .as_str()
                .unwrap()
                .starts_with("/etc/containerd/certs.d/")
    });
    assert_eq!(served, on_disk);
}

/// The agent's identity file in a served config (mode 0600), if there is one.
fn agent_identity(config: &serde_json::Value) -> Option<String> {
    let file = config["storage"]["files"]
        .as_array()?
        .iter()
        .find(|f| f["path"] == kindling_assets::layout::AGENT_IDENTITY)?;
    assert_eq!(file["mode"], 0o600);
    let bytes = kindling_ignition::data_url::decode(file["contents"]["source"].as_str()?)?;
    String::from_utf8(bytes).ok()
}

#[tokio::test]
async fn every_machine_gets_its_identity_for_its_reports() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "master1");
    let served = mcs(&state, "master", Some(("52-54-00-7e-01-11", &token))).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    assert_eq!(
        agent_identity(&served.json()).as_deref(),
        Some(format!("mac=52:54:00:7e:01:11\ntoken={token}\n").as_str())
    );
    let token = token_of(&state, "worker0");
    let served = mcs(&state, "worker", Some(("52-54-00-7e-01-20", &token))).await;
    assert_eq!(
        agent_identity(&served.json()).as_deref(),
        Some(format!("mac=52:54:00:7e:01:20\ntoken={token}\n").as_str())
    );
}

#[tokio::test]
async fn a_pool_not_generated_yet_is_503_with_retry_after() {
    let dir = demo(Target::Manifests);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "worker0");
    let reply = mcs(&state, "worker", Some(("52-54-00-7e-01-20", &token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[header::RETRY_AFTER], "30");
}

#[tokio::test]
async fn without_auth_the_mcs_serves_the_bare_pool_config_to_anyone() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::None);
    let reply = mcs(&state, "worker", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text().contains("/etc/hostname"));
    // What the README says of this mode: anyone gets every pool, the master pool's keys
    // included, from any address, again and again.
    for from in [[10, 0, 0, 1], [10, 0, 0, 2]] {
        let master = mcs_from(&state, "master", None, from).await;
        assert_eq!(master.status, StatusCode::OK);
        assert!(master.text().contains(kindling_assets::layout::SA_KEY));
    }
}

#[tokio::test]
async fn assets_support_head_and_ranges() {
    let dir = demo(Target::Manifests);
    let state = state(dir.path(), McsAuth::Token);
    let whole = get(&state, "/assets/kindling").await;
    assert_eq!(whole.body, b"0123456789abcdef");
    let ranged = call(
        crate::http_router(state.clone()),
        Request::get("/assets/kindling")
            .header(header::RANGE, "bytes=4-7")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body, b"4567");
    assert_eq!(ranged.headers[header::CONTENT_RANGE], "bytes 4-7/16");
    let head = call(
        crate::http_router(state.clone()),
        Request::head("/assets/kindling")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers[header::CONTENT_LENGTH], "16");
    assert!(head.body.is_empty());
    assert_eq!(
        get(&state, "/assets/../inventory.yaml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&state, "/assets/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );
    let with_range = |range: &'static str| {
        call(
            crate::http_router(state.clone()),
            Request::get("/assets/kindling")
                .header(header::RANGE, range)
                .body(Body::empty())
                .unwrap(),
        )
    };
    // Several ranges, overlapping: the whole file (RFC 9110 lets a server ignore them).
    let several = with_range("bytes=0-3,2-5,10-").await;
    assert_eq!(several.status, StatusCode::OK);
    assert_eq!(several.body, b"0123456789abcdef");
    // Beyond the file, or malformed: 416, saying how long the file is.
    for range in [
        "bytes=16-",
        "bytes=5-2",
        "bytes=x-y",
        "lines=1-2",
        "bytes=0-1,99-",
    ] {
        let refused = with_range(range).await;
        assert_eq!(refused.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            refused.headers[header::CONTENT_RANGE],
            "bytes */16",
            "{range}"
        );
    }
    // A directory under assets/ is no asset (it was 200 with a length of 4096, then a cut).
    std::fs::create_dir_all(dir.path().join("assets/fcos")).unwrap();
    for request in [Request::get("/assets/fcos"), Request::head("/assets/fcos")] {
        let reply = call(
            crate::http_router(state.clone()),
            request.body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    assert!(
        get(&state, "/assets/fcos")
            .await
            .text()
            .contains("it is a directory")
    );
}

#[tokio::test]
async fn machines_metrics_and_redacted_logs() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    get(&state, "/ipxe?mac=52-54-00-7e-01-20").await;
    get(&state, "/ipxe?mac=52-54-00-ff-ff-ff").await;
    let machines = admin_get(&state, "/api/v1/machines").await.json();
    let worker0 = machines["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "worker0")
        .unwrap();
    assert_eq!(worker0["stage"], "ipxe");
    let metrics = get(&state, "/metrics").await.text();
    assert!(
        metrics.contains("kindling_http_requests_total{endpoint=\"/ipxe\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kindling_http_requests_total{endpoint=\"/ipxe\",status=\"404\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kindling_machines{stage=\"ipxe\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        crate::redact("/ignition?mac=52-54&token=abc"),
        "/ignition?mac=52-54&token=REDACTED"
    );
}

#[tokio::test]
async fn agents_report_stages_with_their_token_and_watchers_see_them_live() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "master0");

    let stream = crate::http_router(state.clone())
        .oneshot(
            Request::get("/api/v1/events")
                .header(header::AUTHORIZATION, bearer(&state))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = stream.into_body();

    let post = |json: String| {
        let state = state.clone();
        async move {
            call(
                crate::http_router(state),
                Request::post("/api/v1/events")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(json))
                    .unwrap(),
            )
            .await
        }
    };
    let good = format!(
        r#"{{"mac":"52:54:00:7e:01:10","token":"{token}","stage":"join-master","result":"ok"}}"#
    );
    assert_eq!(post(good).await.status, StatusCode::NO_CONTENT);
    assert_eq!(state.events.machines()["master0"].stage, "join-master");

    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let frame = String::from_utf8_lossy(&frame);
    assert!(
        frame.contains("event: event") && frame.contains("\"stage\":\"join-master\""),
        "{frame}"
    );

    let forged =
        r#"{"mac":"52:54:00:7e:01:10","token":"00000000000000000000000000000000","stage":"done"}"#
            .to_string();
    assert_eq!(post(forged).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        post("{not json".into()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post("x".repeat(100 * 1024)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(state.events.machines()["master0"].stage, "denied");
}

/// A watcher that reconnects with the id of the last event it saw gets the events after it, and
/// then the new ones: nothing is lost in between.
#[tokio::test]
async fn the_event_stream_resumes_after_the_last_event_id() {
    let dir = demo(Target::Manifests);
    let binary = dir.path().join("fake-kindling");
    std::fs::write(&binary, b"0123456789abcdef").unwrap();
    let state = AppState::new(
        Some(Catalog::load(dir.path()).unwrap()),
        None,
        EventLog::open(dir.path()).unwrap(),
        McsAuth::Token,
        binary,
    );
    for stage in ["boot.ipxe", "ipxe", "kernel"] {
        state
            .events
            .record(Event::now(Some("worker0"), stage, Some(200), ""));
    }
    let frames = |request: Request<Body>, count: usize| {
        let state = state.clone();
        async move {
            let response = crate::http_router(state).oneshot(request).await.unwrap();
            let mut body = response.into_body();
            let mut text = String::new();
            while text.matches("event: event").count() < count {
                let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                    .await
                    .expect("the next event in time")
                    .unwrap()
                    .unwrap();
                if let Ok(data) = frame.into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            text
        }
    };
    let stages = |text: &str| -> Vec<(u64, String)> {
        text.split("\n\n")
            .filter(|f| f.contains("event: event"))
            .map(|f| {
                let field = |name: &str| {
                    f.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap()
                        .trim()
                        .to_string()
                };
                let event: Event = serde_json::from_str(&field("data:")).unwrap();
                (field("id:").parse().unwrap(), event.stage)
            })
            .collect()
    };
    let all = stages(
        &frames(
            Request::get("/api/v1/events?since=0")
                .header(header::AUTHORIZATION, bearer(&state))
                .body(Body::empty())
                .unwrap(),
            4,
        )
        .await,
    );
    let names: Vec<&str> = all.iter().map(|(_, s)| s.as_str()).collect();
    // The first install armed every machine before anything else.
    assert_eq!(names, ["armed", "boot.ipxe", "ipxe", "kernel"]);
    let all = &all[1..];

    // Reconnecting after "boot.ipxe": the two after it, then one recorded while connected.
    let resumed = frames(
        Request::get("/api/v1/events")
            .header(header::AUTHORIZATION, bearer(&state))
            .header("last-event-id", all[0].0.to_string())
            .body(Body::empty())
            .unwrap(),
        3,
    );
    let record_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        state
            .events
            .record(Event::now(Some("worker0"), "initrd", Some(200), ""));
    };
    let (resumed, ()) = tokio::join!(resumed, record_later);
    let resumed = stages(&resumed);
    let names: Vec<&str> = resumed.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(names, ["ipxe", "kernel", "initrd"]);
    assert_eq!(resumed[..2], all[1..]);
}

/// A directory made by openshift-install: its configs are served as they are, by role; the
/// bootstrap machine's only with its token.
#[tokio::test]
async fn openshift_install_configs_are_served_in_companion_mode() {
    let upi =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/valid/openshift-4.5-upi");
    let dir = tempfile::tempdir().unwrap();
    for f in ["install-config.yaml", "inventory.yaml"] {
        std::fs::copy(upi.join(f), dir.path().join(f)).unwrap();
    }
    let pointer = |pool: &str| {
        format!(
            r#"{{"ignition":{{"version":"3.1.0","config":{{"merge":[{{"source":"https://api-int.ocp45.example.localdomain:22623/config/{pool}"}}]}}}}}}"#
        )
    };
    std::fs::write(
        dir.path().join("bootstrap.ign"),
        r#"{"ignition":{"version":"3.1.0"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("master.ign"), pointer("master")).unwrap();
    std::fs::write(dir.path().join("worker.ign"), pointer("worker")).unwrap();
    let state = state(dir.path(), McsAuth::Token);

    let master = get(&state, "/ignition?mac=00-50-56-96-0c-43").await;
    assert_eq!(master.text(), pointer("master"));
    let worker = get(&state, "/ignition?mac=00:50:56:96:5f:4e").await;
    assert_eq!(worker.text(), pointer("worker"));
    assert_eq!(
        get(&state, "/ignition?mac=00:50:56:96:11:c2").await.status,
        StatusCode::FORBIDDEN
    );
    let token = token_of(&state, "bs");
    let bootstrap = get(
        &state,
        &format!("/ignition?mac=00:50:56:96:11:c2&token={token}"),
    )
    .await;
    assert_eq!(bootstrap.text(), r#"{"ignition":{"version":"3.1.0"}}"#);
    // The RHCOS legacy installer is what OCP 4.5 UPI boots.
    let ipxe = get(&state, "/ipxe?mac=00:50:56:96:5f:4e").await.text();
    assert!(
        ipxe.contains("coreos.inst=yes") && ipxe.contains("coreos.inst.install_dev=sda"),
        "{ipxe}"
    );
}

/// An unchanged matchbox data directory (tests/fixtures/matchbox), served beside the demo: the
/// inventory's machines get kindling's answers, every other request matchbox's.
#[tokio::test]
async fn a_matchbox_data_directory_is_served_for_machines_outside_the_inventory() {
    let dir = demo(Target::IgnitionConfigs);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/matchbox");
    let data = kindling_matchbox::DataDir::load(&fixture).unwrap();
    let binary = dir.path().join("fake-kindling");
    std::fs::write(&binary, b"x").unwrap();
    let both = AppState::new(
        Some(Catalog::load(dir.path()).unwrap()),
        Some(data),
        EventLog::in_memory(),
        McsAuth::Token,
        binary.clone(),
    );

    // An inventory machine: kindling's profile, whatever matchbox's groups say.
    assert!(
        get(&both, "/ipxe?mac=52-54-00-7e-01-20")
            .await
            .text()
            .contains("fedora-coreos-live-kernel-x86_64 initrd=fedora-coreos-live-initramfs")
    );
    // node1 (matchbox's examples), with its MAC in another form: matchbox's install profile.
    let ipxe = get(&both, "/ipxe?mac=52:54:00:89:D8:10").await;
    assert_eq!(ipxe.status, StatusCode::OK, "{}", ipxe.text());
    assert!(ipxe.text().starts_with("#!ipxe\nkernel /assets/fedora-coreos/fedora-coreos-36.20220618.3.1-live-kernel-x86_64 initrd=main "), "{}", ipxe.text());
    // Anything else gets the default group.
    assert!(
        get(&both, "/ipxe?mac=52-54-00-00-00-01")
            .await
            .text()
            .contains("coreos.inst.install_dev=/dev/sda")
    );
    // The installed node1: its Butane template, rendered for it and translated to Ignition.
    let config = get(
        &both,
        "/ignition?mac=52-54-00-89-d8-10&os=installed&foo=bar",
    )
    .await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.text());
    let config = config.json();
    let files = config["storage"]["files"].as_array().unwrap();
    let env = files
        .iter()
        .find(|f| f["path"] == "/etc/kindling/machine.env")
        .unwrap();
    let env = String::from_utf8(
        kindling_ignition::data_url::decode(env["contents"]["source"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        env.contains("MAC=52:54:00:89:d8:10\nFOO=bar\n") && env.contains("ETCD_NAME=node1"),
        "{env}"
    );
    assert_eq!(
        config["passwd"]["users"][0]["sshAuthorizedKeys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let generic = get(&both, "/generic?mac=52-54-00-89-d8-10&foo=bar")
        .await
        .text();
    assert!(generic.contains("foo=bar"), "{generic}");
    // With Range, as matchbox serves it.
    let part = call(
        crate::http_router(both.clone()),
        Request::get("/generic?mac=52-54-00-89-d8-10&foo=bar")
            .header(header::RANGE, "bytes=0-4")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.text(), generic[..5]);
    assert_eq!(
        part.headers[header::CONTENT_RANGE],
        format!("bytes 0-4/{}", generic.len())
    );

    // matchbox alone.
    let alone = AppState::new(
        None,
        Some(kindling_matchbox::DataDir::load(&fixture).unwrap()),
        EventLog::in_memory(),
        McsAuth::Token,
        binary,
    );
    assert!(get(&alone, "/boot.ipxe").await.text().starts_with("#!ipxe"));
    assert_eq!(
        get(&alone, "/ipxe?mac=52:54:00:89:D8:10").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&alone, "/api/v1/machines").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn kernel_and_initrd_downloads_are_named_in_the_event_log() {
    let dir = demo(Target::Manifests);
    let state = state(dir.path(), McsAuth::Token);
    let catalog = state.catalog().unwrap();
    assert_eq!(
        catalog.asset_stage("fcos/fedora-coreos-live-kernel-x86_64"),
        "kernel"
    );
    assert_eq!(
        catalog.asset_stage("fcos/fedora-coreos-live-initramfs.x86_64.img"),
        "initrd"
    );
    assert_eq!(catalog.asset_stage("fcos/other"), "asset");
}

/// The events of one stage, in order.
fn stages(state: &AppState, stage: &str) -> Vec<Event> {
    state
        .events
        .recorded()
        .into_iter()
        .filter(|e| e.stage == stage)
        .collect()
}

async fn report(state: &Arc<AppState>, mac: &str, token: &str, stage: &str, result: &str) -> Reply {
    call(
        crate::http_router(state.clone()),
        Request::post("/api/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!(
                r#"{{"mac":"{mac}","token":"{token}","stage":"{stage}","result":"{result}"}}"#
            )))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_masters_config_goes_to_the_first_address_only_and_a_replay_names_both() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "master0");
    let me = Some(("52-54-00-7e-01-10", token.as_str()));
    let (master0, thief) = ([192, 168, 126, 110], [192, 168, 126, 66]);

    // The first fetch binds master0's install to its address; a retry from there is served.
    assert_eq!(
        mcs_from(&state, "master", me, master0).await.status,
        StatusCode::OK
    );
    assert_eq!(
        mcs_from(&state, "master", me, master0).await.status,
        StatusCode::OK
    );
    let bound = stages(&state, "bound");
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].detail, "192.168.126.110");

    // The same token from elsewhere: 403, and the event names both addresses.
    let replay = mcs_from(&state, "master", me, thief).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN);
    assert!(
        replay
            .text()
            .contains("already fetched from 192.168.126.110"),
        "{}",
        replay.text()
    );
    assert!(!replay.text().contains(&token));
    let replayed = stages(&state, "replayed");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].machine.as_deref(), Some("master0"));
    assert!(
        replayed[0].detail.contains("192.168.126.110")
            && replayed[0].detail.contains("192.168.126.66")
    );

    // Had the thief been first, the real master is refused, loudly, with the thief's address.
    let token1 = token_of(&state, "master1");
    let other = Some(("52-54-00-7e-01-11", token1.as_str()));
    assert_eq!(
        mcs_from(&state, "master", other, thief).await.status,
        StatusCode::OK
    );
    let refused = mcs_from(&state, "master", other, [192, 168, 126, 111]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .contains("already fetched from 192.168.126.66"),
        "{}",
        refused.text()
    );
}

#[tokio::test]
async fn an_installed_machine_is_disarmed_until_a_person_arms_it() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    // The first install armed every machine, in one event.
    let armed = stages(&state, "armed");
    assert_eq!(armed.len(), 1);
    assert!(armed[0].machine.is_none() && armed[0].detail.contains("every machine"));

    let token = token_of(&state, "worker0");
    let me = Some(("52-54-00-7e-01-20", token.as_str()));
    assert_eq!(mcs(&state, "worker", me).await.status, StatusCode::OK);
    // Its first boot reports the install done: the window closes.
    assert_eq!(
        report(&state, "52:54:00:7e:01:20", &token, "installed", "done")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(stages(&state, "disarmed").len(), 1);
    let refused = mcs(&state, "worker", me).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.text().contains("kindling machines arm worker0"),
        "{}",
        refused.text()
    );
    assert_eq!(state.events.machines()["worker0"].stage, "denied");
    // Another report changes nothing; a forged one is refused.
    report(&state, "52:54:00:7e:01:20", &token, "installed", "done").await;
    assert_eq!(stages(&state, "disarmed").len(), 1);

    // Re-armed for a re-install: served again, to the machine's address of today.
    state.arm("worker0", "by kindling machines arm");
    assert_eq!(
        mcs_from(&state, "worker", me, [192, 168, 126, 200])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bootstrap_ign_has_the_same_window() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "bootstrap");
    let url = format!("/ignition?mac=52-54-00-7e-01-00&token={token}");
    let from = |addr: [u8; 4]| {
        let mut request = Request::get(url.as_str()).body(Body::empty()).unwrap();
        request.extensions_mut().insert(ClientAddr(addr.into()));
        call(crate::http_router(state.clone()), request)
    };
    assert_eq!(from([192, 168, 126, 100]).await.status, StatusCode::OK);
    let replay = from([10, 9, 9, 9]).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN);
    assert!(
        replay
            .text()
            .contains("bootstrap.ign was already fetched from 192.168.126.100"),
        "{}",
        replay.text()
    );
    report(&state, "52:54:00:7e:01:00", &token, "installed", "done").await;
    assert_eq!(
        from([192, 168, 126, 100]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[test]
fn the_window_survives_a_restart_from_the_event_log() {
    let dir = demo(Target::IgnitionConfigs);
    let open = || {
        let mut window = crate::window::InstallWindow::default();
        let events = EventLog::open_with(dir.path(), |e| window.replay(e)).unwrap();
        AppState::with_window(
            Some(Catalog::load(dir.path()).unwrap()),
            None,
            events,
            window,
            McsAuth::Token,
            dir.path().join("kindling"),
        )
    };
    let first = open();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        first.window.admit("worker0", FROM.into(), now)
            == crate::window::Verdict::Serve { first: true }
    );
    first.events.record(Event::now(
        Some("worker0"),
        "bound",
        None,
        "192.168.126.120",
    ));
    first.disarm("worker1", "it reported its install done");
    drop(first);
    let again = open();
    // One "every machine armed" event, at the first start only.
    let log = std::fs::read_to_string(dir.path().join(crate::events::EVENTS_FILE)).unwrap();
    assert_eq!(
        log.matches("every machine of the inventory").count(),
        1,
        "{log}"
    );
    assert!(matches!(
        again.window.admit("worker0", [10, 0, 0, 1].into(), now),
        crate::window::Verdict::Replayed { .. }
    ));
    assert!(!again.window.is_armed("worker1"));
    assert!(again.window.is_armed("worker2"));
}

#[tokio::test]
async fn a_missing_asset_names_the_file_looked_for_and_serve_knows_what_is_missing() {
    let dir = demo(Target::Manifests);
    let state = state(dir.path(), McsAuth::Token);
    let missing = get(&state, "/assets/fcos/fedora-coreos-live-kernel-x86_64").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let want = dir
        .path()
        .join("assets/fcos/fedora-coreos-live-kernel-x86_64");
    assert!(
        missing
            .text()
            .contains(&format!("looked for {}", want.display())),
        "{}",
        missing.text()
    );
    // What serve warns about at start: the three images of a Fedora CoreOS live PXE boot.
    let catalog = state.catalog().unwrap();
    let names: Vec<String> = catalog
        .missing_boot_assets()
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "assets/fcos/fedora-coreos-live-kernel-x86_64",
            "assets/fcos/fedora-coreos-live-initramfs.x86_64.img",
            "assets/fcos/fedora-coreos-live-rootfs.x86_64.img",
        ]
    );
    std::fs::create_dir_all(want.parent().unwrap()).unwrap();
    std::fs::write(&want, b"kernel").unwrap();
    assert_eq!(catalog.missing_boot_assets().len(), 2);
}

/// The pointer config and bootstrap.ign come in the spec the client's Ignition asks for, as the
/// machine config server's configs do; without an Ignition Accept header, in the inventory's.
#[tokio::test]
async fn first_configs_follow_the_accept_header() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let fetch = |uri: String, accept: Option<&'static str>| {
        let mut request = Request::get(uri);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        call(
            crate::http_router(state.clone()),
            request.body(Body::empty()).unwrap(),
        )
    };
    let version = |r: &Reply| {
        r.json()["ignition"]["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let pointer = "/ignition?mac=52-54-00-7e-01-20".to_string();
    assert_eq!(version(&fetch(pointer.clone(), None).await), "3.3.0");
    let v31 = fetch(
        pointer.clone(),
        Some("application/vnd.coreos.ignition+json;version=3.1.0, */*;q=0.1"),
    )
    .await;
    assert_eq!(version(&v31), "3.1.0");
    assert!(v31.json()["ignition"]["config"]["merge"][0]["httpHeaders"].is_array());
    // Spec 3.0 has no headers on a merge: the identity moves into the URL.
    let v30 = fetch(
        pointer,
        Some("application/vnd.coreos.ignition+json;version=3.0.0"),
    )
    .await;
    assert_eq!(version(&v30), "3.0.0");
    let source = v30.json()["ignition"]["config"]["merge"][0]["source"].clone();
    assert!(source.as_str().unwrap().contains("&token="), "{source}");

    let token = token_of(&state, "bootstrap");
    let bootstrap = fetch(
        format!("/ignition?mac=52-54-00-7e-01-00&token={token}"),
        Some("application/vnd.coreos.ignition+json;version=3.2.0"),
    )
    .await;
    assert_eq!(bootstrap.status, StatusCode::OK, "{}", bootstrap.text());
    assert_eq!(version(&bootstrap), "3.2.0");
}

/// In source-ip mode the install window holds as with tokens: once the machine reported its
/// install, its own address gets nothing secret until it is armed again.
#[tokio::test]
async fn with_source_ip_the_install_window_holds_too() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::SourceIp);
    let worker0 = [192, 168, 126, 120];
    assert_eq!(
        mcs_from(&state, "worker", None, worker0).await.status,
        StatusCode::OK
    );
    let token = token_of(&state, "worker0");
    report(&state, "52:54:00:7e:01:20", &token, "installed", "done").await;
    let refused = mcs_from(&state, "worker", None, worker0).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.text().contains("kindling machines arm worker0"),
        "{}",
        refused.text()
    );
    state.arm("worker0", "by kindling machines arm");
    assert_eq!(
        mcs_from(&state, "worker", None, worker0).await.status,
        StatusCode::OK
    );
}

/// A FleetLock request as Zincati sends it: its body pretty-printed (serde_json's
/// `to_string_pretty`), the protocol header, no Content-Type.
fn fleetlock(path: &str, id: &str, group: &str, from: [u8; 4]) -> Request<Body> {
    let body = format!(
        "{{\n  \"client_params\": {{\n    \"id\": \"{id}\",\n    \"group\": \"{group}\"\n  }}\n}}"
    );
    let mut request = Request::post(path)
        .header("fleet-lock-protocol", "true")
        .body(Body::from(body))
        .unwrap();
    request.extensions_mut().insert(ClientAddr(from.into()));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleetlock_lets_no_more_than_max_unavailable_reboot_at_once_under_50_clients() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut inventory = DEMO_INV.to_string();
    for i in 0..50u8 {
        inventory.push_str(&format!(
            "  - name: fl{i}\n    role: worker\n    mac: \"52:54:00:7f:00:{i:02x}\"\n    ip: 192.168.126.{}\n",
            150 + u16::from(i)
        ));
    }
    let dir = demo_with(Target::Manifests, &inventory);
    let policy = dir.path().join(".kindling/fleet/worker.json");
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::write(&policy, r#"{"policy": {"maxUnavailable": "2"}}"#).unwrap();
    let state = state(dir.path(), McsAuth::Token);

    let out = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..50u8 {
        let (state, out, peak) = (state.clone(), out.clone(), peak.clone());
        clients.push(tokio::spawn(async move {
            let from = [192, 168, 126, 150 + i];
            let id = format!("{i:032x}");
            loop {
                let reply = call(
                    crate::http_router(state.clone()),
                    fleetlock("/v1/pre-reboot", &id, "worker", from),
                )
                .await;
                if reply.status == StatusCode::OK {
                    break;
                }
                assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
                let error: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                assert_eq!(error["kind"], "failed_lock");
                assert!(
                    error["value"]
                        .as_str()
                        .unwrap()
                        .contains("2 of the pool's machines may be out at once")
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Out of service (rebooting) from the grant until it says it is back.
            let now_out = out.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now_out, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            out.fetch_sub(1, Ordering::SeqCst);
            let reply = call(
                crate::http_router(state.clone()),
                fleetlock("/v1/steady-state", &id, "worker", from),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("every client rebooted in turn")
            .unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than 2, and 2 at times"
    );
    let events: Vec<String> = stages(&state, crate::fleetlock::STAGE)
        .iter()
        .map(|e| e.detail.clone())
        .collect();
    let taken = events.iter().filter(|d| d.contains("taken")).count();
    let released = events.iter().filter(|d| d.contains("released")).count();
    assert_eq!((taken, released), (50, 50));
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
    assert_eq!(kept["slots"], serde_json::json!({}));
    assert_eq!(kept["policy"]["maxUnavailable"], "2");
}

#[tokio::test]
async fn fleetlock_refuses_what_is_not_a_pool_machine_asking_for_itself() {
    let dir = demo(Target::Manifests);
    let state = state(dir.path(), McsAuth::Token);
    let router = || crate::http_router(state.clone());
    let worker0 = [192, 168, 126, 120];
    let reply = call(
        router(),
        fleetlock("/v1/pre-reboot", "a", "worker", [10, 0, 0, 9]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("unknown_machine"), "{}", reply.text());
    let reply = call(
        router(),
        fleetlock("/v1/pre-reboot", "a", "master", worker0),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().contains("worker0 is in pool worker"),
        "{}",
        reply.text()
    );
    let mut bare = fleetlock("/v1/pre-reboot", "a", "worker", worker0);
    bare.headers_mut().remove("fleet-lock-protocol");
    let reply = call(router(), bare).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("missing_header"), "{}", reply.text());
    let mut huge = fleetlock("/v1/pre-reboot", &"x".repeat(10_000), "worker", worker0);
    huge.extensions_mut().insert(ClientAddr(worker0.into()));
    assert_eq!(
        call(router(), huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // A window that is closed now: no slot, and the reply names the window.
    let fleet = dir.path().join(".kindling/fleet/worker.json");
    std::fs::create_dir_all(fleet.parent().unwrap()).unwrap();
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let later = (now.hour() + 3) % 24;
    let window = format!("{later:02}:00-{:02}:00 UTC", (later + 1) % 24);
    std::fs::write(
        &fleet,
        format!(r#"{{"policy": {{"windows": ["{window}"]}}}}"#),
    )
    .unwrap();
    let reply = call(
        router(),
        fleetlock("/v1/pre-reboot", "a", "worker", worker0),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.text().contains(&window), "{}", reply.text());

    // A slot a rolling update holds is not Zincati's to release.
    std::fs::write(
        &fleet,
        r#"{"slots": {"worker0": {"by": "kindling update", "since": "2026-12-07T00:00:00Z"}}}"#,
    )
    .unwrap();
    let reply = call(
        router(),
        fleetlock("/v1/steady-state", "a", "worker", worker0),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&fleet).unwrap()).unwrap();
    assert_eq!(kept["slots"]["worker0"]["by"], "kindling update");
}

/// The dashboard and the read APIs need the admin: without it an API read is 401 (with the
/// scheme to use) and a page goes to the login; the login takes the token and gives a session
/// cookie that is not the token; an action through the session needs its CSRF token.
#[tokio::test]
async fn the_dashboard_and_the_read_apis_need_the_admin_token() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let refused = get(&state, "/api/v1/machines").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"kindling\""
    );
    assert!(refused.text().contains("auth/kindling-admin-token"));
    let wrong = call(
        crate::http_router(state.clone()),
        Request::get("/api/v1/events")
            .header(header::AUTHORIZATION, "Bearer not-the-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let page = get(&state, "/ui/machines?stage=ipxe").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers[header::LOCATION],
        "/ui/login?next=/ui/machines%3Fstage%3Dipxe"
    );
    // The machines' own endpoints are as open as before.
    assert_eq!(get(&state, "/boot.ipxe").await.status, StatusCode::OK);

    let token = bearer(&state).trim_start_matches("Bearer ").to_string();
    let login = |body: String, origin: &'static str| {
        let state = state.clone();
        async move {
            call(
                crate::http_router(state),
                Request::post("/ui/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::HOST, "kindling.example:8080")
                    .header(header::ORIGIN, origin)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let bad = login(
        "token=nope&next=/ui/".into(),
        "http://kindling.example:8080",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.text().contains("That is not the admin token"));
    let elsewhere = login(format!("token={token}"), "http://evil.example").await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    let good = login(
        format!("token={token}&next=%2Fui%2Fmachines"),
        "http://kindling.example:8080",
    )
    .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    assert_eq!(good.headers[header::LOCATION], "/ui/machines");
    let cookie = good.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&token), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_string();

    let with_session = |request: axum::http::request::Builder| {
        request
            .header(header::COOKIE, session.clone())
            .body(Body::empty())
            .unwrap()
    };
    let shell = call(
        crate::http_router(state.clone()),
        with_session(Request::get("/ui/machines")),
    )
    .await;
    assert_eq!(shell.status, StatusCode::OK);
    assert!(
        shell.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let csrf = shell
        .text()
        .split("name=\"kindling-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(csrf.len(), 40);
    let api = call(
        crate::http_router(state.clone()),
        with_session(Request::get("/api/v1/machines")),
    )
    .await;
    assert_eq!(api.status, StatusCode::OK);
    let forged = call(
        crate::http_router(state.clone()),
        with_session(Request::post("/ui/logout")),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no CSRF token");
    let out = call(
        crate::http_router(state.clone()),
        with_session(Request::post("/ui/logout").header("x-kindling-csrf", csrf)),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

/// A machine's page: its events in order with ids, and its boot script with the token
/// redacted.
#[tokio::test]
async fn a_machines_detail_has_its_timeline_and_its_script_without_its_token() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let token = token_of(&state, "worker0");
    for stage in ["boot.ipxe", "ipxe", "kernel"] {
        state
            .events
            .record(Event::now(Some("worker0"), stage, Some(200), ""));
    }
    state
        .events
        .record(Event::now(Some("worker1"), "ipxe", Some(200), ""));
    let detail = admin_get(&state, "/api/v1/machines/worker0").await;
    assert_eq!(detail.status, StatusCode::OK);
    let json = detail.json();
    let stages: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["boot.ipxe", "ipxe", "kernel"]);
    assert_eq!(json["machine"]["stage"], "kernel");
    assert_eq!(json["machine"]["mac"], "52:54:00:7e:01:20");
    let script = json["ipxe"].as_str().unwrap();
    assert!(
        script.starts_with("#!ipxe") && script.contains("token=REDACTED"),
        "{script}"
    );
    assert!(!detail.text().contains(&token));
    let missing = admin_get(&state, "/api/v1/machines/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The dashboard and its API over TLS too, on the machine config server: behind the same gate,
/// and a login there gives a Secure cookie (the boot server's cannot be: it is plain HTTP).
#[tokio::test]
async fn the_dashboard_is_served_over_tls_with_a_secure_cookie() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let refused = call(
        crate::mcs_router(state.clone()),
        Request::get("/api/v1/machines")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let listed = call(
        crate::mcs_router(state.clone()),
        Request::get("/api/v1/machines")
            .header(header::AUTHORIZATION, bearer(&state))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    let token = bearer(&state).trim_start_matches("Bearer ").to_string();
    let login = |router: axum::Router| {
        let body = format!("token={token}");
        async move {
            call(
                router,
                Request::post("/ui/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let over_tls = login(crate::mcs_router(state.clone())).await;
    assert_eq!(over_tls.status, StatusCode::SEE_OTHER);
    let cookie = over_tls.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let plain = login(crate::http_router(state.clone())).await;
    let cookie = plain.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// A discovery report from `from`, as `kindling agent discover` sends it.
async fn discovery_report(
    state: &Arc<AppState>,
    mac: &str,
    token: &str,
    nics: &[&str],
    from: [u8; 4],
) -> Reply {
    let nics: Vec<serde_json::Value> = nics
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"name": format!("eth{i}"), "mac": m, "link": true}))
        .collect();
    let body = serde_json::json!({
        "mac": mac,
        "token": token,
        "hardware": {
            "nics": nics,
            "disks": [{"name": "sda", "sizeBytes": 1u64 << 30, "rotational": false, "removable": false}],
            "cpu": {"model": "test", "count": 2, "arch": "x86_64"},
            "memoryBytes": 1u64 << 30,
            "system": {"uuid": "0b6b1d5e-7c6a-4b7e-9e1a-3d5c2f1a0b99"}
        }
    });
    let mut request = Request::post("/api/v1/discovery")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    request.extensions_mut().insert(ClientAddr(from.into()));
    call(crate::http_router(state.clone()), request).await
}

/// The discovery token in a boot script.
fn discovery_token(script: &str) -> String {
    let at = script
        .find("kindling.discovery.token=")
        .unwrap_or_else(|| panic!("no token in {script}"));
    script[at + "kindling.discovery.token=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Unknown machines get nothing unless discovery is on; then the live system with a token made
/// for that boot, which takes one report, from that address, for that MAC; a report claiming
/// an inventory machine's MAC or another boot's token is refused; acceptance is told to the
/// waiting agent.
#[tokio::test]
async fn discovery_takes_one_report_per_boot_from_the_machine_that_booted() {
    let dir = demo(Target::IgnitionConfigs);
    let state = state(dir.path(), McsAuth::Token);
    let (stranger, other) = ("52:54:00:aa:bb:01", "52:54:00:aa:bb:02");
    let (here, elsewhere) = ([192, 168, 126, 201], [192, 168, 126, 202]);
    let ipxe = |mac: &str, from: [u8; 4]| {
        let mut request = Request::get(format!("/ipxe?mac={mac}"))
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ClientAddr(from.into()));
        call(crate::http_router(state.clone()), request)
    };
    assert_eq!(ipxe(stranger, here).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&state, "/discovery/ignition").await.status,
        StatusCode::NOT_FOUND
    );

    state.enable_discovery();
    let script = ipxe(stranger, here).await;
    assert_eq!(script.status, StatusCode::OK);
    let script = script.text();
    assert!(
        script.contains("ignition.config.url=http://192.168.126.2:8080/discovery/ignition")
            && script.contains("kindling.discovery.server=http://192.168.126.2:8080")
            && script.contains("kindling.discovery.mac=52-54-00-aa-bb-01")
            && !script.contains("coreos.inst.install_dev"),
        "{script}"
    );
    let token = discovery_token(&script);
    // GRUB (UEFI HTTP boot) gets the same live system.
    let grub = {
        let mut request = Request::get(format!("/grub?mac={other}"))
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ClientAddr(elsewhere.into()));
        call(crate::http_router(state.clone()), request)
            .await
            .text()
    };
    assert!(
        grub.contains("/discovery/ignition") && grub.contains("kindling.discovery.token="),
        "{grub}"
    );
    // An inventory machine still gets its own profile.
    let known = ipxe("52:54:00:7e:01:20", here).await.text();
    assert!(known.contains("coreos.inst.install_dev"), "{known}");
    // Another unknown machine boots too: its token is its own.
    let other_token = discovery_token(&ipxe(other, elsewhere).await.text());
    assert_ne!(token, other_token);

    let refused = |reply: Reply, why: &str| {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
        assert!(reply.text().contains(why), "{}", reply.text());
    };
    refused(
        discovery_report(&state, stranger, &other_token, &[stranger], here).await,
        "the token is not the one given to 52:54:00:aa:bb:01",
    );
    refused(
        discovery_report(&state, stranger, &token, &[stranger], elsewhere).await,
        "52:54:00:aa:bb:01 booted from 192.168.126.201, and this report comes from 192.168.126.202",
    );
    refused(
        discovery_report(
            &state,
            stranger,
            &token,
            &[stranger, "52:54:00:7e:01:20"],
            here,
        )
        .await,
        "the report claims 52:54:00:7e:01:20, the MAC of inventory machine worker0",
    );
    refused(
        discovery_report(&state, stranger, &token, &[other], here).await,
        "lists no NIC with the MAC it booted with",
    );
    let status = |mac: &'static str| {
        let state = state.clone();
        async move {
            get(&state, &format!("/discovery/status?mac={mac}"))
                .await
                .text()
        }
    };
    assert_eq!(status(stranger).await, "pending\n");

    // A report the server cannot keep (here: a file where its directory goes) is 503, and the
    // token stays for the agent's next try.
    let blocked = dir.path().join(kindling_discovery::pending::DIR);
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "in the way").unwrap();
    let unkept = discovery_report(&state, stranger, &token, &[stranger], here).await;
    assert_eq!(
        unkept.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        unkept.text()
    );
    std::fs::remove_file(&blocked).unwrap();
    let taken = discovery_report(&state, stranger, &token, &[stranger], here).await;
    assert_eq!(taken.status, StatusCode::NO_CONTENT, "{}", taken.text());
    refused(
        discovery_report(&state, stranger, &token, &[stranger], here).await,
        "no discovery token is outstanding for 52:54:00:aa:bb:01",
    );
    // The other machine may not claim this one's NIC.
    refused(
        discovery_report(&state, other, &other_token, &[other, stranger], elsewhere).await,
        "a MAC of discovered machine 52:54:00:aa:bb:01",
    );
    let kept = kindling_discovery::pending::list(dir.path()).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].mac.to_string(), stranger);
    assert_eq!(kept[0].address.to_string(), "192.168.126.201");
    assert_eq!(kept[0].hardware.disks[0].size_bytes, 1 << 30);
    let denied = stages(&state, "denied");
    assert_eq!(denied.len(), 6, "{denied:?}");
    assert!(denied.iter().all(|e| !e.detail.contains(&token)));

    // The list is the admin's; the machine is in it until it joins the inventory.
    assert_eq!(
        get(&state, "/api/v1/discovery").await.status,
        StatusCode::UNAUTHORIZED
    );
    let listed = admin_get(&state, "/api/v1/discovery").await.json();
    assert_eq!(listed["machines"][0]["mac"], stranger);
    assert_eq!(listed["machines"][0]["hardware"]["cpu"]["count"], 2);

    let config = get(&state, "/discovery/ignition").await;
    assert_eq!(config.status, StatusCode::OK);
    let config = kindling_ignition::Config::from_json(&config.body).unwrap();
    let unit = config.unit("kindling-discover.service").unwrap();
    assert!(
        unit.contents
            .unwrap()
            .contains("ExecStart=/usr/local/bin/kindling agent discover")
    );
    assert_eq!(unit.enabled, Some(true));
    let kindling_ignition::Contents::Remote { url, hash } =
        config.file("/usr/local/bin/kindling").unwrap().contents
    else {
        panic!("the binary is downloaded")
    };
    assert_eq!(url, "http://192.168.126.2:8080/assets/kindling");
    let binary = dir.path().join("fake-kindling");
    assert_eq!(
        hash.unwrap(),
        format!("sha512-{}", kindling_assets::file_sha512(&binary).unwrap())
    );
}
