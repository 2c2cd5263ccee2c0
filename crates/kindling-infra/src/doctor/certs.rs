//! The certificates under `tls/`: every certificate the bootstrap machine carries is valid for
//! the whole bootstrap window from now, and no CA is about to expire.

use std::path::{Path, PathBuf};

use kindling_config::Role;
use time::{Duration, OffsetDateTime};

use super::{Area, Finding, Request, Severity};

/// A CA that expires within this long gets a warning: replacing a CA means re-installing or a
/// careful rotation, which needs time.
const CA_WARNING: Duration = Duration::days(365);
/// A leaf that expires within this long gets a warning, in time for `kindling certs renew` and
/// the rolling update that delivers it.
const LEAF_WARNING: Duration = Duration::days(30);

fn finding(severity: Severity, check: &'static str, subject: &str, what: String) -> Finding {
    Finding::new(severity, Area::Certificates, check, subject, what)
}

struct Cert {
    /// Relative to the asset directory, e.g. `tls/apiserver/master0.crt`.
    path: String,
    is_ca: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// Runs the certificate checks.
pub fn check(req: &Request) -> Vec<Finding> {
    let tls = req.dir.join("tls");
    if !tls.is_dir() {
        return vec![
            finding(
                Severity::Info,
                "certs.skipped",
                "tls/",
                format!(
                    "skipped: {} does not exist, so there are no certificates to check (nor the MCS certificate and the API's CA)",
                    tls.display()
                ),
            )
            .fix("run 'kindling create ignition-configs', then doctor again"),
        ];
    }
    let mut out = Vec::new();
    let mut files = Vec::new();
    if let Err(e) = walk(&tls, &mut files) {
        out.push(finding(Severity::Error, "certs.read", "tls/", e));
    }
    files.sort();
    let bootstrap_names: Vec<String> = req
        .description
        .inventory
        .with_role(Role::Bootstrap)
        .map(|m| format!("tls/etcd/{}-", m.name))
        .collect();
    let deadline = req.now + req.bootstrap_window;
    let window_hours = req.bootstrap_window.whole_hours();
    let (mut leaves_ok, mut cas_ok) = (0, 0);
    for file in files {
        let rel = file
            .strip_prefix(&req.dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        let cert = match read(&file, rel.clone()) {
            Ok(c) => c,
            Err(e) => {
                out.push(
                    finding(Severity::Error, "certs.read", &rel, e)
                        .why("a certificate that cannot be read cannot be served or trusted")
                        .fix(format!("delete {rel} and run 'kindling create ignition-configs' to make it again")),
                );
                continue;
            }
        };
        if cert.is_ca {
            if cert.not_after <= req.now {
                out.push(
                    finding(Severity::Error, "certs.ca", &cert.path, format!("the CA expired on {}", date(cert.not_after)))
                        .why("nothing it signed is trusted any more")
                        .fix("a new CA means new certificates everywhere: make a new asset directory ('kindling create manifests') and reinstall"),
                );
            } else if cert.not_after <= req.now + CA_WARNING {
                out.push(
                    finding(Severity::Warning, "certs.ca", &cert.path, format!("the CA expires on {}, within a year", date(cert.not_after)))
                        .why("when it expires, every certificate it signed stops being trusted, and the cluster stops")
                        .fix("plan a CA rotation before then"),
                );
            } else {
                cas_ok += 1;
            }
            continue;
        }
        let bootstrap_only = cert.path.starts_with("tls/bootstrap/")
            || bootstrap_names
                .iter()
                .any(|p| cert.path.starts_with(p.as_str()));
        let kind = if bootstrap_only {
            "bootstrap certificate"
        } else {
            "certificate"
        };
        let fix = "run 'kindling create ignition-configs': it re-signs certificates that expire within the bootstrap window, under the same CA, and rewrites bootstrap.ign";
        if cert.not_before > req.now {
            out.push(
                finding(
                    Severity::Error,
                    "certs.bootstrap",
                    &cert.path,
                    format!("the {kind} is not valid before {}: it is from the future (is this host's clock right?)", date(cert.not_before)),
                )
                .why("the machines reject it until then, and etcd and the API fail to start")
                .fix("set the clock (NTP) on the host that ran kindling, then delete the certificate and run 'kindling create ignition-configs'"),
            );
        } else if cert.not_after < deadline {
            let state = if cert.not_after <= req.now {
                "expired"
            } else {
                "expires"
            };
            out.push(
                finding(
                    Severity::Error,
                    "certs.bootstrap",
                    &cert.path,
                    format!("the {kind} {state} on {}, within the {window_hours} h bootstrap window", date(cert.not_after)),
                )
                .why("the bootstrap machine uses it until the control plane has moved to the masters, which can take the whole window")
                .fix(fix),
            );
        } else if !bootstrap_only && cert.not_after < req.now + LEAF_WARNING {
            out.push(
                finding(
                    Severity::Warning,
                    "certs.expiry",
                    &cert.path,
                    format!("the certificate expires on {}, within 30 days", date(cert.not_after)),
                )
                .why("when it expires, what presents it is refused (an apiserver, an etcd member, a component's client)")
                .fix("run 'kindling certs renew', then 'kindling update' to deliver the new certificates"),
            );
        } else {
            leaves_ok += 1;
        }
    }
    if leaves_ok > 0 {
        out.push(finding(
            Severity::Ok,
            "certs.bootstrap",
            "tls/",
            format!("{leaves_ok} certificates are valid for the {window_hours} h bootstrap window from now"),
        ));
    }
    if cas_ok > 0 {
        out.push(finding(
            Severity::Ok,
            "certs.ca",
            "tls/",
            format!("{cas_ok} CAs are valid for more than a year"),
        ));
    }
    out
}

fn date(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            out.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path, rel: String) -> Result<Cert, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("{} is not an X.509 certificate: {e}", path.display()))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    Ok(Cert {
        path: rel,
        is_ca,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

#[cfg(test)]
mod tests {
    use kindling_config::{ClusterDescription, Source};
    use kindling_pki::{Ca, KeyAlgorithm, LeafSpec};

    use super::*;
    use crate::doctor::{Request, Timeouts};

    fn request(dir: &Path, now: OffsetDateTime) -> Request {
        let fixture = |name: &str| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests/fixtures/doctor")
                    .join(name),
            )
            .unwrap()
            .replace("@NET@", "127.0.9")
        };
        let (ic, inv) = (fixture("install-config.yaml"), fixture("inventory.yaml"));
        let description = ClusterDescription::parse(
            Source {
                name: "install-config.yaml",
                text: &ic,
            },
            Source {
                name: "inventory.yaml",
                text: &inv,
            },
        )
        .unwrap()
        .description;
        Request {
            dir: dir.to_path_buf(),
            description,
            resolvers: Vec::new(),
            areas: Vec::new(),
            now,
            bootstrap_window: Duration::hours(24),
            timeouts: Timeouts::default(),
            store: None,
        }
    }

    fn write(dir: &Path, rel: &str, pem: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, pem).unwrap();
    }

