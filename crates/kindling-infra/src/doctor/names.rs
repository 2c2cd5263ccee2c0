//! DNS as the machines will see it: the cluster's names resolve to the inventory's addresses,
//! every machine address has a PTR naming the machine, and the reverse zones agree with the
//! forward zone about who serves them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::dns::{self, DnsError, Rcode, RecordType, Response};
use super::{Area, Finding, PARALLEL, Request, Severity, parallel_map};

const WHY_API: &str = "kubectl, oc and every client outside the cluster reach the API through api.<cluster domain>; the installer waits on it";
const WHY_API_INT: &str = "every machine fetches its Ignition config from the machine config server at api-int:22623, and kubelets reach the API there; a wrong answer stops the install before the first node joins";
const WHY_APPS: &str = "routes such as the console and OAuth live under *.apps; with no wildcard the install never completes (the console and authentication operators stay degraded)";
const WHY_MACHINE: &str = "the machine's own name must resolve to its address: etcd peers, kubelet serving certificates and the installer use it";
const WHY_PTR: &str = "a machine takes its hostname from the PTR record of its address; without it the node registers as \"localhost\", and every such node collides with the others";
const WHY_ZONE_NS: &str = "a reverse zone whose SOA or NS names are not the forward zone's name servers is usually copied from another domain; those name servers are where secondaries transfer from and resolvers follow delegations to, so lookups fail once caching expires";

fn finding(severity: Severity, check: &'static str, subject: &str, what: String) -> Finding {
    Finding::new(severity, Area::Dns, check, subject, what)
}

/// Runs every DNS check against every resolver.
pub fn check(req: &Request) -> Vec<Finding> {
    if req.resolvers.is_empty() {
        return vec![
            finding(
                Severity::Error,
                "dns.resolver",
                "network.dnsServers",
                "no DNS server to ask: the inventory lists none and --resolver was not given"
                    .into(),
            )
            .why("the machines resolve api-int and their own names through network.dnsServers")
            .fix("add the DNS server to network.dnsServers in inventory.yaml, or pass --resolver IP:PORT"),
        ];
    }
    req.resolvers
        .iter()
        .flat_map(|server| check_resolver(req, *server))
        .collect()
}

/// The outcome of one question.
type Answer = Result<Response, DnsError>;

fn ask(req: &Request, server: SocketAddr, name: &str, qtype: RecordType) -> Answer {
    dns::query(server, name, qtype, req.timeouts.dns)
}

fn check_resolver(req: &Request, server: SocketAddr) -> Vec<Finding> {
    let domain = req.description.cluster_domain();
    let mut out = Vec::new();
    // One question first: if the server does not answer at all, say that once instead of once
    // per name.
    let base_domain = req
        .description
        .install_config
        .base_domain
        .to_ascii_lowercase();
    let mut zone_failed = false;
    let forward_zone = match ask(req, server, &domain, RecordType::Soa) {
        Err(e) => {
            return vec![
                finding(
                    Severity::Error,
                    "dns.resolver",
                    &server.to_string(),
                    format!("the DNS server does not answer: {e}"),
                )
                .why("the machines resolve api-int, their own names and their hostnames (PTR) through it")
                .fix("start the DNS server, open port 53 (UDP and TCP) towards the machine network, or pass --resolver IP:PORT to check another server"),
            ];
        }
        Ok(r) if matches!(r.rcode, Rcode::ServFail | Rcode::Refused) => {
            out.push(zone_not_served(req, server, &domain, r.rcode, "forward"));
            zone_failed = true;
            None
        }
        // Only a zone between the cluster domain and the base domain is the cluster's: an
        // answer from the root or a TLD means the server has no zone for the cluster at all.
        Ok(r) => match r.zone_soa() {
            Some((zone, mname))
                if zone == domain
                    || (domain.ends_with(&format!(".{zone}"))
                        && (zone == base_domain || zone.ends_with(&format!(".{base_domain}")))) =>
            {
                Some((zone, mname))
            }
            other => {
                out.push(
                    finding(
                        Severity::Error,
                        "dns.zone",
                        &domain,
                        format!(
                            "{server} has no zone for {domain} or {base_domain} ({}{})",
                            r.rcode,
                            other.map(|(z, _)| format!(", answered from the zone '{z}'")).unwrap_or_default()
                        ),
                    )
                    .why("api, api-int, *.apps and every machine name live in this zone")
                    .fix(format!("add a zone for {domain} (or {base_domain}) to the DNS server; 'kindling create infra' writes one")),
                );
                None
            }
        },
    };

    let names = forward_names(req);
    if !zone_failed {
        let answers = parallel_map(&names, PARALLEL, |(name, ip, _)| {
            ask(req, server, name, address_type(*ip))
        });
        let mut ok = 0;
        for ((name, expected, what), answer) in names.iter().zip(answers) {
            match check_address(req, server, name, *expected, what, answer) {
                Some(f) => out.push(f),
                None => ok += 1,
            }
        }
        if ok > 0 {
            out.push(finding(
                Severity::Ok,
                "dns.forward",
                &domain,
                format!(
                    "{ok} of {} names (api, api-int, machines) resolve to their inventory address at {server}",
                    names.len()
                ),
            ));
        }
        out.extend(check_apps(req, server));
    }
    out.extend(check_reverse(req, server, forward_zone.as_ref()));
    out
}

