//! `inventory.yaml`, kindling's own file: the machines and the network around them.
//!
//! Unlike install-config.yaml, unknown fields here are errors: a misspelt `instalDisk` must not be
//! silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::decode::{self, MapReader, UnknownKeys};
use crate::diagnostic::{FieldPath, Report};
use crate::mac::MacAddr;
use crate::names;
use crate::yaml::Node;

pub const API_VERSION: &str = "kindling/v1alpha1";
pub const KIND: &str = "Inventory";
pub const DEFAULT_INSTALL_DISK: &str = "/dev/sda";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub provisioning: Provisioning,
    pub network: Network,
    pub load_balancer: LoadBalancer,
    pub kubernetes: Kubernetes,
    pub machines: Vec<Machine>,
}

/// The Kubernetes release the cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kubernetes {
    /// `MAJOR.MINOR.PATCH`, without the leading `v` (the images are tagged `v<version>`).
    pub version: String,
}

/// The release kindling installs unless `kubernetes.version` says otherwise: one that
/// kubernetes-validate 1.37 has schemas for, with images on registry.k8s.io.
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.34.1";

impl Default for Kubernetes {
    fn default() -> Kubernetes {
        Kubernetes {
            version: DEFAULT_KUBERNETES_VERSION.to_string(),
        }
    }
}

impl Kubernetes {
    /// The minor version, e.g. 34 for 1.34.1.
    pub fn minor(&self) -> u32 {
        self.version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provisioning {
    /// Where machines fetch scripts, kernels and Ignition, e.g. `http://172.16.0.101:8080`.
    #[serde(rename = "serverURL")]
    pub server_url: String,
    /// The machine config server; `None` means `https://api-int.<cluster domain>:22623`.
    #[serde(rename = "mcsURL")]
    pub mcs_url: Option<String>,
    pub os: Os,
    pub os_images: OsImages,
    /// The default install disk, by path. When `installDisk` is a rule, this is unused: every
    /// machine names its own disk (`kindling machines accept` picks it by the rule).
    pub install_disk: String,
    /// `installDisk` written as a rule rather than a path.
    pub install_disk_rule: Option<DiskRule>,
    pub ignition_version: IgnitionVersion,
    /// Extra kernel arguments for every machine's network boot (consoles, drivers, debugging).
    pub kernel_args: Vec<String>,
    /// The hosts that run `kindling serve --store` side by side (highly available
    /// provisioning); `serverURL` is then the load balancer's address in front of them. Empty:
    /// one provisioning host, at `serverURL`.
    pub replicas: Vec<std::net::IpAddr>,
}

/// Kernel, initramfs and root filesystem (or disk image) URLs; unset ones take the OS default.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OsImages {
    pub kernel: Option<String>,
    pub initramfs: Option<String>,
    pub rootfs: Option<String>,
    pub image: Option<String>,
}

/// The Ignition-based OS the machines install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Fcos,
    Rhcos,
    Flatcar,
}

/// The Ignition spec version kindling emits. Specs 2.2 and 2.3 are for Ignition 0.x (RHCOS up to
/// 4.5), which reads nothing newer; kindling translates its configs down to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IgnitionVersion {
    V2_2,
    V2_3,
    V3_0,
    V3_1,
    V3_2,
    V3_3,
    V3_4,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub gateway: Option<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
    pub ntp_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadBalancer {
    /// `api.<cluster domain>`.
    #[serde(rename = "apiVIP")]
    pub api_vip: IpAddr,
    /// `api-int.<cluster domain>`; the same as `api_vip` unless set.
    #[serde(rename = "apiIntVIP")]
    pub api_int_vip: IpAddr,
    /// `*.apps.<cluster domain>`.
    #[serde(rename = "ingressVIP")]
    pub ingress_vip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The first label of the machine's FQDN, `<name>.<cluster domain>`.
    pub name: String,
    pub role: Role,
    /// Normalised; at least one.
    pub macs: Vec<MacAddr>,
    pub ip: IpAddr,
    pub install_disk: Option<String>,
    /// Disks whose partition tables Ignition wipes on install. Any other disk is left as it is.
    pub wipe_disks: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Its baseboard management controller, for `kindling power`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bmc: Option<Bmc>,
}

