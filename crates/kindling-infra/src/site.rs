//! Facts about the site that several configs need, and the checks that the description can be
//! made into infrastructure configs at all. Each problem names the field and its fix.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use kindling_config::ClusterDescription;

/// A description that is valid but cannot be written as infrastructure configs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfraError {
    #[error(
        "install-config.yaml networking.machineNetwork[{index}]: {network} is IPv6 — create infra writes IPv4 zones, DHCP and load-balancer configs only (no ip6.arpa zones, no DHCPv6); use an IPv4 machine network, or write these configs by hand"
    )]
    Ipv6MachineNetwork { index: usize, network: IpNet },
    #[error(
        "inventory.yaml provisioning.serverURL: {url}: its host '{host}' is not an IPv4 address — DHCP's next-server and the load balancer's 22623 backend need the provisioning host's address, before any DNS works; write the URL with the IP, e.g. http://192.0.2.10:8080"
    )]
    ServerHostNotIp { url: String, host: String },
    #[error(
        "inventory.yaml provisioning.serverURL: {url:?} contains {character:?}, which cannot be written safely into dnsmasq, dhcpd and iPXE configs; percent-encode it"
    )]
    ServerUrlText { url: String, character: char },
    #[error(
        "inventory.yaml network.dnsServers is empty — the zones need a name server; list the address of the host that will run named (BIND)"
    )]
    NoDnsServers,
    #[error(
        "inventory.yaml machines[{index}].name: '{name}' is also {what} in the forward zone — rename the machine"
    )]
    NameClash {
        index: usize,
        name: String,
        what: String,
    },
    #[error(
        "create infra --mcs-proxy-protocol: this directory was made by openshift-install, whose machine config server reads no PROXY protocol header; leave the flag out"
    )]
    ProxyProtocolInCompanionMode,
}

/// Every reason the description cannot be made into infrastructure configs; empty means it can.
pub fn check(d: &ClusterDescription) -> Result<(), Vec<InfraError>> {
    let mut problems = Vec::new();
    for (index, network) in d.machine_networks.iter().enumerate() {
        if let IpNet::V6(_) = network {
            problems.push(InfraError::Ipv6MachineNetwork {
                index,
                network: *network,
            });
        }
    }
    if let Err(e) = server_url(d) {
        problems.push(e);
    }
    if let Err(e) = provisioning_host(d) {
        problems.push(e);
    }
    if d.inventory.network.dns_servers.is_empty() {
        problems.push(InfraError::NoDnsServers);
    }
    problems.extend(crate::dns::name_clashes(d));
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The IPv4 machine networks (the others are refused by [`check`]).
pub fn machine_networks(d: &ClusterDescription) -> Vec<Ipv4Net> {
    d.machine_networks
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n.trunc()),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// `provisioning.serverURL` without a trailing '/', checked to be safe in every config it
/// lands in (a quoted dhcpd string, a dnsmasq option list, an iPXE command line).
pub fn server_url(d: &ClusterDescription) -> Result<String, InfraError> {
    let url = d.inventory.provisioning.server_url.trim_end_matches('/');
    if let Some(character) = url.chars().find(|c| {
        !c.is_ascii_graphic() || matches!(c, '"' | '\\' | ',' | ';' | '#' | '\'' | '{' | '}' | '$')
    }) {
        return Err(InfraError::ServerUrlText {
            url: url.to_string(),
            character,
        });
    }
    Ok(url.to_string())
}

/// The provisioning host: the host of `provisioning.serverURL`, where `kindling serve` runs.
/// It is the TFTP next-server and, in kindling mode, the machine config server behind the load
/// balancer, so it must be an address.
pub fn provisioning_host(d: &ClusterDescription) -> Result<Ipv4Addr, InfraError> {
    let url = &d.inventory.provisioning.server_url;
    let host = url_host(url);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        _ => Err(InfraError::ServerHostNotIp {
            url: url.clone(),
            host: host.to_string(),
        }),
    }
}

/// The port of `provisioning.serverURL`: the one it names, else its scheme's.
pub fn server_port(d: &ClusterDescription) -> u16 {
    let url = &d.inventory.provisioning.server_url;
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let after_host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, after)| after),
        None => authority.split_once(':').map_or("", |(_, port)| port),
    };
    after_host
        .trim_start_matches(':')
        .parse()
        .unwrap_or(if scheme == "https" { 443 } else { 80 })
}

/// The host part of an absolute http(s) URL: no scheme, user, port or path; IPv6 brackets
/// removed.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_url_is_found_without_port_user_or_path() {
        assert_eq!(url_host("http://192.0.2.1:8080"), "192.0.2.1");
        assert_eq!(url_host("http://192.0.2.1/x/y"), "192.0.2.1");
        assert_eq!(url_host("https://u:p@boot.example:8080/"), "boot.example");
        assert_eq!(url_host("http://[2001:db8::1]:8080/"), "2001:db8::1");
    }

    #[test]
    fn a_named_provisioning_host_is_refused_with_the_fix() {
        let mut d = crate::tests::demo();
        d.inventory.provisioning.server_url = "http://boot.example.com:8080".into();
        let problems = check(&d).unwrap_err();
        let text = problems[0].to_string();
        assert!(
            text.contains("'boot.example.com' is not an IPv4 address"),
            "{text}"
        );
        assert!(text.contains("write the URL with the IP"), "{text}");
    }

    #[test]
    fn a_url_that_would_break_a_config_is_refused() {
        let mut d = crate::tests::demo();
        d.inventory.provisioning.server_url = "http://192.0.2.1:8080/a\"b".into();
        assert!(matches!(
            check(&d).unwrap_err()[0],
            InfraError::ServerUrlText { character: '"', .. }
        ));
    }

    #[test]
    fn an_ipv6_machine_network_is_refused_rather_than_half_written() {
        let mut d = crate::tests::demo();
        d.machine_networks.push("fd00:1::/64".parse().unwrap());
        let problems = check(&d).unwrap_err();
        assert!(
            problems[0].to_string().starts_with(
                "install-config.yaml networking.machineNetwork[1]: fd00:1::/64 is IPv6"
            ),
            "{problems:?}"
        );
    }
}