    #[test]
    fn ca_lifetimes_and_the_bootstrap_window() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let alg = KeyAlgorithm::EcdsaP256;
        let long = Ca::generate("long", alg, now, Duration::days(3650)).unwrap();
        let short = Ca::generate("short", alg, now, Duration::days(100)).unwrap();
        write(dir.path(), "tls/root-ca.crt", &long.cert_pem);
        write(dir.path(), "tls/etcd-ca.crt", &short.cert_pem);
        let spec = LeafSpec::client("x", &[]);
        let leaf = |hours| {
            long.issue(&spec, alg, now, Duration::hours(hours))
                .unwrap()
                .cert_pem
        };
        write(dir.path(), "tls/bootstrap/admin.crt", &leaf(48));
        write(dir.path(), "tls/etcd/bootstrap-peer.crt", &leaf(12));
        write(dir.path(), "tls/apiserver.crt", &leaf(24 * 365));
        write(dir.path(), "tls/mcs.crt", &leaf(24 * 20));
        write(dir.path(), "tls/broken.crt", "not a certificate");

        let found = check(&request(dir.path(), now));
        let about = |path: &str| -> Vec<(Severity, &'static str)> {
            found
                .iter()
                .filter(|f| f.subject == path)
                .map(|f| (f.severity, f.check))
                .collect()
        };
        assert_eq!(about("tls/etcd-ca.crt"), [(Severity::Warning, "certs.ca")]);
        assert_eq!(
            about("tls/etcd/bootstrap-peer.crt"),
            [(Severity::Error, "certs.bootstrap")]
        );
        assert!(
            found
                .iter()
                .any(|f| f.subject == "tls/etcd/bootstrap-peer.crt"
                    && f.what.starts_with("the bootstrap certificate expires"))
        );
        assert_eq!(about("tls/broken.crt"), [(Severity::Error, "certs.read")]);
        // 30 days before a leaf expires, a warning that says what renews it.
        assert_eq!(about("tls/mcs.crt"), [(Severity::Warning, "certs.expiry")]);
        assert!(
            found
                .iter()
                .any(|f| f.subject == "tls/mcs.crt" && f.fix.contains("kindling certs renew"))
        );
        assert!(about("tls/bootstrap/admin.crt").is_empty(), "{found:#?}");
        let ok: Vec<_> = found
            .iter()
            .filter(|f| f.severity == Severity::Ok)
            .collect();
        assert!(
            ok.iter()
                .any(|f| f.what.starts_with("2 certificates are valid")),
            "{ok:#?}"
        );
        assert!(ok.iter().any(|f| f.what.starts_with("1 CAs")), "{ok:#?}");

        // A day later the 48 h bootstrap certificate no longer covers the window.
        let later = check(&request(dir.path(), now + Duration::hours(25)));
        assert!(
            later
                .iter()
                .any(|f| f.subject == "tls/bootstrap/admin.crt" && f.severity == Severity::Error)
        );
    }
}