/// A machine's BMC: where it answers, and the file its user and password are in (never the
/// inventory itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bmc {
    #[serde(serialize_with = "display")]
    pub address: BmcAddress,
    /// As written: absolute, or relative to the asset directory. The file is YAML with
    /// `username` and `password`, mode 0600 (or 0640).
    pub credentials: String,
    /// Accept a certificate that does not verify (Redfish over https only).
    pub insecure: bool,
    /// Where `credentials` is in inventory.yaml, for the checks of the file itself.
    #[serde(skip)]
    pub(crate) credentials_at: FieldPath,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// How a BMC is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmcAddress {
    /// `redfish+https://host[:port]/redfish/v1/Systems/<id>` (or `redfish+http://`): the URL of
    /// the ComputerSystem, over https or http.
    Redfish { system_url: String },
    /// `ipmi://host[:port]`: IPMI v2.0 over the LAN (RMCP+, as ipmitool's lanplus), port 623
    /// unless given.
    Ipmi { host: String, port: u16 },
}

impl std::fmt::Display for BmcAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BmcAddress::Redfish { system_url } => write!(f, "redfish+{system_url}"),
            BmcAddress::Ipmi { host, port } => write!(f, "ipmi://{host}:{port}"),
        }
    }
}

impl BmcAddress {
    /// Parses an address as the inventory writes it; the error says what is wrong.
    pub fn parse(text: &str) -> Result<BmcAddress, String> {
        if let Some(url) = text
            .strip_prefix("redfish+")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        {
            check_url(url, &["https", "http"])?;
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("");
            let id = path.strip_prefix("/redfish/v1/Systems/").unwrap_or("");
            if id.is_empty() || id.contains('/') {
                return Err(format!(
                    "the path '{path}' is not a system's (/redfish/v1/Systems/<id>)"
                ));
            }
            return Ok(BmcAddress::Redfish {
                system_url: url.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("ipmi://") {
            check_url(text, &["ipmi"])?;
            let authority = rest.trim_end_matches('/');
            if authority.contains('/') {
                return Err("an ipmi:// address has no path".into());
            }
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse::<u16>()
                        .map_err(|_| format!("port '{p}' is not a port number"))?,
                ),
                _ => (authority, 623),
            };
            return Ok(BmcAddress::Ipmi {
                host: host.to_string(),
                port,
            });
        }
        Err(match text.split_once("://") {
            Some((scheme, _)) => {
                format!("scheme '{scheme}' is not redfish+https, redfish+http or ipmi")
            }
            None => "it is not an address with a scheme (redfish+https:// or ipmi://)".into(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Bootstrap,
    Master,
    Worker,
    Infra,
}

/// A node taint, written `key[=value]:Effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl Inventory {
    /// The machines with a given role, in inventory order.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(move |m| m.role == role)
    }
}

/// `provisioning.installDisk` as a rule: the disk is picked from the disks a machine reported
/// when it was discovered, the smallest that matches (leaving the bigger ones for data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskRule {
    /// In bytes.
    pub min_size: Option<u64>,
    pub rotational: Option<bool>,
}

impl fmt::Display for DiskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(size) = self.min_size {
            parts.push(format!("minSize: {}", size_text(size)));
        }
        if let Some(rotational) = self.rotational {
            parts.push(format!("rotational: {rotational}"));
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// A size as Kubernetes writes quantities: a number of bytes, or with a suffix K, M, G, T, P
/// (powers of 1000) or Ki, Mi, Gi, Ti, Pi (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "K" | "k" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "P" => 1000u64.pow(5),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        other => return Err(format!("'{other}' is not a size unit")),
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// A size in bytes, in the largest unit of [`parse_size`] that writes it exactly.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 10] = [
        ("Pi", 1 << 50),
        ("P", 1000u64.pow(5)),
        ("Ti", 1 << 40),
        ("T", 1000u64.pow(4)),
        ("Gi", 1 << 30),
        ("G", 1000u64.pow(3)),
        ("Mi", 1 << 20),
        ("M", 1000u64.pow(2)),
        ("Ki", 1 << 10),
        ("K", 1000),
    ];
    UNITS
        .iter()
        .find(|(_, unit)| bytes != 0 && bytes.is_multiple_of(*unit))
        .map_or(bytes.to_string(), |(name, unit)| {
            format!("{}{name}", bytes / unit)
        })
}

impl Machine {
    /// The disk to install to: the machine's own, or the inventory default.
    pub fn install_disk<'a>(&'a self, provisioning: &'a Provisioning) -> &'a str {
        self.install_disk
            .as_deref()
            .unwrap_or(&provisioning.install_disk)
    }
}

impl IgnitionVersion {
    pub const ALL: [IgnitionVersion; 7] = [
        IgnitionVersion::V2_2,
        IgnitionVersion::V2_3,
        IgnitionVersion::V3_0,
        IgnitionVersion::V3_1,
        IgnitionVersion::V3_2,
        IgnitionVersion::V3_3,
        IgnitionVersion::V3_4,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            IgnitionVersion::V2_2 => "2.2.0",
            IgnitionVersion::V2_3 => "2.3.0",
            IgnitionVersion::V3_0 => "3.0.0",
            IgnitionVersion::V3_1 => "3.1.0",
            IgnitionVersion::V3_2 => "3.2.0",
            IgnitionVersion::V3_3 => "3.3.0",
            IgnitionVersion::V3_4 => "3.4.0",
        }
    }

