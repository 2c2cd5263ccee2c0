//! The cluster description: `install-config.yaml` (OpenShift's schema) and `inventory.yaml`
//! (kindling's machines and network), loaded, defaulted and validated.
//!
//! Loading reports every problem at once. Each finding names the file, line, column and field
//! path, says what is wrong and how to fix it. Only errors stop kindling; warnings and notes are
//! returned with the description.

pub mod decode;
pub mod diagnostic;
pub mod edit;
pub mod install_config;
pub mod inventory;
pub mod mac;
pub mod names;
pub mod template;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

pub use decode::closest;
pub use diagnostic::{Diagnostic, FieldPath, Report, Severity};
pub use install_config::InstallConfig;
pub use inventory::{Bmc, BmcAddress, Inventory, Machine, Role};
pub use mac::MacAddr;

pub const INSTALL_CONFIG_FILE: &str = "install-config.yaml";
pub const INVENTORY_FILE: &str = "inventory.yaml";

/// A validated cluster description.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDescription {
    pub install_config: InstallConfig,
    pub inventory: Inventory,
    /// install-config's `networking.machineNetwork`, or the network inferred from the inventory
    /// when it sets none.
    pub machine_networks: Vec<IpNet>,
}

/// A description that loaded, with the warnings and notes found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub description: ClusterDescription,
    pub findings: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input that cannot be a description file at all: a directory, a symlink loop.
    #[error("{}: {what}", path.display())]
    NotAFile { path: PathBuf, what: String },
    #[error(
        "{}: not UTF-8 text: byte {offset} (line {line}) starts an invalid sequence; save the file as UTF-8",
        path.display()
    )]
    NotUtf8 {
        path: PathBuf,
        offset: usize,
        line: usize,
    },
    /// Every finding, errors first; at least one is an error.
    #[error("the cluster description has {} error(s)", count_errors(.0))]
    Invalid(Vec<Diagnostic>),
}

fn count_errors(findings: &[Diagnostic]) -> usize {
    findings
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// What the description is loaded for: some rules hold only for some uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Use {
    /// Read as it is: serving, checking and watching, and any OpenShift companion-mode step.
    #[default]
    Read,
    /// Configs for the real machines and network (`create infra`): the template's example
    /// MACs are refused.
    Machines,
    /// kindling installs the cluster (`create manifests | ignition-configs`): the example MACs
    /// are refused, and the network add-on must be one kindling installs.
    Install,
}

/// The pod network kindling installs, as `networking.networkType` names it.
pub const KINDLING_NETWORK_TYPE: &str = "Flannel";

