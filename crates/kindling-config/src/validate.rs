//! The rules that need both files: machines against the cluster's networks, names and pools.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diagnostic::{FieldPath, Report};
use crate::install_config::{InstallConfig, inside, overlaps};
use crate::inventory::{Draft, Machine, Role};
use crate::names;

/// Checks the inventory against the install-config and returns the machine networks in force:
/// install-config's, or, when it sets none, the one inferred from the inventory.
pub(crate) fn check(
    ic: &InstallConfig,
    inv: &Draft,
    icr: &mut Report,
    r: &mut Report,
) -> Vec<IpNet> {
    let machines = FieldPath::root().key("machines");
    let present = || {
        inv.machines
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    };

    check_unique(
        present().map(|(i, m)| (machines.index(i).key("name"), m.name.clone())),
        "name",
        "every machine needs its own name",
        r,
    );
    check_unique(
        present().flat_map(|(i, m)| {
            mac_paths(&machines.index(i), m, r.root)
                .into_iter()
                .zip(m.macs.iter().copied())
        }),
        "MAC",
        "each NIC belongs to one machine; check for a copy-paste slip (case, '-' and '.' forms are the same MAC)",
        r,
    );
    check_unique(
        present().map(|(i, m)| (machines.index(i).key("ip"), m.ip)),
        "IP",
        "every machine needs its own address",
        r,
    );

    let domain = ic.cluster_domain();
    for (i, m) in present() {
        let fqdn_len = m.name.len() + 1 + domain.len();
        if fqdn_len > names::MAX_NAME {
            r.error(
                &machines.index(i).key("name"),
                format!(
                    "the FQDN {}.{domain} is {fqdn_len} characters, more than {}",
                    m.name,
                    names::MAX_NAME
                ),
                "shorten the machine name, metadata.name or baseDomain",
            );
        }
    }

    let nets = machine_networks(ic, inv, icr, r);
    let explicit = !ic.networking.machine_network.is_empty();
    check_gateway(inv, &nets, explicit, r);
    // A pod or service network that overlaps the machine network is reported once, in
    // install-config.yaml, not again for every address inside it.
    let cluster_nets: Vec<(&str, IpNet)> = ic
        .networking
        .cluster_network
        .iter()
        .map(|c| ("clusterNetwork", c.cidr))
        .chain(
            ic.networking
                .service_network
                .iter()
                .map(|s| ("serviceNetwork", *s)),
        )
        .filter(|(_, net)| {
            !ic.networking
                .machine_network
                .iter()
                .any(|m| overlaps(m, net))
        })
        .collect();
    let ip_hint = "use an address in the machine network, or fix networking.machineNetwork in install-config.yaml";
    let check_address = |ip: IpAddr, path: &FieldPath, what: &str, r: &mut Report| {
        if let Some((field, net)) = cluster_nets.iter().find(|(_, n)| n.contains(&ip)) {
            r.error(
                path,
                format!("{what} {ip} lies in the {field} {net} of install-config.yaml"),
                "pod and service networks are virtual: machines need addresses outside them",
            );
        } else if explicit && !inside(ip, &nets) {
            let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
            r.error(
                path,
                format!(
                    "{what} {ip} is outside networking.machineNetwork ({})",
                    list.join(", ")
                ),
                ip_hint,
            );
        } else if let Some(net) = nets.iter().find(|n| n.contains(&ip))
            && let IpNet::V4(v4) = net
            && v4.prefix_len() < 31
            && (ip == IpAddr::V4(v4.network()) || ip == IpAddr::V4(v4.broadcast()))
        {
            r.error(
                path,
                format!("{what} {ip} is the network or broadcast address of {net}"),
                "pick a host address",
            );
        }
    };
    for (i, m) in present() {
        check_address(m.ip, &machines.index(i).key("ip"), "machine IP", r);
    }
    if let Some(lb) = &inv.load_balancer {
        let lb_path = FieldPath::root().key("loadBalancer");
        let by_ip: HashMap<IpAddr, usize> = present().map(|(i, m)| (m.ip, i)).collect();
        for (key, vip) in [
            ("apiVIP", lb.api_vip),
            ("apiIntVIP", lb.api_int_vip),
            ("ingressVIP", lb.ingress_vip),
        ] {
            let path = lb_path.key(key);
            check_address(vip, &path, key, r);
            if let Some(i) = by_ip.get(&vip) {
                r.error(
                    &path,
                    format!("{key} {vip} is also the IP of machines[{i}]"),
                    "a VIP belongs to the load balancer: give it an address no machine uses",
                );
            }
        }
    }

    check_roles(ic, inv, icr, r);
    check_pod_capacity(
        ic,
        present().filter(|(_, m)| m.role != Role::Bootstrap).count(),
        icr,
    );
    nets
}

