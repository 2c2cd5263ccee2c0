//! The real consumer: every config kindling renders for spec 3.0.0–3.3.0 passes Debian's
//! `ignition-validate` (Ignition 2.14), which refuses 3.4.0; for that spec the re-parse in
//! `render` is the check. Specs 2.2 and 2.3 go to Ignition 0.35's own validator. The runner applying configs to a scratch root is in
//! `tests/cli/ignition_runner.rs`.

use std::io::Write;
use std::process::Command;

use crate::{Config, IgnitionVersion, PointerConfig, parse_snippet};

/// Every builder method, and a snippet merged over them.
fn rich_config() -> Config {
    let mut config = Config::new();
    config.set_hostname("worker0.demo.example.com");
    config.add_file("/etc/kindling/text.conf", b"a = 1\nb = \"two\"\n", 0o644);
    config.add_file("/etc/kindling/binary", &[0, 1, 2, 0xff], 0o600);
    config.add_remote_file(
        "/usr/local/bin/kindling",
        "https://172.16.0.101:8080/assets/kindling",
        &"ab".repeat(64),
        0o755,
    );
    config.add_directory("/var/lib/kindling", 0o700);
    config.add_link("/etc/localtime", "/usr/share/zoneinfo/UTC");
    config.wipe_disk("/dev/sdb");
    config.add_unit(
        "kindling-agent.service",
        "[Unit]\nDescription=kindling agent\n[Service]\nExecStart=/usr/local/bin/kindling agent\n[Install]\nWantedBy=multi-user.target\n",
        true,
    );
    config.add_unit("disabled.service", "[Unit]\nDescription=off\n", false);
    config.add_dropin(
        "kubelet.service",
        "10-kindling.conf",
        "[Service]\nEnvironment=KUBELET_NODE_IP=172.16.0.21\n",
    );
    config.add_ssh_keys(
        "core",
        &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI core@example".into()],
    );
    let snippet = parse_snippet("good.bu", crate::butane::tests::GOOD).unwrap();
    config.merge(snippet);
    config
}

/// Runs `ignition-validate` on `json`; its report (stdout and stderr) if it is not clean.
fn validate(json: &[u8]) -> Result<(), String> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(json).unwrap();
    let output = Command::new("ignition-validate")
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("ignition-validate could not run ({e}); run ./test.sh, which installs it")
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {report}", output.status))
    }
}

#[test]
fn ignition_validate_accepts_every_rendered_config() {
    let config = rich_config();
    let pointer = PointerConfig {
        source: "https://api-int.demo.example.com:22623/config/worker".into(),
        root_ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        http_headers: vec![("X-Kindling-Token".into(), "t0k3n".into())],
    };
    let debian_reads = IgnitionVersion::V3_0..=IgnitionVersion::V3_3;
    for version in IgnitionVersion::ALL
        .iter()
        .filter(|v| debian_reads.contains(v))
    {
        let json = config.render(*version).unwrap();
        validate(&json)
            .unwrap_or_else(|e| panic!("{version}: {e}\n{}", String::from_utf8_lossy(&json)));
        if *version >= IgnitionVersion::V3_1 {
            validate(&pointer.render(*version).unwrap())
                .unwrap_or_else(|e| panic!("pointer {version}: {e}"));
        }
    }
    let no_headers = PointerConfig {
        http_headers: Vec::new(),
        ..pointer
    };
    validate(&no_headers.render(IgnitionVersion::V3_0).unwrap()).unwrap();
}

#[test]
fn spec_3_4_is_checked_by_parsing_since_debian_ignition_refuses_it() {
    let json = rich_config().render(IgnitionVersion::V3_4).unwrap();
    let (parsed, warnings) = ignition_config::Config::parse_slice(&json).unwrap();
    assert!(matches!(parsed, ignition_config::Config::V3_4(_)));
    assert!(warnings.is_empty(), "{warnings:?}");
    // If Debian's Ignition learns 3.4.0, validate it here too.
    let err = validate(&json).unwrap_err();
    assert!(err.contains("unsupported config version"), "{err}");
}

#[test]
fn ignition_validate_is_a_real_check() {
    let relative = br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"etc/x"}]}}"#;
    let err = validate(relative).unwrap_err();
    assert!(err.contains("path not absolute"), "{err}");
}