    /// The spec's major version: 2 (Ignition 0.x) or 3.
    pub fn major(&self) -> u32 {
        if *self < IgnitionVersion::V3_0 { 2 } else { 3 }
    }

    /// The spec to answer a client that reads up to `major.minor` in. A 3.x client gets the
    /// highest 3.x kindling writes that it reads. Every 2.x client gets 2.2.0, as the
    /// machine-config-operator answers: it is what Ignition 0.35 (RHCOS 4.5) asks for, and
    /// 0.35's own validator warns about 2.3.0's `ignition.security.tls` (which its runner
    /// honours: tests/cli/ignition_runner.rs).
    pub fn for_client(major: u32, minor: u32) -> Option<IgnitionVersion> {
        match major {
            2 => Some(IgnitionVersion::V2_2),
            3 => Self::ALL
                .into_iter()
                .filter(|v| v.major() == 3 && v.minor() <= minor)
                .max(),
            _ => None,
        }
    }

    fn minor(&self) -> u32 {
        let minor = self.as_str().split('.').nth(1).unwrap_or_default();
        minor.parse().unwrap_or_default()
    }
}

impl FromStr for IgnitionVersion {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

impl fmt::Display for IgnitionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IgnitionVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl FromStr for Os {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "fcos" => Ok(Os::Fcos),
            "rhcos" => Ok(Os::Rhcos),
            "flatcar" => Ok(Os::Flatcar),
            _ => Err(()),
        }
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "bootstrap" => Ok(Role::Bootstrap),
            "master" => Ok(Role::Master),
            "worker" => Ok(Role::Worker),
            "infra" => Ok(Role::Infra),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Bootstrap => "bootstrap",
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Infra => "infra",
        })
    }
}

impl FromStr for Taint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kv, effect) = s.rsplit_once(':').ok_or("it has no ':Effect'")?;
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            other => {
                return Err(format!(
                    "effect '{other}' is not NoSchedule, PreferNoSchedule or NoExecute"
                ));
            }
        };
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        check_label_key(key)?;
        if let Some(v) = value {
            check_label_value(v)?;
        }
        Ok(Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect,
        })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(v) = &self.value {
            write!(f, "={v}")?;
        }
        let effect = match self.effect {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        };
        write!(f, ":{effect}")
    }
}

impl Serialize for Taint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A Kubernetes label key: an optional DNS-subdomain prefix and '/', then a name.
fn check_label_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            names::check_domain(prefix).map_err(|why| format!("key prefix '{prefix}': {why}"))?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err(format!("key '{key}' has an empty name"));
    }
    check_label_value(name).map_err(|why| format!("key '{key}': {why}"))
}

