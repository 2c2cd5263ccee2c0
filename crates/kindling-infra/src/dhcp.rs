//! DHCP with PXE chain-loading, in three dialects: dnsmasq, ISC dhcpd and Kea.
//!
//! Every dialect says the same, which [`Dhcp`] holds: each MAC of each machine gets its
//! machine's fixed address and host name (and nobody else gets an address); the router, name
//! servers and domain come with it; and network boot goes in two steps, since firmware speaks
//! TFTP and iPXE speaks HTTP:
//! - PXE firmware gets an iPXE binary from the provisioning host over TFTP: BIOS (client
//!   architecture 0) `undionly.kpxe`, x86-64 UEFI (7 or 9) `ipxe.efi` — a boot program, not a
//!   config file;
//! - iPXE (user class `iPXE`) gets `<serverURL>/boot.ipxe` over HTTP.
//!
//! Text that comes from the user is already checked: names are DNS labels (kindling-config),
//! and the server URL holds no quote, comma, `#` or `$` ([`crate::site::server_url`]).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use kindling_config::{ClusterDescription, MacAddr};

use crate::site::{self, InfraError};

/// `infra/dnsmasq.conf`, relative to the asset directory.
pub const DNSMASQ_CONF: &str = "infra/dnsmasq.conf";
/// `infra/dhcpd.conf`.
pub const DHCPD_CONF: &str = "infra/dhcpd.conf";
/// `infra/kea-dhcp4.json`.
pub const KEA_DHCP4: &str = "infra/kea-dhcp4.json";

/// What BIOS PXE firmware loads over TFTP (Debian: /usr/lib/ipxe/undionly.kpxe).
pub const BIOS_BOOT_FILE: &str = "undionly.kpxe";
/// What x86-64 UEFI PXE firmware loads over TFTP (Debian: /usr/lib/ipxe/ipxe.efi).
pub const UEFI_BOOT_FILE: &str = "ipxe.efi";
/// Where the TFTP server keeps them.
pub const TFTP_ROOT: &str = "/var/lib/tftpboot";
/// Lease time, seconds: short enough that a fixed address moved in the inventory reaches the
/// machine soon.
const LEASE_SECONDS: u32 = 3600;

/// One machine's NICs and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub macs: Vec<MacAddr>,
    pub address: Ipv4Addr,
}

/// One machine network and its machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Net,
    /// `network.gateway`, when it lies in this network.
    pub router: Option<Ipv4Addr>,
    pub hosts: Vec<Host>,
}

/// What every dialect says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    pub domain: String,
    /// The IPv4 ones of `network.dnsServers` (DHCPv4 cannot carry the others).
    pub dns_servers: Vec<Ipv4Addr>,
    /// The IPv4 addresses of `network.ntpServers` (names cannot go into DHCP).
    pub ntp_servers: Vec<Ipv4Addr>,
    /// The TFTP server: the provisioning host.
    pub next_server: Ipv4Addr,
    /// What iPXE chains to: `<serverURL>/boot.ipxe`.
    pub ipxe_script: String,
    pub subnets: Vec<Subnet>,
}

/// Gathers what the configs say.
pub fn plan(d: &ClusterDescription) -> Result<Dhcp, InfraError> {
    let network = &d.inventory.network;
    let v4 = |ip: &IpAddr| match ip {
        IpAddr::V4(ip) => Some(*ip),
        IpAddr::V6(_) => None,
    };
    let subnets = site::machine_networks(d)
        .into_iter()
        .map(|net| Subnet {
            network: net,
            router: network
                .gateway
                .as_ref()
                .and_then(v4)
                .filter(|g| net.contains(g)),
            hosts: d
                .inventory
                .machines
                .iter()
                .filter_map(|m| {
                    let address = v4(&m.ip).filter(|ip| net.contains(ip))?;
                    Some(Host {
                        name: m.name.clone(),
                        macs: m.macs.clone(),
                        address,
                    })
                })
                .collect(),
        })
        .collect();
    Ok(Dhcp {
        domain: d.cluster_domain(),
        dns_servers: network.dns_servers.iter().filter_map(v4).collect(),
        ntp_servers: network
            .ntp_servers
            .iter()
            .filter_map(|s| s.parse::<Ipv4Addr>().ok())
            .collect(),
        next_server: site::provisioning_host(d)?,
        ipxe_script: format!("{}/boot.ipxe", site::server_url(d)?),
        subnets,
    })
}

