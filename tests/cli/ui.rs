//! kindling serve's dashboard in a real browser: `tests/ui/dashboard.mjs` drives Debian's
//! Chromium with playwright-core against the real binary on loopback, and axe-core checks every
//! page in both themes. This side starts the server and lists the secrets that must never show.

use std::path::{Path, PathBuf};
use std::process::Command;

use kindling_testkit::port;

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::serve::Server;

/// `tests/ui`, with its npm packages installed (test.sh runs `npm ci` there).
fn ui_dir(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui");
    let missing: Vec<&str> = [
        ("node", kindling_testkit::have("node")),
        (
            "schemathesis (its jsonschema)",
            kindling_testkit::have("schemathesis"),
        ),
        ("/usr/bin/chromium", Path::new("/usr/bin/chromium").exists()),
        (
            "tests/ui/node_modules (npm ci)",
            dir.join("node_modules/playwright-core").exists(),
        ),
    ]
    .into_iter()
    .filter(|(_, there)| !there)
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: missing {} (test.sh installs them)",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED {test}: missing {}; ./test.sh installs them",
        missing.join(", ")
    );
    None
}

/// The demo's configs made and served on loopback: the directory, the server, its boot port.
fn served_demo() -> (tempfile::TempDir, Server, u16) {
    let (http, mcs) = (port(), port());
    let assets = demo_on_loopback(http, mcs);
    let dir = assets.path().to_str().unwrap().to_string();
    kindling(&["create", "ignition-configs", "--dir", &dir]).expect(0);
    // With discovery on, so that the discovery reports' endpoint answers as it does in use.
    let server = Server::start_with(assets.path(), http, mcs, &["--discover"]);
    (assets, server, http)
}

/// The secrets of the asset directory `dir` that the dashboard must never show: every machine's
/// token (from its boot script), the bootstrap token, and a line of each private key.
fn secrets(server: &Server, dir: &Path) -> Vec<String> {
    let (_, list) = server.admin_get("/api/v1/machines");
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let mut secrets = Vec::new();
    for machine in list["machines"].as_array().unwrap() {
        let mac = machine["mac"].as_str().unwrap().replace(':', "-");
        let (_, script) = server.get(&format!("/ipxe?mac={mac}"));
        let script = String::from_utf8(script).unwrap();
        let token = script
            .split(['&', ' ', '\n'])
            .find_map(|part| part.strip_prefix("token="))
            .unwrap_or_else(|| panic!("no token in {mac}'s script: {script}"));
        secrets.push(token.to_string());
    }
    let bootstrap = std::fs::read_to_string(dir.join("auth/bootstrap-token")).unwrap();
    secrets.push(bootstrap.trim().to_string());
    for key in std::fs::read_dir(dir.join("tls")).unwrap() {
        let path = key.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Some(line) = text.lines().nth(1) {
                secrets.push(line.to_string());
            }
        }
    }
    assert!(secrets.len() > 10, "{secrets:?}");
    secrets
}

/// Log in (refused without the token, and with a wrong one); a machine walks its boot and its
/// row moves live; its page shows the timeline in order; a stage filter survives as a link; no
/// secret is in any page or any answer the pages fetched; axe finds no serious or critical
/// violation on any page, light or dark. Screenshots of each step go to
/// `target/tmp/ui-screenshots/`.
#[test]
fn the_dashboard_in_chromium_logs_in_follows_a_boot_and_shows_no_secret() {
    let test = "the_dashboard_in_chromium_logs_in_follows_a_boot_and_shows_no_secret";
    let Some(ui) = ui_dir(test) else {
        return;
    };
    let (assets, server, http) = served_demo();
    let dir = assets.path();
    let admin = server.admin.clone().expect("serve made the admin token");
    let file = dir.join("ui-secrets.json");
    std::fs::write(
        &file,
        serde_json::json!({"admin": admin, "secrets": secrets(&server, dir)}).to_string(),
    )
    .unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let calls = dir.join("ui-api-calls.json");
    let out = Command::new("node")
        .arg(ui.join("dashboard.mjs"))
        .env("KINDLING_URL", format!("http://127.0.0.1:{http}"))
        .env("KINDLING_SECRETS", &file)
        .env("KINDLING_SHOTS", &shots)
        .env("KINDLING_CALLS", &calls)
        .output()
        .expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "{said}\n--- kindling serve ---\n{}",
        server.log()
    );
    assert!(said.contains("secrets: none of"), "{said}");
    assert!(shots.join("machines-live.png").exists());

    // Every call the pages made, and every event they read, is as docs/openapi.yaml says.
    let checked = Command::new("python3")
        .arg(ui.join("check_api_calls.py"))
        .arg(ui.join("../../docs/openapi.yaml"))
        .arg(&calls)
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(said.contains(", 0 findings"), "{said}");
}

/// The API as docs/openapi.yaml documents it, fuzzed by schemathesis against the real server:
/// no 5xx, every answer's status, content type and body as documented, and reads refused
/// without the admin token. (The event stream does not end, so schemathesis, which reads
/// whole answers, leaves it out; the browser test checks what the page read of it.)
#[test]
fn the_api_is_what_its_openapi_file_says_under_schemathesis() {
    let test = "the_api_is_what_its_openapi_file_says_under_schemathesis";
    if !kindling_testkit::have("schemathesis") {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: schemathesis is missing (test.sh installs it into .venv)"
        );
        eprintln!("SKIPPED {test}: schemathesis is not installed; ./test.sh puts it in .venv");
        return;
    }
    let (assets, server, http) = served_demo();
    let dir = assets.path();
    let openapi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml");
    let out = Command::new("schemathesis")
        .arg("run")
        .arg(&openapi)
        .args(["--url", &format!("http://127.0.0.1:{http}")])
        .args(["-H", &server.bearer()])
        .args(["--checks", "all", "--exclude-operation-id", "streamEvents"])
        .args(["--max-examples", "60", "--seed", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir)
        .output()
        .expect("schemathesis runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{said}\n--- kindling serve ---\n{}",
        server.log()
    );
}
