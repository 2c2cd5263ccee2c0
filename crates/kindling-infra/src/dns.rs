//! DNS for BIND: the forward zone of the cluster domain, reverse zones of the machine network,
//! and a `named.conf` fragment with their zone stanzas.
//!
//! What a hand-written UPI runbook got wrong, and how it cannot happen here:
//! - every zone (forward and reverse) has the same SOA and NS records, naming the forward
//!   zone's name servers `ns1`, `ns2`… of the cluster domain, and the forward zone holds their
//!   A records, so BIND loads it and HAProxy's hosts resolve;
//! - ingress is `*.apps`, from [`ClusterDescription::apps_domain`], never typed by hand;
//! - reverse zones are cut on octet boundaries: a /23 gives two /24 zones, a /16 one zone; a
//!   network smaller than a /24 gets its enclosing /24 (classless RFC 2317 delegation is not
//!   written), and the zone file says so;
//! - the SOA serial (YYYYMMDDNN) increases whenever a zone's content changes, and stays when it
//!   does not, so secondaries notice changes and only changes.
//!
//! IPv6 machine networks are refused by [`crate::check`] (no ip6.arpa zones yet).
//!
//! The zones are data ([`Zone`], [`Record`]) before they are text, so that `kindling doctor`
//! can ask a running name server for exactly the records written here.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use kindling_config::ClusterDescription;

use crate::site::{self, InfraError};

/// The directory of the zone files and the fragment, relative to the asset directory.
pub const NAMED_DIR: &str = "infra/named";
/// The `named.conf` fragment, relative to the asset directory.
pub const NAMED_CONF: &str = "infra/named/named.conf";

/// TTL of every record: short, since addresses move during an install (bootstrap removal).
const TTL: u32 = 300;

/// A name server of the zones: `ns<N>.<cluster domain>` for the N-th of `network.dnsServers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// The fully qualified name, without the trailing dot.
    pub host: String,
    pub address: IpAddr,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// An IPv4 address (IPv6 name servers get [`RecordData::Aaaa`]).
    A(Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    /// A name server (fully qualified, no trailing dot).
    Ns(String),
    /// The name of an address (fully qualified, no trailing dot).
    Ptr(String),
}

/// One record, besides the SOA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The fully qualified owner name, without the trailing dot (`*.apps.<cluster domain>` for
    /// the ingress wildcard).
    pub owner: String,
    pub data: RecordData,
    /// Why the record is there, written next to it.
    pub comment: Option<&'static str>,
}

/// A zone: its name, records, and what the zone file should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone's name, without the trailing dot.
    pub name: String,
    /// The part of the machine network a reverse zone covers; `None` for the forward zone.
    pub network: Option<Ipv4Net>,
    pub records: Vec<Record>,
    /// Written at the top of the zone file.
    pub note: Option<String>,
}

impl Zone {
    /// The zone file's name, relative to named's `directory` and to [`NAMED_DIR`].
    pub fn file_name(&self) -> String {
        format!("{}.zone", self.name)
    }

    /// The zone file's path relative to the asset directory.
    pub fn path(&self) -> String {
        format!("{NAMED_DIR}/{}", self.file_name())
    }
}

/// The zones' name servers, from `network.dnsServers`, in order.
pub fn name_servers(d: &ClusterDescription) -> Vec<NameServer> {
    let domain = d.cluster_domain();
    d.inventory
        .network
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, address)| NameServer {
            host: format!("ns{}.{domain}", i + 1),
            address: *address,
        })
        .collect()
}

/// Machines named like a name the forward zone already uses for something else.
pub(crate) fn name_clashes(d: &ClusterDescription) -> Vec<InfraError> {
    let mut taken: Vec<(String, String)> = vec![
        (d.api_host(), format!("the API name {}", d.api_host())),
        (
            d.api_int_host(),
            format!("the internal API name {}", d.api_int_host()),
        ),
    ];
    for ns in name_servers(d) {
        taken.push((ns.host.clone(), format!("the name server {}", ns.host)));
    }
    let mut problems = Vec::new();
    for (index, m) in d.inventory.machines.iter().enumerate() {
        let fqdn = d.fqdn(m);
        if let Some((_, what)) = taken.iter().find(|(name, _)| *name == fqdn) {
            problems.push(InfraError::NameClash {
                index,
                name: m.name.clone(),
                what: what.clone(),
            });
        }
    }
    problems
}