/// Where each of a machine's MACs was written: under `mac:`, or as items of `macs:`.
/// The rules of what the description is loaded for (see [`crate::Use`]).
pub(crate) fn check_use(
    purpose: crate::Use,
    ic: &mut InstallConfig,
    inv: &Draft,
    icr: &mut Report,
    r: &mut Report,
) {
    if purpose == crate::Use::Read {
        return;
    }
    let machines = FieldPath::root().key("machines");
    for (i, m) in inv.machines.iter().enumerate() {
        let Some(m) = m else { continue };
        for (path, mac) in mac_paths(&machines.index(i), m, r.root)
            .into_iter()
            .zip(&m.macs)
        {
            if crate::template::is_example_mac(*mac) {
                r.error(
                    &path,
                    format!("{mac} is an example MAC from the template of 'kindling create install-config'"),
                    "replace it with the MAC of the machine's boot NIC (on its label, in its BMC, or in the switch's MAC table)",
                );
            }
        }
    }
    if purpose != crate::Use::Install {
        return;
    }
    let path = FieldPath::root().key("networking").key("networkType");
    let network_type = &mut ic.networking.network_type;
    if path.node(icr.root).is_none() {
        // Not set: what kindling installs, rather than OpenShift's default.
        *network_type = crate::KINDLING_NETWORK_TYPE.to_string();
    } else if !network_type.eq_ignore_ascii_case(crate::KINDLING_NETWORK_TYPE) {
        icr.error(
            &path,
            format!(
                "kindling does not install {network_type}: it installs {} as the pod network",
                crate::KINDLING_NETWORK_TYPE
            ),
            "write 'networkType: Flannel' (or leave it out); OVNKubernetes and OpenShiftSDN are OpenShift's, installed by openshift-install, whose configs 'kindling serve' serves as they are",
        );
    }
}

fn mac_paths(machine: &FieldPath, m: &Machine, root: &crate::yaml::Node) -> Vec<FieldPath> {
    match machine.node(root).and_then(|n| n.get("mac")) {
        Some(_) => vec![machine.key("mac")],
        None => (0..m.macs.len())
            .map(|j| machine.key("macs").index(j))
            .collect(),
    }
}

fn check_unique<T: Eq + Hash + std::fmt::Display>(
    items: impl Iterator<Item = (FieldPath, T)>,
    what: &str,
    hint: &str,
    r: &mut Report,
) {
    let mut seen: HashMap<T, FieldPath> = HashMap::new();
    for (path, value) in items {
        match seen.entry(value) {
            Entry::Occupied(first) => {
                let line = first.get().locate(r.root).line;
                r.error(
                    &path,
                    format!(
                        "{what} {} is also used by {} (line {line})",
                        first.key(),
                        first.get()
                    ),
                    hint,
                );
            }
            Entry::Vacant(slot) => {
                slot.insert(path);
            }
        }
    }
}

/// install-config's machine networks, or when it sets none, the /24 (a /64 for IPv6) that holds
/// every machine and VIP. The gateway takes no part: a gateway typed wrong must not widen the
/// network to hold it. Nor is a wider network chosen silently: addresses that need more than a
/// /24 are an error that asks for `networking.machineNetwork`.
fn machine_networks(
    ic: &InstallConfig,
    inv: &Draft,
    icr: &mut Report,
    r: &mut Report,
) -> Vec<IpNet> {
    if !ic.networking.machine_network.is_empty() {
        return ic.networking.machine_network.clone();
    }
    let machines = FieldPath::root().key("machines");
    let lb = FieldPath::root().key("loadBalancer");
    let mut addresses: Vec<(IpAddr, FieldPath)> = inv
        .machines
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((m.as_ref()?.ip, machines.index(i).key("ip"))))
        .collect();
    if let Some(vips) = &inv.load_balancer {
        addresses.extend([
            (vips.api_vip, lb.key("apiVIP")),
            (vips.api_int_vip, lb.key("apiIntVIP")),
            (vips.ingress_vip, lb.key("ingressVIP")),
        ]);
    }
    let mut nets: Vec<IpNet> = Vec::new();
    for family_v4 in [true, false] {
        let mut family = addresses.iter().filter(|(a, _)| a.is_ipv4() == family_v4);
        let Some((first, first_path)) = family.next() else {
            continue;
        };
        let prefix = if family_v4 { 24 } else { 64 };
        let Ok(net) = IpNet::new(*first, prefix).map(|n| n.trunc()) else {
            continue;
        };
        if let Some((outside, path)) = family.find(|(a, _)| !net.contains(a)) {
            r.error(
                path,
                format!(
                    "{outside} is not in {net}, the network of {first} ({first_path}); kindling infers the machine network only up to a /{prefix}"
                ),
                "set networking.machineNetwork in install-config.yaml to the network that holds every machine and VIP, or fix the address",
            );
        }
        nets.push(net);
    }
    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
    if !list.is_empty() {
        icr.info(
            &FieldPath::root().key("networking").key("machineNetwork"),
            format!("is not set; kindling uses {}, the network that holds every machine and VIP in inventory.yaml", list.join(", ")),
            "set networking.machineNetwork to make it explicit",
        );
    }
    nets
}

