//! Kubernetes manifests as YAML text: the cluster add-ons that `kindling agent bootstrap` applies,
//! the control plane's static pods, and each machine's kubelet configuration and systemd unit.
//!
//! Rendering only: nothing here reads or writes a file, and every function is a pure function of
//! the validated description. Where a file ends up on a machine is `crate::layout`'s business.
//!
//! Objects are built as JSON values and written with serde-saphyr, which quotes every string that
//! a YAML 1.1 reader (PyYAML, go-yaml v2) or a YAML 1.2 reader would otherwise take for a boolean,
//! number or null: `"true"`, `"0600"`, `"1.34"`, `""`, `"yes"`. Keys come out sorted, as
//! serde_json's maps are without its `preserve_order` feature (left off so that kindling's other
//! JSON output keeps its order); Kubernetes does not care about key order. Each file holds one
//! object, so that applying the add-ons in file-name order is also applying them in object order.

mod addons;
mod check;
#[cfg(test)]
mod flags;
mod images;
mod kubelet;
mod static_pods;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use kindling_config::ClusterDescription;
use kindling_config::install_config::{ClusterNetwork, DEFAULT_HOST_PREFIX};
use serde_json::Value;

pub use addons::{BOOTSTRAP_TOKEN_SECRET_FILE, addons};
pub use check::check_manifest;
pub use images::Images;
pub use kubelet::{
    KubeletMode, kubelet_config, kubelet_env, kubelet_may_set_label, kubelet_node_args,
    kubelet_unit, node_labels, node_taints,
};
pub use static_pods::{
    ETCD_CLIENT_PORT, ETCD_METRICS_PORT, ETCD_PEER_PORT, bootstrap_control_plane,
    etcd_initial_cluster, etcd_member_pod, master_control_plane,
};

/// One manifest file: its file name (e.g. "54-coredns-deployment.yaml") and its YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The file name, without a directory: where it goes is the caller's choice.
    pub name: String,
    /// The file's text, starting with a comment line that says what it is.
    pub yaml: String,
}

impl Manifest {
    /// True for the file that carries the bootstrap token's secret half, which must be written
    /// readable by root only.
    pub fn holds_secret(&self) -> bool {
        self.name == BOOTSTRAP_TOKEN_SECRET_FILE
    }
}

/// The bootstrap token the kubelets join with (id: 6 chars [a-z0-9], secret: 16 chars [a-z0-9]).
#[derive(Debug, Clone, Copy)]
pub struct BootstrapToken<'a> {
    /// The public half, which names the Secret.
    pub id: &'a str,
    /// The private half.
    pub secret: &'a str,
    /// When the API server stops accepting it (RFC 3339), as kubeadm's tokens expire.
    pub expiration: &'a str,
}

impl BootstrapToken<'_> {
    /// Whether the token has the shape the apiserver accepts; any other token is ignored by its
    /// bootstrap-token authenticator, and kubelets joining with it are refused.
    pub fn is_well_formed(&self) -> bool {
        let ok = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        ok(self.id, 6) && ok(self.secret, 16)
    }

    /// `<id>.<secret>`, as it goes into a bootstrap kubeconfig.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

/// The cluster's internal DNS domain. kindling follows OpenShift and upstream here: Services are
/// `<name>.<namespace>.svc.cluster.local`, whatever the cluster's external domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The port every kube-apiserver serves on, and the one api and api-int balance.
pub const API_PORT: u16 = 6443;
/// The user name (certificate CN) of kube-apiserver's client certificate towards the kubelets;
/// the add-ons grant this user the kubelet API.
pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The CN of the front proxy's client certificate; the apiserver trusts request headers only
/// from a client with this name.
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

/// openshift-install's default pod network, used only if a description somehow has none.
const FALLBACK_POD_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 128, 0, 0), 14);
/// openshift-install's default service network, likewise.
const FALLBACK_SERVICE_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 30, 0, 0), 16);

/// The pod network: the first `clusterNetwork`. kindling runs single-stack, so a second entry
/// (another family, for dual stack) is not used.
pub fn pod_network(d: &ClusterDescription) -> ClusterNetwork {
    d.install_config
        .networking
        .cluster_network
        .first()
        .copied()
        .unwrap_or(ClusterNetwork {
            cidr: IpNet::V4(FALLBACK_POD_NETWORK),
            host_prefix: DEFAULT_HOST_PREFIX,
        })
}