/// A Kubernetes label value: at most 63 of letters, digits, '-', '_' and '.', starting and ending
/// with a letter or digit; empty is allowed.
fn check_label_value(value: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = value
        .chars()
        .next()
        .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric());
    if value.len() > names::MAX_LABEL || !value.chars().all(ok_char) || !ends_ok {
        return Err(format!(
            "'{value}' must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks an absolute http(s) URL with a host. The error says what is wrong.
pub(crate) fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("it is not an absolute URL (no scheme://)")?;
    if !schemes.contains(&scheme) {
        return Err(format!("scheme '{scheme}' is not {}", schemes.join(" or ")));
    }
    if url.chars().any(char::is_whitespace) {
        return Err("it contains white space".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host has no closing ']'")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{addr}' is not an IPv6 address"))?;
        (addr, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("port '{port}' is not a port number"));
    }
    Ok(())
}

/// The inventory as decoded, before the checks that need install-config.yaml too. A machine that
/// failed to decode is `None`, so later checks keep the user's indexes in their paths.
pub(crate) struct Draft {
    pub provisioning: Option<Provisioning>,
    pub network: Option<Network>,
    pub load_balancer: Option<LoadBalancer>,
    pub kubernetes: Option<Kubernetes>,
    pub machines: Vec<Option<Machine>>,
}

pub(crate) fn decode(root: &Node, r: &mut Report) -> Option<Draft> {
    let mut top = MapReader::new(root, FieldPath::root(), r)?;
    if let Some((n, p)) = top.require(
        "apiVersion",
        r,
        &format!("write 'apiVersion: {API_VERSION}'"),
    ) && let Some(v) = decode::string(n, &p, r)
        && v != API_VERSION
    {
        r.error(
            &p,
            format!("apiVersion '{v}' is not supported"),
            &format!("write 'apiVersion: {API_VERSION}'"),
        );
    }
    if let Some((n, p)) = top.require("kind", r, &format!("write 'kind: {KIND}'"))
        && let Some(v) = decode::string(n, &p, r)
        && v != KIND
    {
        r.error(
            &p,
            format!("kind '{v}' is not {KIND}"),
            &format!("write 'kind: {KIND}'"),
        );
    }

    let provisioning = top
        .require(
            "provisioning",
            r,
            "set 'provisioning: {serverURL: http://<provisioning host>:8080}'",
        )
        .and_then(|(n, p)| decode_provisioning(n, p, r));
    let network = match top.take("network") {
        Some((n, p)) => decode_network(n, p, r),
        None => Some(Network::default()),
    };
    let load_balancer = top
        .require(
            "loadBalancer",
            r,
            "set apiVIP and ingressVIP under 'loadBalancer:'",
        )
        .and_then(|(n, p)| decode_load_balancer(n, p, r));
    let kubernetes = match top.take("kubernetes") {
        Some((n, p)) => decode_kubernetes(n, p, r),
        None => Some(Kubernetes::default()),
    };
    let machines = match top.require("machines", r, "list the machines under 'machines:'") {
        Some((n, p)) => {
            let machines: Vec<Option<Machine>> = decode::list(n, &p, r)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, item)| decode_machine(item, p.index(i), r))
                .collect();
            if let Some(provisioning) = &provisioning {
                check_disks(provisioning, &machines, &p, r);
            }
            machines
        }
        None => Vec::new(),
    };
    top.finish(
        UnknownKeys::Reject,
        &[
            "apiVersion",
            "kind",
            "provisioning",
            "network",
            "loadBalancer",
            "kubernetes",
            "machines",
        ],
        r,
    );
    Some(Draft {
        provisioning,
        network,
        load_balancer,
        kubernetes,
        machines,
    })
}

/// Each machine names its disk where the default is a rule, and no machine wipes the disk it
/// installs to.
fn check_disks(
    provisioning: &Provisioning,
    machines: &[Option<Machine>],
    path: &FieldPath,
    r: &mut Report,
) {
    for (i, m) in machines.iter().enumerate() {
        let Some(m) = m else { continue };
        if let Some(rule) = &provisioning.install_disk_rule
            && m.install_disk.is_none()
        {
            r.error(
                &path.index(i),
                format!(
                    "machine {} names no installDisk, and provisioning.installDisk is a rule ({rule}), which only a machine's discovery report can resolve",
                    m.name
                ),
                "write its disk, e.g. installDisk: /dev/sda; or add the machine with `kindling machines accept`, which picks its disk by the rule",
            );
        }
        let disk = m.install_disk(provisioning);
        if let Some(at) = m.wipe_disks.iter().position(|d| d == disk) {
            r.error(
                &path.index(i).key("wipeDisks").index(at),
                format!("{disk} is the disk machine {} installs to", m.name),
                "list only data disks under wipeDisks: the install writes its own disk anyway",
            );
        }
    }
}

/// The Kubernetes minor versions kindling supports (1.30 to 1.37).
pub const KUBERNETES_MINORS: std::ops::RangeInclusive<u32> = 30..=37;

fn decode_kubernetes(node: &Node, path: FieldPath, r: &mut Report) -> Option<Kubernetes> {
    let mut m = MapReader::new(node, path, r)?;
    let version = match m.take("version") {
        None => Some(DEFAULT_KUBERNETES_VERSION.to_string()),
        Some((n, p)) => {
            let text = decode::string(n, &p, r)?;
            let bare = text.strip_prefix('v').unwrap_or(&text);
            let parts: Vec<&str> = bare.split('.').collect();
            let numeric = parts.len() == 3
                && parts
                    .iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()));
            let minor: u32 = parts.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
            if !numeric || parts[0] != "1" || !KUBERNETES_MINORS.contains(&minor) {
                r.error(
                    &p,
                    format!("'{text}' is not a supported Kubernetes release"),
                    &format!(
                        "write 1.{}.x to 1.{}.x, e.g. {DEFAULT_KUBERNETES_VERSION}",
                        KUBERNETES_MINORS.start(),
                        KUBERNETES_MINORS.end()
                    ),
                );
                None
            } else {
                Some(bare.to_string())
            }
        }
    };
    m.finish(UnknownKeys::Reject, &["version"], r);
    Some(Kubernetes { version: version? })
}