/// Every name with one expected address, and how to name it in a finding.
fn forward_names(req: &Request) -> Vec<(String, IpAddr, String)> {
    let d = &req.description;
    let lb = &d.inventory.load_balancer;
    let mut names = vec![
        (
            d.api_host(),
            lb.api_vip,
            "the API VIP, loadBalancer.apiVIP".to_string(),
        ),
        (
            d.api_int_host(),
            lb.api_int_vip,
            "the api-int VIP, loadBalancer.apiIntVIP".to_string(),
        ),
    ];
    for m in &d.inventory.machines {
        names.push((
            d.fqdn(m),
            m.ip,
            format!("{}'s address, machines[].ip", m.name),
        ));
    }
    names
}

fn address_type(ip: IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::Aaaa,
    }
}

fn addresses(r: &Response) -> Vec<IpAddr> {
    r.answers
        .iter()
        .filter_map(|rec| match rec.data {
            dns::RData::A(a) => Some(IpAddr::V4(a)),
            dns::RData::Aaaa(a) => Some(IpAddr::V6(a)),
            _ => None,
        })
        .collect()
}

fn why_for(req: &Request, name: &str) -> &'static str {
    if name == req.description.api_host() {
        WHY_API
    } else if name == req.description.api_int_host() {
        WHY_API_INT
    } else {
        WHY_MACHINE
    }
}