/// The service network: the first `serviceNetwork`.
pub fn service_network(d: &ClusterDescription) -> IpNet {
    d.install_config
        .networking
        .service_network
        .first()
        .copied()
        .unwrap_or(IpNet::V4(FALLBACK_SERVICE_NETWORK))
}

/// CoreDNS's Service IP: the service network's address + 10, as kubeadm and OpenShift choose it
/// (172.30.0.10 for 172.30.0.0/16). The kubelets hand it to every pod as its nameserver.
pub fn dns_service_ip(d: &ClusterDescription) -> IpAddr {
    nth_address(service_network(d), 10)
}

/// The `kubernetes` Service's IP: the service network's address + 1, which the apiserver takes for
/// itself. Its serving certificate must name it.
pub fn api_service_ip(d: &ClusterDescription) -> IpAddr {
    nth_address(service_network(d), 1)
}

/// The network's address plus `n`. Past the end of a tiny network the result lies outside it, and
/// the apiserver then refuses the Service: a loud failure rather than a silently moved address.
fn nth_address(net: IpNet, n: u32) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4.network()).saturating_add(n))),
        IpNet::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            u128::from(v6.network()).saturating_add(u128::from(n)),
        )),
    }
}

/// `scheme://ip:port`, with brackets around an IPv6 address.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, port))
}

/// A manifest file: a one-line header comment, then the object as YAML.
fn manifest(name: impl Into<String>, what: &str, object: &Value) -> Manifest {
    Manifest {
        name: name.into(),
        yaml: format!("# {what}. Generated by kindling.\n{}", to_yaml(object)),
    }
}