fn url_field(
    m: &mut MapReader<'_>,
    key: &'static str,
    schemes: &[&str],
    r: &mut Report,
) -> Option<String> {
    let (n, p) = m.take(key)?;
    let url = decode::string(n, &p, r)?;
    if let Err(why) = check_url(&url, schemes) {
        r.error(
            &p,
            format!("'{url}' is not a usable URL: {why}"),
            &format!(
                "write an absolute {} URL, e.g. {}://192.0.2.10:8080",
                schemes.join("/"),
                schemes[0]
            ),
        );
        return None;
    }
    Some(url)
}

fn absolute_path(n: &Node, p: &FieldPath, r: &mut Report) -> Option<String> {
    let path = decode::string(n, p, r)?;
    if !path.starts_with('/') {
        r.error(
            p,
            format!("'{path}' is not an absolute path"),
            "name the disk by absolute path, e.g. /dev/sda or /dev/disk/by-id/...",
        );
        return None;
    }
    Some(path)
}

fn decode_disk_rule(node: &Node, path: FieldPath, r: &mut Report) -> Option<DiskRule> {
    let mut m = MapReader::new(node, path.clone(), r)?;
    let min_size = match m.take("minSize") {
        None => Some(None),
        Some((n, p)) => {
            let text = decode::string(n, &p, r)?;
            parse_size(&text)
                .map_err(|why| {
                    r.error(
                        &p,
                        format!("minSize {why}"),
                        "write a size as Kubernetes does, e.g. 100G (10^9 bytes) or 120Gi (2^30 bytes)",
                    )
                })
                .ok()
                .map(Some)
        }
    };
    let rotational = match m.take("rotational") {
        None => Some(None),
        Some((n, p)) => decode::boolean(n, &p, r).map(Some),
    };
    m.finish(UnknownKeys::Reject, &["minSize", "rotational"], r);
    let rule = DiskRule {
        min_size: min_size?,
        rotational: rotational?,
    };
    if rule == DiskRule::default() {
        r.error(
            &path,
            "an installDisk rule with no condition matches any disk",
            "give minSize, rotational or both, e.g. {minSize: 100G, rotational: false}, or name the disk, e.g. /dev/sda",
        );
        return None;
    }
    Some(rule)
}

fn decode_provisioning(node: &Node, path: FieldPath, r: &mut Report) -> Option<Provisioning> {
    let mut m = MapReader::new(node, path, r)?;
    let server_url = match m.require(
        "serverURL",
        r,
        "write where machines fetch their boot files, e.g. serverURL: http://192.0.2.10:8080",
    ) {
        Some(_) => url_field(&mut m, "serverURL", &["http", "https"], r),
        None => None,
    };
    let mcs_url = url_field(&mut m, "mcsURL", &["https"], r);
    let os = m.take("os").map_or(Some(Os::Fcos), |(n, p)| {
        decode::parsed(n, &p, r, "a supported OS", "write fcos, rhcos or flatcar")
    });
    let os_images = match m.take("osImages") {
        None => Some(OsImages::default()),
        Some((n, p)) => MapReader::new(n, p, r).map(|mut im| {
            let schemes = ["http", "https"];
            let images = OsImages {
                kernel: url_field(&mut im, "kernel", &schemes, r),
                initramfs: url_field(&mut im, "initramfs", &schemes, r),
                rootfs: url_field(&mut im, "rootfs", &schemes, r),
                image: url_field(&mut im, "image", &schemes, r),
            };
            im.finish(
                UnknownKeys::Reject,
                &["kernel", "initramfs", "rootfs", "image"],
                r,
            );
            images
        }),
    };
    let (install_disk, install_disk_rule) = match m.take("installDisk") {
        None => (Some(DEFAULT_INSTALL_DISK.to_string()), Some(None)),
        Some((n, p)) if matches!(n.value, crate::yaml::Value::Map(_)) => (
            Some(DEFAULT_INSTALL_DISK.to_string()),
            decode_disk_rule(n, p, r).map(Some),
        ),
        Some((n, p)) => (absolute_path(n, &p, r), Some(None)),
    };
    let ignition_version =
        m.take("ignitionVersion")
            .map_or(Some(IgnitionVersion::V3_3), |(n, p)| {
                decode::parsed(
                    n,
                    &p,
                    r,
                    "a supported Ignition spec version",
                    "write one of 2.2.0, 2.3.0 (Ignition 0.x, RHCOS up to 4.5), 3.0.0, 3.1.0, 3.2.0, 3.3.0, 3.4.0 (quoted or not)",
                )
            });
    let kernel_args = match m.take("kernelArgs") {
        None => Some(Vec::new()),
        Some((n, p)) => decode::list(n, &p, r).map(|items| {
            let mut args = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = p.index(i);
                let Some(arg) = decode::string(item, &path, r) else { continue };
                if arg.is_empty() || arg.chars().any(char::is_whitespace) {
                    r.error(&path, format!("'{arg}' is not one kernel argument"), "write one argument per list item, without spaces, e.g. console=ttyS0,115200n8");
                } else {
                    args.push(arg);
                }
            }
            args
        }),
    };
    let replicas: Vec<std::net::IpAddr> = match m.take("replicas") {
        None => Vec::new(),
        Some((n, p)) => {
            let replicas = decode::parsed_list(
                n,
                &p,
                r,
                "an IP address",
                "write the address of each host that runs kindling serve --store, e.g. [192.0.2.11, 192.0.2.12]",
            );
            check_replicas(&replicas, server_url.as_deref(), &p, r);
            replicas
        }
    };
    m.finish(
        UnknownKeys::Reject,
        &[
            "serverURL",
            "mcsURL",
            "os",
            "osImages",
            "installDisk",
            "ignitionVersion",
            "kernelArgs",
            "replicas",
        ],
        r,
    );
    Some(Provisioning {
        server_url: server_url?,
        mcs_url,
        os: os?,
        os_images: os_images?,
        install_disk: install_disk?,
        install_disk_rule: install_disk_rule?,
        ignition_version: ignition_version?,
        kernel_args: kernel_args?,
        replicas,
    })
}