/// One input file: the name to show in messages and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl ClusterDescription {
    /// Reads and validates `install-config.yaml` and `inventory.yaml` in `dir`, to read.
    pub fn load(dir: &Path) -> Result<Loaded, LoadError> {
        Self::load_for(dir, Use::Read)
    }

    /// [`ClusterDescription::load`], with the rules of `purpose`.
    pub fn load_for(dir: &Path, purpose: Use) -> Result<Loaded, LoadError> {
        let read = |file: &str| read_input(&dir.join(file));
        let (ic_text, inv_text) = (read(INSTALL_CONFIG_FILE)?, read(INVENTORY_FILE)?);
        let (ic_name, inv_name) = (
            dir.join(INSTALL_CONFIG_FILE).display().to_string(),
            dir.join(INVENTORY_FILE).display().to_string(),
        );
        Self::parse_in(
            Source {
                name: &ic_name,
                text: &ic_text,
            },
            Source {
                name: &inv_name,
                text: &inv_text,
            },
            purpose,
            Some(dir),
        )
    }

    /// Validates a description given as text, to read.
    pub fn parse(install_config: Source<'_>, inventory: Source<'_>) -> Result<Loaded, LoadError> {
        Self::parse_for(install_config, inventory, Use::Read)
    }

    /// [`ClusterDescription::parse`], with the rules of `purpose`.
    pub fn parse_for(
        install_config: Source<'_>,
        inventory: Source<'_>,
        purpose: Use,
    ) -> Result<Loaded, LoadError> {
        Self::parse_in(install_config, inventory, purpose, None)
    }

    /// [`ClusterDescription::parse_for`]; with the asset directory `dir`, the files the
    /// description names (BMC credentials) are checked too.
    fn parse_in(
        install_config: Source<'_>,
        inventory: Source<'_>,
        purpose: Use,
        dir: Option<&Path>,
    ) -> Result<Loaded, LoadError> {
        let mut ic_findings = Vec::new();
        let mut inv_findings = Vec::new();
        let ic_root = parse_yaml(install_config, &mut ic_findings);
        let inv_root = parse_yaml(inventory, &mut inv_findings);

        let mut result = None;
        if let (Some(ic_root), Some(inv_root)) = (&ic_root, &inv_root) {
            let mut icr = Report::new(install_config.name, ic_root, &mut ic_findings);
            let mut r = Report::new(inventory.name, inv_root, &mut inv_findings);
            let ic = install_config::decode(ic_root, &mut icr);
            let draft = inventory::decode(inv_root, &mut r);
            if let Some(ic) = &ic
                && !ic.unused_fields.is_empty()
            {
                icr.info(
                    &FieldPath::root(),
                    format!(
                        "fields not used by kindling, kept as written: {}",
                        ic.unused_fields.join(", ")
                    ),
                    "",
                );
            }
            if let (Some(mut ic), Some(draft)) = (ic, draft) {
                let machine_networks = validate::check(&ic, &draft, &mut icr, &mut r);
                validate::check_use(purpose, &mut ic, &draft, &mut icr, &mut r);
                if let Some(dir) = dir {
                    inventory::check_bmc_files(&draft, dir, &mut r);
                }
                result = assemble(ic, draft, machine_networks);
            }
        }

        let mut findings = ic_findings;
        findings.append(&mut inv_findings);
        findings.sort_by_key(|d| d.severity);
        match result {
            Some(description) if count_errors(&findings) == 0 => Ok(Loaded {
                description,
                findings,
            }),
            _ => {
                if count_errors(&findings) == 0 {
                    findings.insert(
                        0,
                        Diagnostic {
                            severity: Severity::Error,
                            file: inventory.name.to_string(),
                            pos: yaml::Pos { line: 1, col: 1 },
                            path: FieldPath::root(),
                            message: "could not be read as a whole (this is a kindling bug)".into(),
                            hint: Some("please report it with the file".into()),
                        },
                    );
                }
                Err(LoadError::Invalid(findings))
            }
        }
    }
}

/// An input file as text. What cannot be a description (a directory, a symlink loop, bytes
/// that are not UTF-8) is told apart from an I/O failure.
pub fn read_input(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| {
        // EISDIR and ELOOP: io::ErrorKind names the first only on newer toolchains.
        let what = match source.raw_os_error() {
            Some(21) => Some("is a directory, not a file"),
            Some(40) => Some("is a symlink loop (a link that points back to itself)"),
            _ => None,
        };
        match what {
            Some(what) => LoadError::NotAFile {
                path: path.to_path_buf(),
                what: what.to_string(),
            },
            None => LoadError::Read {
                path: path.to_path_buf(),
                source,
            },
        }
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        LoadError::NotUtf8 {
            path: path.to_path_buf(),
            offset,
            line,
        }
    })
}

fn parse_yaml(source: Source<'_>, findings: &mut Vec<Diagnostic>) -> Option<yaml::Node> {
    match yaml::parse(source.text) {
        Ok(root) => Some(root),
        Err(e) => {
            findings.push(Diagnostic {
                severity: Severity::Error,
                file: source.name.to_string(),
                pos: e.pos,
                path: FieldPath::root(),
                message: format!("is not valid YAML: {}", e.message),
                hint: Some(
                    "fix the syntax at this position (indentation, quotes, ':' after keys)".into(),
                ),
            });
            None
        }
    }
}

fn assemble(
    ic: InstallConfig,
    draft: inventory::Draft,
    machine_networks: Vec<IpNet>,
) -> Option<ClusterDescription> {
    Some(ClusterDescription {
        install_config: ic,
        inventory: Inventory {
            provisioning: draft.provisioning?,
            network: draft.network?,
            load_balancer: draft.load_balancer?,
            kubernetes: draft.kubernetes?,
            machines: draft.machines.into_iter().collect::<Option<Vec<_>>>()?,
        },
        machine_networks,
    })
}

impl ClusterDescription {
    /// `<name>.<baseDomain>`.
    pub fn cluster_domain(&self) -> String {
        self.install_config.cluster_domain()
    }

    /// `api.<cluster domain>`: the API name clients outside the cluster use.
    pub fn api_host(&self) -> String {
        format!("api.{}", self.cluster_domain())
    }

    /// `api-int.<cluster domain>`: the API name the machines use.
    pub fn api_int_host(&self) -> String {
        format!("api-int.{}", self.cluster_domain())
    }

