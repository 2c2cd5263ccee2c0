//! The commented `install-config.yaml` and `inventory.yaml` that `create install-config` writes.
//!
//! Values are rendered as given; the caller validates the result with [`crate::ClusterDescription::parse`]
//! so that flags get the same checks, and the same messages, as hand-written files.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `mac` is one of the template's example MACs (`02:00:00:00:00:<host>`), which
/// `create` refuses until replaced.
pub fn is_example_mac(mac: crate::MacAddr) -> bool {
    let bytes = mac.octets();
    bytes[..5] == [0x02, 0, 0, 0, 0]
}

/// The example values of a template made without flags or answers.
pub const EXAMPLE_CLUSTER_NAME: &str = "mycluster";
pub const EXAMPLE_BASE_DOMAIN: &str = "example.com";

/// What the templates are filled with.
#[derive(Debug, Clone)]
pub struct Template {
    pub cluster_name: String,
    pub base_domain: String,
    pub machine_network: IpNet,
    pub ssh_key: Option<String>,
    pub pull_secret: Option<String>,
    pub server_url: String,
    pub api_vip: IpAddr,
    pub api_int_vip: IpAddr,
    pub ingress_vip: IpAddr,
    pub gateway: IpAddr,
    pub dns_servers: Vec<IpAddr>,
    pub os: String,
    pub install_disk: String,
    pub machines: Vec<TemplateMachine>,
    /// The machines are the example layout, with MACs the user must replace.
    pub example_machines: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMachine {
    pub name: String,
    pub role: String,
    pub mac: String,
    pub ip: String,
}

/// The `n`-th address of a network (0 is the network address itself).
pub fn nth_address(net: IpNet, n: u32) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4(u32::from(v4.network()).wrapping_add(n).into()),
        IpNet::V6(v6) => IpAddr::V6(u128::from(v6.network()).wrapping_add(u128::from(n)).into()),
    }
}

