//! `kindling doctor`: checks the environment the machines will boot into against the cluster
//! description (DNS, load balancer, provisioning server, certificates) and says, for every
//! fault, what is wrong, why it matters and how to fix it.
//!
//! The engine is a list of [`Check`]s. Each is a plain function from the [`Request`] to its
//! [`Finding`]s; they run concurrently, and every network call has a short timeout, so a doctor
//! run finishes in seconds even when nothing answers.

pub mod certs;
pub mod dns;
pub mod lb;
pub mod names;
pub mod provisioning;
pub mod replicas;
pub mod zonefile;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kindling_config::ClusterDescription;
use serde::Serialize;

/// How bad a finding is. Ordered from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Machines will fail to install or join; doctor exits non-zero.
    Error,
    /// Works today but is fragile, or could not be told apart from a fault.
    Warning,
    /// Something doctor could not check yet (for example, the API before the install).
    Info,
    /// Checked and as the description says.
    Ok,
}

/// The part of the environment a finding is about; the report is grouped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    Description,
    Dns,
    LoadBalancer,
    Provisioning,
    Certificates,
}

impl Area {
    /// The areas a user can select, in report order.
    pub const SELECTABLE: [Area; 4] = [
        Area::Dns,
        Area::LoadBalancer,
        Area::Provisioning,
        Area::Certificates,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Description => "description",
            Area::Dns => "dns",
            Area::LoadBalancer => "load-balancer",
            Area::Provisioning => "provisioning",
            Area::Certificates => "certificates",
        }
    }

    /// A heading for the human-readable report.
    pub fn title(self) -> &'static str {
        match self {
            Area::Description => "Cluster description",
            Area::Dns => "DNS",
            Area::LoadBalancer => "Load balancer",
            Area::Provisioning => "Provisioning",
            Area::Certificates => "Certificates",
        }
    }
}

/// One thing doctor found: severity, which check, about what, and for a fault why it matters
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub area: Area,
    /// A stable identifier of the check, e.g. `dns.forward`, for scripts and tests.
    pub check: &'static str,
    /// What was checked: a name, an address and port, a file.
    pub subject: String,
    /// What doctor saw.
    pub what: String,
    /// Why it matters (empty when all is well).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// How to fix it (empty when all is well).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        area: Area,
        check: &'static str,
        subject: impl Into<String>,
        what: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            area,
            check,
            subject: subject.into(),
            what: what.into(),
            why: String::new(),
            fix: String::new(),
        }
    }

    /// Sets why the finding matters.
    pub fn why(mut self, why: impl Into<String>) -> Finding {
        self.why = why.into();
        self
    }

    /// Sets how to fix it.
    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = fix.into();
        self
    }
}

/// What to check, and against which servers.
#[derive(Debug, Clone)]
pub struct Request {
    /// The asset directory: `tls/`, `infra/` are read from it when present.
    pub dir: PathBuf,
    pub description: ClusterDescription,
    /// The DNS servers to ask: `--resolver`, or the inventory's `network.dnsServers` on port 53.
    pub resolvers: Vec<SocketAddr>,
    /// The areas to check; all when empty.
    pub areas: Vec<Area>,
    pub now: time::OffsetDateTime,
    /// Bootstrap certificates must stay valid this long from now.
    pub bootstrap_window: time::Duration,
    pub timeouts: Timeouts,
    /// `--store`: the store the replicas serve from, to check too.
    pub store: Option<kindling_store::Store>,
}

/// Network timeouts: short, so that a run with everything down still ends quickly.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub dns: dns::Timeouts,
    pub connect: Duration,
    /// A TLS handshake plus an HTTP exchange.
    pub exchange: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            dns: dns::Timeouts::default(),
            connect: Duration::from_secs(2),
            exchange: Duration::from_secs(5),
        }
    }
}

/// The CA bundle an https check trusts cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("reading the CA bundle {}: {reason}", path.display())]
pub struct CaBundleError {
    pub path: PathBuf,
    pub reason: String,
}