/// Replicas are distinct, and `serverURL` is not one of them: the machines must reach the
/// load balancer in front of them, or one replica's loss would still stop their boot.
fn check_replicas(
    replicas: &[std::net::IpAddr],
    server_url: Option<&str>,
    path: &FieldPath,
    r: &mut Report,
) {
    for (i, replica) in replicas.iter().enumerate() {
        if replicas[..i].contains(replica) {
            r.error(
                &path.index(i),
                format!("{replica} is listed twice"),
                "list each replica's address once",
            );
        }
    }
    let host = server_url
        .and_then(|url| url.split_once("://"))
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .map(|authority| match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        });
    if let Some(ip) = host.and_then(|h| h.parse::<std::net::IpAddr>().ok())
        && replicas.contains(&ip)
    {
        r.error(
            path,
            format!("serverURL's host {ip} is one of the replicas"),
            "with replicas, serverURL is the load balancer's address in front of them (kindling create infra puts it in haproxy.cfg); give it an address of its own",
        );
    }
}

fn decode_network(node: &Node, path: FieldPath, r: &mut Report) -> Option<Network> {
    let mut m = MapReader::new(node, path, r)?;
    let ip_hint = "write an IP address, e.g. 192.0.2.1";
    let gateway = m
        .take("gateway")
        .and_then(|(n, p)| decode::parsed(n, &p, r, "an IP address", ip_hint));
    let dns_servers = m
        .take("dnsServers")
        .map(|(n, p)| decode::parsed_list(n, &p, r, "an IP address", ip_hint))
        .unwrap_or_default();
    let ntp_servers = m
        .take("ntpServers")
        .map(|(n, p)| {
            decode::parsed_list(
                n,
                &p,
                r,
                "a host name or address",
                "write a host name or IP address",
            )
        })
        .unwrap_or_default();
    m.finish(
        UnknownKeys::Reject,
        &["gateway", "dnsServers", "ntpServers"],
        r,
    );
    Some(Network {
        gateway,
        dns_servers,
        ntp_servers,
    })
}

fn decode_load_balancer(node: &Node, path: FieldPath, r: &mut Report) -> Option<LoadBalancer> {
    let mut m = MapReader::new(node, path, r)?;
    let mut vip = |key: &'static str, required: bool, r: &mut Report| {
        let hint = format!("write the virtual IP for {key}, e.g. {key}: 192.0.2.5");
        let found = if required {
            m.require(key, r, &hint)
        } else {
            m.take(key)
        };
        found.and_then(|(n, p)| decode::parsed::<IpAddr>(n, &p, r, "an IP address", &hint))
    };
    let api_vip = vip("apiVIP", true, r);
    let api_int_vip = vip("apiIntVIP", false, r);
    let ingress_vip = vip("ingressVIP", true, r);
    m.finish(
        UnknownKeys::Reject,
        &["apiVIP", "apiIntVIP", "ingressVIP"],
        r,
    );
    let api_vip = api_vip?;
    Some(LoadBalancer {
        api_vip,
        api_int_vip: api_int_vip.unwrap_or(api_vip),
        ingress_vip: ingress_vip?,
    })
}

