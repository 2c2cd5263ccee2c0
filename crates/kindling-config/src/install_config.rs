//! `install-config.yaml` in OpenShift's schema: the cluster's name, domain, networks and access.
//!
//! An unchanged OpenShift file loads. Fields kindling does not use are kept as written and named
//! once at info level; they are never rejected.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::{self, MapReader, UnknownKeys};
use crate::diagnostic::{FieldPath, Report};
use crate::names;
use crate::yaml::Node;

/// Fields of OpenShift's install-config schema (openshift/installer `pkg/types`), at any level,
/// that kindling does not read. They are noted, never taken for typos of the fields kindling
/// reads, however close (`clusterNetworks` is OpenShift's deprecated field, not a typo of
/// `clusterNetwork`).
const OPENSHIFT_FIELDS: &[&str] = &[
    // top level
    "kind",
    "additionalTrustBundlePolicy",
    "arbiter",
    "mirrorSourcePolicy",
    "publish",
    "cpuPartitioningMode",
    "credentialsMode",
    "bootstrapInPlace",
    "capabilities",
    "featureSet",
    "featureGates",
    "operatorPublishingStrategy",
    // metadata (an ObjectMeta)
    "namespace",
    "labels",
    "annotations",
    "creationTimestamp",
    "uid",
    // networking, and its deprecated forms
    "clusterNetworkMTU",
    "ovnKubernetesConfig",
    "machineCIDR",
    "serviceCIDR",
    "type",
    "clusterNetworks",
    "hostSubnetLength",
    // machine pools
    "hyperthreading",
    "architecture",
    "fencing",
    // platforms
    "aws",
    "azure",
    "gcp",
    "ibmcloud",
    "libvirt",
    "nutanix",
    "openstack",
    "ovirt",
    "powervs",
    "vsphere",
    "external",
];

/// openshift-install's defaults, which kindling follows.
pub const DEFAULT_CLUSTER_NETWORK: &str = "10.128.0.0/14";
pub const DEFAULT_HOST_PREFIX: u8 = 23;
pub const DEFAULT_SERVICE_NETWORK: &str = "172.30.0.0/16";
pub const DEFAULT_NETWORK_TYPE: &str = "OVNKubernetes";
pub const DEFAULT_CONTROL_PLANE_REPLICAS: u32 = 3;
pub const DEFAULT_COMPUTE_REPLICAS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallConfig {
    pub api_version: String,
    pub base_domain: String,
    /// `metadata.name`.
    pub cluster_name: String,
    pub control_plane: MachinePool,
    pub compute: Vec<MachinePool>,
    pub networking: Networking,
    pub platform: Platform,
    pub fips: bool,
    #[serde(skip)]
    pub pull_secret: Option<String>,
    /// One OpenSSH public key per line, as written.
    pub ssh_key: Option<String>,
    pub proxy: Option<Proxy>,
    pub additional_trust_bundle: Option<String>,
    /// `imageContentSources` and `imageDigestSources`, in that order: registries the site
    /// already mirrors, which the machines pull from instead of kindling's mirror.
    pub image_sources: Vec<ImageSource>,
    /// Paths of fields present in the file that kindling does not use.
    #[serde(skip)]
    pub unused_fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachinePool {
    pub name: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub cluster_network: Vec<ClusterNetwork>,
    pub service_network: Vec<IpNet>,
    /// Empty when the file does not set it; see `ClusterDescription::machine_networks`.
    pub machine_network: Vec<IpNet>,
    pub network_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    pub cidr: IpNet,
    pub host_prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    None,
    Baremetal,
}

/// One entry of `imageContentSources` or `imageDigestSources`: the images of `source` (a
/// registry such as `quay.io`, or a repository in it) are pulled from `mirrors`, in order, each a
/// `host[:port][/path]` that holds them under the same names below its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSource {
    pub source: String,
    pub mirrors: Vec<String>,
}