fn join(addresses: &[Ipv4Addr], separator: &str) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// `dnsmasq.conf`: DHCP and TFTP only (`port=0`: BIND serves DNS). Meant for the provisioning
/// host, whose TFTP server it then is.
pub fn dnsmasq(plan: &Dhcp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# dnsmasq for the {domain} cluster, written by `kindling create infra`: DHCP and TFTP\n\
         # only. Run it on the provisioning host ({next}), which is the TFTP server it names: put\n\
         # {BIOS_BOOT_FILE} and {UEFI_BOOT_FILE} (Debian package ipxe: /usr/lib/ipxe/) in {TFTP_ROOT}.\n\
         \n# No DNS: BIND serves the cluster's zones.\nport=0\nlog-dhcp\ndhcp-authoritative",
        domain = plan.domain,
        next = plan.next_server,
    );
    let _ = writeln!(
        out,
        "\n# Addresses for the machines below only (static: no pool for strangers)."
    );
    for (i, subnet) in plan.subnets.iter().enumerate() {
        let _ = writeln!(
            out,
            "dhcp-range=set:net{i},{},static,{},{LEASE_SECONDS}",
            subnet.network.network(),
            subnet.network.netmask()
        );
        if let Some(router) = subnet.router {
            let _ = writeln!(out, "dhcp-option=tag:net{i},option:router,{router}");
        }
    }
    if !plan.dns_servers.is_empty() {
        let _ = writeln!(
            out,
            "dhcp-option=option:dns-server,{}",
            join(&plan.dns_servers, ",")
        );
    }
    let _ = writeln!(out, "dhcp-option=option:domain-name,{}", plan.domain);
    if !plan.ntp_servers.is_empty() {
        let _ = writeln!(
            out,
            "dhcp-option=option:ntp-server,{}",
            join(&plan.ntp_servers, ",")
        );
    }
    let _ = writeln!(
        out,
        "\n# Network boot. Firmware gets an iPXE binary over TFTP, by client architecture\n\
         # (option 93: 0 BIOS, 7 and 9 x86-64 UEFI); iPXE (user class iPXE) gets the boot script\n\
         # over HTTP.\n\
         enable-tftp\ntftp-root={TFTP_ROOT}\n\
         dhcp-userclass=set:ipxe,iPXE\n\
         dhcp-match=set:bios,option:client-arch,0\n\
         dhcp-match=set:efi64,option:client-arch,7\n\
         dhcp-match=set:efi64,option:client-arch,9\n\
         dhcp-boot=tag:!ipxe,tag:bios,{BIOS_BOOT_FILE},,{next}\n\
         dhcp-boot=tag:!ipxe,tag:efi64,{UEFI_BOOT_FILE},,{next}\n\
         dhcp-boot=tag:ipxe,{script}",
        next = plan.next_server,
        script = plan.ipxe_script,
    );
    let _ = writeln!(
        out,
        "\n# Every machine: its MACs (one lease at a time), fixed address and host name."
    );
    for host in plan.subnets.iter().flat_map(|s| &s.hosts) {
        let macs: Vec<String> = host.macs.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "dhcp-host={},{},{}",
            macs.join(","),
            host.address,
            host.name
        );
    }
    out
}