fn decode_machine(node: &Node, path: FieldPath, r: &mut Report) -> Option<Machine> {
    let mut m = MapReader::new(node, path.clone(), r)?;
    let name = m.require("name", r, "give the machine a host name, e.g. name: master0").and_then(|(n, p)| {
        let name = decode::string(n, &p, r)?;
        if let Err(why) = names::check_label(&name) {
            r.error(&p, format!("'{name}' is not a DNS-1123 label: {why}"), "use lower-case letters, digits and '-'; the FQDN is <name>.<cluster>.<baseDomain>");
            return None;
        }
        Some(name)
    });
    let role = m
        .require("role", r, "write role: bootstrap, master, worker or infra")
        .and_then(|(n, p)| {
            decode::parsed(
                n,
                &p,
                r,
                "a role",
                "write bootstrap, master, worker or infra",
            )
        });
    let macs = decode_macs(&mut m, &path, r);
    let ip = m
        .require(
            "ip",
            r,
            "write the machine's fixed address, e.g. ip: 192.0.2.21",
        )
        .and_then(|(n, p)| {
            decode::parsed(
                n,
                &p,
                r,
                "an IP address",
                "write an IP address, e.g. 192.0.2.21",
            )
        });
    let install_disk = match m.take("installDisk") {
        Some((n, p)) => absolute_path(n, &p, r).map(Some),
        None => Some(None),
    };
    let wipe_disks = match m.take("wipeDisks") {
        None => Some(Vec::new()),
        Some((n, p)) => {
            let items = decode::list(n, &p, r)?;
            let disks: Vec<String> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| absolute_path(item, &p.index(i), r))
                .collect();
            (disks.len() == items.len()).then_some(disks)
        }
    };
    let labels = match m.take("labels") {
        None => Some(BTreeMap::new()),
        Some((n, p)) => decode_labels(n, p, r),
    };
    let taints = match m.take("taints") {
        None => Some(Vec::new()),
        Some((n, p)) => {
            let items = decode::list(n, &p, r)?;
            let taints: Vec<Taint> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let ip = p.index(i);
                    let text = decode::string(item, &ip, r)?;
                    text.parse()
                        .map_err(|why| {
                            r.error(
                                &ip,
                                format!("taint '{text}' is not valid: {why}"),
                                "write key[=value]:Effect, e.g. infra=reserved:NoSchedule",
                            )
                        })
                        .ok()
                })
                .collect();
            (taints.len() == items.len()).then_some(taints)
        }
    };
    let bmc = match m.take("bmc") {
        None => Some(None),
        Some((n, p)) => decode_bmc(n, p, r).map(Some),
    };
    m.finish(
        UnknownKeys::Reject,
        &[
            "name",
            "role",
            "mac",
            "macs",
            "ip",
            "installDisk",
            "wipeDisks",
            "labels",
            "taints",
            "bmc",
        ],
        r,
    );
    Some(Machine {
        name: name?,
        role: role?,
        macs: macs?,
        ip: ip?,
        install_disk: install_disk?,
        wipe_disks: wipe_disks?,
        labels: labels?,
        taints: taints?,
        bmc: bmc?,
    })
}

fn decode_bmc(node: &Node, path: FieldPath, r: &mut Report) -> Option<Bmc> {
    let mut m = MapReader::new(node, path, r)?;
    let address = m
        .require(
            "address",
            r,
            "write the BMC's address, e.g. address: redfish+https://10.0.0.5/redfish/v1/Systems/1 or ipmi://10.0.0.5:623",
        )
        .and_then(|(n, p)| {
            let text = decode::string(n, &p, r)?;
            BmcAddress::parse(&text)
                .map_err(|why| {
                    r.error(
                        &p,
                        format!("'{text}' is not a BMC address: {why}"),
                        "write redfish+https://<bmc>/redfish/v1/Systems/<id> (or redfish+http://) or ipmi://<bmc>[:623]",
                    )
                })
                .ok()
        });
    let credentials = m
        .require(
            "credentials",
            r,
            "name the file with the BMC's username and password (mode 0600), e.g. credentials: bmc/worker0.yaml; never the password itself",
        )
        .and_then(|(n, p)| Some((decode::string(n, &p, r)?, p)));
    let insecure = match m.take("insecure") {
        None => Some(false),
        Some((n, p)) => decode::boolean(n, &p, r),
    };
    for secret in ["password", "username", "user"] {
        if let Some((_, p)) = m.take(secret) {
            r.error(
                &p,
                "a BMC's user and password never go in inventory.yaml, which is read by many and kept in version control",
                "put `username:` and `password:` in the credentials file (mode 0600) and name it with credentials:",
            );
        }
    }
    m.finish(
        UnknownKeys::Reject,
        &["address", "credentials", "insecure"],
        r,
    );
    let (credentials, credentials_at) = credentials?;
    Some(Bmc {
        address: address?,
        credentials,
        insecure: insecure?,
        credentials_at,
    })
}

