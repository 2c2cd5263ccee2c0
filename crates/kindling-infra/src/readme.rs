//! `infra/README.md`: which file goes on which host, and the ports to open.

use std::fmt::Write as _;

use kindling_config::ClusterDescription;

use crate::site::{self, InfraError};
use crate::{ConfigMaker, dns};

/// `infra/README.md`, relative to the asset directory.
pub const README: &str = "infra/README.md";

/// The README for this description; `maker` decides what backs 22623.
pub fn render(d: &ClusterDescription, maker: ConfigMaker) -> Result<String, InfraError> {
    let lb = &d.inventory.load_balancer;
    let provisioning = site::provisioning_host(d)?;
    let servers = dns::name_servers(d);
    let ns_list = servers
        .iter()
        .map(|ns| format!("{} ({})", ns.host, ns.address))
        .collect::<Vec<_>>()
        .join(", ");
    let mcs = match maker {
        ConfigMaker::Kindling => format!(
            "the provisioning host {provisioning}, where `kindling serve` runs the machine config server"
        ),
        ConfigMaker::OpenShiftInstall => "the bootstrap machine and the masters, where openshift-install's machine config server runs (OpenShift companion mode: this directory's Ignition configs are openshift-install's)".to_string(),
    };
    let shared = if lb.api_int_vip == lb.api_vip || lb.api_int_vip == lb.ingress_vip {
        format!(
            "\nThe api-int VIP {} is also the api or ingress VIP, so `haproxy.cfg` lets only the\n\
             machine network reach 22623 on it. Better: give api-int an address of its own\n\
             (`loadBalancer.apiIntVIP` in inventory.yaml) that outside clients cannot reach.\n",
            lb.api_int_vip
        )
    } else {
        String::new()
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "# Infrastructure for the {cd} cluster\n\
\n\
Written by `kindling create infra` from install-config.yaml and inventory.yaml. Run it again\n\
after changing either. kindling keeps your edits to any file here (delete the file to get\n\
kindling's version back). kindling's tests feed each of these formats to the program that\n\
reads it; the check commands are below.\n\
\n\
## Which file goes where\n\
\n\
| file | host | how |\n\
|---|---|---|\n\
| `named/named.conf`, `named/*.zone` | every name server: {ns_list} | copy the `.zone` files into named's `directory` (Debian `/var/cache/bind`, RHEL `/var/named`), `include` `named.conf` from the main config; check with `named-checkconf -z`, then `rndc reload` |\n\
| `haproxy.cfg` | the load balancer, which holds the VIPs: api {api}, api-int {api_int}, ingress {ingress} | `/etc/haproxy/haproxy.cfg`; check with `haproxy -c -f`, then reload |\n\
| `dnsmasq.conf` | the provisioning host {provisioning}: DHCP and TFTP | use one of the three DHCP configs; `dnsmasq --test -C dnsmasq.conf` |\n\
| `dhcpd.conf` | the DHCP server (ISC dhcpd) | `dhcpd -t -cf dhcpd.conf`; TFTP then runs on the provisioning host |\n\
| `kea-dhcp4.json` | the DHCP server (Kea) | `kea-dhcp4 -t kea-dhcp4.json`; TFTP then runs on the provisioning host |\n\
| `boot.ipxe` | any web server, only if machines should not fetch `/boot.ipxe` from `kindling serve` | it chains to {server}/ipxe |\n\
\n\
The provisioning host {provisioning} runs `kindling serve` (at {server}) and a TFTP server\n\
whose root ({tftp}) holds `{bios}` (BIOS) and `{uefi}` (UEFI), e.g. from Debian's `ipxe`\n\
package (`/usr/lib/ipxe/`). DHCP hands firmware those boot programs, and iPXE the script\n\
{server}/boot.ipxe.\n\
\n\
The load balancer's 22623 (machine config server) goes to {mcs}.\n\
{shared}\n\
## Removing the bootstrap machine\n\
\n\
When `kindling wait-for bootstrap-complete` says the bootstrap machine may go, run\n\
`kindling create infra --phase bootstrap-removed`, copy the new `haproxy.cfg` to the load\n\
balancer and reload HAProxy. The bootstrap machine is then in no backend.\n\
\n\
## Firewall\n\
\n\
**22623 (the machine config server) must not be reachable from outside the machine network**:\n\
the machine configs it serves are for the machines. `haproxy.cfg` binds it to the api-int VIP\n\
only; keep that address internal.\n\
\n\
| port | protocol | to | from | what |\n\
|---|---|---|---|---|\n\
| 6443 | TCP | load balancer (api, api-int VIPs), masters, bootstrap | clients, machines | Kubernetes API |\n\
| 22623 | TCP | load balancer (api-int VIP), {mcs_short} | machines only | machine config server |\n\
| 80, 443 | TCP | load balancer (ingress VIP), ingress machines | clients | ingress (`*.apps`) |\n\
| 2379-2380 | TCP | masters, bootstrap | masters, bootstrap | etcd clients and peers |\n\
| 10250 | TCP | every machine | masters | kubelet |\n\
| 10257 | TCP | masters | masters | kube-controller-manager |\n\
| 10259 | TCP | masters | masters | kube-scheduler |\n\
| 9000-9999 | TCP, UDP | every machine | every machine | host-level services (node exporter, ...) |\n\
| 30000-32767 | TCP, UDP | every machine | clients, machines | NodePort services |\n\
| 4789 | UDP | every machine | every machine | VXLAN (OpenShiftSDN, flannel) |\n\
| 6081 | UDP | every machine | every machine | Geneve (OVN-Kubernetes) |\n\
| 53 | TCP, UDP | name servers | machines, clients | DNS |\n\
| 67 | UDP | DHCP server | machines | DHCP |\n\
| 69 | UDP | provisioning host | machines | TFTP (iPXE binaries) |\n\
| {server_port} | TCP | provisioning host | machines | `kindling serve` (boot scripts, kernels, Ignition) |\n\
| 1936 | TCP | load balancer, 127.0.0.1 only | the load balancer | HAProxy statistics |\n",
        cd = d.cluster_domain(),
        api = lb.api_vip,
        api_int = lb.api_int_vip,
        ingress = lb.ingress_vip,
        server = site::server_url(d)?,
        tftp = crate::dhcp::TFTP_ROOT,
        bios = crate::dhcp::BIOS_BOOT_FILE,
        uefi = crate::dhcp::UEFI_BOOT_FILE,
        mcs_short = match maker {
            ConfigMaker::Kindling => "provisioning host",
            ConfigMaker::OpenShiftInstall => "bootstrap, masters",
        },
        server_port = server_port(&d.inventory.provisioning.server_url),
    );
    Ok(out)
}

