//! `kindling machines accept`: a discovered machine into inventory.yaml, as the lines a person
//! would write for it, after the last machine; nothing else of the file changes. Its install
//! disk is picked by `provisioning.installDisk`'s rule from the disks it reported, and its
//! address may be the machine network's next free one.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kindling_config::edit::{self, NewMachine};
use kindling_config::{ClusterDescription, MacAddr, Role, Source};

use crate::pending::{self, PendingError};

/// The address to give the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// The first free address after the highest machine address in the machine network.
    Auto,
    Given(IpAddr),
}

/// What the person decided about the machine.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub name: String,
    pub role: Role,
    pub ip: Address,
}

/// The machine as it went into inventory.yaml.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub name: String,
    pub mac: MacAddr,
    pub ip: IpAddr,
    /// The disk picked by the rule, and why; None: the inventory's default disk.
    pub install_disk: Option<(String, String)>,
    /// What the person should know (the default disk is not among the machine's).
    pub warnings: Vec<String>,
    /// Where inventory.yaml was as it was before.
    pub backup: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Pending(#[from] PendingError),
    #[error("reading the cluster description in {dir}: {message}")]
    Description { dir: PathBuf, message: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Adds the discovered machine `key` (its MAC or SMBIOS UUID) to the inventory of `dir`, where
/// `kindling serve` keeps the reports. The new inventory is checked whole before it is
/// written; on any error nothing is written.
pub fn accept(dir: &Path, key: &str, acceptance: &Acceptance) -> Result<Accepted, AcceptError> {
    let described = |message: String| AcceptError::Description {
        dir: dir.to_path_buf(),
        message,
    };
    let description = ClusterDescription::load(dir)
        .map_err(|e| described(findings(e)))?
        .description;
    let found = pending::find(dir, key)?;
    let inventory = &description.inventory;
    if let Some(m) = inventory
        .machines
        .iter()
        .find(|m| m.macs.contains(&found.mac))
    {
        return Err(AcceptError::Refused(format!(
            "{} is already in inventory.yaml, as {}",
            found.mac, m.name
        )));
    }
    if acceptance.role == Role::Bootstrap {
        return Err(AcceptError::Refused(
            "a discovered machine joins as a master, worker or infra machine; the bootstrap machine is written by hand before the install".into(),
        ));
    }
    let ip = match acceptance.ip {
        Address::Given(ip) => ip,
        Address::Auto => next_free(&description)?,
    };
    let mut warnings = Vec::new();
    let install_disk = match &inventory.provisioning.install_disk_rule {
        Some(rule) => {
            let disk = crate::pick_install_disk(rule, &found.hardware.disks).map_err(|why| {
                AcceptError::Refused(format!(
                    "{why}; change provisioning.installDisk, or write the machine by hand with its installDisk"
                ))
            })?;
            Some((
                disk.device(),
                format!("picked by the rule {rule}: {}", disk.describe()),
            ))
        }
        None => {
            let default = &inventory.provisioning.install_disk;
            let names: Vec<String> = found.hardware.disks.iter().map(|d| d.device()).collect();
            if default.starts_with("/dev/")
                && !default.starts_with("/dev/disk/")
                && !names.contains(default)
            {
                warnings.push(format!(
                    "the inventory's install disk {default} is not among the disks it reported ({}); set installDisk for it in inventory.yaml, or a rule in provisioning.installDisk",
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                ));
            }
            None
        }
    };
    if let Some(bmc) = &found.hardware.bmc {
        warnings.push(format!(
            "its BMC answers at {bmc}: for kindling power, add bmc: {{address: {bmc}, credentials: <a file with its user and password, 0600>}} to its entry"
        ));
    }
    let new = NewMachine {
        name: acceptance.name.clone(),
        role: acceptance.role,
        mac: found.mac,
        ip,
        install_disk: install_disk.clone(),
    };
    let path = dir.join(kindling_config::INVENTORY_FILE);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AcceptError::Io { path, source }
    };
    let before = std::fs::read_to_string(&path).map_err(io(&path))?;
    let after =
        edit::add_machine(&before, &new).map_err(|e| AcceptError::Refused(e.to_string()))?;
    check(dir, &after)?;
    let backup = kindling_assets::inventory_file::rewrite(dir, &before, &after)
        .map_err(|(path, source)| AcceptError::Io { path, source })?;
    Ok(Accepted {
        name: acceptance.name.clone(),
        mac: found.mac,
        ip,
        install_disk,
        warnings,
        backup,
    })
}

/// The new inventory loads with the install config, as `create` would load it: a name or
/// address already taken, or one outside the machine network, is refused here.
fn check(dir: &Path, inventory: &str) -> Result<(), AcceptError> {
    let ic_path = dir.join(kindling_config::INSTALL_CONFIG_FILE);
    let install_config = std::fs::read_to_string(&ic_path).map_err(|source| AcceptError::Io {
        path: ic_path.clone(),
        source,
    })?;
    let loaded = ClusterDescription::parse(
        Source {
            name: kindling_config::INSTALL_CONFIG_FILE,
            text: &install_config,
        },
        Source {
            name: kindling_config::INVENTORY_FILE,
            text: inventory,
        },
    );
    loaded.map(drop).map_err(|e| {
        AcceptError::Refused(format!(
            "inventory.yaml with the machine added would not load, so it was left as it was:\n{}",
            findings(e)
        ))
    })
}

/// A load error's findings, the errors one per line.
fn findings(error: kindling_config::LoadError) -> String {
    match error {
        kindling_config::LoadError::Invalid(findings) => findings
            .iter()
            .filter(|f| f.severity == kindling_config::diagnostic::Severity::Error)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The first address after the highest machine address in the (first) machine network that
/// nothing in the description uses: no machine, VIP, gateway, DNS server or provisioning host.
fn next_free(description: &ClusterDescription) -> Result<IpAddr, AcceptError> {
    let inventory = &description.inventory;
    let network = description.machine_networks.first().ok_or_else(|| {
        AcceptError::Refused(
            "the description has no machine network to take an address from; give --ip".into(),
        )
    })?;
    let lb = &inventory.load_balancer;
    let mut used: BTreeSet<IpAddr> = inventory.machines.iter().map(|m| m.ip).collect();
    let highest = used
        .iter()
        .filter(|ip| network.contains(*ip))
        .max()
        .copied();
    used.extend([lb.api_vip, lb.api_int_vip, lb.ingress_vip]);
    used.extend(inventory.network.gateway);
    used.extend(inventory.network.dns_servers.iter().copied());
    used.extend(inventory.provisioning.replicas.iter().copied());
    if let Some(host) = server_host(&inventory.provisioning.server_url) {
        used.insert(host);
    }
    network
        .hosts()
        .filter(|ip| highest.is_none_or(|h| *ip > h))
        .find(|ip| !used.contains(ip))
        .ok_or_else(|| {
            AcceptError::Refused(format!(
                "no address is free after the machines' in {network}; give --ip"
            ))
        })
}

/// The IP of `http://ADDR[:PORT]/...`, when it is written as one.
fn server_host(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::Discovered;
    use crate::{Disk, Hardware, Nic};

    const DEMO_IC: &str = include_str!("../../../examples/demo/install-config.yaml");
    const DEMO_INV: &str = include_str!("../../../examples/demo/inventory.yaml");

    fn site(inventory: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("install-config.yaml"), DEMO_IC).unwrap();
        std::fs::write(dir.path().join("inventory.yaml"), inventory).unwrap();
        let mut hardware = Hardware {
            nics: vec![Nic {
                name: "eth0".into(),
                mac: "52:54:00:aa:bb:01".into(),
                link: true,
                ..Nic::default()
            }],
            ..Hardware::default()
        };
        hardware.system.uuid = Some("0b6b1d5e-7c6a-4b7e-9e1a-3d5c2f1a0b99".into());
        for (name, gib, rotational) in [("vda", 3, true), ("vdb", 1, false)] {
            hardware.disks.push(Disk {
                name: name.into(),
                size_bytes: gib << 30,
                rotational,
                serial: Some(format!("S-{name}")),
                ..Disk::default()
            });
        }
        pending::save(
            dir.path(),
            &Discovered {
                mac: "52:54:00:aa:bb:01".parse().unwrap(),
                address: "192.168.126.201".parse().unwrap(),
                reported_at: "2026-12-07T10:00:00Z".into(),
                hardware,
            },
        )
        .unwrap();
        dir
    }

    fn worker4(ip: Address) -> Acceptance {
        Acceptance {
            name: "worker4".into(),
            role: Role::Worker,
            ip,
        }
    }

    #[test]
    fn an_accepted_machine_is_added_with_the_next_address_and_the_disk_the_rule_picks() {
        let inv = DEMO_INV.replace(
            "  installDisk: /dev/vda\n",
            "  installDisk: {minSize: 1Gi, rotational: false}\n",
        );
        let inv = inv.replace("    ip: ", "    installDisk: /dev/vda\n    ip: ");
        let dir = site(&inv);
        let accepted = accept(
            dir.path(),
            "0B6B1D5E-7C6A-4B7E-9E1A-3D5C2F1A0B99",
            &worker4(Address::Auto),
        )
        .unwrap();
        let after = std::fs::read_to_string(dir.path().join("inventory.yaml")).unwrap();
        let added = format!(
            "  - name: worker4\n    role: worker\n    mac: \"52:54:00:aa:bb:01\"\n    ip: {}\n    installDisk: /dev/vdb   # picked by the rule {{minSize: 1Gi, rotational: false}}: /dev/vdb 1Gi not rotational serial S-vdb\n",
            accepted.ip
        );
        assert_eq!(after, format!("{inv}{added}"));
        // The demo's machines run up to .122; .123 is free.
        assert_eq!(accepted.ip.to_string(), "192.168.126.123");
        assert_eq!(
            std::fs::read_to_string(&accepted.backup).unwrap(),
            inv,
            "the file as it was is kept"
        );
        let loaded = ClusterDescription::load(dir.path()).unwrap().description;
        let m = loaded.inventory.machines.last().unwrap();
        assert_eq!(
            (m.name.as_str(), m.install_disk.as_deref()),
            ("worker4", Some("/dev/vdb"))
        );

        let again = accept(dir.path(), "52:54:00:aa:bb:01", &worker4(Address::Auto)).unwrap_err();
        assert_eq!(
            again.to_string(),
            "52:54:00:aa:bb:01 is already in inventory.yaml, as worker4"
        );
    }

    #[test]
    fn what_would_not_load_or_has_no_disk_is_refused_and_nothing_is_written() {
        let refused = |inv: &str, acceptance: Acceptance, why: &str| {
            let dir = site(inv);
            let err = accept(dir.path(), "52-54-00-aa-bb-01", &acceptance)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
            let after = std::fs::read_to_string(dir.path().join("inventory.yaml")).unwrap();
            assert_eq!(after, inv);
        };
        refused(
            DEMO_INV,
            Acceptance {
                name: "worker0".into(),
                ..worker4(Address::Auto)
            },
            "worker0",
        );
        refused(
            DEMO_INV,
            worker4(Address::Given("192.168.126.120".parse().unwrap())),
            "192.168.126.120",
        );
        let inv = DEMO_INV.replace(
            "  installDisk: /dev/vda\n",
            "  installDisk: {minSize: 100G}\n",
        );
        let inv = inv.replace("    ip: ", "    installDisk: /dev/vda\n    ip: ");
        refused(
            &inv,
            worker4(Address::Auto),
            "no disk matches installDisk {minSize: 100G}; its disks: /dev/vda 3Gi rotational serial S-vda, /dev/vdb 1Gi not rotational serial S-vdb",
        );
        let dir = site(DEMO_INV);
        let err = accept(dir.path(), "52:54:00:aa:bb:09", &worker4(Address::Auto))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the discovered ones are: 52:54:00:aa:bb:01"),
            "{err}"
        );
    }
}