fn decode_macs(m: &mut MapReader<'_>, path: &FieldPath, r: &mut Report) -> Option<Vec<MacAddr>> {
    let hint = "write the boot NIC's address, e.g. mac: \"52:54:00:12:34:56\" (or macs: [...])";
    let (nodes, paths): (Vec<&Node>, Vec<FieldPath>) = match (m.take("mac"), m.take("macs")) {
        (Some(_), Some((_, p))) => {
            r.error(
                &p,
                "is given together with mac",
                "use mac for one address or macs for several, not both",
            );
            return None;
        }
        (Some((n, p)), None) => (vec![n], vec![p]),
        (None, Some((n, p))) => {
            let items = decode::list(n, &p, r)?;
            if items.is_empty() {
                r.error(&p, "is empty", hint);
                return None;
            }
            (
                items.iter().collect(),
                (0..items.len()).map(|i| p.index(i)).collect(),
            )
        }
        (None, None) => {
            r.error(&path.key("mac"), "is required but missing", hint);
            return None;
        }
    };
    let want = nodes.len();
    let mut macs = Vec::with_capacity(want);
    for (node, p) in nodes.into_iter().zip(paths) {
        let text = decode::string(node, &p, r)?;
        match text.parse::<MacAddr>() {
            Err(e) => r.error(&p, e.to_string(), "copy it from the machine's NIC or BMC; quote it"),
            Ok(mac) if mac.is_zero() => r.error(&p, format!("{mac} is the all-zero address"), "use the NIC's real address"),
            Ok(mac) if mac.is_multicast() => r.error(&p, format!("{mac} is a multicast address (the low bit of the first octet is set), which no NIC has"), "use the NIC's real unicast address"),
            Ok(mac) => macs.push(mac),
        }
    }
    (macs.len() == want).then_some(macs)
}

fn decode_labels(node: &Node, path: FieldPath, r: &mut Report) -> Option<BTreeMap<String, String>> {
    let m = MapReader::new(node, path.clone(), r)?;
    let mut labels = BTreeMap::new();
    let mut ok = true;
    for (key, value) in m.entries() {
        let p = path.key(&key.name);
        let value = if value.is_null() {
            Some(String::new())
        } else {
            decode::string(value, &p, r)
        };
        let checked = check_label_key(&key.name)
            .and_then(|()| check_label_value(value.as_deref().unwrap_or_default()));
        match (checked, value) {
            (Ok(()), Some(value)) => {
                labels.insert(key.name.to_string(), value);
            }
            (Err(why), _) => {
                r.error(
                    &p,
                    format!("label is not valid: {why}"),
                    "write labels as key: value, e.g. node-role.kubernetes.io/storage: \"\"",
                );
                ok = false;
            }
            (Ok(()), None) => ok = false,
        }
    }
    ok.then_some(labels)
}

/// The checks of the BMC credentials files, which need the asset directory: each must exist, be
/// a file, and be readable by no other user (0600, or 0640 for a group a server runs as).
pub(crate) fn check_bmc_files(draft: &Draft, dir: &std::path::Path, r: &mut Report) {
    use std::os::unix::fs::PermissionsExt as _;
    for bmc in draft
        .machines
        .iter()
        .flatten()
        .filter_map(|m| m.bmc.as_ref())
    {
        let path = dir.join(&bmc.credentials);
        // As written: a relative path is the asset directory's.
        let shown = if bmc.credentials.starts_with('/') {
            bmc.credentials.clone()
        } else {
            format!("{} (in the asset directory)", bmc.credentials)
        };
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.error(
                &bmc.credentials_at,
                format!("{shown} does not exist"),
                &format!(
                    "write the BMC's `username:` and `password:` there, then chmod 600 {}",
                    bmc.credentials
                ),
            ),
            Err(e) => r.error(
                &bmc.credentials_at,
                format!("{shown} cannot be read: {e}"),
                "make it readable by the user kindling runs as",
            ),
            Ok(meta) if !meta.is_file() => r.error(
                &bmc.credentials_at,
                format!("{shown} is not a file"),
                "name a file with `username:` and `password:`",
            ),
            Ok(meta) if meta.permissions().mode() & 0o007 != 0 => r.error(
                &bmc.credentials_at,
                format!(
                    "{shown} can be read by every user of this host (mode {:o}): it holds a BMC's password",
                    meta.permissions().mode() & 0o777
                ),
                &format!("chmod 600 {}", bmc.credentials),
            ),
            Ok(_) => {}
        }
    }
}