/// `None` when `name` resolves to exactly `expected`.
fn check_address(
    req: &Request,
    server: SocketAddr,
    name: &str,
    expected: IpAddr,
    expected_what: &str,
    answer: Answer,
) -> Option<Finding> {
    let rtype = address_type(expected);
    let fix_record = format!(
        "add '{name}. IN {rtype} {expected}' to the zone (and raise its serial), then reload the DNS server"
    );
    let r = match answer {
        Ok(r) => r,
        Err(e) => {
            return Some(
                finding(
                    Severity::Error,
                    "dns.forward",
                    name,
                    format!("no answer: {e}"),
                )
                .why(why_for(req, name))
                .fix("check that the DNS server is up and answers over UDP and TCP"),
            );
        }
    };
    let got = addresses(&r);
    let f = |severity, what: String| {
        Some(finding(severity, "dns.forward", name, what).why(why_for(req, name)))
    };
    match r.rcode {
        Rcode::NoError if got == [expected] => None,
        Rcode::NoError if got.contains(&expected) => f(
            Severity::Warning,
            format!(
                "resolves to {} at {server}: {expected} ({expected_what}) and others; clients pick one at random",
                join(&got)
            ),
        )
        .map(|x| x.fix(format!("remove the extra {rtype} records of {name}"))),
        Rcode::NoError if !got.is_empty() => {
            let described = describe_all(req, &got);
            f(
                Severity::Error,
                format!(
                    "resolves to {} at {server}, not {expected} ({expected_what})",
                    described.join(", ")
                ),
            )
            .map(|x| {
                x.fix(format!(
                    "change the {rtype} record of {name} to {expected}, raise the zone's serial, and reload the DNS server"
                ))
            })
        }
        Rcode::NoError => f(
            Severity::Error,
            format!("exists at {server} but has no {rtype} record"),
        )
        .map(|x| x.fix(fix_record)),
        Rcode::NxDomain => f(
            Severity::Error,
            format!("does not exist at {server} (NXDOMAIN); expected {expected} ({expected_what})"),
        )
        .map(|x| x.fix(fix_record)),
        other => f(
            Severity::Error,
            format!("{server} answers {other}; expected {expected} ({expected_what})"),
        )
        .map(|x| {
            x.fix("the zone holding this name is not served; check the DNS server's log for why it did not load")
        }),
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A random name under `*.apps` must resolve to the ingress VIP. When it does not, a random name
/// under `*.app` tells the runbook's typo apart from a missing wildcard.
fn check_apps(req: &Request, server: SocketAddr) -> Vec<Finding> {
    let d = &req.description;
    let expected = d.inventory.load_balancer.ingress_vip;
    let label = format!(
        "kindling-doctor-{:012x}",
        dns::random_u64() & 0xffff_ffff_ffff
    );
    let name = format!("{label}.{}", d.apps_domain());
    let subject = format!("*.{}", d.apps_domain());
    let rtype = address_type(expected);
    let base = |severity, what: String| {
        finding(severity, "dns.apps-wildcard", &subject, what).why(WHY_APPS)
    };
    let answer = match ask(req, server, &name, rtype) {
        Ok(r) => r,
        Err(e) => {
            return vec![base(Severity::Error, format!("no answer for {name}: {e}"))];
        }
    };
    let got = addresses(&answer);
    if answer.rcode == Rcode::NoError && got == [expected] {
        return vec![
            base(
                Severity::Ok,
                format!("{name} resolves to {expected} (the ingress VIP) at {server}"),
            )
            .why(""),
        ];
    }
    if answer.rcode == Rcode::NoError && !got.is_empty() {
        let described = describe_all(req, &got);
        return vec![
            base(
                Severity::Error,
                format!(
                    "{name} resolves to {} at {server}, not {expected} (the ingress VIP, loadBalancer.ingressVIP)",
                    described.join(", ")
                ),
            )
            .fix(format!(
                "point '*.apps.{}.' at {expected}, raise the zone's serial and reload",
                d.cluster_domain()
            )),
        ];
    }
    // A typo'd wildcard: *.app instead of *.apps.
    let typo = format!("{label}.app.{}", d.cluster_domain());
    if let Ok(r) = ask(req, server, &typo, rtype)
        && r.rcode == Rcode::NoError
        && !addresses(&r).is_empty()
    {
        return vec![
            base(
                Severity::Error,
                format!(
                    "{name} does not resolve ({}), but {typo} does ({}): the wildcard record is '*.app', not '*.apps'",
                    answer.rcode,
                    join(&addresses(&r))
                ),
            )
            .fix(format!(
                "rename the record '*.app.{domain}.' to '*.apps.{domain}.' (IN {rtype} {expected}), raise the zone's serial and reload",
                domain = d.cluster_domain()
            )),
        ];
    }
    vec![
        base(
            Severity::Error,
            format!(
                "{name} does not resolve at {server} ({}): there is no *.apps wildcard",
                answer.rcode
            ),
        )
        .fix(format!(
            "add '*.apps.{}. IN {rtype} {expected}' to the zone, raise its serial and reload",
            d.cluster_domain()
        )),
    ]
}

fn zone_not_served(
    req: &Request,
    server: SocketAddr,
    zone: &str,
    rcode: Rcode,
    kind: &str,
) -> Finding {
    let lint = if req.dir.join("infra/named").is_dir() {
        "; the dns.zone-file findings below point at the line"
    } else {
        ""
    };
    finding(
        Severity::Error,
        "dns.zone",
        zone,
        format!(
            "{server} answers {rcode} for the {kind} zone {zone}: it holds no loaded zone for it"
        ),
    )
    .why("BIND refuses to load a zone with an error in it, for example an NS name inside the zone without an A record, and then answers SERVFAIL or REFUSED for every name in it; no machine can resolve anything there")
    .fix(format!(
        "run 'named-checkzone {zone} <zone file>' and 'named-checkconf -z', fix what they report, and reload the DNS server (its log names the reason too){lint}"
    ))
}

/// PTR records of every machine, then the reverse zones' SOA/NS against the forward zone's.
fn check_reverse(
    req: &Request,
    server: SocketAddr,
    forward_zone: Option<&(String, String)>,
) -> Vec<Finding> {
    let d = &req.description;
    let machines: Vec<_> = d.inventory.machines.iter().collect();
    let answers = parallel_map(&machines, PARALLEL, |m| {
        ask(req, server, &dns::reverse_name(m.ip), RecordType::Ptr)
    });
    let mut out = Vec::new();
    let mut ok = 0;
    // Reverse zones that failed: their parent name and the machines in them.
    let mut failed: BTreeMap<String, (Rcode, Vec<String>)> = BTreeMap::new();
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for (m, answer) in machines.iter().zip(answers) {
        let rname = dns::reverse_name(m.ip);
        let fqdn = d.fqdn(m);
        let parent = rname
            .split_once('.')
            .map_or(rname.clone(), |(_, p)| p.to_string());
        parents.insert(parent.clone());
        let subject = format!("{} ({})", m.ip, m.name);
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                out.push(
                    finding(
                        Severity::Error,
                        "dns.reverse",
                        &subject,
                        format!("no answer for {rname}: {e}"),
                    )
                    .why(WHY_PTR),
                );
                continue;
            }
        };
        let names = r.ptr_names();
        let fix = format!(
            "add '{rname}. IN PTR {fqdn}.' (mind the trailing dot) to the reverse zone, raise its serial and reload"
        );
        match r.rcode {
            Rcode::NoError if names.len() == 1 && names[0] == fqdn => ok += 1,
            Rcode::NoError if names.contains(&fqdn) => out.push(
                finding(
                    Severity::Warning,
                    "dns.reverse",
                    &subject,
                    format!("{rname} has several PTR records: {}", names.join(", ")),
                )
                .why("the machine may take any of them as its hostname")
                .fix(format!("keep only 'PTR {fqdn}.'")),
            ),
            Rcode::NoError if !names.is_empty() => {
                let hint = if names.iter().any(|n| n.ends_with(".in-addr.arpa") || n.ends_with(".ip6.arpa")) {
                    " (a PTR target without a trailing dot gets the zone's origin appended)"
                } else {
                    ""
                };
                out.push(
                    finding(
                        Severity::Error,
                        "dns.reverse",
                        &subject,
                        format!("{rname} names {}, not {fqdn}{hint}", names.join(", ")),
                    )
                    .why(WHY_PTR)
                    .fix(format!("change the record to '{rname}. IN PTR {fqdn}.', raise the serial and reload")),
                )
            }
            Rcode::NoError | Rcode::NxDomain => out.push(
                finding(
                    Severity::Error,
                    "dns.reverse",
                    &subject,
                    format!("{rname} has no PTR record at {server} ({}); {} would boot as \"localhost\"", if r.rcode == Rcode::NxDomain { "NXDOMAIN" } else { "no data" }, m.name),
                )
                .why(WHY_PTR)
                .fix(fix),
            ),
            other => failed.entry(parent).or_insert((other, Vec::new())).1.push(m.name.clone()),
        }
    }
    for (parent, (rcode, names)) in &failed {
        let mut f = zone_not_served(req, server, parent, *rcode, "reverse");
        f.what = format!(
            "{server} answers {rcode} for PTR names under {parent} ({}): it holds no loaded reverse zone for them",
            names.join(", ")
        );
        f.why = format!("{} {}", f.why, WHY_PTR);
        out.push(f);
    }
    if ok > 0 {
        out.push(finding(
            Severity::Ok,
            "dns.reverse",
            &d.cluster_domain(),
            format!(
                "{ok} of {} machine addresses have a PTR record naming the machine",
                machines.len()
            ),
        ));
    }
    let unfailed: Vec<String> = parents
        .into_iter()
        .filter(|p| !failed.contains_key(p))
        .collect();
    out.extend(check_zone_servers(req, server, forward_zone, &unfailed));
    out
}

