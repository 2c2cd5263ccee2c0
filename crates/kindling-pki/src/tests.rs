//! Certificates as openssl and kubectl judge them.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use time::{Duration, OffsetDateTime};

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs `openssl verify` with extra arguments; Ok(()) when it says OK.
fn verify(ca: &str, cert: &str, extra: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .arg("verify")
        .args(["-CAfile", ca])
        .args(extra)
        .arg(cert)
        .output()
        .expect("openssl runs (./test.sh installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn openssl_text(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn server_spec() -> LeafSpec {
    LeafSpec {
        common_name: "kube-apiserver".into(),
        organizations: vec![],
        dns_names: vec![
            "api.demo.example.com".into(),
            "kubernetes.default.svc".into(),
        ],
        ips: vec![
            "192.0.2.10".parse::<IpAddr>().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ],
        usage: Usage::Server,
    }
}

#[test]
fn leaves_verify_against_their_ca_with_names_and_purposes() {
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("kindling-root-ca", algorithm, now(), Duration::days(3650)).unwrap();
        let ca_path = write(dir.path(), "ca.crt", &ca.cert_pem);
        let leaf = ca
            .issue(&server_spec(), algorithm, now(), Duration::days(365))
            .unwrap();
        let leaf_path = write(dir.path(), "leaf.crt", &leaf.cert_pem);

        verify(&ca_path, &leaf_path, &["-purpose", "sslserver"]).unwrap();
        verify(
            &ca_path,
            &leaf_path,
            &["-verify_hostname", "api.demo.example.com"],
        )
        .unwrap();
        verify(&ca_path, &leaf_path, &["-verify_ip", "192.0.2.10"]).unwrap();
        let wrong = verify(
            &ca_path,
            &leaf_path,
            &["-verify_hostname", "evil.example.com"],
        )
        .unwrap_err();
        assert!(wrong.contains("hostname mismatch"), "{wrong}");
        assert!(
            verify(&ca_path, &leaf_path, &["-purpose", "sslclient"]).is_err(),
            "a server cert is not a client cert"
        );

        // Another CA does not vouch for it.
        let other = Ca::generate("other", algorithm, now(), Duration::days(1)).unwrap();
        let other_path = write(dir.path(), "other.crt", &other.cert_pem);
        assert!(
            verify(&other_path, &leaf_path, &[])
                .unwrap_err()
                .contains("unable to get local issuer")
        );

        // The key is the certificate's key.
        let from_cert = openssl_text(&["x509", "-noout", "-pubkey"], &leaf.cert_pem);
        let from_key = openssl_text(&["pkey", "-pubout"], &leaf.key_pem);
        assert_eq!(from_cert, from_key);
        let text = openssl_text(&["x509", "-noout", "-text"], &leaf.cert_pem);
        match algorithm {
            KeyAlgorithm::EcdsaP256 => assert!(text.contains("prime256v1"), "{text}"),
            KeyAlgorithm::Rsa2048 => assert!(text.contains("(2048 bit)"), "{text}"),
        }
    }
}

#[test]
fn a_ca_read_back_from_pem_signs_leaves_the_original_ca_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate(
        "kindling-root-ca",
        KeyAlgorithm::EcdsaP256,
        now(),
        Duration::days(3650),
    )
    .unwrap();
    let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem()).unwrap();
    let client = again
        .issue(
            &LeafSpec::client("system:admin", &["system:masters"]),
            KeyAlgorithm::EcdsaP256,
            now(),
            Duration::days(1),
        )
        .unwrap();
    let ca_path = write(dir.path(), "ca.crt", &ca.cert_pem);
    let client_path = write(dir.path(), "client.crt", &client.cert_pem);
    verify(&ca_path, &client_path, &["-purpose", "sslclient"]).unwrap();
    let subject = openssl_text(&["x509", "-noout", "-subject"], &client.cert_pem);
    assert_eq!(
        subject.trim(),
        "subject=O = system:masters, CN = system:admin"
    );
}

#[test]
fn lifetimes_are_what_was_asked_and_expiry_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let ca = Ca::generate("ca", KeyAlgorithm::EcdsaP256, t0, Duration::days(3650)).unwrap();
    let leaf = ca
        .issue(
            &server_spec(),
            KeyAlgorithm::EcdsaP256,
            t0,
            Duration::hours(48),
        )
        .unwrap();
    let expiry = not_after(&leaf.cert_pem).unwrap();
    assert!((expiry - (t0 + Duration::hours(48))).abs() < Duration::seconds(2));

    let ca_path = write(dir.path(), "ca.crt", &ca.cert_pem);
    let leaf_path = write(dir.path(), "leaf.crt", &leaf.cert_pem);
    let at = |t: OffsetDateTime| t.unix_timestamp().to_string();
    verify(
        &ca_path,
        &leaf_path,
        &["-attime", &at(t0 + Duration::hours(47))],
    )
    .unwrap();
    let expired = verify(
        &ca_path,
        &leaf_path,
        &["-attime", &at(t0 + Duration::hours(49))],
    )
    .unwrap_err();
    assert!(expired.contains("expired"), "{expired}");
}

#[test]
fn bad_pem_is_an_error_not_a_panic() {
    assert!(Ca::from_pem("not a cert", "not a key").is_err());
    assert!(not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    assert!(public_key_pem("nope").is_err());
}

#[test]
fn service_account_keys_have_a_public_half() {
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let public = public_key_pem(&key).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(openssl_text(&["pkey", "-pubout"], &key), public);
}

#[test]
fn bootstrap_tokens_have_the_kubernetes_shape_and_hide_their_secret() {
    let token = BootstrapToken::generate();
    assert_eq!(token.id.len(), 6);
    assert_eq!(token.secret.len(), 16);
    assert!(
        token
            .token()
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(BootstrapToken::parse(&token.token()), Some(token.clone()));
    assert!(!format!("{token:?}").contains(&token.secret));
    assert_ne!(BootstrapToken::generate(), token);
    assert_eq!(BootstrapToken::parse("abc.def"), None);
}

#[test]
fn kubeconfigs_are_read_by_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("ca", KeyAlgorithm::EcdsaP256, now(), Duration::days(1)).unwrap();
    let admin = ca
        .issue(
            &LeafSpec::client("system:admin", &["system:masters"]),
            KeyAlgorithm::EcdsaP256,
            now(),
            Duration::days(1),
        )
        .unwrap();
    let cert = kubeconfig::Credentials::ClientCert {
        cert_pem: &admin.cert_pem,
        key_pem: &admin.key_pem,
    };
    let token = kubeconfig::Credentials::Token("abcdef.0123456789abcdef");
    for (name, creds, want) in [
        ("admin", cert, "client-certificate-data: DATA+OMITTED"),
        ("bootstrap", token, "token: REDACTED"),
    ] {
        let path = write(
            dir.path(),
            name,
            &kubeconfig::render(
                "demo",
                "https://api.demo.example.com:6443",
                &ca.cert_pem,
                name,
                &creds,
            ),
        );
        let out = Command::new("kubectl")
            .args(["--kubeconfig", &path, "config", "view", "--minify"])
            .output()
            .expect("kubectl runs");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            shown.contains("server: https://api.demo.example.com:6443"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("current-context: {name}@demo")),
            "{shown}"
        );
        assert!(shown.contains(want), "{shown}");
    }
}