fn address(owner: String, ip: IpAddr, comment: Option<&'static str>) -> Record {
    Record {
        owner,
        data: match ip {
            IpAddr::V4(ip) => RecordData::A(ip),
            IpAddr::V6(ip) => RecordData::Aaaa(ip),
        },
        comment,
    }
}

fn ns_records(zone: &str, servers: &[NameServer]) -> Vec<Record> {
    servers
        .iter()
        .map(|ns| Record {
            owner: zone.to_string(),
            data: RecordData::Ns(ns.host.clone()),
            comment: None,
        })
        .collect()
}

/// The forward zone of `<cluster>.<baseDomain>`: NS and the name servers' addresses, `api`,
/// `api-int`, `*.apps` and every machine.
pub fn forward_zone(d: &ClusterDescription) -> Zone {
    let name = d.cluster_domain();
    let servers = name_servers(d);
    let lb = &d.inventory.load_balancer;
    let mut records = ns_records(&name, &servers);
    for ns in &servers {
        records.push(address(
            ns.host.clone(),
            ns.address,
            Some("name server of these zones"),
        ));
    }
    records.push(address(
        d.api_host(),
        lb.api_vip,
        Some("the API, for clients outside the cluster (load balancer: 6443)"),
    ));
    records.push(address(
        d.api_int_host(),
        lb.api_int_vip,
        Some("the API and machine config server, for the machines (6443, 22623)"),
    ));
    records.push(address(
        format!("*.{}", d.apps_domain()),
        lb.ingress_vip,
        Some("every route of the ingress (80, 443)"),
    ));
    for m in &d.inventory.machines {
        records.push(address(d.fqdn(m), m.ip, None));
    }
    Zone {
        name,
        network: None,
        records,
        note: None,
    }
}

/// The reverse zones that cover `network`, cut on octet boundaries: the prefix rounded up to
/// a multiple of 8 (a /23 gives two /24s, a /16 one /16, a /12 sixteen /16s); a network smaller
/// than a /24 gets its enclosing /24.
pub fn reverse_zone_networks(network: Ipv4Net) -> Vec<Ipv4Net> {
    let network = network.trunc();
    let prefix = network.prefix_len();
    let zone_prefix = match prefix {
        p if p > 24 => 24,
        p => p.div_ceil(8) * 8,
    };
    if zone_prefix <= prefix {
        return vec![
            Ipv4Net::new(network.addr(), zone_prefix)
                .map(|n| n.trunc())
                .unwrap_or(network),
        ];
    }
    network
        .subnets(zone_prefix)
        .map(|subnets| subnets.collect())
        .unwrap_or_else(|_| vec![network])
}

/// `<octets reversed>.in-addr.arpa` of a network on an octet boundary.
pub fn reverse_zone_name(network: Ipv4Net) -> String {
    let octets = network.addr().octets();
    let count = usize::from(network.prefix_len() / 8);
    let mut name = String::new();
    for octet in octets[..count].iter().rev() {
        let _ = write!(name, "{octet}.");
    }
    name.push_str("in-addr.arpa");
    name
}

/// `d.c.b.a.in-addr.arpa` for `a.b.c.d`.
pub fn ptr_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The reverse zones of the machine network, with a PTR for every machine and for the `api`
/// and `api-int` VIPs.
pub fn reverse_zones(d: &ClusterDescription) -> Vec<Zone> {
    let servers = name_servers(d);
    let lb = &d.inventory.load_balancer;
    let mut named: Vec<(IpAddr, String)> = d
        .inventory
        .machines
        .iter()
        .map(|m| (m.ip, d.fqdn(m)))
        .collect();
    named.push((lb.api_vip, d.api_host()));
    named.push((lb.api_int_vip, d.api_int_host()));

    let mut seen = BTreeSet::new();
    let mut zones = Vec::new();
    for machine_network in site::machine_networks(d) {
        for network in reverse_zone_networks(machine_network) {
            if !seen.insert(network) {
                continue;
            }
            let name = reverse_zone_name(network);
            let mut records = ns_records(&name, &servers);
            for (ip, host) in &named {
                if let IpAddr::V4(ip) = ip
                    && network.contains(ip)
                {
                    records.push(Record {
                        owner: ptr_name(*ip),
                        data: RecordData::Ptr(host.clone()),
                        comment: None,
                    });
                }
            }
            let note = (machine_network.prefix_len() > 24).then(|| {
                format!(
                    "The machine network {machine_network} is smaller than a /24: this zone covers its enclosing {network}, since reverse zones are cut on octet boundaries (no RFC 2317 classless delegation is written)."
                )
            });
            zones.push(Zone {
                name,
                network: Some(network),
                records,
                note,
            });
        }
    }
    zones
}