impl ImageSource {
    /// The mirror location of `image` (`registry/repository`), if this source covers it: the
    /// source is the image's registry or a repository prefix of it, on a path boundary.
    pub fn mirror_of(&self, image: &str) -> Option<String> {
        let rest = image.strip_prefix(self.source.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        self.mirrors.first().map(|m| format!("{m}{rest}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proxy {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl InstallConfig {
    /// The cluster's DNS domain, `<name>.<baseDomain>`.
    pub fn cluster_domain(&self) -> String {
        format!("{}.{}", self.cluster_name, self.base_domain)
    }

    /// The first service network, from which the API's and DNS's service IPs are taken.
    pub fn service_network(&self) -> IpNet {
        self.networking.service_network[0]
    }
}

pub(crate) fn decode(root: &Node, r: &mut Report) -> Option<InstallConfig> {
    let mut top = MapReader::new(root, FieldPath::root(), r)?;

    let api_version = top
        .require("apiVersion", r, "write 'apiVersion: v1'")
        .and_then(|(n, p)| {
            let v = decode::string(n, &p, r)?;
            if v != "v1" {
                r.error(
                    &p,
                    format!("apiVersion '{v}' is not supported"),
                    "write 'apiVersion: v1'",
                );
            }
            Some(v)
        });

    let base_domain = top
        .require("baseDomain", r, "set the DNS domain the cluster lives under, e.g. 'baseDomain: example.com'")
        .and_then(|(n, p)| {
            let v = decode::string(n, &p, r)?;
            if let Err(why) = names::check_domain(&v) {
                r.error(&p, format!("'{v}' is not a valid domain: {why}"), "use lower-case labels of letters, digits and '-', separated by dots, e.g. example.com");
            }
            Some(v)
        });

    let cluster_name = decode_metadata(&mut top, r);
    let control_plane = match top.take("controlPlane") {
        Some((n, p)) => decode_pool(n, p, "master", DEFAULT_CONTROL_PLANE_REPLICAS, r),
        None => Some(MachinePool {
            name: "master".into(),
            replicas: DEFAULT_CONTROL_PLANE_REPLICAS,
        }),
    };
    let compute = match top.take("compute") {
        Some((n, p)) => decode::list(n, &p, r).map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    decode_pool(item, p.index(i), "worker", DEFAULT_COMPUTE_REPLICAS, r)
                })
                .collect()
        }),
        None => Some(vec![MachinePool {
            name: "worker".into(),
            replicas: DEFAULT_COMPUTE_REPLICAS,
        }]),
    };
    let networking = decode_networking(top.take("networking"), r);
    let platform = decode_platform(&mut top, r);
    let fips = top
        .take("fips")
        .map_or(Some(false), |(n, p)| decode::boolean(n, &p, r));

    let pull_secret = top.take("pullSecret").and_then(|(n, p)| {
        let v = decode::string(n, &p, r)?;
        check_pull_secret(&v, &p, r);
        Some(v)
    });
    let ssh_key = top.take("sshKey").and_then(|(n, p)| {
        let v = decode::string(n, &p, r)?;
        check_ssh_keys(&v, &p, r);
        Some(v)
    });
    let proxy = top.take("proxy").and_then(|(n, p)| {
        let mut m = MapReader::new(n, p, r)?;
        let mut field = |key: &'static str, r: &mut Report| {
            m.take(key).and_then(|(n, p)| decode::string(n, &p, r))
        };
        let proxy = Proxy {
            http_proxy: field("httpProxy", r),
            https_proxy: field("httpsProxy", r),
            no_proxy: field("noProxy", r),
        };
        r_unused(m, r);
        Some(proxy)
    });
    let additional_trust_bundle = top.take("additionalTrustBundle").and_then(|(n, p)| {
        let v = decode::string(n, &p, r)?;
        if !v.contains("-----BEGIN CERTIFICATE-----") {
            r.error(
                &p,
                "holds no PEM certificate",
                "paste the CA certificates, each starting with '-----BEGIN CERTIFICATE-----'",
            );
        }
        Some(v)
    });

    let image_sources = decode_image_sources(&mut top, r);

    let mut unused = top.finish(
        UnknownKeys::Note {
            real: OPENSHIFT_FIELDS,
        },
        &[],
        r,
    );
    unused.append(&mut std::mem::take(&mut r.unused));

    Some(InstallConfig {
        api_version: api_version?,
        base_domain: base_domain?,
        cluster_name: cluster_name?,
        control_plane: control_plane?,
        compute: compute?,
        networking: networking?,
        platform: platform?,
        fips: fips?,
        pull_secret,
        ssh_key,
        proxy,
        additional_trust_bundle,
        image_sources: image_sources?,
        unused_fields: unused,
    })
}