impl Template {
    /// The example layout on `net`: gateway .1, provisioning host and DNS .2, API VIP .10, ingress
    /// VIP .11, a bootstrap machine at .100, masters at .110–.112 and workers at .120–.121.
    pub fn example(net: IpNet) -> Template {
        let at = |n| nth_address(net, n);
        let url_host = match at(2) {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        let layout = [
            ("bootstrap", "bootstrap", 100),
            ("master0", "master", 110),
            ("master1", "master", 111),
            ("master2", "master", 112),
            ("worker0", "worker", 120),
            ("worker1", "worker", 121),
        ];
        Template {
            cluster_name: EXAMPLE_CLUSTER_NAME.into(),
            base_domain: EXAMPLE_BASE_DOMAIN.into(),
            machine_network: net,
            ssh_key: None,
            pull_secret: None,
            server_url: format!("http://{url_host}:8080"),
            api_vip: at(10),
            api_int_vip: at(10),
            ingress_vip: at(11),
            gateway: at(1),
            dns_servers: vec![at(2)],
            os: "fcos".into(),
            install_disk: crate::inventory::DEFAULT_INSTALL_DISK.into(),
            machines: layout
                .iter()
                .map(|(name, role, host)| TemplateMachine {
                    name: (*name).into(),
                    role: (*role).into(),
                    // Locally administered unicast addresses: valid, and plainly not a real NIC's.
                    mac: format!("02:00:00:00:00:{host:02x}"),
                    ip: at(*host).to_string(),
                })
                .collect(),
            example_machines: true,
        }
    }

    pub fn install_config(&self) -> String {
        let masters = self.machines.iter().filter(|m| m.role == "master").count();
        let workers = self
            .machines
            .iter()
            .filter(|m| m.role == "worker" || m.role == "infra")
            .count();
        let mut out = String::new();
        out.push_str("# install-config.yaml: the cluster, in OpenShift's schema (an OpenShift file works unchanged).\n");
        out.push_str("# kindling reads this file and never rewrites or deletes it.\n");
        out.push_str("apiVersion: v1\n");
        let _ = writeln!(
            out,
            "# Machines are named <name>.{}.{}",
            self.cluster_name, self.base_domain
        );
        let _ = writeln!(out, "baseDomain: {}", quote(&self.base_domain));
        out.push_str("metadata:\n");
        let _ = writeln!(out, "  name: {}", quote(&self.cluster_name));
        out.push_str("controlPlane:\n  name: master\n");
        let _ = writeln!(
            out,
            "  replicas: {masters}          # the number of role: master machines in inventory.yaml (1, 3 or 5)"
        );
        out.push_str("compute:\n  - name: worker\n");
        let _ = writeln!(
            out,
            "    replicas: {workers}        # informational: kindling installs every worker in inventory.yaml"
        );
        out.push_str("networking:\n");
        out.push_str(
            "  clusterNetwork:             # pod addresses; each node gets a /hostPrefix of it\n",
        );
        out.push_str("    - cidr: 10.128.0.0/14\n      hostPrefix: 23\n");
        out.push_str(
            "  serviceNetwork:             # Service (ClusterIP) addresses\n    - 172.30.0.0/16\n",
        );
        out.push_str("  machineNetwork:             # where the machines' own addresses live\n");
        let _ = writeln!(out, "    - cidr: {}", self.machine_network);
        out.push_str("  networkType: Flannel            # the pod network kindling installs\n");
        out.push_str("platform:\n  none: {}\n");
        out.push_str("fips: false\n");
        match &self.pull_secret {
            Some(secret) => {
                let _ = writeln!(out, "pullSecret: {}", single_quote(secret.trim()));
            }
            None => out.push_str(
                "# pullSecret: '{\"auths\": {...}}'   # only needed for private registries\n",
            ),
        }
        match &self.ssh_key {
            Some(key) => {
                out.push_str("sshKey: |                   # public keys for the 'core' user, one per line\n");
                for line in key.lines().filter(|l| !l.trim().is_empty()) {
                    let _ = writeln!(out, "  {}", line.trim());
                }
            }
            None => out.push_str("# sshKey: ssh-ed25519 AAAA... you@host   # add a key to be able to ssh in as 'core'\n"),
        }
        out
    }

    pub fn inventory(&self) -> String {
        let mut out = String::new();
        out.push_str("# inventory.yaml: the machines and the network around them. kindling never rewrites it.\n");
        let _ = writeln!(out, "apiVersion: {}", crate::inventory::API_VERSION);
        let _ = writeln!(out, "kind: {}", crate::inventory::KIND);
        out.push_str("provisioning:\n");
        let _ = writeln!(
            out,
            "  serverURL: {}   # where machines fetch boot scripts, kernels and Ignition (kindling serve)",
            quote(&self.server_url)
        );
        let _ = writeln!(
            out,
            "  os: {}                            # fcos | rhcos | flatcar",
            self.os
        );
        let _ = writeln!(out, "  installDisk: {}", quote(&self.install_disk));
        out.push_str("  ignitionVersion: 3.3.0                # 3.0.0 to 3.4.0; 2.2.0 or 2.3.0 for RHCOS up to 4.5\n");
        out.push_str("network:\n");
        let _ = writeln!(out, "  gateway: {}", self.gateway);
        let dns: Vec<String> = self.dns_servers.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  dnsServers: [{}]", dns.join(", "));
        out.push_str("  ntpServers: []\n");
        out.push_str("loadBalancer:\n");
        let _ = writeln!(
            out,
            "  apiVIP: {}       # api.<cluster>.<base domain>: 6443",
            self.api_vip
        );
        let _ = writeln!(
            out,
            "  apiIntVIP: {}    # api-int.<cluster>.<base domain>: 6443 and 22623",
            self.api_int_vip
        );
        let _ = writeln!(
            out,
            "  ingressVIP: {}   # *.apps.<cluster>.<base domain>: 80 and 443",
            self.ingress_vip
        );
        out.push_str("machines:\n");
        if self.example_machines {
            out.push_str("  # EXAMPLE machines: replace each mac with the boot NIC's real address, and adjust names and IPs.\n");
        }
        for m in &self.machines {
            let _ = writeln!(out, "  - name: {}", quote(&m.name));
            let _ = writeln!(out, "    role: {}", quote(&m.role));
            let _ = writeln!(out, "    mac: {}", quote(&m.mac));
            let _ = writeln!(out, "    ip: {}", quote(&m.ip));
        }
        out
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A YAML single-quoted scalar, the usual way to write a JSON pull secret.
fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterDescription, Source};

    #[test]
    fn the_example_template_is_a_valid_description() {
        let t = Template::example("192.168.50.0/24".parse().unwrap());
        let (ic, inv) = (t.install_config(), t.inventory());
        let loaded = ClusterDescription::parse(
            Source {
                name: "install-config.yaml",
                text: &ic,
            },
            Source {
                name: "inventory.yaml",
                text: &inv,
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}\n{ic}\n{inv}"));
        let d = loaded.description;
        assert_eq!(d.inventory.machines.len(), 6);
        assert_eq!(
            d.inventory.load_balancer.api_vip.to_string(),
            "192.168.50.10"
        );
        assert_eq!(d.install_config.control_plane.replicas, 3);
        assert!(inv.contains("EXAMPLE machines"));
    }

    #[test]
    fn awkward_values_are_quoted_not_injected() {
        let mut t = Template::example("10.0.0.0/24".parse().unwrap());
        t.cluster_name = "a: b # c".into();
        t.pull_secret = Some("{\"auths\":{\"it's\":{}}}".into());
        let ic = t.install_config();
        let root = crate::yaml::parse(&ic).unwrap();
        let name = root.get("metadata").unwrap().get("name").unwrap();
        assert_eq!(
            name.value,
            crate::yaml::Value::Scalar {
                text: "a: b # c".into(),
                plain: false
            }
        );
        let secret = root.get("pullSecret").unwrap();
        assert_eq!(
            secret.value,
            crate::yaml::Value::Scalar {
                text: "{\"auths\":{\"it's\":{}}}".into(),
                plain: false
            }
        );
    }
}
