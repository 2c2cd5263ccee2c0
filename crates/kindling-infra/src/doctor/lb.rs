//! The load balancer: every frontend the machines and users need answers on its VIP, the
//! machine config server is not exposed outside api-int, and once the API is up, `/readyz`
//! answers through it.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;

use super::{Area, Finding, Request, Severity, parallel_map};

pub const API_PORT: u16 = 6443;
pub const MCS_PORT: u16 = 22623;
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;

/// A frontend the description asks for.
struct Frontend {
    vip: IpAddr,
    port: u16,
    /// e.g. "the API on the api-int VIP".
    what: &'static str,
    why: &'static str,
}

fn finding(severity: Severity, check: &'static str, subject: String, what: String) -> Finding {
    Finding::new(severity, Area::LoadBalancer, check, subject, what)
}

/// Runs the load-balancer checks.
pub fn check(req: &Request) -> Vec<Finding> {
    let lb = &req.description.inventory.load_balancer;
    let frontends = [
        Frontend {
            vip: lb.api_vip,
            port: API_PORT,
            what: "the API (api VIP)",
            why: "clients outside the cluster (kubectl, the installer's wait-for) reach the API here",
        },
        Frontend {
            vip: lb.api_int_vip,
            port: API_PORT,
            what: "the API (api-int VIP)",
            why: "kubelets and the control plane reach the API here",
        },
        Frontend {
            vip: lb.api_int_vip,
            port: MCS_PORT,
            what: "the machine config server (api-int VIP)",
            why: "every master and worker fetches its Ignition config here on first boot; without it none installs",
        },
        Frontend {
            vip: lb.ingress_vip,
            port: HTTP_PORT,
            what: "ingress HTTP (ingress VIP)",
            why: "routes under *.apps (console, OAuth) are served here",
        },
        Frontend {
            vip: lb.ingress_vip,
            port: HTTPS_PORT,
            what: "ingress HTTPS (ingress VIP)",
            why: "routes under *.apps (console, OAuth) are served here; the install completes only when they answer",
        },
    ];
    let mut frontends: Vec<Frontend> = frontends.into_iter().collect();
    frontends.dedup_by(|a, b| a.vip == b.vip && a.port == b.port);
    let config = HaproxyConfig::read(&req.dir.join("infra/haproxy.cfg"));

    // 22623 must be closed where it is not api-int.
    let mut exposed = Vec::new();
    let mut out = Vec::new();
    for (vip, name) in [(lb.api_vip, "API VIP"), (lb.ingress_vip, "ingress VIP")] {
        if vip == lb.api_int_vip {
            out.push(
                finding(
                    Severity::Warning,
                    "lb.mcs-exposure",
                    format!("{vip}:{MCS_PORT}"),
                    format!("the {name} is the api-int VIP, so doctor cannot tell whether the machine config server is reachable from outside the cluster network"),
                )
                .why("the machine config server hands out configs that may carry secrets; it should be reachable only from the machine network")
                .fix("use a separate apiIntVIP on the machine network, or make sure a firewall keeps 22623 closed to everyone but the machines"),
            );
        } else if !exposed.iter().any(|(v, _)| *v == vip) {
            exposed.push((vip, name));
        }
    }

    let probes: Vec<SocketAddr> = frontends
        .iter()
        .map(|f| SocketAddr::new(f.vip, f.port))
        .chain(
            exposed
                .iter()
                .map(|(vip, _)| SocketAddr::new(*vip, MCS_PORT)),
        )
        .collect();
    let open = parallel_map(&probes, probes.len(), |addr| {
        TcpStream::connect_timeout(addr, req.timeouts.connect).map(drop)
    });
    let (wanted, unwanted) = open.split_at(frontends.len());
    let mut api_reachable = false;
    for (f, result) in frontends.iter().zip(wanted) {
        let subject = format!("{}:{}", f.vip, f.port);
        match result {
            Ok(()) => {
                if f.vip == lb.api_vip && f.port == API_PORT {
                    api_reachable = true;
                }
                out.push(finding(
                    Severity::Ok,
                    "lb.frontend",
                    subject,
                    format!("{} accepts connections", f.what),
                ));
            }
            Err(e) => {
                let (config_says, fix) = match config
                    .as_ref()
                    .map(|c| (c, c.explain(f.vip, f.port)))
                {
                    Some((c, (clause, Some(frontend)))) => (
                        clause,
                        format!(
                            "start or reload haproxy with {} (its frontend '{frontend}' binds {subject}), and configure {} on the load balancer's host",
                            c.path, f.vip
                        ),
                    ),
                    Some((_, (clause, None))) => (
                        clause,
                        format!(
                            "add a frontend binding {subject} (mode tcp) for {}, or run 'kindling create infra' to write one",
                            f.what
                        ),
                    ),
                    None => (
                        String::new(),
                        format!(
                            "add a TCP frontend binding {subject} (mode tcp) to the load balancer, with the backends for {}, and make sure the VIP is configured on its host",
                            f.what
                        ),
                    ),
                };
                out.push(
                    finding(
                        Severity::Error,
                        "lb.frontend",
                        subject.clone(),
                        format!(
                            "no frontend for {} answers at {subject}: {e}{config_says}",
                            f.what
                        ),
                    )
                    .why(f.why)
                    .fix(fix),
                );
            }
        }
    }
    for ((vip, name), result) in exposed.iter().zip(unwanted) {
        let subject = format!("{vip}:{MCS_PORT}");
        match result {
            Ok(()) => out.push(
                finding(
                    Severity::Error,
                    "lb.mcs-exposure",
                    subject.clone(),
                    format!("the machine config server port {MCS_PORT} is open on the {name} ({vip}); only the api-int VIP should serve it"),
                )
                .why("the machine config server hands out machine configs; on the external VIP anyone who can reach the API can download them")
                .fix(format!("remove the bind {subject} from the load balancer's machine-config-server frontend; bind it to the api-int VIP only")),
            ),
            Err(_) => out.push(finding(
                Severity::Ok,
                "lb.mcs-exposure",
                subject,
                format!("port {MCS_PORT} is closed on the {name}"),
            )),
        }
    }
    out.push(readyz(req, api_reachable));
    out
}