/// `dhcpd.conf` for ISC dhcpd.
pub fn dhcpd(plan: &Dhcp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ISC dhcpd for the {domain} cluster, written by `kindling create infra`.\n\
         # Only the machines below get addresses (no range). The TFTP server is the provisioning\n\
         # host ({next}), with {BIOS_BOOT_FILE} and {UEFI_BOOT_FILE} in its TFTP root.\n\
         \nauthoritative;\ndefault-lease-time {LEASE_SECONDS};\nmax-lease-time {LEASE_SECONDS};\n\
         option domain-name \"{domain}\";",
        domain = plan.domain,
        next = plan.next_server,
    );
    if !plan.dns_servers.is_empty() {
        let _ = writeln!(
            out,
            "option domain-name-servers {};",
            join(&plan.dns_servers, ", ")
        );
    }
    if !plan.ntp_servers.is_empty() {
        let _ = writeln!(out, "option ntp-servers {};", join(&plan.ntp_servers, ", "));
    }
    let _ = writeln!(
        out,
        "# The PXE client architecture (RFC 4578): 0 BIOS, 7 and 9 x86-64 UEFI.\n\
         option client-arch code 93 = unsigned integer 16;"
    );
    for subnet in &plan.subnets {
        let _ = writeln!(
            out,
            "\nsubnet {} netmask {} {{",
            subnet.network.network(),
            subnet.network.netmask()
        );
        if let Some(router) = subnet.router {
            let _ = writeln!(out, "    option routers {router};");
        }
        let _ = writeln!(
            out,
            "    next-server {next};\n\
             \x20   # iPXE gets the boot script over HTTP; firmware gets iPXE over TFTP.\n\
             \x20   if exists user-class and option user-class = \"iPXE\" {{\n\
             \x20       filename \"{script}\";\n\
             \x20   }} elsif option client-arch = 00:07 or option client-arch = 00:09 {{\n\
             \x20       filename \"{UEFI_BOOT_FILE}\";\n\
             \x20   }} elsif option client-arch = 00:00 {{\n\
             \x20       filename \"{BIOS_BOOT_FILE}\";\n\
             \x20   }}\n}}",
            next = plan.next_server,
            script = plan.ipxe_script,
        );
    }
    let _ = writeln!(
        out,
        "\n# Every NIC of every machine: its fixed address and host name."
    );
    for host in plan.subnets.iter().flat_map(|s| &s.hosts) {
        for mac in &host.macs {
            let _ = writeln!(
                out,
                "host {name}-{mac} {{\n    hardware ethernet {colon};\n    fixed-address {ip};\n    option host-name \"{name}\";\n}}",
                name = host.name,
                mac = mac.hexhyp(),
                colon = mac,
                ip = host.address,
            );
        }
    }
    out
}

