//! The provisioning server as a booting machine meets it: `<serverURL>/boot.ipxe` is an iPXE
//! script, and the machine config server presents a certificate that chains to the cluster's
//! root CA and names the host in mcsURL.

use std::net::{IpAddr, SocketAddr};

use super::dns::{self, RecordType};
use super::{Area, Finding, Request, Severity};

fn finding(severity: Severity, check: &'static str, subject: &str, what: String) -> Finding {
    Finding::new(severity, Area::Provisioning, check, subject, what)
}

/// Runs the provisioning checks.
pub fn check(req: &Request) -> Vec<Finding> {
    let (boot, mcs) = std::thread::scope(|s| {
        let boot = s.spawn(|| boot_script(req));
        let mcs = mcs(req);
        (boot.join(), mcs)
    });
    let mut out = vec![boot.unwrap_or_else(|_| {
        finding(
            Severity::Error,
            "doctor.bug",
            "boot.ipxe",
            "this check crashed (a kindling bug)".into(),
        )
    })];
    out.push(mcs);
    out.extend(boot_images(req));
    out
}

/// The URLs a boot script names for the machine to download: the kernel, each initrd, and the
/// images its arguments point at (the live root filesystem, the disk image). Not the Ignition
/// config: that one is the machine's own and is fetched with its token.
pub fn boot_urls(script: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for line in script.lines() {
        let mut words = line.split_whitespace();
        let Some(command) = words.next() else {
            continue;
        };
        let words: Vec<&str> = words.collect();
        if matches!(command, "kernel" | "initrd" | "imgfetch" | "chain")
            && let Some(url) = words
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        {
            urls.push(url.to_string());
        }
        if command == "kernel" {
            for arg in &words {
                if let Some((key, value)) = arg.split_once('=')
                    && (value.starts_with("http://") || value.starts_with("https://"))
                    && !key.contains("ignition")
                {
                    urls.push(value.to_string());
                }
            }
        }
    }
    urls.dedup();
    urls
}

/// Every image a machine's boot script names answers HEAD with 200: a missing kernel, initrd or
/// disk image stops a machine in the middle of its boot, after DHCP and iPXE went well.
fn boot_images(req: &Request) -> Vec<Finding> {
    let server_url = &req.description.inventory.provisioning.server_url;
    let (Some(machine), Some(url)) = (
        req.description.inventory.machines.first(),
        parse_url(server_url),
    ) else {
        return Vec::new();
    };
    let Ok(addr) = resolve(req, &url.host, url.port) else {
        return Vec::new(); // the boot script check says why
    };
    let ca = url.https.then(|| req.dir.join("tls/root-ca.crt"));
    let Ok(client) = req.http_client(ca.as_deref()) else {
        return Vec::new();
    };
    let target = kindling_http::Target::at(addr, &url.host);
    let path = format!("{}/ipxe?mac={}", url.path, machine.macs[0].hexhyp());
    let script = match client.get(&target, &path) {
        Ok(r) if r.status == 200 => String::from_utf8_lossy(&r.body).into_owned(),
        _ => return Vec::new(),
    };
    let why = "the machine downloads it while it boots; without it the boot stops half way";
    boot_urls(&script)
        .into_iter()
        .map(|image| {
            let check = "provisioning.boot-image";
            let Some(u) = parse_url(&image) else {
                return finding(Severity::Error, check, &image, "is not an http(s) URL".into());
            };
            let addr = match resolve(req, &u.host, u.port) {
                Ok(a) => a,
                Err(e) => return finding(Severity::Error, check, &image, e).why(why),
            };
            // Only kindling's own server is known to chain to the cluster's CA.
            let client = if u.https && u.host != url.host {
                return finding(Severity::Info, check, &image, "not checked: an https server other than kindling serve, whose CA doctor does not know".into());
            } else if u.https {
                client.clone()
            } else {
                match req.http_client(None) {
                    Ok(c) => c,
                    Err(e) => return finding(Severity::Error, check, &image, e.to_string()),
                }
            };
            let target = kindling_http::Target::at(addr, &u.host);
            let query = image.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
            match client.head(&target, &format!("{}{query}", u.path)) {
                Ok(r) if r.status == 200 => {
                    let size = r
                        .headers
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .map(|n| format!(" ({n} bytes)"))
                        .unwrap_or_default();
                    finding(Severity::Ok, check, &image, format!("answers 200{size}"))
                }
                Ok(r) => finding(Severity::Error, check, &image, format!("answers HTTP {}", r.status))
                    .why(why)
                    .fix(format!(
                        "put the file where the URL points: for kindling serve, under {}/assets/ (README: \"OS images\"; for fcos, kindling mirror --from-release fetches them), or set provisioning.osImages to where they are",
                        req.dir.display()
                    )),
                Err(e) => finding(Severity::Error, check, &image, format!("no answer: {e}")).why(why),
            }
        })
        .collect()
}