/// Runs Ignition 0.35's `ignition-validate` (RHCOS 4.5's Ignition, spec 2.x only) on `json`;
/// `None` when ../shared/tools is absent (the skip is printed).
fn validate_0_35(test: &str, json: &[u8]) -> Option<Result<(), String>> {
    let program = kindling_testkit::shared_tool(test, "ignition-0.35.0/ignition-validate")?;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(json).unwrap();
    let output = Command::new(program).arg(file.path()).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(if output.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {report}", output.status))
    })
}

#[test]
fn ignition_0_35_accepts_every_config_translated_to_spec_2() {
    let config = rich_config();
    let pointer = PointerConfig {
        source:
            "https://api-int.demo.example.com:22623/config/worker?mac=52-54-00-00-00-01&token=t"
                .into(),
        root_ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        http_headers: Vec::new(),
    };
    for version in [IgnitionVersion::V2_2, IgnitionVersion::V2_3] {
        let json = config.render(version).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["ignition"]["version"], version.as_str());
        // What 2.x spells differently from 3.x, as Ignition 0.35 reads it.
        let files = value["storage"]["files"].as_array().unwrap();
        assert!(files.iter().all(|f| f["filesystem"] == "root"), "{value}");
        assert!(files.iter().all(|f| f["overwrite"].is_boolean()), "{value}");
        let pointer_json = pointer.render(version).unwrap();
        let pointer_value: serde_json::Value = serde_json::from_slice(&pointer_json).unwrap();
        assert_eq!(
            pointer_value["ignition"]["config"]["append"][0]["source"],
            pointer.source.as_str()
        );
        // Ignition 0.35's validator flags 2.3.0's `ignition.security.tls` as unknown (its
        // 2.3 types embed the struct), so the server answers every 2.x client with 2.2.0.
        let checked = if version == IgnitionVersion::V2_2 {
            vec![("config", &json), ("pointer", &pointer_json)]
        } else {
            vec![("config", &json)]
        };
        for (what, json) in checked {
            let Some(verdict) = validate_0_35(
                "ignition_0_35_accepts_every_config_translated_to_spec_2",
                json,
            ) else {
                return;
            };
            verdict.unwrap_or_else(|e| {
                panic!("{what} {version}: {e}\n{}", String::from_utf8_lossy(json))
            });
        }
    }
}

#[test]
fn a_spec_2_config_reads_back_as_the_config_it_was() {
    let config = rich_config();
    for version in [IgnitionVersion::V2_2, IgnitionVersion::V2_3] {
        let json = config.render(version).unwrap();
        let back = Config::from_json(&json).unwrap();
        let again = back.render(version).unwrap();
        assert_eq!(
            String::from_utf8(again).unwrap(),
            String::from_utf8(json).unwrap()
        );
        // 2.x wrote the defaults out; read back, they are the same defaults in 3.x.
        assert_eq!(
            back.file("/etc/kindling/text.conf"),
            config.file("/etc/kindling/text.conf")
        );
        assert_eq!(back.unit("kubelet.service"), config.unit("kubelet.service"));
        assert_eq!(back.ssh_keys("core"), config.ssh_keys("core"));
        assert_eq!(back.wiped_disks(), ["/dev/sdb"]);
    }
}

#[test]
fn what_spec_2_cannot_say_is_refused_by_name() {
    let mut sha256 = Config::new();
    sha256.merge(
        Config::from_json(
            br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/x","contents":{"source":"http://h/x","verification":{"hash":"sha256-0000000000000000000000000000000000000000000000000000000000000000"}}}]}}"#,
        )
        .unwrap(),
    );
    let err = sha256
        .render(IgnitionVersion::V2_2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256") && err.contains("2.2.0"), "{err}");

    let luks = Config::from_json(
        br#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"data","device":"/dev/sdb"}]}}"#,
    )
    .unwrap();
    let err = luks.render(IgnitionVersion::V2_3).unwrap_err().to_string();
    assert!(
        err.contains("storage.luks") && err.contains("2.3.0"),
        "{err}"
    );

    let headers = PointerConfig {
        source: "https://mcs/config/worker".into(),
        root_ca_pem: String::new(),
        http_headers: vec![("X-Kindling-Token".into(), "t".into())],
    };
    let err = headers
        .render(IgnitionVersion::V2_2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP headers"), "{err}");
}