/// `GET /readyz` through the API VIP, verified with the cluster's root CA when it is there.
fn readyz(req: &Request, reachable: bool) -> Finding {
    let lb = &req.description.inventory.load_balancer;
    let host = req.description.api_host();
    let subject = format!("https://{host}:{API_PORT}/readyz");
    let info = |what: String| finding(Severity::Info, "lb.readyz", subject.clone(), what);
    if !reachable {
        return info("API not up yet: nothing to ask before the API VIP answers on 6443".into());
    }
    let ca = req.dir.join("tls/root-ca.crt");
    let (client, verified) = match ca.exists() {
        true => match req.http_client(Some(&ca)) {
            Ok(c) => (c, true),
            Err(e) => {
                return finding(Severity::Warning, "lb.readyz", subject, e.to_string())
                    .fix("restore tls/root-ca.crt, or run 'kindling create manifests'");
            }
        },
        false => {
            return info(
                "skipped: tls/root-ca.crt is absent, so the API's certificate cannot be verified (run 'kindling create manifests')"
                    .into(),
            );
        }
    };
    let target = kindling_http::Target::at(SocketAddr::new(lb.api_vip, API_PORT), &host);
    match client.get(&target, "/readyz") {
        Ok(r) if r.status == 200 => finding(
            Severity::Ok,
            "lb.readyz",
            subject,
            format!(
                "the API answers ready through the load balancer{}",
                if verified { ", with a certificate from the cluster's CA" } else { "" }
            ),
        ),
        Ok(r) => info(format!(
            "the API answers {} to /readyz: it is starting or not healthy yet",
            r.status
        )),
        Err(e) if e.is_certificate_error() => finding(
            Severity::Error,
            "lb.readyz",
            subject,
            format!("the server behind {}:{API_PORT} presents a certificate the cluster's CA does not accept: {e}", lb.api_vip),
        )
        .why("kubelets and clients trust only the cluster's CA: they will refuse this API")
        .fix("check that the load balancer's 6443 backends are this cluster's masters (and bootstrap machine), not another cluster's"),
        Err(e) => info(format!("API not up yet: {e}")),
    }
}

/// The frontends of an haproxy.cfg, to name the one a finding is about.
struct HaproxyConfig {
    path: String,
    /// (section name, bind address, bind port)
    binds: Vec<(String, Option<IpAddr>, u16)>,
}

impl HaproxyConfig {
    fn read(path: &Path) -> Option<HaproxyConfig> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut binds = Vec::new();
        let mut section: Option<String> = None;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let indented = line.starts_with(char::is_whitespace);
            if !indented {
                section = matches!(first, "frontend" | "listen")
                    .then(|| words.next().unwrap_or(first).to_string());
                continue;
            }
            if first != "bind" {
                continue;
            }
            let (Some(name), Some(addrs)) = (&section, words.next()) else {
                continue;
            };
            for addr in addrs.split(',') {
                let Some((host, port)) = addr.rsplit_once(':') else {
                    continue;
                };
                let Ok(port) = port.parse() else { continue };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let ip = match host {
                    "" | "*" | "0.0.0.0" | "::" => None,
                    h => match h.parse() {
                        Ok(ip) => Some(ip),
                        Err(_) => continue,
                    },
                };
                binds.push((name.clone(), ip, port));
            }
        }
        Some(HaproxyConfig {
            path: path.display().to_string(),
            binds,
        })
    }

    /// What the config says about `vip:port`: a clause to append to a finding, and the name of
    /// the frontend that binds it, if one does.
    fn explain(&self, vip: IpAddr, port: u16) -> (String, Option<String>) {
        match self
            .binds
            .iter()
            .find(|(_, ip, p)| *p == port && ip.is_none_or(|ip| ip == vip))
        {
            Some((name, _, _)) => (
                format!(
                    " ({} has frontend '{name}' for it: is haproxy running with this file, and is {vip} configured on its host?)",
                    self.path
                ),
                Some(name.clone()),
            ),
            None => (
                format!(" ({} has no frontend binding {vip}:{port})", self.path),
                None,
            ),
        }
    }
}