    /// `apps.<cluster domain>`, under which `*.apps` routes to the ingress VIP.
    pub fn apps_domain(&self) -> String {
        format!("apps.{}", self.cluster_domain())
    }

    /// `https://api.<cluster domain>:6443`.
    pub fn api_url(&self) -> String {
        format!("https://{}:6443", self.api_host())
    }

    /// The machine config server: `provisioning.mcsURL`, or `https://api-int.<cluster domain>:22623`.
    pub fn mcs_url(&self) -> String {
        self.inventory
            .provisioning
            .mcs_url
            .clone()
            .unwrap_or_else(|| format!("https://{}:22623", self.api_int_host()))
    }

    /// `<machine>.<cluster domain>`.
    pub fn fqdn(&self, machine: &Machine) -> String {
        format!("{}.{}", machine.name, self.cluster_domain())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DEMO_IC: &str = include_str!("../../../examples/demo/install-config.yaml");
    const DEMO_INV: &str = include_str!("../../../examples/demo/inventory.yaml");

    fn parse(ic: &str, inv: &str) -> Result<Loaded, LoadError> {
        ClusterDescription::parse(
            Source {
                name: INSTALL_CONFIG_FILE,
                text: ic,
            },
            Source {
                name: INVENTORY_FILE,
                text: inv,
            },
        )
    }

    /// A BMC per worker: the addresses parse; a credentials file anyone may read is refused,
    /// with its place and the fix, and its contents are never read here.
    #[test]
    fn bmc_credentials_files_are_checked_where_the_description_is() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let inv = DEMO_INV
            .replace(
                "    mac: \"52:54:00:7e:01:20\"\n",
                "    mac: \"52:54:00:7e:01:20\"\n    bmc: {address: \"redfish+https://10.0.0.5:8443/redfish/v1/Systems/a1\", credentials: bmc/w0.yaml, insecure: true}\n",
            )
            .replace(
                "    mac: \"52:54:00:7e:01:21\"\n",
                "    mac: \"52:54:00:7e:01:21\"\n    bmc: {address: \"ipmi://10.0.0.6\", credentials: /etc/kindling/w1.yaml}\n",
            );
        assert_eq!(inv.matches("bmc:").count(), 2);
        std::fs::write(dir.path().join(INSTALL_CONFIG_FILE), DEMO_IC).unwrap();
        std::fs::write(dir.path().join(INVENTORY_FILE), &inv).unwrap();
        std::fs::create_dir_all(dir.path().join("bmc")).unwrap();
        let secret = dir.path().join("bmc/w0.yaml");
        std::fs::write(&secret, "username: admin\npassword: sw0rdfish\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let findings = match ClusterDescription::load(dir.path()) {
            Err(LoadError::Invalid(findings)) => findings,
            other => panic!("{other:?}"),
        };
        let text: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        let all = text.join("\n");
        assert!(
            all.contains("machines[4].bmc.credentials: bmc/w0.yaml (in the asset directory) can be read by every user of this host (mode 644)")
                && all.contains("chmod 600 bmc/w0.yaml"),
            "{all}"
        );
        assert!(
            all.contains("machines[5].bmc.credentials: /etc/kindling/w1.yaml does not exist"),
            "{all}"
        );
        assert!(!all.contains("sw0rdfish"), "{all}");

        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join(INVENTORY_FILE),
            inv.replace("/etc/kindling/w1.yaml", "bmc/w0.yaml"),
        )
        .unwrap();
        let loaded = ClusterDescription::load(dir.path()).unwrap().description;
        let bmcs: Vec<&inventory::Bmc> = loaded
            .inventory
            .machines
            .iter()
            .filter_map(|m| m.bmc.as_ref())
            .collect();
        assert_eq!(
            bmcs[0].address,
            inventory::BmcAddress::Redfish {
                system_url: "https://10.0.0.5:8443/redfish/v1/Systems/a1".into()
            }
        );
        assert!(bmcs[0].insecure);
        assert_eq!(
            bmcs[1].address,
            inventory::BmcAddress::Ipmi {
                host: "10.0.0.6".into(),
                port: 623
            }
        );
        assert_eq!(bmcs[1].address.to_string(), "ipmi://10.0.0.6:623");
    }

    /// An install disk by rule: each machine must then name its own; wipeDisks never holds the
    /// install disk; a size is read as Kubernetes reads quantities.
    #[test]
    fn install_disk_rules_and_wiped_disks_are_checked() {
        let inv = DEMO_INV.replace(
            "  installDisk: /dev/vda\n",
            "  installDisk: {minSize: 100G, rotational: false}\n",
        );
        assert_ne!(inv, DEMO_INV);
        let errors = |inv: &str| match parse(DEMO_IC, inv) {
            Err(LoadError::Invalid(findings)) => findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("{other:?}"),
        };
        let all = errors(&inv);
        assert!(
            all.contains("machines[0]: machine bootstrap names no installDisk, and provisioning.installDisk is a rule ({minSize: 100G, rotational: false})")
                && all.contains("kindling machines accept"),
            "{all}"
        );
        let named = inv.replace(
            "    ip: ",
            "    installDisk: /dev/nvme0n1\n    wipeDisks: [/dev/sdb]\n    ip: ",
        );
        let loaded = parse(DEMO_IC, &named).unwrap().description;
        let p = &loaded.inventory.provisioning;
        assert_eq!(
            p.install_disk_rule,
            Some(inventory::DiskRule {
                min_size: Some(100_000_000_000),
                rotational: Some(false)
            })
        );
        assert_eq!(loaded.inventory.machines[3].wipe_disks, ["/dev/sdb"]);
        let wipes_own = named.replacen("wipeDisks: [/dev/sdb]", "wipeDisks: [/dev/nvme0n1]", 1);
        let all = errors(&wipes_own);
        assert!(all.contains("/dev/nvme0n1 is the disk machine"), "{all}");
        for (bad, why) in [
            ("{minSize: 100GB}", "'GB' is not a size unit"),
            ("{}", "no condition matches any disk"),
            ("{rotational: maybe}", "rotational"),
        ] {
            let text = named.replace("{minSize: 100G, rotational: false}", bad);
            let all = errors(&text);
            assert!(
                all.contains(why) && all.contains("provisioning.installDisk"),
                "{bad}: {all}"
            );
        }
        assert_eq!(inventory::parse_size("120Gi"), Ok(120 << 30));
        assert_eq!(inventory::size_text(120 << 30), "120Gi");
        assert_eq!(inventory::size_text(3 * 1000u64.pow(4)), "3T");
        assert_eq!(inventory::size_text(1234), "1234");
    }

    #[test]
    fn the_demo_loads_with_its_defaults() {
        let loaded = parse(DEMO_IC, DEMO_INV).unwrap();
        let d = &loaded.description;
        assert_eq!(d.inventory.machines.len(), 7);
        assert_eq!(d.inventory.with_role(Role::Master).count(), 3);
        assert_eq!(d.inventory.machines[6].macs.len(), 2);
        assert_eq!(d.api_url(), "https://api.demo.example.localdomain:6443");
        assert_eq!(
            d.mcs_url(),
            "https://api-int.demo.example.localdomain:22623"
        );
        assert_eq!(
            d.machine_networks,
            ["192.168.126.0/24".parse::<IpNet>().unwrap()]
        );
        let errors_or_warnings: Vec<_> = loaded
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .collect();
        assert!(errors_or_warnings.is_empty(), "{errors_or_warnings:?}");
    }

    /// Found by fuzzing the description: a multi-byte character before an SSH key made
    /// openssh-keys panic. A comment outside ASCII is still a key.
    #[test]
    fn ssh_keys_with_characters_outside_ascii_are_checked_without_a_panic() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk6PsczSizUBeFcIkUGOKJubO32bSq2lECdGqJD6ym/";
        for (line, valid) in [
            ("\u{7c5}\u{7c5} x".to_string(), false),
            (format!("\u{e9}\u{e9} {key}"), false),
            (format!("{key} Jos\u{e9}@portable"), true),
            (format!("no-pty {key} \u{e9}\u{e9}"), true),
        ] {
            let ic = DEMO_IC.replace(&format!("  {key} demo@kindling"), &format!("  {line}"));
            assert_ne!(ic, DEMO_IC);
            let refused = match parse(&ic, DEMO_INV) {
                Ok(_) => false,
                Err(LoadError::Invalid(findings)) => {
                    assert!(
                        findings
                            .iter()
                            .any(|f| f.message.contains("not an OpenSSH public key")),
                        "{findings:?}"
                    );
                    true
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(refused, !valid, "{line}");
        }
    }

    #[test]
    fn openshift_fields_near_kindlings_are_noted_and_typos_refused() {
        let inv = DEMO_INV.replace("192.168.126.", "10.0.0.");
        // OpenShift's own (deprecated) clusterNetworks and hyperthreading: noted, not typos.
        let ic = "apiVersion: v1\nbaseDomain: example.com\nmetadata: {name: c}\nplatform: {none: {}}\ncontrolPlane: {name: master, replicas: 3, hyperthreading: Enabled}\nnetworking:\n  clusterNetworks: [{cidr: 10.128.0.0/14, hostSubnetLength: 9}]\n";
        let loaded = parse(ic, &inv).unwrap_or_else(|e| panic!("{e:?}"));
        let note = loaded
            .findings
            .iter()
            .find(|f| f.severity == Severity::Info && f.message.contains("not used by kindling"))
            .unwrap();
        assert!(
            note.message.contains("networking.clusterNetworks"),
            "{note:?}"
        );
        assert!(
            note.message.contains("controlPlane.hyperthreading"),
            "{note:?}"
        );
        // A near miss of a field kindling reads: by case, and by two edits.
        for (typo, field) in [("Replicas", "replicas"), ("replcas", "replicas")] {
            let ic = format!(
                "apiVersion: v1\nbaseDomain: example.com\nmetadata: {{name: c}}\nplatform: {{none: {{}}}}\ncontrolPlane: {{name: master, {typo}: 3}}\n"
            );
            let Err(LoadError::Invalid(findings)) = parse(&ic, &inv) else {
                panic!("{typo} was taken");
            };
            let e = findings
                .iter()
                .find(|f| f.severity == Severity::Error)
                .unwrap();
            assert_eq!(e.path.to_string(), format!("controlPlane.{typo}"));
            assert_eq!(
                e.hint.as_deref(),
                Some(format!("did you mean '{field}'?").as_str())
            );
        }
    }

    #[test]
    fn openshift_defaults_fill_what_a_minimal_file_leaves_out() {
        let ic =
            "apiVersion: v1\nbaseDomain: example.com\nmetadata: {name: c}\nplatform: {none: {}}\n";
        let inv = DEMO_INV.replace("192.168.126.", "10.0.0.");
        let loaded = parse(ic, &inv).unwrap_or_else(|e| panic!("{e:?}"));
        let n = &loaded.description.install_config.networking;
        assert_eq!(n.cluster_network[0].cidr.to_string(), "10.128.0.0/14");
        assert_eq!(n.cluster_network[0].host_prefix, 23);
        assert_eq!(n.service_network[0].to_string(), "172.30.0.0/16");
        assert_eq!(n.network_type, "OVNKubernetes");
        assert_eq!(loaded.description.install_config.control_plane.replicas, 3);
        // Inventory defaults.
        let p = &loaded.description.inventory.provisioning;
        assert_eq!(p.ignition_version.as_str(), "3.3.0");
    }

    #[test]
    fn no_truncation_of_a_valid_file_panics() {
        for cut in 0..DEMO_INV.len() {
            if DEMO_INV.is_char_boundary(cut) {
                let _ = parse(DEMO_IC, &DEMO_INV[..cut]);
            }
        }
        for cut in 0..DEMO_IC.len() {
            if DEMO_IC.is_char_boundary(cut) {
                let _ = parse(&DEMO_IC[..cut], DEMO_INV);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Splices YAML-ish fragments into valid files: every result loads or is reported, and
        /// an error always comes with at least one error finding.
        #[test]
        fn no_edit_of_a_valid_file_panics(
            at in 0usize..2000,
            len in 0usize..40,
            insert in prop::sample::select(vec!["", ":", "- ", "[", "]", "{", "}", "\n  ", "\n", "'", "\"", "&a ", "*a", "~", "0x", "-1", "99999999999", "::", "é", "\t", "? ", "!!str ", "#"]),
            which in any::<bool>(),
        ) {
            let base = if which { DEMO_INV } else { DEMO_IC };
            let mut at = at.min(base.len());
            while !base.is_char_boundary(at) { at -= 1; }
            let mut end = (at + len).min(base.len());
            while !base.is_char_boundary(end) { end -= 1; }
            let edited = format!("{}{}{}", &base[..at], insert, &base[end.max(at)..]);
            let result = if which { parse(DEMO_IC, &edited) } else { parse(&edited, DEMO_INV) };
            if let Err(LoadError::Invalid(findings)) = result {
                prop_assert!(findings.iter().any(|f| f.severity == Severity::Error));
            }
        }
    }
}