/// The reverse zones' SOA MNAME and NS names must be the forward zone's name servers, and those
/// names must resolve.
fn check_zone_servers(
    req: &Request,
    server: SocketAddr,
    forward_zone: Option<&(String, String)>,
    reverse_parents: &[String],
) -> Vec<Finding> {
    let Some((fzone, fmname)) = forward_zone else {
        return vec![finding(
            Severity::Info,
            "dns.zone",
            &req.description.cluster_domain(),
            "skipped: the reverse zones' SOA and NS cannot be compared with a forward zone that is not served".into(),
        )];
    };
    let mut out = Vec::new();
    let forward_ns: BTreeSet<String> = match ask(req, server, fzone, RecordType::Ns) {
        Ok(r) => r.ns_names().into_iter().collect(),
        Err(_) => BTreeSet::new(),
    };
    let mut servers = forward_ns.clone();
    servers.insert(fmname.clone());
    // Which forward name servers resolve; checked once each.
    let mut resolves: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    let mut resolve = |name: &str| -> Result<(), String> {
        resolves
            .entry(name.to_string())
            .or_insert_with(|| name_resolves(req, server, name))
            .clone()
    };
    for ns in &forward_ns {
        if let Err(why) = resolve(ns) {
            out.push(
                finding(
                    Severity::Error,
                    "dns.zone",
                    fzone,
                    format!("the forward zone's name server {ns} does not resolve: {why}"),
                )
                .why("BIND refuses to load a zone whose in-zone NS name has no address record; elsewhere resolvers cannot reach the zone's server")
                .fix(format!("add an A record for {ns} (the DNS server's address), raise the serial and reload")),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for parent in reverse_parents {
        let Ok(r) = ask(req, server, parent, RecordType::Soa) else {
            continue;
        };
        let Some((rzone, rmname)) = r.zone_soa() else {
            continue;
        };
        if !seen.insert(rzone.clone()) {
            continue;
        }
        let rns: Vec<String> = ask(req, server, &rzone, RecordType::Ns)
            .map(|r| r.ns_names())
            .unwrap_or_default();
        let mut strangers: Vec<String> = Vec::new();
        if !servers.contains(&rmname) {
            strangers.push(format!("SOA primary {rmname}"));
        }
        for ns in &rns {
            if !servers.contains(ns) {
                strangers.push(format!("NS {ns}"));
            }
        }
        let unresolved: Vec<String> = std::iter::once(&rmname)
            .chain(&rns)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|n| resolve(n).err().map(|why| format!("{n} ({why})")))
            .collect();
        if strangers.is_empty() && unresolved.is_empty() {
            out.push(finding(
                Severity::Ok,
                "dns.zone",
                &rzone,
                format!(
                    "the reverse zone's SOA and NS name the forward zone's name servers ({})",
                    join_names(&servers)
                ),
            ));
            continue;
        }
        let mut what = String::new();
        if !strangers.is_empty() {
            what.push_str(&format!(
                "the reverse zone {rzone} names {}, but the forward zone {fzone} is served by {}",
                strangers.join(", "),
                join_names(&servers)
            ));
        }
        if !unresolved.is_empty() {
            if !what.is_empty() {
                what.push_str("; ");
            }
            what.push_str(&format!(
                "these names do not resolve: {}",
                unresolved.join(", ")
            ));
        }
        let wrong_domain = strangers.iter().any(|s| {
            let n = s.rsplit(' ').next().unwrap_or_default();
            !n.ends_with(&format!(".{fzone}")) && n != fzone
        });
        if wrong_domain {
            what.push_str(" (the SOA/NS are in another domain: copied from another zone?)");
        }
        out.push(
            finding(Severity::Error, "dns.zone", &rzone, what)
                .why(WHY_ZONE_NS)
                .fix(format!(
                    "in the reverse zone {rzone}, make the SOA's primary and the NS records name {}, raise the serial and reload",
                    join_names(&servers)
                )),
        );
    }
    out
}

fn join_names(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn name_resolves(req: &Request, server: SocketAddr, name: &str) -> Result<(), String> {
    let mut reasons = Vec::new();
    for t in [RecordType::A, RecordType::Aaaa] {
        match ask(req, server, name, t) {
            Ok(r) if !addresses(&r).is_empty() => return Ok(()),
            Ok(r) if r.rcode == Rcode::NoError => reasons.push(format!("no {t} record")),
            Ok(r) => reasons.push(r.rcode.to_string()),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    reasons.dedup();
    Err(reasons.join(", "))
}

/// Each address with what the description says it is, e.g. `192.168.126.11 (the ingress VIP)`.
fn describe_all(req: &Request, addresses: &[IpAddr]) -> Vec<String> {
    addresses
        .iter()
        .map(|ip| match req.describe_ip(*ip) {
            Some(role) => format!("{ip} ({role})"),
            None => ip.to_string(),
        })
        .collect()
}