/// The value as YAML. serde-saphyr fails only on writer errors, which a `String` never has, or
/// on options, which are fixed here; should it fail anyway, JSON is valid YAML and says the same.
fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| format!("{value}\n"))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Test helpers: the demo description, and YAML read back the way a YAML 1.2 reader does.

    use std::collections::BTreeMap;

    use kindling_config::yaml::{self, Node};
    use kindling_config::{ClusterDescription, Source};
    use serde_json::{Map, Value};

    const DEMO_IC: &str = include_str!("../../../../examples/demo/install-config.yaml");
    const DEMO_INV: &str = include_str!("../../../../examples/demo/inventory.yaml");

    /// The demo description, with `edit` applied to inventory.yaml first.
    pub fn demo_with(edit: impl FnOnce(&str) -> String) -> ClusterDescription {
        let inventory = edit(DEMO_INV);
        ClusterDescription::parse(
            Source {
                name: "install-config.yaml",
                text: DEMO_IC,
            },
            Source {
                name: "inventory.yaml",
                text: &inventory,
            },
        )
        .unwrap_or_else(|e| panic!("the demo description does not load: {e:?}"))
        .description
    }

    pub fn demo() -> ClusterDescription {
        demo_with(str::to_string)
    }

    /// Parses a one-document YAML file into JSON, resolving plain scalars with the YAML 1.2 core
    /// schema. Quoted and block scalars are strings.
    pub fn parse(text: &str) -> Value {
        let node = yaml::parse(text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
        to_json(&node)
    }

    fn to_json(node: &Node) -> Value {
        match &node.value {
            yaml::Value::Scalar { text, plain: false } => Value::String(text.to_string()),
            yaml::Value::Scalar { text, plain: true } => resolve(text),
            yaml::Value::Seq(items) => items.iter().map(to_json).collect(),
            yaml::Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.to_string(), to_json(v)))
                .collect::<Map<_, _>>()
                .into(),
        }
    }

    fn resolve(text: &str) -> Value {
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
            "true" | "True" | "TRUE" => return Value::Bool(true),
            "false" | "False" | "FALSE" => return Value::Bool(false),
            _ => {}
        }
        let numeric_start = text
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if numeric_start {
            if let Ok(i) = text.parse::<i64>() {
                return Value::from(i);
            }
            if let Ok(f) = text.parse::<f64>() {
                return Value::from(f);
            }
        }
        Value::String(text.to_string())
    }

    /// The value at a `/`-separated path of keys and list indexes, e.g. `spec/containers/0/image`.
    pub fn at<'v>(value: &'v Value, path: &str) -> &'v Value {
        path.split('/')
            .fold(value, |v, key| match key.parse::<usize>() {
                Ok(i) if v.is_array() => &v[i],
                _ => &v[key],
            })
    }

    /// The files by name, parsed.
    pub fn parsed(manifests: &[super::Manifest]) -> BTreeMap<String, Value> {
        manifests
            .iter()
            .map(|m| (m.name.clone(), parse(&m.yaml)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! The real consumer: kubernetes-validate checks every manifest against the Kubernetes
    //! schemas of the cluster's version, and PyYAML (the YAML 1.1 reader it uses) must read
    //! each file exactly as a YAML 1.2 reader does.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use kindling_config::{ClusterDescription, Role};
    use serde_json::Value;

    use super::testing::{demo, demo_with, parse};
    use super::*;

    const TOKEN: BootstrapToken<'static> = BootstrapToken {
        id: "012345",
        secret: "1234567890e12345",
        expiration: "2026-12-08T00:00:00Z",
    };

    /// Every file kindling renders for the description, by path relative to the output
    /// directory: add-ons, the bootstrap control plane, each master's static pods and every
    /// machine's KubeletConfiguration.
    fn every_manifest(d: &ClusterDescription) -> BTreeMap<PathBuf, String> {
        let mut files = BTreeMap::new();
        let mut add = |dir: &str, manifests: Vec<Manifest>| {
            for m in manifests {
                files.insert(Path::new(dir).join(&m.name), m.yaml);
            }
        };
        add("addons", addons(d, &TOKEN));
        for bootstrap in d.inventory.with_role(Role::Bootstrap) {
            add("bootstrap", bootstrap_control_plane(d, bootstrap));
        }
        for master in d.inventory.with_role(Role::Master) {
            add(&master.name, master_control_plane(d, master));
        }
        for machine in &d.inventory.machines {
            files.insert(
                Path::new("kubelet").join(format!("{}.yaml", machine.name)),
                kubelet_config(d, KubeletMode::of(machine.role)),
            );
        }
        files
    }

    fn tool(name: &str) -> PathBuf {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not on PATH: run ./test.sh, which installs kubernetes-validate \
                     into .venv/bin and puts that directory on PATH"
                )
            })
    }

    fn major_minor(version: &str) -> &str {
        let end = version
            .match_indices('.')
            .nth(1)
            .map_or(version.len(), |(i, _)| i);
        &version[..end]
    }

    /// Writes every manifest, runs `kubernetes-validate --strict -k <version>` on all of them and
    /// checks that each file passed, against that version. Returns the tool's output.
    fn validate(d: &ClusterDescription) -> String {
        let version = &d.inventory.kubernetes.version;
        let dir = tempfile::tempdir().unwrap();
        let files = every_manifest(d);
        let mut paths = Vec::new();
        for (relative, yaml) in &files {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, yaml).unwrap();
            paths.push(path);
        }
        let validator = tool("kubernetes-validate");
        let output = Command::new(&validator)
            .args(["--strict", "-k", version])
            .args(&paths)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubernetes-validate failed ({}):\n{stdout}{stderr}",
            output.status
        );
        assert!(!stdout.contains("ERROR"), "{stdout}");
        let against = format!("against version {}", major_minor(version));
        for (path, (relative, yaml)) in paths.iter().zip(&files) {
            let passed = format!("INFO {} passed for resource ", path.display());
            let no_schema = format!("WARN {} Couldn't find schema for kind", path.display());
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&passed) || l.starts_with(&no_schema))
                .unwrap_or_else(|| panic!("{} is not in the output:\n{stdout}", path.display()));
            if line.starts_with(&passed) {
                assert!(line.ends_with(&against), "{line}");
            } else {
                // kubernetes-validate has schemas for API objects only. A KubeletConfiguration
                // is checked by decoding it strictly into its upstream field set instead.
                assert!(relative.starts_with("kubelet"), "{line}");
                super::kubelet::tests::check_kubelet_configuration(parse(yaml))
                    .unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
            }
        }
        same_under_pyyaml(&validator, &paths, &files);
        stdout
    }

    /// PyYAML reads YAML 1.1, where `yes`, `on`, `0600` and `12:30` are not strings: every file
    /// must mean the same to it as to a YAML 1.2 reader.
    fn same_under_pyyaml(validator: &Path, paths: &[PathBuf], files: &BTreeMap<PathBuf, String>) {
        let python = validator.with_file_name("python3");
        let script = "import json, sys, yaml\n\
                      print(json.dumps([yaml.safe_load(open(p)) for p in sys.argv[1:]]))";
        let output = Command::new(&python)
            .args(["-c", script])
            .args(paths)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let read: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        for (by_pyyaml, (relative, yaml)) in read.iter().zip(files) {
            assert_eq!(
                by_pyyaml,
                &parse(yaml),
                "{} reads differently in YAML 1.1",
                relative.display()
            );
        }
    }

    #[test]
    fn kubernetes_validate_accepts_every_manifest_of_the_demo() {
        let d = demo();
        assert_eq!(d.inventory.kubernetes.version, "1.34.1");
        let output = validate(&d);
        eprintln!("{output}");
    }

    #[test]
    fn another_kubernetes_version_flows_into_images_and_validation() {
        let d = demo_with(|inv| {
            inv.replace(
                "\nloadBalancer:",
                "\nkubernetes:\n  version: 1.33.5\nloadBalancer:",
            )
        });
        assert_eq!(d.inventory.kubernetes.version, "1.33.5");
        let mut images = Vec::new();
        for yaml in every_manifest(&d).values() {
            images_in(&parse(yaml), &mut images);
        }
        for component in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
        ] {
            let image = format!("registry.k8s.io/{component}:v1.33.5");
            assert!(images.contains(&image), "{image} in {images:?}");
        }
        assert!(!images.iter().any(|i| i.contains("1.34")), "{images:?}");
        validate(&d);
    }

    fn images_in(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match v {
                        Value::String(image) if key == "image" => found.push(image.clone()),
                        _ => images_in(v, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| images_in(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_image_is_pinned_and_comes_from_the_image_table() {
        let table = Images::for_version("1.34.1");
        let mut found = Vec::new();
        for yaml in every_manifest(&demo()).values() {
            images_in(&parse(yaml), &mut found);
        }
        assert_eq!(found.len(), 21, "{found:?}");
        for image in &found {
            let tag = image.rsplit_once(':').map_or("", |(_, tag)| tag);
            assert!(
                tag.contains('.') && tag != "latest",
                "{image} is not pinned"
            );
            assert!(
                table.all().contains(&image.as_str()),
                "{image} is not in the image table"
            );
        }
    }

    /// Strings that a YAML reader would take for something else unless quoted.
    #[test]
    fn strings_that_look_like_other_types_are_quoted() {
        use kindling_config::yaml;
        let tricky = [
            "true",
            "false",
            "True",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "~",
            "null",
            "",
            "0600",
            "1.34",
            "6443",
            "012345",
            "1e3",
            "1234567890e12345",
            ".inf",
            ".nan",
            "0x1F",
            "0o17",
            "12:30",
            "2001-12-14",
            "- a",
            "#x",
            "a: b",
            "a #b",
            "@x",
            "`x",
            "*a",
            "&a",
            "!x",
            "%x",
            "[a]",
            "{a}",
            "'a'",
            "\"a\"",
            " leading",
            "trailing ",
            "a\nb",
        ];
        for s in tricky {
            let text = to_yaml(&serde_json::json!({ "k": s }));
            let node = yaml::parse(&text).unwrap_or_else(|e| panic!("{s:?}: {e:?}\n{text}"));
            match &node.get("k").unwrap().value {
                yaml::Value::Scalar { text: read, plain } => {
                    assert_eq!(&**read, s, "{text}");
                    assert!(!plain, "{s:?} is written plain:\n{text}");
                }
                other => panic!("{s:?} came back as {other:?}"),
            }
        }
        let plain = to_yaml(&serde_json::json!({ "k": "kube-system" }));
        assert_eq!(plain, "k: kube-system\n");
    }

    #[test]
    fn dns_and_api_service_addresses_are_the_tenth_and_first_of_the_service_network() {
        let d = demo();
        assert_eq!(dns_service_ip(&d).to_string(), "172.30.0.10");
        assert_eq!(api_service_ip(&d).to_string(), "172.30.0.1");
        assert_eq!(
            nth_address("fd02::/112".parse().unwrap(), 10).to_string(),
            "fd02::a"
        );
    }

    #[test]
    fn bootstrap_tokens_are_checked_for_shape() {
        assert!(TOKEN.is_well_formed());
        assert_eq!(TOKEN.token(), "012345.1234567890e12345");
        for bad in [
            BootstrapToken {
                id: "01234",
                secret: "1234567890e12345",
                expiration: "2026-12-08T00:00:00Z",
            },
            BootstrapToken {
                id: "ABCDEF",
                secret: "1234567890e12345",
                expiration: "2026-12-08T00:00:00Z",
            },
            BootstrapToken {
                id: "012345",
                secret: "1234567890e1234.",
                expiration: "2026-12-08T00:00:00Z",
            },
        ] {
            assert!(!bad.is_well_formed(), "{bad:?}");
        }
    }
}
