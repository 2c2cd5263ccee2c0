//! The fuzz targets' checks, one function per parser, each taking one input. `fuzz/` runs them
//! under libFuzzer (`cargo +nightly fuzz run <target>`, `bench/fuzz.sh`); the tests here replay
//! every seed and every input that once failed (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`), so CI checks them on the stable toolchain.
//!
//! A check panics when an invariant breaks, not only when the parser does: the description's
//! errors each carry a file, a line and a field path; a config kindling rendered reads back and
//! renders again byte for byte; a template renders the same twice.

use kindling_config::{ClusterDescription, LoadError, Source};

/// One target's check of one input.
pub type Check = fn(&[u8]);

/// The targets, by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus directories name them.
pub const TARGETS: [(&str, Check); 13] = [
    ("description", description),
    ("butane", butane),
    ("ignition", ignition),
    ("template", template),
    ("query", query),
    ("proxy_header", proxy_header),
    ("dns_response", dns_response),
    ("discovery_report", discovery_report),
    ("matchbox_data", matchbox_data),
    ("event_report", event_report),
    ("oci_manifest", oci_manifest),
    ("redfish_reply", redfish_reply),
    ("ipmi_answer", ipmi_answer),
];

const DEMO_INSTALL_CONFIG: &str = include_str!("../../../examples/demo/install-config.yaml");

/// install-config.yaml and inventory.yaml: the input is both, split at its first NUL byte;
/// without one, the demo's install-config.yaml and the input as the inventory.
pub fn description(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (install_config, inventory) = text.split_once('\0').unwrap_or((DEMO_INSTALL_CONFIG, text));
    let loaded = ClusterDescription::parse(
        Source {
            name: "install-config.yaml",
            text: install_config,
        },
        Source {
            name: "inventory.yaml",
            text: inventory,
        },
    );
    if let Err(LoadError::Invalid(findings)) = loaded {
        for f in findings {
            assert!(
                !f.file.is_empty() && f.pos.line >= 1,
                "an error without its file and line: {f:?}"
            );
        }
    }
}

/// A Butane snippet; what translates renders, reads back and renders again the same.
pub fn butane(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = kindling_ignition::parse_snippet("fuzz.bu", text) {
        round_trip(&config);
    }
}

/// An Ignition config of any spec kindling reads; what reads renders, reads back and renders
/// again the same.
pub fn ignition(data: &[u8]) {
    if let Ok(config) = kindling_ignition::Config::from_json(data) {
        round_trip(&config);
    }
}

fn round_trip(config: &kindling_ignition::Config) {
    let version = kindling_ignition::IgnitionVersion::V3_3;
    let Ok(first) = config.render(version) else {
        return;
    };
    let back = kindling_ignition::Config::from_json(&first)
        .unwrap_or_else(|e| panic!("a rendered config does not read back: {e}"));
    let second = back
        .render(version)
        .unwrap_or_else(|e| panic!("a config read back does not render: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second),
        "render -> parse -> render changed the config"
    );
}

/// A matchbox template (Go's template syntax, kindling's subset), rendered with a group's and
/// a request's variables: the same output twice.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let kind = kindling_matchbox::TemplateKind::Generic;
    let Ok(parsed) = kindling_matchbox::Template::parse("fuzz", "fuzz.tmpl", kind, text.into())
    else {
        return;
    };
    let vars = serde_json::json!({
        "mac": "52:54:00:89:d8:10",
        "etcd_name": "node1",
        "ssh_authorized_keys": ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"],
        "nested": {"list": [1, 2, 3], "flag": true, "empty": ""},
        "request": {"query": {"mac": "52:54:00:89:d8:10", "os": "installed"}, "raw_query": "mac=52-54-00-89-d8-10&os=installed"},
    });
    let first = kindling_matchbox::render(&parsed, &vars);
    let second = kindling_matchbox::render(&parsed, &vars);
    assert_eq!(first, second, "a template rendered two ways");
}

/// A request's query string, as `/ipxe` and the matchbox endpoints read it.
pub fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let labels = kindling_matchbox::Labels::from_query(text);
    if let Some(mac) = labels.get("mac") {
        let parsed: kindling_config::MacAddr = mac
            .parse()
            .unwrap_or_else(|_| panic!("a mac label that is not a MAC: {mac:?}"));
        assert_eq!(
            parsed.to_string(),
            mac,
            "a mac label not in its normal form"
        );
    }
}

/// A PROXY protocol header, v1 (a line) or v2 (16 bytes and the body they announce).
pub fn proxy_header(data: &[u8]) {
    let _ = kindling_server::client::parse_v1(data);
    if let Some((head, body)) = data.split_first_chunk::<16>() {
        let _ = kindling_server::client::parse_v2(head, body);
    }
}

/// A DNS answer to doctor's question (id 0x1234, `api.demo.example.com`), for each record type.
pub fn dns_response(data: &[u8]) {
    use kindling_infra::doctor::dns::{RecordType, parse_response};
    for qtype in [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Ns,
        RecordType::Soa,
        RecordType::Ptr,
    ] {
        let _ = parse_response(data, 0x1234, "api.demo.example.com", qtype);
    }
}

/// A discovery agent's report, as `POST /api/v1/discovery` reads it.
pub fn discovery_report(data: &[u8]) {
    if let Ok(report) = serde_json::from_slice::<kindling_discovery::Report>(data) {
        // What was read writes out and reads back the same.
        let json = serde_json::to_vec(&report.hardware).expect("a report serializes");
        let back: kindling_discovery::Hardware =
            serde_json::from_slice(&json).expect("a report's hardware reads back");
        assert_eq!(back, report.hardware);
    }
}