/// Keeps the unused fields of a nested mapping for the single info line about them.
/// `imageContentSources` (OpenShift 4.x) and `imageDigestSources` (4.14 and later): each a
/// `source` repository or registry and its `mirrors`, written as image names without a scheme.
fn decode_image_sources(top: &mut MapReader<'_>, r: &mut Report) -> Option<Vec<ImageSource>> {
    let mut all = Vec::new();
    let mut ok = true;
    for key in ["imageContentSources", "imageDigestSources"] {
        let Some((n, p)) = top.take(key) else {
            continue;
        };
        let Some(items) = decode::list(n, &p, r) else {
            ok = false;
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = p.index(i);
            let Some(mut m) = MapReader::new(item, path.clone(), r) else {
                ok = false;
                continue;
            };
            let hint = "write it as an image name without a tag, e.g. quay.io/openshift-release-dev/ocp-release";
            let location = |(n, p): (&Node, FieldPath), r: &mut Report| {
                let v = decode::string(n, &p, r)?;
                if v.contains("://") || v.contains('@') || v.is_empty() || v.ends_with('/') {
                    r.error(
                        &p,
                        format!("'{v}' is not a registry or repository name"),
                        hint,
                    );
                    return None;
                }
                Some(v)
            };
            let source = m.require("source", r, hint).and_then(|f| location(f, r));
            let mirrors = m
                .require(
                    "mirrors",
                    r,
                    "list the mirror locations, e.g. [mirror.example.com:5000/ocp4]",
                )
                .and_then(|(n, p)| {
                    let items = decode::list(n, &p, r)?;
                    let mut mirrors = Vec::new();
                    for (j, item) in items.iter().enumerate() {
                        mirrors.push(location((item, p.index(j)), r)?);
                    }
                    if mirrors.is_empty() {
                        r.error(&p, "is empty", "list at least one mirror location");
                        return None;
                    }
                    Some(mirrors)
                });
            r_unused(m, r);
            match (source, mirrors) {
                (Some(source), Some(mirrors)) => all.push(ImageSource { source, mirrors }),
                _ => ok = false,
            }
        }
    }
    ok.then_some(all)
}

fn r_unused(m: MapReader<'_>, r: &mut Report) {
    let mut unused = m.finish(
        UnknownKeys::Note {
            real: OPENSHIFT_FIELDS,
        },
        &[],
        r,
    );
    r.unused.append(&mut unused);
}

fn decode_metadata(top: &mut MapReader<'_>, r: &mut Report) -> Option<String> {
    let hint = "set 'metadata: {name: <cluster name>}'";
    let (node, path) = top.require("metadata", r, hint)?;
    let mut m = MapReader::new(node, path, r)?;
    let name = m.require("name", r, hint).and_then(|(n, p)| {
        let v = decode::string(n, &p, r)?;
        if let Err(why) = names::check_label(&v) {
            r.error(&p, format!("cluster name '{v}' is not a DNS-1123 label: {why}"), "use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit");
        }
        Some(v)
    });
    r_unused(m, r);
    name
}

fn decode_pool(
    node: &Node,
    path: FieldPath,
    default_name: &str,
    default_replicas: u32,
    r: &mut Report,
) -> Option<MachinePool> {
    let mut m = MapReader::new(node, path, r)?;
    let name = m
        .take("name")
        .map_or(Some(default_name.to_string()), |(n, p)| {
            decode::string(n, &p, r)
        });
    let replicas = m
        .take("replicas")
        .map_or(Some(default_replicas), |(n, p)| decode::count(n, &p, r));
    r_unused(m, r);
    Some(MachinePool {
        name: name?,
        replicas: replicas?,
    })
}

fn decode_platform(top: &mut MapReader<'_>, r: &mut Report) -> Option<Platform> {
    let hint = "kindling installs on bare metal: write 'platform: {none: {}}' (or baremetal)";
    let (node, path) = top.require("platform", r, hint)?;
    let mut m = MapReader::new(node, path.clone(), r)?;
    let none = m.has("none");
    let baremetal = m.has("baremetal");
    let others = m.finish(
        UnknownKeys::Note {
            real: OPENSHIFT_FIELDS,
        },
        &[],
        r,
    );
    if let Some(other) = others.first() {
        r.error(
            &path,
            format!(
                "platform '{}' is not supported",
                other.trim_start_matches("platform.")
            ),
            hint,
        );
        return None;
    }
    match (none, baremetal) {
        (true, false) => Some(Platform::None),
        (false, true) => Some(Platform::Baremetal),
        (true, true) => {
            r.error(&path, "names both none and baremetal", "keep one platform");
            None
        }
        (false, false) => {
            r.error(&path, "names no platform", hint);
            None
        }
    }
}