impl Request {
    /// An HTTP client with doctor's timeouts; with `ca`, TLS trusting only the CAs in that PEM
    /// file.
    fn http_client(&self, ca: Option<&Path>) -> Result<kindling_http::Client, CaBundleError> {
        let timeouts = kindling_http::Timeouts {
            connect: self.timeouts.connect,
            exchange: self.timeouts.exchange,
        };
        let client = match ca {
            None => kindling_http::Client::plain(timeouts),
            Some(path) => {
                let bad = |reason: String| CaBundleError {
                    path: path.to_path_buf(),
                    reason,
                };
                let ca_pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                let tls = kindling_http::Tls::Roots {
                    ca_pem,
                    client_identity: None,
                };
                kindling_http::Client::new(tls, timeouts).map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(client.with_user_agent("kindling-doctor"))
    }

    /// The resolvers the machines will use: the inventory's DNS servers on port 53.
    pub fn default_resolvers(description: &ClusterDescription) -> Vec<SocketAddr> {
        description
            .inventory
            .network
            .dns_servers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect()
    }

    fn wants(&self, area: Area) -> bool {
        self.areas.is_empty() || self.areas.contains(&area)
    }

    /// What an address is in the description: "the ingress VIP", "master0's address".
    pub fn describe_ip(&self, ip: IpAddr) -> Option<String> {
        let lb = &self.description.inventory.load_balancer;
        let mut roles = Vec::new();
        if ip == lb.api_vip {
            roles.push("the API VIP".to_string());
        }
        if ip == lb.api_int_vip {
            roles.push("the api-int VIP".to_string());
        }
        if ip == lb.ingress_vip {
            roles.push("the ingress VIP".to_string());
        }
        for m in &self.description.inventory.machines {
            if m.ip == ip {
                roles.push(format!("{}'s address", m.name));
            }
        }
        (!roles.is_empty()).then(|| roles.join(" and "))
    }
}

/// One check: the area it reports under and the function that runs it.
pub struct Check {
    pub area: Area,
    pub name: &'static str,
    pub run: fn(&Request) -> Vec<Finding>,
}

/// Every check doctor runs, in report order.
pub const CHECKS: &[Check] = &[
    Check {
        area: Area::Dns,
        name: "dns",
        run: names::check,
    },
    Check {
        area: Area::Dns,
        name: "zone files",
        run: zonefile::check,
    },
    Check {
        area: Area::LoadBalancer,
        name: "load balancer",
        run: lb::check,
    },
    Check {
        area: Area::Provisioning,
        name: "provisioning",
        run: provisioning::check,
    },
    Check {
        area: Area::Provisioning,
        name: "replicas",
        run: replicas::check,
    },
    Check {
        area: Area::Certificates,
        name: "certificates",
        run: certs::check,
    },
];

/// The outcome of a doctor run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Grouped by area, worst first within an area.
    pub findings: Vec<Finding>,
    /// How many findings are errors (doctor exits non-zero when there is one).
    pub errors: usize,
    pub warnings: usize,
}

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }
}

/// Where the latest report is kept (relative to the asset directory, or a replica's own), for
/// the dashboard.
pub const LATEST: &str = ".kindling/doctor.json";

/// The latest report, as [`LATEST`] keeps it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded<'a> {
    /// RFC 3339.
    pub ran_at: String,
    /// `kindling doctor`, or the dashboard.
    pub by: &'a str,
    #[serde(flatten)]
    pub report: &'a Report,
}

/// Keeps `report` as the latest, in `dir`'s [`LATEST`]; its JSON is returned.
pub fn record(dir: &Path, report: &Report, by: &str) -> std::io::Result<Vec<u8>> {
    use kindling_assets::Storage as _;
    let recorded = Recorded {
        ran_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        by,
        report,
    };
    let mut json = serde_json::to_vec_pretty(&recorded).expect("a report serializes");
    json.push(b'\n');
    kindling_assets::AtomicFiles.write(&dir.join(LATEST), &json, kindling_assets::Mode::Public)?;
    Ok(json)
}

/// Runs every selected check concurrently and gathers the findings.
pub fn run(request: &Request) -> Report {
    let mut findings = vec![Finding::new(
        Severity::Ok,
        Area::Description,
        "description.valid",
        request.dir.display().to_string(),
        "install-config.yaml and inventory.yaml passed validation; doctor does not repeat those checks",
    )];
    let selected: Vec<&Check> = CHECKS.iter().filter(|c| request.wants(c.area)).collect();
    let results: Vec<Vec<Finding>> = std::thread::scope(|s| {
        let handles: Vec<_> = selected
            .iter()
            .map(|check| s.spawn(|| (check.run)(request)))
            .collect();
        handles
            .into_iter()
            .zip(&selected)
            .map(|(h, check)| {
                h.join().unwrap_or_else(|_| {
                    vec![
                        Finding::new(
                            Severity::Error,
                            check.area,
                            "doctor.bug",
                            check.name,
                            "this check crashed (a kindling bug)",
                        )
                        .fix("please report it with the output of --log-level debug"),
                    ]
                })
            })
            .collect()
    });
    findings.extend(results.into_iter().flatten());
    // Stable: within an area, worst first, in the order the checks found them.
    findings.sort_by_key(|f| (f.area, f.severity));
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    Report {
        findings,
        errors,
        warnings,
    }
}

/// Runs `f` over `items` on up to `max_threads` threads, keeping the order of `items`.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    max_threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..max_threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was mapped"))
        .collect()
}

/// How many network checks run at once: enough that 5,000 machines take seconds, not minutes.
pub(crate) const PARALLEL: usize = 64;
