//! The real consumer: every config kindling renders for spec 3.0.0–3.3.0 passes Debian's
//! `ignition-validate` (Ignition 2.14), which refuses 3.4.0; for that spec the re-parse in
//! `render` is the check. The runner applying configs to a scratch root is in
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
    for version in &IgnitionVersion::ALL[..4] {
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