/// `kea-dhcp4.json` for Kea.
pub fn kea(plan: &Dhcp) -> String {
    use serde_json::json;
    let next = plan.next_server.to_string();
    let mut options = vec![json!({"name": "domain-name", "data": plan.domain})];
    if !plan.dns_servers.is_empty() {
        options.push(json!({"name": "domain-name-servers", "data": join(&plan.dns_servers, ", ")}));
    }
    if !plan.ntp_servers.is_empty() {
        options.push(json!({"name": "ntp-servers", "data": join(&plan.ntp_servers, ", ")}));
    }
    let not_ipxe = "not (substring(option[77].hex, 0, 4) == 'iPXE')";
    let subnets: Vec<serde_json::Value> = plan
        .subnets
        .iter()
        .enumerate()
        .map(|(i, subnet)| {
            let mut options = Vec::new();
            if let Some(router) = subnet.router {
                options.push(json!({"name": "routers", "data": router.to_string()}));
            }
            let reservations: Vec<serde_json::Value> = subnet
                .hosts
                .iter()
                .flat_map(|h| {
                    h.macs.iter().map(move |mac| {
                        json!({
                            "hw-address": mac.to_string(),
                            "ip-address": h.address.to_string(),
                            "hostname": h.name,
                        })
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "subnet": subnet.network.to_string(),
                "next-server": next,
                "option-data": options,
                "reservations": reservations,
            })
        })
        .collect();
    let config = json!({
        "Dhcp4": {
            "comment": format!("Kea DHCPv4 for the {} cluster, written by `kindling create infra`. Only the reserved machines get addresses (no pools). Firmware gets iPXE over TFTP from the provisioning host ({}); iPXE gets the boot script over HTTP.", plan.domain, next),
            "interfaces-config": {"interfaces": ["*"]},
            "lease-database": {"type": "memfile", "lfc-interval": LEASE_SECONDS},
            "valid-lifetime": LEASE_SECONDS,
            "authoritative": true,
            "option-data": options,
            // A machine with two NICs has one address for both: one reservation per MAC.
            "ip-reservations-unique": false,
            "client-classes": [
                {
                    "name": "ipxe",
                    "test": "substring(option[77].hex, 0, 4) == 'iPXE'",
                    "boot-file-name": plan.ipxe_script,
                },
                {
                    "name": "uefi-x86-64",
                    "test": format!("{not_ipxe} and (option[93].hex == 0x0007 or option[93].hex == 0x0009)"),
                    "next-server": next,
                    "boot-file-name": UEFI_BOOT_FILE,
                },
                {
                    "name": "bios",
                    "test": format!("{not_ipxe} and option[93].hex == 0x0000"),
                    "next-server": next,
                    "boot-file-name": BIOS_BOOT_FILE,
                },
            ],
            "subnet4": subnets,
        }
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{demo, upi};

    #[test]
    fn every_mac_gets_its_machines_fixed_address_in_every_dialect() {
        let p = plan(&demo()).unwrap();
        let (dnsmasq, dhcpd, kea) = (dnsmasq(&p), dhcpd(&p), kea(&p));
        assert!(
            dnsmasq
                .contains("dhcp-host=52:54:00:7e:01:22,52:54:00:7e:02:22,192.168.126.122,worker2"),
            "{dnsmasq}"
        );
        assert!(
            dhcpd.contains("host worker2-52-54-00-7e-02-22 {\n    hardware ethernet 52:54:00:7e:02:22;\n    fixed-address 192.168.126.122;\n    option host-name \"worker2\";"),
            "{dhcpd}"
        );
        let kea: serde_json::Value = serde_json::from_str(&kea).unwrap();
        let reservations = kea["Dhcp4"]["subnet4"][0]["reservations"]
            .as_array()
            .unwrap();
        assert_eq!(reservations.len(), 8);
        assert_eq!(reservations[7]["hw-address"], "52:54:00:7e:02:22");
        assert_eq!(reservations[7]["ip-address"], "192.168.126.122");
    }

    #[test]
    fn bios_gets_undionly_uefi_gets_ipxe_efi_and_ipxe_gets_the_script() {
        let p = plan(&upi()).unwrap();
        let dnsmasq = dnsmasq(&p);
        for line in [
            "port=0",
            "dhcp-match=set:bios,option:client-arch,0",
            "dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe,,172.16.0.101",
            "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,172.16.0.101",
            "dhcp-boot=tag:ipxe,http://172.16.0.101:8080/boot.ipxe",
            "dhcp-option=tag:net0,option:router,172.16.0.1",
            "dhcp-option=option:dns-server,172.16.0.102",
            "dhcp-option=option:domain-name,ocp45.example.localdomain",
        ] {
            assert!(
                dnsmasq.lines().any(|l| l == line),
                "no {line:?} in\n{dnsmasq}"
            );
        }
        let dhcpd = dhcpd(&p);
        assert!(
            dhcpd.contains("filename \"http://172.16.0.101:8080/boot.ipxe\";"),
            "{dhcpd}"
        );
        assert!(dhcpd.contains("next-server 172.16.0.101;"), "{dhcpd}");
        assert!(dhcpd.contains("option routers 172.16.0.1;"), "{dhcpd}");
        let kea: serde_json::Value = serde_json::from_str(&kea(&p)).unwrap();
        let classes = &kea["Dhcp4"]["client-classes"];
        assert_eq!(
            classes[0]["boot-file-name"],
            "http://172.16.0.101:8080/boot.ipxe"
        );
        assert_eq!(classes[1]["boot-file-name"], "ipxe.efi");
        assert_eq!(classes[2]["boot-file-name"], "undionly.kpxe");
        assert_eq!(kea["Dhcp4"]["subnet4"][0]["next-server"], "172.16.0.101");
    }
}
