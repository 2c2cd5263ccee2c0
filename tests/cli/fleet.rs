//! Day 2: the pools' renderings, as `create ignition-configs` keeps them and `kindling serve`
//! hands them out, checked with the real Ignition.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::ignition_configs::demo_on_loopback;
use crate::serve::Server;
use crate::{ignition_runner, kindling};

/// Installs the machine with `mac` (hyphenated) as its first boot would: the pointer config its
/// iPXE script names, applied by Debian's Ignition, which fetches the rest from the MCS.
/// Returns the rendering written on it and whether it has `path`.
fn install(server: &Server, dir: &Path, mac: &str, path: &str) -> (String, bool) {
    let url = server.ignition_url(mac);
    let path_and_query = &url[url.find("/ignition").unwrap()..];
    let (status, pointer) = server.get(path_and_query);
    assert_eq!(status, 200);
    let pointer_path = dir.join(format!("{mac}-pointer.ign"));
    std::fs::write(&pointer_path, pointer).unwrap();
    let applied = ignition_runner::apply(&pointer_path)
        .unwrap_or_else(|log| panic!("{log}\n--- server ---\n{}", server.log()));
    let rendering = std::fs::read_to_string(applied.root().join("etc/kindling/rendering")).unwrap();
    let has = applied.root().join(path.trim_start_matches('/')).exists();
    (rendering.trim().to_string(), has)
}

fn pool_state(dir: &Path, pool: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("ignition/pools/{pool}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A change to a pool makes a new rendering; the machines that installed stay on theirs and a
/// machine that installs now gets the new one, each from the real Ignition.
#[test]
fn a_machine_gets_the_rendering_it_is_meant_to_be_on() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    let first = pool_state(d, "worker")["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        run.stdout()
            .contains(&format!("pool worker: {first} (new)")),
        "{}",
        run.stdout()
    );
    let server = Server::start(d, http_port, mcs_port);
    let (worker0, _) = install(&server, d, "52-54-00-7e-01-20", "/etc/motd.d/day2");
    assert_eq!(worker0, first);
    assert_eq!(
        std::fs::read_to_string(d.join(".kindling/served/worker0")).unwrap(),
        format!("{first}\n")
    );

    // The user changes the worker pool.
    let snippets = d.join("snippets/worker");
    std::fs::create_dir_all(&snippets).unwrap();
    std::fs::write(
        snippets.join("motd.bu"),
        "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/motd.d/day2\n      \
         contents:\n        inline: day two\n",
    )
    .unwrap();
    let run = kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]);
    run.expect(0);
    let state = pool_state(d, "worker");
    let second = state["target"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(state["machines"], serde_json::json!({"worker0": first}));
    assert!(
        run.stdout().contains(&format!(
            "pool worker: {second} (new); 1 machine(s) stay on what they run until kindling update --pool worker"
        )),
        "{}",
        run.stdout()
    );
    // Both renderings are kept, each the pool's config as it was made.
    assert!(d.join(format!("ignition/rendered/{first}.ign")).is_file());
    assert_eq!(
        std::fs::read(d.join(format!("ignition/rendered/{second}.ign"))).unwrap(),
        std::fs::read(d.join("ignition/worker.ign")).unwrap()
    );

    // kindling serve picks the change up: worker1, which never installed, gets the new one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (worker1, has_motd) = loop {
        let got = install(&server, d, "52-54-00-7e-01-21", "/etc/motd.d/day2");
        if got.0 == second || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(worker1, second, "{}", server.log());
    assert!(has_motd);
    // worker0 installing again gets what it is meant to be on, not the newest.
    let (again, has_motd) = install(&server, d, "52-54-00-7e-01-20", "/etc/motd.d/day2");
    assert_eq!(again, first);
    assert!(!has_motd);
}