/// The forward zone, then the reverse zones.
pub fn zones(d: &ClusterDescription) -> Vec<Zone> {
    let mut zones = vec![forward_zone(d)];
    zones.extend(reverse_zones(d));
    zones
}

/// An owner name as written in the zone file: `@` for the apex, relative inside the zone,
/// absolute (with the dot) outside it.
fn relative(owner: &str, zone: &str) -> String {
    if owner == zone {
        return "@".into();
    }
    match owner.strip_suffix(zone).and_then(|s| s.strip_suffix('.')) {
        Some(inside) => inside.to_string(),
        None => format!("{owner}."),
    }
}

/// The zone file, with `serial` in its SOA.
pub fn render_zone(
    zone: &Zone,
    servers: &[NameServer],
    cluster_domain: &str,
    serial: u32,
) -> String {
    let primary = servers
        .first()
        .map_or_else(|| format!("ns1.{cluster_domain}"), |ns| ns.host.clone());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; Zone {}, written by `kindling create infra` from install-config.yaml and inventory.yaml.",
        zone.name
    );
    let _ = writeln!(
        out,
        "; kindling keeps your edits to this file (delete it to get kindling's version back), and"
    );
    let _ = writeln!(
        out,
        "; increases the serial whenever its own content changes."
    );
    if let Some(note) = &zone.note {
        let _ = writeln!(out, ";\n; {note}");
    }
    let _ = writeln!(out, "$ORIGIN {}.", zone.name);
    let _ = writeln!(out, "$TTL {TTL}");
    let _ = writeln!(
        out,
        "@ IN SOA {primary}. hostmaster.{cluster_domain}. (\n        {serial:<10} ; serial\n        3600       ; refresh\n        600        ; retry\n        1209600    ; expire\n        {TTL:<10} ; negative answers\n        )"
    );
    let owners: Vec<String> = zone
        .records
        .iter()
        .map(|r| relative(&r.owner, &zone.name))
        .collect();
    let width = owners.iter().map(String::len).max().unwrap_or(1);
    for (record, owner) in zone.records.iter().zip(&owners) {
        let (kind, value) = match &record.data {
            RecordData::A(ip) => ("A", ip.to_string()),
            RecordData::Aaaa(ip) => ("AAAA", ip.to_string()),
            RecordData::Ns(host) => ("NS", format!("{host}.")),
            RecordData::Ptr(host) => ("PTR", format!("{host}.")),
        };
        let _ = write!(out, "{owner:<width$} IN {kind:<4} {value}");
        if let Some(comment) = record.comment {
            let _ = write!(out, " ; {comment}");
        }
        out.push('\n');
    }
    out
}

/// The serial of a zone file about to be written over `previous` (the file on disk, if any):
/// the previous serial when `render` with it gives the previous file byte for byte, else the
/// next serial of the form YYYYMMDDNN for `today`, and always more than the previous one.
pub fn next_serial(
    previous: Option<&str>,
    today: time::Date,
    render: impl Fn(u32) -> String,
) -> u32 {
    let base = (today.year().max(0) as u32) * 1_000_000
        + u32::from(u8::from(today.month())) * 10_000
        + u32::from(today.day()) * 100;
    let Some(previous) = previous else {
        return base;
    };
    let Some(old) = previous_serial(previous) else {
        return base;
    };
    if render(old) == previous {
        return old;
    }
    base.max(old.saturating_add(1))
}