fn decode_networking(found: Option<(&Node, FieldPath)>, r: &mut Report) -> Option<Networking> {
    let default_service: IpNet = DEFAULT_SERVICE_NETWORK.parse().ok()?;
    let default_cluster = ClusterNetwork {
        cidr: DEFAULT_CLUSTER_NETWORK.parse().ok()?,
        host_prefix: DEFAULT_HOST_PREFIX,
    };
    let Some((node, path)) = found else {
        return Some(Networking {
            cluster_network: vec![default_cluster],
            service_network: vec![default_service],
            machine_network: Vec::new(),
            network_type: DEFAULT_NETWORK_TYPE.into(),
        });
    };
    let mut m = MapReader::new(node, path.clone(), r)?;
    let mut ok = true;

    let cluster_network = match m.take("clusterNetwork") {
        None => vec![default_cluster],
        Some((n, p)) => {
            let items = decode::list(n, &p, r).unwrap_or_default();
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = p.index(i);
                let Some(mut e) = MapReader::new(item, ip.clone(), r) else {
                    ok = false;
                    continue;
                };
                let cidr = e
                    .require(
                        "cidr",
                        r,
                        "write the pod network, e.g. 'cidr: 10.128.0.0/14'",
                    )
                    .and_then(|(n, p)| cidr(n, &p, r));
                let host_prefix = match e.take("hostPrefix") {
                    None => Some(DEFAULT_HOST_PREFIX),
                    Some((n, p)) => decode::count(n, &p, r).and_then(|v| {
                        u8::try_from(v).ok().or_else(|| {
                            r.error(
                                &p,
                                format!("hostPrefix {v} is not a prefix length"),
                                "write a prefix length such as 23",
                            );
                            None
                        })
                    }),
                };
                r_unused(e, r);
                match (cidr, host_prefix) {
                    (Some(cidr), Some(host_prefix)) => {
                        check_host_prefix(cidr, host_prefix, &ip.key("hostPrefix"), r);
                        out.push(ClusterNetwork { cidr, host_prefix });
                    }
                    _ => ok = false,
                }
            }
            if items.is_empty() {
                r.error(
                    &p,
                    "is empty",
                    "list at least one pod network, e.g. '- {cidr: 10.128.0.0/14, hostPrefix: 23}'",
                );
                ok = false;
            }
            out
        }
    };
    let service_network = match m.take("serviceNetwork") {
        None => vec![default_service],
        Some((n, p)) => {
            let items = decode::list(n, &p, r).unwrap_or_default();
            if items.is_empty() {
                r.error(
                    &p,
                    "is empty",
                    "list the service network, e.g. '- 172.30.0.0/16'",
                );
                ok = false;
            }
            let nets: Vec<IpNet> = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| cidr(n, &p.index(i), r))
                .collect();
            ok &= nets.len() == items.len();
            nets
        }
    };
    let machine_network = match m.take("machineNetwork") {
        None => Vec::new(),
        Some((n, p)) => {
            let items = decode::list(n, &p, r).unwrap_or_default();
            let mut nets = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = p.index(i);
                let Some(mut e) = MapReader::new(item, ip, r) else {
                    continue;
                };
                if let Some(net) = e
                    .require(
                        "cidr",
                        r,
                        "write the machines' network, e.g. 'cidr: 192.168.1.0/24'",
                    )
                    .and_then(|(n, p)| cidr(n, &p, r))
                {
                    nets.push(net);
                }
                r_unused(e, r);
            }
            ok &= nets.len() == items.len();
            nets
        }
    };
    let network_type = m
        .take("networkType")
        .map_or(Some(DEFAULT_NETWORK_TYPE.to_string()), |(n, p)| {
            decode::string(n, &p, r)
        });
    r_unused(m, r);

    let networking = Networking {
        cluster_network,
        service_network,
        machine_network,
        network_type: network_type?,
    };
    if ok {
        check_overlaps(&networking, &path, r);
    }
    ok.then_some(networking)
}