/// A machine's report to `POST /api/v1/events`: an accepted one has an id a key can carry.
pub fn event_report(data: &[u8]) {
    if let Ok(report) = kindling_server::parse_report(data)
        && let Some(id) = &report.id
    {
        assert!(kindling_server::is_report_id(id), "{report:?}");
    }
}

/// A manifest blob as a registry gives it: the media type its descriptor declared, a NUL, the
/// bytes (without a NUL: an image manifest's).
pub fn oci_manifest(data: &[u8]) {
    let (declared, bytes) = match data.iter().position(|b| *b == 0) {
        Some(at) => (
            String::from_utf8_lossy(&data[..at]).into_owned(),
            &data[at + 1..],
        ),
        None => (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            data,
        ),
    };
    let _ = kindling_mirror::layout::parse_manifest(bytes, &declared);
}

/// A BMC's Redfish answer: a ComputerSystem read for its power state and the reset each action
/// asks of it, or an error answer put in words (bounded when it is not Redfish's JSON: it goes
/// into a message).
pub fn redfish_reply(data: &[u8]) {
    use kindling_power::Action;
    use kindling_power::redfish::{System, said};
    let json = serde_json::from_slice::<serde_json::Value>(data).ok();
    if let Some(system) = &json {
        let _ = System::state(system);
        for action in [Action::On, Action::Off, Action::Cycle] {
            assert!(System::reset_of(system, action).is_some());
        }
    }
    let words = said(data);
    assert!(
        json.is_some() || words.chars().count() <= 200,
        "an unbounded message"
    );
}

/// A BMC's IPMI packet: read as each session-setup answer (Open Session, RAKP 2, RAKP 4), as
/// a session packet, and, signed with the session's key as a BMC would, decrypted and read as a
/// command's answer (a forger cannot sign; what is behind the signature must still be safe). A
/// message kindling seals opens to the same message.
pub fn ipmi_answer(data: &[u8]) {
    use kindling_power::ipmi::{Answer, Keys, open_session_answer, rakp2, rakp4, setup_payload};
    let sid_m = *b"mine";
    for kind in [0x10, 0x12, 0x14] {
        if let Some(Ok(payload)) = setup_payload(data, kind) {
            let _ = open_session_answer(payload, &sid_m);
            let _ = rakp2(payload, &sid_m);
            let _ = rakp4(payload, &sid_m);
        }
    }
    let keys = Keys::from_sik(b"the fuzz target's session key");
    let _ = keys.open(data);
    let mut signed = vec![0x06, 0x00, 0xff, 0x07];
    signed.extend_from_slice(data);
    if signed.len() >= 6 {
        signed[5] = 0xc0;
    }
    let mac = keys.sign(&signed[4..]);
    signed.extend_from_slice(&mac);
    if let Ok(message) = keys.open(&signed) {
        assert!(
            message.len() < data.len(),
            "a message longer than its packet"
        );
        let _ = Answer::read(&message);
    }
    if let Ok(sealed) = keys.seal(&sid_m, 1, data) {
        assert_eq!(
            keys.open(&sealed).as_deref(),
            Ok(data),
            "sealed, then opened"
        );
    }
}

/// Where [`matchbox_data`] writes its directory in this process.
pub fn matchbox_scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kindling-fuzz-matchbox-{}", std::process::id()))
}

/// A matchbox data directory of one group, one profile and one template: the input's three
/// parts, split at NUL bytes, written to `groups/g.json`, `profiles/p.json` and
/// `ignition/t.yaml` of a directory of this process's own. What loads is selected for a few
/// requests, and its boot script and template rendered; the same request selects the same
/// group twice.
pub fn matchbox_data(data: &[u8]) {
    use std::sync::OnceLock;
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = matchbox_scratch();
        for sub in ["groups", "profiles", "ignition"] {
            std::fs::create_dir_all(dir.join(sub)).expect("a scratch directory");
        }
        dir
    });
    let mut parts = data.splitn(3, |b| *b == 0);
    for path in ["groups/g.json", "profiles/p.json", "ignition/t.yaml"] {
        std::fs::write(dir.join(path), parts.next().unwrap_or_default()).expect("a scratch file");
    }
    let Ok(loaded) = kindling_matchbox::DataDir::load(dir) else {
        return;
    };
    for query in [
        "mac=52-54-00-89-d8-10&uuid=16e7d8a7-bfa9-428b-9117-363341bb330b",
        "os=installed&hostname=node1",
        "",
    ] {
        let labels = kindling_matchbox::Labels::from_query(query);
        let Ok(selected) = loaded.select(&labels) else {
            continue;
        };
        let again = loaded
            .select(&labels)
            .expect("the same request selects again");
        assert_eq!(selected.group.id, again.group.id, "one request, two groups");
        if let Some(boot) = &selected.profile.boot {
            let _ = kindling_matchbox::ipxe_script(boot);
            let _ = kindling_matchbox::grub_script(boot);
        }
        if let Some(template) = loaded.ignition_for(selected.profile) {
            let vars = selected.vars(&labels);
            assert_eq!(
                kindling_matchbox::render(template, &vars),
                kindling_matchbox::render(template, &vars),
                "a template rendered two ways"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::TARGETS;

    /// Every seed and every input that once failed, through its target's check.
    #[test]
    fn the_corpora_and_the_regressions_pass_their_checks() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        for (name, check) in TARGETS {
            let mut seen = 0;
            for kind in ["corpus", "regressions"] {
                let dir = fuzz.join(kind).join(name);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| check(&data));
                    assert!(
                        outcome.is_ok(),
                        "{name}: {} fails its check",
                        path.display()
                    );
                    seen += 1;
                }
            }
            assert!(seen > 0, "{name} has no seed in fuzz/corpus/{name}");
        }
        let _ = std::fs::remove_dir_all(super::matchbox_scratch());
    }
}