/// The port of an http(s) URL, explicit or by scheme.
fn server_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.contains("]:") => port.to_string(),
        _ if url.starts_with("https") => "443".into(),
        _ => "80".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_says_where_each_file_goes_and_that_22623_stays_inside() {
        let text = render(&crate::tests::upi(), ConfigMaker::Kindling).unwrap();
        for needle in [
            "ns1.ocp45.example.localdomain (172.16.0.102)",
            "api 172.16.0.111, api-int 172.16.0.110, ingress 172.16.0.111",
            "22623 (the machine config server) must not be reachable from outside",
            "| 8080 | TCP | provisioning host",
            "| 6081 | UDP |",
            "`kindling create infra --phase bootstrap-removed`",
        ] {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
        assert!(!text.contains("is also the api or ingress VIP"), "{text}");
        let demo = render(&crate::tests::demo(), ConfigMaker::Kindling).unwrap();
        assert!(demo.contains("is also the api or ingress VIP"), "{demo}");
    }

    #[test]
    fn the_port_of_the_server_url_is_found() {
        assert_eq!(server_port("http://192.0.2.1:8080/x"), "8080");
        assert_eq!(server_port("http://192.0.2.1/x"), "80");
        assert_eq!(server_port("https://192.0.2.1"), "443");
    }
}