/// The serial of a zone file kindling wrote: the number on the line that ends `; serial`.
pub fn previous_serial(zone_file: &str) -> Option<u32> {
    zone_file
        .lines()
        .find(|l| l.trim_end().ends_with("; serial"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The `named.conf` fragment: one `zone` stanza per zone, with file names relative to named's
/// `directory`.
pub fn named_conf(d: &ClusterDescription, zones: &[Zone]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// The zones of the {} cluster, written by `kindling create infra`.\n\
         // Include this file from named.conf (include \"/etc/bind/kindling.conf\";) on every name\n\
         // server in inventory.yaml network.dnsServers, and copy the *.zone files next to it into\n\
         // named's `directory` (Debian: /var/cache/bind, RHEL: /var/named). Every zone is served\n\
         // as a primary: copy the same files to each name server, or make the others secondaries.",
        d.cluster_domain()
    );
    for zone in zones {
        let what = match zone.network {
            None => "forward zone".to_string(),
            Some(net) => format!("reverse zone of {net}"),
        };
        let _ = writeln!(
            out,
            "\n// {what}\nzone \"{}\" IN {{\n    type master;\n    file \"{}\";\n    allow-update {{ none; }};\n}};",
            zone.name,
            zone.file_name()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{demo, demo_with, upi};

    fn nets(cidr: &str) -> Vec<String> {
        reverse_zone_networks(cidr.parse().unwrap())
            .into_iter()
            .map(reverse_zone_name)
            .collect()
    }

    #[test]
    fn reverse_zones_are_cut_on_octet_boundaries() {
        assert_eq!(nets("192.168.126.0/24"), ["126.168.192.in-addr.arpa"]);
        assert_eq!(
            nets("192.168.126.0/23"),
            ["126.168.192.in-addr.arpa", "127.168.192.in-addr.arpa"]
        );
        assert_eq!(nets("172.16.0.0/16"), ["16.172.in-addr.arpa"]);
        assert_eq!(nets("192.168.126.64/26"), ["126.168.192.in-addr.arpa"]);
        assert_eq!(nets("10.0.0.0/8"), ["10.in-addr.arpa"]);
        assert_eq!(nets("172.16.0.0/12").len(), 16);
        assert_eq!(nets("172.16.0.0/12")[15], "31.172.in-addr.arpa");
    }

    fn zone_text(d: &ClusterDescription, name: &str) -> String {
        let zone = zones(d).into_iter().find(|z| z.name == name).unwrap();
        render_zone(&zone, &name_servers(d), &d.cluster_domain(), 2026010100)
    }

    #[test]
    fn the_forward_zone_has_its_name_servers_addresses_api_api_int_and_apps() {
        let d = upi();
        let text = zone_text(&d, "ocp45.example.localdomain");
        for line in [
            "$ORIGIN ocp45.example.localdomain.",
            "@ IN SOA ns1.ocp45.example.localdomain. hostmaster.ocp45.example.localdomain. (",
            "@       IN NS   ns1.ocp45.example.localdomain.",
            "ns1     IN A    172.16.0.102 ; name server of these zones",
            "api     IN A    172.16.0.111",
            "api-int IN A    172.16.0.110",
            "*.apps  IN A    172.16.0.111",
            "bs      IN A    172.16.0.11",
            "i1      IN A    172.16.0.41",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("*.app "), "{text}");
    }

    #[test]
    fn reverse_zones_share_the_forward_zones_soa_and_name_servers_and_name_every_machine() {
        let d = upi();
        let text = zone_text(&d, "0.16.172.in-addr.arpa");
        for line in [
            "@ IN SOA ns1.ocp45.example.localdomain. hostmaster.ocp45.example.localdomain. (",
            "@   IN NS   ns1.ocp45.example.localdomain.",
            "11  IN PTR  bs.ocp45.example.localdomain.",
            "41  IN PTR  i1.ocp45.example.localdomain.",
            "111 IN PTR  api.ocp45.example.localdomain.",
            "110 IN PTR  api-int.ocp45.example.localdomain.",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_sixteen_bit_network_gets_one_zone_with_two_octet_owners() {
        let d = demo_with(
            |ic| ic.replace("192.168.126.0/24", "192.168.0.0/16"),
            |inv| inv.replace("192.168.126.122", "192.168.7.122"),
        );
        let reverse = reverse_zones(&d);
        assert_eq!(reverse.len(), 1);
        assert_eq!(reverse[0].name, "168.192.in-addr.arpa");
        let text = zone_text(&d, "168.192.in-addr.arpa");
        assert!(
            text.contains("122.7   IN PTR  worker2.demo.example.localdomain."),
            "{text}"
        );
        assert!(
            text.contains("110.126 IN PTR  master0.demo.example.localdomain."),
            "{text}"
        );
    }

    #[test]
    fn a_network_smaller_than_a_slash_24_gets_its_enclosing_zone_and_says_so() {
        let d = demo_with(
            |ic| ic.replace("192.168.126.0/24", "192.168.126.0/25"),
            |inv| inv.to_string(),
        );
        let reverse = reverse_zones(&d);
        assert_eq!(reverse.len(), 1);
        assert_eq!(
            reverse[0].network,
            Some("192.168.126.0/24".parse().unwrap())
        );
        let text = zone_text(&d, "126.168.192.in-addr.arpa");
        assert!(
            text.contains("192.168.126.0/25 is smaller than a /24"),
            "{text}"
        );
    }

    #[test]
    fn a_slash_23_gives_two_zones_each_with_its_own_machines() {
        let d = demo_with(
            |ic| ic.replace("192.168.126.0/24", "192.168.126.0/23"),
            |inv| inv.replace("192.168.126.122", "192.168.127.122"),
        );
        let reverse = reverse_zones(&d);
        let names: Vec<_> = reverse.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(
            names,
            ["126.168.192.in-addr.arpa", "127.168.192.in-addr.arpa"]
        );
        let upper = zone_text(&d, "127.168.192.in-addr.arpa");
        assert!(upper.contains("122 IN PTR  worker2."), "{upper}");
        assert!(!upper.contains("master0"), "{upper}");
    }

    fn date(day: u8) -> time::Date {
        time::Date::from_calendar_date(2026, time::Month::November, day).unwrap()
    }

    #[test]
    fn the_serial_stays_when_nothing_changed_and_increases_when_something_did() {
        let d = demo();
        let zone = forward_zone(&d);
        let servers = name_servers(&d);
        let render = |z: &Zone| {
            let (z, servers) = (z.clone(), servers.clone());
            move |serial| render_zone(&z, &servers, "demo.example.localdomain", serial)
        };
        let day = date(26);
        let first = next_serial(None, day, render(&zone));
        assert_eq!(first, 2026112600);
        let written = render(&zone)(first);
        // Same content, later day: the serial stays.
        let next_day = date(27);
        assert_eq!(next_serial(Some(&written), next_day, render(&zone)), first);
        // Changed content, same day: NN counts up.
        let mut changed = zone.clone();
        changed.records.pop();
        assert_eq!(
            next_serial(Some(&written), day, render(&changed)),
            2026112601
        );
        // Changed content, a later day: that day's first serial.
        assert_eq!(
            next_serial(Some(&written), next_day, render(&changed)),
            2026112700
        );
        // A serial ahead of the date (set by hand) still increases.
        let ahead = render(&zone)(2030010105);
        assert_eq!(next_serial(Some(&ahead), day, render(&changed)), 2030010106);
    }

    #[test]
    fn a_machine_named_like_a_name_server_or_the_api_is_refused() {
        let d = demo_with(
            |ic| ic.to_string(),
            |inv| inv.replace("name: worker1", "name: ns1"),
        );
        let problems = name_clashes(&d);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("the name server ns1.demo.example.localdomain")
        );
        let d = demo_with(
            |ic| ic.to_string(),
            |inv| inv.replace("name: worker1", "name: api-int"),
        );
        assert!(
            name_clashes(&d)[0]
                .to_string()
                .contains("internal API name")
        );
    }

    #[test]
    fn the_fragment_names_every_zone_file() {
        let d = upi();
        let conf = named_conf(&d, &zones(&d));
        assert!(conf.contains("zone \"ocp45.example.localdomain\" IN {\n    type master;\n    file \"ocp45.example.localdomain.zone\";"), "{conf}");
        assert!(
            conf.contains("zone \"0.16.172.in-addr.arpa\" IN {"),
            "{conf}"
        );
    }
}