/// An http(s) URL taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path, without a trailing slash, possibly empty.
    pub path: String,
}

/// Parses an absolute http(s) URL (validation already accepted it).
pub fn parse_url(url: &str) -> Option<Url> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if https => 443,
        None => 80,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Some(Url {
        https,
        host: host.to_ascii_lowercase(),
        port,
        path: path.trim_end_matches('/').to_string(),
    })
}

/// The address of a URL's host: an IP literal as it is, a name through the first resolver (the
/// machines' DNS), so doctor connects where a machine would.
fn resolve(req: &Request, host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let Some(server) = req.resolvers.first() else {
        return Err(format!(
            "{host} is a name and there is no DNS server to resolve it"
        ));
    };
    let mut why = Vec::new();
    for t in [RecordType::A, RecordType::Aaaa] {
        match dns::query(*server, host, t, req.timeouts.dns) {
            Ok(r) => {
                let ip = r.answers.iter().find_map(|rec| match rec.data {
                    dns::RData::A(a) => Some(IpAddr::V4(a)),
                    dns::RData::Aaaa(a) => Some(IpAddr::V6(a)),
                    _ => None,
                });
                match ip {
                    Some(ip) => return Ok(SocketAddr::new(ip, port)),
                    None => why.push(format!("{t}: {}", r.rcode)),
                }
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(format!(
        "{host} does not resolve at {server} ({})",
        why.join("; ")
    ))
}

fn boot_script(req: &Request) -> Finding {
    let server_url = &req.description.inventory.provisioning.server_url;
    let subject = format!("{}/boot.ipxe", server_url.trim_end_matches('/'));
    let why = "PXE firmware chains to boot.ipxe first; if it is not an iPXE script the machine stops at the iPXE prompt";
    let Some(url) = parse_url(server_url) else {
        return finding(
            Severity::Error,
            "provisioning.boot-script",
            &subject,
            format!("{server_url} is not an http(s) URL"),
        );
    };
    let addr = match resolve(req, &url.host, url.port) {
        Ok(a) => a,
        Err(e) => {
            return finding(Severity::Error, "provisioning.boot-script", &subject, e)
                .why(why)
                .fix("add the provisioning host's name to DNS, or use its address in provisioning.serverURL");
        }
    };
    let ca = url.https.then(|| req.dir.join("tls/root-ca.crt"));
    let client = match req.http_client(ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            return finding(Severity::Warning, "provisioning.boot-script", &subject, format!("serverURL is https and {e}"))
                .fix("run 'kindling create manifests' so tls/root-ca.crt exists, or serve boot files over http (PXE firmware rarely has the CA anyway)");
        }
    };
    let target = kindling_http::Target::at(addr, &url.host);
    let path = format!("{}/boot.ipxe", url.path);
    match client.get(&target, &path) {
        Err(e) => finding(Severity::Error, "provisioning.boot-script", &subject, format!("no answer: {e}"))
            .why(why)
            .fix(format!("start 'kindling serve --dir {}' on the provisioning host and open its port towards the machine network", req.dir.display())),
        Ok(r) if r.status != 200 => finding(
            Severity::Error,
            "provisioning.boot-script",
            &subject,
            format!("answers HTTP {} instead of 200", r.status),
        )
        .why(why)
        .fix("check that provisioning.serverURL points at 'kindling serve' (or at the directory that holds boot.ipxe)"),
        Ok(r) if r.body.starts_with(b"#!ipxe") => finding(
            Severity::Ok,
            "provisioning.boot-script",
            &subject,
            "answers 200 with an iPXE script".into(),
        ),
        Ok(r) => {
            let head = String::from_utf8_lossy(&r.body[..r.body.len().min(24)])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let spaced = r.body.starts_with(b"# !ipxe") || r.body.starts_with(b"#! ipxe");
            finding(
                Severity::Error,
                "provisioning.boot-script",
                &subject,
                if spaced {
                    format!("the script starts with '{head}' instead of '#!ipxe': the space makes iPXE refuse it as an iPXE script")
                } else {
                    format!("answers 200, but the body starts with '{head}', not '#!ipxe'")
                },
            )
            .why(why)
            .fix(if spaced {
                "make the first line exactly '#!ipxe' (no space); 'kindling serve' writes it so"
            } else {
                "serve an iPXE script at this path; 'kindling serve' does"
            })
        }
    }
}

fn mcs(req: &Request) -> Finding {
    let mcs_url = req.description.mcs_url();
    let subject = mcs_url.clone();
    let check = "provisioning.mcs-tls";
    let why = "masters and workers fetch their config from the machine config server and trust only the cluster's root CA (it is in their pointer config); a certificate that does not chain to it, or does not name this host, fails every first boot";
    let Some(url) = parse_url(&mcs_url) else {
        return finding(
            Severity::Error,
            check,
            &subject,
            format!("{mcs_url} is not an http(s) URL"),
        );
    };
    let ca = req.dir.join("tls/root-ca.crt");
    if !ca.exists() {
        return finding(
            Severity::Info,
            check,
            &subject,
            format!("skipped: {} does not exist yet, so there is no CA to check the certificate against", ca.display()),
        )
        .fix("run 'kindling create ignition-configs', then doctor again");
    }
    let client = match req.http_client(Some(&ca)) {
        Ok(c) => c,
        Err(e) => {
            return finding(Severity::Error, check, &subject, e.to_string()).fix(
                "restore tls/root-ca.crt from a backup; the pointer configs carry the same CA",
            );
        }
    };
    let addr = match resolve(req, &url.host, url.port) {
        Ok(a) => a,
        Err(e) => {
            return finding(Severity::Error, check, &subject, e)
                .why(why)
                .fix("add the mcsURL host name (by default api-int) to DNS");
        }
    };
    match client.handshake(&kindling_http::Target::at(addr, &url.host)) {
        Ok(()) => finding(
            Severity::Ok,
            check,
            &subject,
            format!("{addr} presents a certificate for {} that chains to the cluster's root CA", url.host),
        ),
        Err(e) if e.is_certificate_error() => {
            finding(
                Severity::Error,
                check,
                &subject,
                format!("{addr} presents a certificate the machines will reject: {e}"),
            )
            .why(why)
            .fix(format!("serve tls/mcs.crt from this asset directory ('kindling serve --dir {}'), and point the load balancer's 22623 backend at it; 'kindling create ignition-configs' re-signs tls/mcs.crt when mcsURL changes", req.dir.display()))
        }
        Err(e) => finding(Severity::Error, check, &subject, format!("no TLS answer: {e}"))
            .why(why)
            .fix("start 'kindling serve' and make sure the load balancer's 22623 frontend on the api-int VIP forwards to it"),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_boot_scripts_downloads_are_found_but_not_its_ignition_config() {
        let script = "#!ipxe\nkernel http://10.0.0.2:8080/assets/fcos/kernel initrd=main coreos.live.rootfs_url=http://10.0.0.2:8080/assets/fcos/rootfs.img coreos.inst.ignition_url=http://10.0.0.2:8080/ignition?mac=52-54-00-00-00-01&token=t console=ttyS0\ninitrd --name main http://10.0.0.2:8080/assets/fcos/initramfs.img\nboot\n";
        assert_eq!(
            boot_urls(script),
            [
                "http://10.0.0.2:8080/assets/fcos/kernel",
                "http://10.0.0.2:8080/assets/fcos/rootfs.img",
                "http://10.0.0.2:8080/assets/fcos/initramfs.img",
            ]
        );
    }

    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://172.16.0.101:8080").unwrap(),
            Url {
                https: false,
                host: "172.16.0.101".into(),
                port: 8080,
                path: String::new()
            }
        );
        assert_eq!(
            parse_url("https://API-INT.x.example/boot/?a=b").unwrap(),
            Url {
                https: true,
                host: "api-int.x.example".into(),
                port: 443,
                path: "/boot".into()
            }
        );
        assert_eq!(parse_url("http://[fd00::1]:81/").unwrap().host, "fd00::1");
        assert!(parse_url("ftp://x").is_none());
        assert!(parse_url("http://x:notaport").is_none());
    }
}