/// The gateway must be on the machine network, or no machine can reach it.
fn check_gateway(inv: &Draft, nets: &[IpNet], explicit: bool, r: &mut Report) {
    let Some(gateway) = inv.network.as_ref().and_then(|n| n.gateway) else {
        return;
    };
    if nets.is_empty() || inside(gateway, nets) {
        return;
    }
    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
    let source = if explicit {
        "networking.machineNetwork"
    } else {
        "the machine network inferred from the machines and VIPs"
    };
    r.error(
        &FieldPath::root().key("network").key("gateway"),
        format!("{gateway} is outside {source} ({})", list.join(", ")),
        "the gateway is a router on the machines' own network: fix its address, or set networking.machineNetwork if the network is wider",
    );
}

fn check_roles(ic: &InstallConfig, inv: &Draft, icr: &mut Report, r: &mut Report) {
    let machines = FieldPath::root().key("machines");
    let mut count: HashMap<Role, Vec<usize>> = HashMap::new();
    for (i, m) in inv.machines.iter().enumerate() {
        if let Some(m) = m {
            count.entry(m.role).or_default().push(i);
        }
    }
    let of = |role| count.get(&role).map_or(&[][..], Vec::as_slice);
    if let [_, extra @ ..] = of(Role::Bootstrap) {
        for i in extra {
            r.error(
                &machines.index(*i).key("role"),
                "is a second bootstrap machine",
                "keep one machine with role: bootstrap; make the others masters or workers",
            );
        }
    }

    let replicas = ic.control_plane.replicas;
    let replicas_path = FieldPath::root().key("controlPlane").key("replicas");
    match replicas {
        1 => icr.warning(
            &replicas_path,
            "is 1: the control plane has no redundancy (no HA)",
            "use 3 masters for a cluster that survives the loss of one",
        ),
        3 | 5 => {}
        n => icr.error(
            &replicas_path,
            format!("is {n}; etcd needs an odd number of members, and kindling supports 1, 3 or 5"),
            "set controlPlane.replicas to 3 (or 1 or 5)",
        ),
    }
    // A machine that failed to decode may be a master: counting now would only add noise.
    if inv.machines.iter().all(Option::is_some) {
        let masters = of(Role::Master).len();
        if masters != replicas as usize {
            r.error(&machines, format!("lists {masters} machine(s) with role master, but controlPlane.replicas in install-config.yaml is {replicas}"), "list exactly controlPlane.replicas masters, or change controlPlane.replicas to match");
        }
        let compute: u32 = ic.compute.iter().map(|p| p.replicas).sum();
        let workers = of(Role::Worker).len() + of(Role::Infra).len();
        if workers > compute as usize {
            r.info(&machines, format!("lists {workers} worker/infra machine(s), more than the {compute} compute replicas in install-config.yaml; kindling installs every machine in the inventory"), "");
        } else if workers < compute as usize {
            r.warning(&machines, format!("lists {workers} worker/infra machine(s), fewer than the {compute} compute replicas in install-config.yaml; kindling installs only the machines in the inventory"), "add the missing workers, or lower compute[].replicas");
        }
    }
}

fn check_pod_capacity(ic: &InstallConfig, nodes: usize, icr: &mut Report) {
    let nets = &ic.networking.cluster_network;
    // A hostPrefix outside its network is reported already; a capacity from it means nothing.
    if nets.iter().any(|c| c.host_prefix < c.cidr.prefix_len()) {
        return;
    }
    let capacity: u128 = nets
        .iter()
        .map(|c| 1u128 << (c.host_prefix - c.cidr.prefix_len()).min(64))
        .sum();
    if (nodes as u128) > capacity {
        icr.error(
            &FieldPath::root().key("networking").key("clusterNetwork"),
            format!(
                "has room for {capacity} node pod subnet(s), but the inventory has {nodes} nodes"
            ),
            "widen the clusterNetwork or raise hostPrefix",
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlap_is_symmetric_and_includes_containment() {
        let a = "10.0.0.0/8".parse().unwrap();
        let b = "10.1.0.0/16".parse().unwrap();
        let c = "11.0.0.0/8".parse().unwrap();
        assert!(crate::install_config::overlaps(&a, &b) && crate::install_config::overlaps(&b, &a));
        assert!(!crate::install_config::overlaps(&a, &c));
    }
}