/// A CIDR written as its network address.
fn cidr(node: &Node, path: &FieldPath, r: &mut Report) -> Option<IpNet> {
    let net: IpNet = decode::parsed(
        node,
        path,
        r,
        "a CIDR",
        "write an address and prefix length, e.g. 10.128.0.0/14",
    )?;
    if net.trunc() != net {
        r.error(
            path,
            format!("{net} has host bits set"),
            &format!("write the network address: {}", net.trunc()),
        );
        return None;
    }
    Some(net)
}

fn check_host_prefix(net: IpNet, host_prefix: u8, path: &FieldPath, r: &mut Report) {
    let max = net.max_prefix_len();
    if host_prefix < net.prefix_len() {
        r.error(path, format!("hostPrefix /{host_prefix} is larger than its clusterNetwork {net}"), &format!("each node's pod subnet is carved from the clusterNetwork: use a hostPrefix between {} and {}", net.prefix_len(), max - 2));
    } else if host_prefix > max - 2 {
        r.error(
            path,
            format!("hostPrefix /{host_prefix} leaves no addresses for pods"),
            &format!("use a hostPrefix of at most {} (23 is usual)", max - 2),
        );
    }
}

fn check_overlaps(net: &Networking, path: &FieldPath, r: &mut Report) {
    let mut all: Vec<(FieldPath, IpNet)> = Vec::new();
    for (i, c) in net.cluster_network.iter().enumerate() {
        all.push((path.key("clusterNetwork").index(i).key("cidr"), c.cidr));
    }
    for (i, s) in net.service_network.iter().enumerate() {
        all.push((path.key("serviceNetwork").index(i), *s));
    }
    for (i, m) in net.machine_network.iter().enumerate() {
        all.push((path.key("machineNetwork").index(i).key("cidr"), *m));
    }
    for (i, (pa, a)) in all.iter().enumerate() {
        for (pb, b) in &all[i + 1..] {
            if overlaps(a, b) {
                r.error(pb, format!("{b} overlaps {a} ({pa})"), "pod, service and machine networks must be disjoint: pick a range that does not overlap");
            }
        }
    }
}

pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_pull_secret(value: &str, path: &FieldPath, r: &mut Report) {
    let hint = "paste the pull secret JSON as one quoted string: '{\"auths\": {...}}'";
    match serde_json::from_str::<serde_json::Value>(value) {
        Err(e) => r.error(path, format!("is not JSON ({e})"), hint),
        Ok(json) => {
            if !json.get("auths").is_some_and(serde_json::Value::is_object) {
                r.error(path, "has no 'auths' object", hint);
            }
        }
    }
}

fn check_ssh_keys(value: &str, path: &FieldPath, r: &mut Report) {
    // Never echo a private key back, not even in part.
    if value.contains("PRIVATE KEY") {
        r.error(
            path,
            "holds a private key",
            "paste the public key (the .pub file) instead, and treat this private key as exposed",
        );
        return;
    }
    let mut any = false;
    for (i, line) in value.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        any = true;
        if let Err(e) = openssh_keys::PublicKey::parse(&ascii_words(line)) {
            let shown: String = line.chars().take(24).collect();
            r.error(path, format!("line {} ('{shown}…') is not an OpenSSH public key: {e}", i + 1), "paste the contents of a .pub file, e.g. ~/.ssh/id_ed25519.pub; never the private key");
        }
    }
    if !any {
        r.error(
            path,
            "holds no key",
            "paste the contents of a .pub file, or remove sshKey",
        );
    }
}

/// The words of `line` up to the first one with a character outside ASCII. openssh-keys 0.6.5
/// cuts an options prefix (`no-pty ssh-ed25519 ...`) at a count of characters taken as bytes,
/// which panics on a multi-byte character before the key; key types, base64 and options are
/// ASCII, so only a comment (or a quoted option) is cut, and a line that is not a key stays one.
fn ascii_words(line: &str) -> String {
    line.split_whitespace()
        .take_while(|word| word.is_ascii())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when `ip` is inside any of `nets`.
pub(crate) fn inside(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}
