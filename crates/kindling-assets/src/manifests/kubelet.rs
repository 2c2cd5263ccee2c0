//! Each machine's kubelet: its KubeletConfiguration, its systemd unit, and the node labels and
//! taints it registers with.
//!
//! The kubelet refuses to start when `--node-labels` holds a key in the `kubernetes.io` or `k8s.io`
//! namespaces other than the few it may set on its own Node (`kubernetes.io/hostname`,
//! `kubernetes.io/os`, `kubernetes.io/arch`, `node.kubernetes.io/instance-type`,
//! `topology.kubernetes.io/region` and `/zone`, their beta forms, and any key under
//! `[*.]kubelet.kubernetes.io/` or `[*.]node.kubernetes.io/`): see `ValidateKubeletFlags` and
//! `IsKubeletLabel` in Kubernetes. NodeRestriction then stops the node from adding such labels
//! later. So the role labels (`node-role.kubernetes.io/*`) cannot come from the kubelet: the unit
//! carries only the labels [`kubelet_may_set_label`] allows, and kindling's CSR approver
//! (`approve-csrs`, `serve --approve-csrs`), with cluster-admin credentials, applies the full
//! [`node_labels`] once the node has registered (kindling_cluster::labels).
//!
//! Taints have no such limit at registration, so `--register-with-taints` carries all of
//! [`node_taints`]. NodeRestriction forbids a node to change its taints afterwards, so taints added
//! to the inventory later must be applied by kindling too (not yet: the day-2 issue).

use std::collections::BTreeMap;

use kindling_config::inventory::{Os, Taint, TaintEffect};
use kindling_config::{ClusterDescription, Machine, Role};
use serde_json::json;

use kindling_node::Node;

use super::{CLUSTER_DOMAIN, dns_service_ip, to_yaml};
use crate::layout;

/// The label every master carries (OpenShift 4 and kubeadm both set it).
const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";
const WORKER_ROLE: &str = "node-role.kubernetes.io/worker";
/// As in day 2 of an OpenShift UPI install.
const INFRA_ROLE: &str = "node-role.kubernetes.io/infra";

/// The labels a machine's node should carry: its role label, then the inventory's labels (which
/// win on a clash). The bootstrap machine never registers a node and has none.
///
/// The labels depend on the machine alone today; the description is taken so that a cluster-wide
/// rule (such as schedulable masters in a cluster without workers) needs no new signature.
pub fn node_labels(d: &ClusterDescription, machine: &Machine) -> BTreeMap<String, String> {
    let _ = d;
    let role = match machine.role {
        Role::Bootstrap => return BTreeMap::new(),
        Role::Master => CONTROL_PLANE_ROLE,
        Role::Worker => WORKER_ROLE,
        Role::Infra => INFRA_ROLE,
    };
    let mut labels = BTreeMap::from([(role.to_string(), String::new())]);
    labels.extend(machine.labels.clone());
    labels
}

/// The taints a machine's node registers with: masters keep ordinary pods off with
/// `node-role.kubernetes.io/control-plane:NoSchedule`, and every machine adds the inventory's
/// taints (an inventory taint with the same key and effect replaces the default).
pub fn node_taints(machine: &Machine) -> Vec<Taint> {
    let mut taints = match machine.role {
        Role::Bootstrap => return Vec::new(),
        Role::Master => vec![Taint {
            key: CONTROL_PLANE_ROLE.to_string(),
            value: None,
            effect: TaintEffect::NoSchedule,
        }],
        Role::Worker | Role::Infra => Vec::new(),
    };
    for taint in &machine.taints {
        taints.retain(|t| !(t.key == taint.key && t.effect == taint.effect));
        taints.push(taint.clone());
    }
    taints
}

/// Whether the kubelet may set this label on its own node through `--node-labels`. Keys outside
/// the `kubernetes.io` and `k8s.io` namespaces are always allowed; inside them, only the kubelet's
/// own labels are (Kubernetes' `IsKubeletLabel`).
pub fn kubelet_may_set_label(key: &str) -> bool {
    const KUBELET_LABELS: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    ];
    let in_namespace = |ns: &str, of: &str| ns == of || ns.ends_with(&format!(".{of}"));
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let reserved = in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io");
    !reserved
        || KUBELET_LABELS.contains(&key)
        || in_namespace(namespace, "kubelet.kubernetes.io")
        || in_namespace(namespace, "node.kubernetes.io")
}

/// KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for a machine: clusterDNS = the CoreDNS
/// IP, clusterDomain cluster.local, x509 client CA = `layout::CA_CERT`, webhook authentication and
/// authorization, client and serving certificates from the cluster (rotateCertificates,
/// serverTLSBootstrap), static pods from `layout::STATIC_PODS_DIR`, the systemd cgroup driver
/// and the OS's container runtime (containerd, or CRI-O on RHCOS).
///
/// The bootstrap machine's kubelet runs standalone: it has no kubeconfig, never registers a node
/// (so no pods are scheduled there and nothing is left behind when it is removed) and only runs
/// the temporary control plane's static pods. A kubelet without an API client cannot use webhook
/// authentication or authorization, nor request certificates, so its server is switched off
/// instead.
pub fn kubelet_config(d: &ClusterDescription, mode: KubeletMode) -> String {
    let joins = mode == KubeletMode::Node;
    let config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "enableServer": joins,
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": joins },
            "x509": { "clientCAFile": layout::CA_CERT },
        },
        "authorization": { "mode": if joins { "Webhook" } else { "AlwaysAllow" } },
        "readOnlyPort": 0,
        "rotateCertificates": joins,
        "serverTLSBootstrap": joins,
        "tlsMinVersion": "VersionTLS12",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "clusterDNS": [dns_service_ip(d).to_string()],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": resolv_conf(d.inventory.provisioning.os),
        "staticPodPath": layout::STATIC_PODS_DIR,
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": Node::new(d.inventory.provisioning.os).endpoint(),
    });
    let who = match mode {
        KubeletMode::Node => "every machine that joins the cluster",
        KubeletMode::Standalone => "the bootstrap machine (standalone)",
    };
    format!(
        "# KubeletConfiguration for {who}. Generated by kindling.\n{}",
        to_yaml(&config)
    )
}

/// How a machine's kubelet runs; its KubeletConfiguration depends on nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletMode {
    /// Joins the cluster as a node.
    Node,
    /// Runs static pods only: the bootstrap machine.
    Standalone,
}

impl KubeletMode {
    pub fn of(role: Role) -> KubeletMode {
        match role {
            Role::Bootstrap => KubeletMode::Standalone,
            _ => KubeletMode::Node,
        }
    }
}

/// The resolv.conf whose servers pods with `dnsPolicy: Default` (CoreDNS among them) get. Fedora
/// CoreOS and Flatcar run systemd-resolved, whose /etc/resolv.conf names only its 127.0.0.53
/// stub, unreachable from a pod and a forwarding loop for CoreDNS; resolved's full file lists the
/// real servers (Typhoon does the same). RHCOS writes the real servers to /etc/resolv.conf.
fn resolv_conf(os: Os) -> &'static str {
    match os {
        Os::Fcos | Os::Flatcar => "/run/systemd/resolve/resolv.conf",
        Os::Rhcos => "/etc/resolv.conf",
    }
}

/// The kubelet systemd unit for machines in `mode`: the OS's kubelet (`node`) with its configuration,
/// and for nodes the bootstrap kubeconfig it joins with and the kubeconfig it then writes. What
/// differs from machine to machine comes from `layout::KUBELET_ENV` (see [`kubelet_env`]), so
/// one unit serves every machine and one edit of it reaches them all.
///
/// The bootstrap machine's kubelet has no kubeconfig: it runs standalone, for static pods only
/// (see [`kubelet_config`]).
pub fn kubelet_unit(node: Node, mode: KubeletMode) -> String {
    let mut args = vec![
        format!("--config={}", layout::KUBELET_CONFIG),
        format!("--cert-dir={}", layout::KUBELET_PKI_DIR),
    ];
    if mode == KubeletMode::Node {
        args.push(format!(
            "--bootstrap-kubeconfig={}",
            layout::KUBELET_BOOTSTRAP_KUBECONFIG
        ));
        args.push(format!("--kubeconfig={}", layout::KUBELET_KUBECONFIG));
    }
    // Unbraced, systemd splits the variable into one argument per word.
    args.push("$KUBELET_NODE_ARGS".to_string());

    let who = match mode {
        KubeletMode::Node => "machines that join the cluster",
        KubeletMode::Standalone => "the bootstrap machine (standalone)",
    };
    let mut unit = format!("# kubelet for {who}. Generated by kindling.\n");
    unit.push_str(&format!(
        "[Unit]\n\
         Description=Kubernetes kubelet\n\
         Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/\n\
         Wants=network-online.target {runtime}\n\
         After=network-online.target {runtime}\n\
         # Ignition put the kubelet in place before the first boot; without it, fail loudly.\n\
         AssertPathIsExecutable={kubelet}\n\
         # Restart forever: a kubelet that fails early, before its files are all in place, must come back.\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n",
        runtime = node.runtime_unit(),
        kubelet = node.kubelet(),
    ));
    // Optional: a pool's config served without a machine part (`serve --mcs-auth=none`) has no
    // kubelet.env, and the kubelet then takes the machine's own hostname and address.
    unit.push_str(&format!("EnvironmentFile=-{}\n", layout::KUBELET_ENV));
    unit.push_str(&format!(
        "ExecStartPre=/usr/bin/mkdir -p {} {}\n",
        layout::STATIC_PODS_DIR,
        layout::KUBELET_PKI_DIR
    ));
    unit.push_str(&format!("ExecStart={}", node.kubelet()));
    for arg in &args {
        unit.push_str(" \\\n    ");
        unit.push_str(arg);
    }
    unit.push_str(
        "\nRestart=always\n\
         RestartSec=10\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    );
    unit
}

/// The kubelet's per-machine arguments: `--hostname-override` (the node name is the inventory
/// name), `--node-ip`, the labels it may set itself, and `--register-with-taints`; with the
/// labels it may not set, which kindling applies once the node has registered.
pub fn kubelet_node_args(d: &ClusterDescription, machine: &Machine) -> (Vec<String>, Vec<String>) {
    let mut args = vec![
        format!("--hostname-override={}", machine.name),
        format!("--node-ip={}", machine.ip),
    ];
    let (own, deferred): (Vec<_>, Vec<_>) = node_labels(d, machine)
        .into_iter()
        .partition(|(key, _)| kubelet_may_set_label(key));
    if !own.is_empty() {
        let own: Vec<String> = own.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.push(format!("--node-labels={}", own.join(",")));
    }
    let taints = node_taints(machine);
    if !taints.is_empty() {
        let taints: Vec<String> = taints.iter().map(Taint::to_string).collect();
        args.push(format!("--register-with-taints={}", taints.join(",")));
    }
    (args, deferred.into_iter().map(|(k, _)| k).collect())
}

/// `layout::KUBELET_ENV` for a machine: the systemd environment file its kubelet unit reads.
pub fn kubelet_env(d: &ClusterDescription, machine: &Machine) -> String {
    let (args, deferred) = kubelet_node_args(d, machine);
    let mut env = format!(
        "# kubelet arguments for {} ({}). Generated by kindling.\n",
        machine.name, machine.role
    );
    if !deferred.is_empty() {
        env.push_str(&format!(
            "# Not in --node-labels, because the kubelet may not set them on its own node; kindling\n\
             # applies them once the node has registered: {}\n",
            deferred.join(", ")
        ));
    }
    env.push_str(&format!("KUBELET_NODE_ARGS=\"{}\"\n", args.join(" ")));
    env
}

#[cfg(test)]
pub(crate) mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::manifests::testing::{demo, demo_with, parse};

    fn machine<'d>(d: &'d ClusterDescription, name: &str) -> &'d Machine {
        d.inventory
            .machines
            .iter()
            .find(|m| m.name == name)
            .unwrap()
    }

    /// The demo plus an infra machine labelled and tainted as in OpenShift's day-2 docs.
    fn with_infra() -> ClusterDescription {
        demo_with(|inv| {
            format!(
                "{inv}  - name: infra0\n    role: infra\n    mac: \"52:54:00:7e:01:30\"\n    \
                 ip: 192.168.126.130\n    labels:\n      topology.kubernetes.io/zone: rack3\n      \
                 node-role.kubernetes.io/storage: \"\"\n    taints:\n      \
                 - node-role.kubernetes.io/infra=reserved:NoSchedule\n      \
                 - node-role.kubernetes.io/infra=reserved:NoExecute\n"
            )
        })
    }

    fn exec_start(unit: &str) -> Vec<String> {
        let start = unit.find("ExecStart=").unwrap();
        unit[start..]
            .lines()
            .take_while(|l| !l.starts_with("Restart="))
            .map(|l| l.trim().trim_end_matches('\\').trim().to_string())
            .collect()
    }

    /// The kubelet's command line on `machine`: its mode's unit, with the variable from its
    /// environment file expanded as systemd does (split into words).
    fn kubelet_args(d: &ClusterDescription, machine: &Machine) -> Vec<String> {
        let env = kubelet_env(d, machine);
        let value = env
            .lines()
            .find_map(|l| l.strip_prefix("KUBELET_NODE_ARGS=\""))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap();
        exec_start(&kubelet_unit(
            Node::new(d.inventory.provisioning.os),
            KubeletMode::of(machine.role),
        ))
        .into_iter()
        .flat_map(|a| match a.as_str() {
            "$KUBELET_NODE_ARGS" => value.split_whitespace().map(String::from).collect(),
            _ => vec![a],
        })
        .collect()
    }

    #[test]
    fn infra_labels_and_taints_come_from_the_inventory() {
        let d = with_infra();
        let infra = machine(&d, "infra0");
        assert_eq!(
            node_labels(&d, infra),
            BTreeMap::from([
                ("node-role.kubernetes.io/infra".to_string(), String::new()),
                ("node-role.kubernetes.io/storage".to_string(), String::new()),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    "rack3".to_string()
                ),
            ])
        );
        let taints: Vec<String> = node_taints(infra).iter().map(Taint::to_string).collect();
        assert_eq!(
            taints,
            [
                "node-role.kubernetes.io/infra=reserved:NoSchedule",
                "node-role.kubernetes.io/infra=reserved:NoExecute"
            ]
        );
        let unit = kubelet_env(&d, infra);
        let args = kubelet_args(&d, infra);
        assert!(
            args.contains(&"--node-labels=topology.kubernetes.io/zone=rack3".to_string()),
            "{unit}"
        );
        assert!(
            args.contains(
                &"--register-with-taints=node-role.kubernetes.io/infra=reserved:NoSchedule,\
                  node-role.kubernetes.io/infra=reserved:NoExecute"
                    .to_string()
            ),
            "{unit}"
        );
        assert!(
            unit.contains("node-role.kubernetes.io/infra, node-role.kubernetes.io/storage"),
            "{unit}"
        );
    }

    #[test]
    fn masters_get_the_control_plane_role_and_taint_and_workers_the_worker_role() {
        let d = demo();
        let master = machine(&d, "master0");
        assert_eq!(
            node_labels(&d, master),
            BTreeMap::from([(CONTROL_PLANE_ROLE.to_string(), String::new())])
        );
        assert_eq!(
            node_taints(master)
                .iter()
                .map(Taint::to_string)
                .collect::<Vec<_>>(),
            ["node-role.kubernetes.io/control-plane:NoSchedule"]
        );
        let worker2 = machine(&d, "worker2");
        assert_eq!(
            node_labels(&d, worker2),
            BTreeMap::from([
                (WORKER_ROLE.to_string(), String::new()),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    "rack2".to_string()
                ),
            ])
        );
        assert!(node_taints(worker2).is_empty());
        let args = kubelet_args(&d, worker2);
        assert!(args.contains(&"--node-labels=topology.kubernetes.io/zone=rack2".to_string()));
        assert!(args.contains(&"--hostname-override=worker2".to_string()));
        assert!(args.contains(&"--node-ip=192.168.126.122".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--register-with-taints")));
    }

    #[test]
    fn no_unit_asks_the_kubelet_for_a_label_it_would_refuse() {
        let d = with_infra();
        for m in &d.inventory.machines {
            for arg in kubelet_args(&d, m) {
                if let Some(labels) = arg.strip_prefix("--node-labels=") {
                    for label in labels.split(',') {
                        let key = label.split('=').next().unwrap();
                        assert!(kubelet_may_set_label(key), "{}: {key}", m.name);
                    }
                }
            }
        }
    }

    #[test]
    fn the_kubelet_label_rule_matches_kubernetes() {
        for allowed in [
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "kubelet.kubernetes.io/anything",
            "x.kubelet.kubernetes.io/anything",
            "example.com/rack",
            "rack",
        ] {
            assert!(kubelet_may_set_label(allowed), "{allowed}");
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "node-role.kubernetes.io/control-plane",
            "node-restriction.kubernetes.io/x",
            "kubernetes.io/role",
            "app.kubernetes.io/name",
            "example.k8s.io/x",
            "k8s.io/x",
        ] {
            assert!(!kubelet_may_set_label(refused), "{refused}");
        }
    }

    #[test]
    fn the_bootstrap_kubelet_runs_standalone() {
        let d = demo();
        let bootstrap = machine(&d, "bootstrap");
        let args = kubelet_args(&d, bootstrap);
        assert!(!args.iter().any(|a| a.contains("kubeconfig")), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--node-labels")));
        let config = parse(&kubelet_config(&d, KubeletMode::of(bootstrap.role)));
        assert_eq!(config["enableServer"], false);
        assert_eq!(config["authentication"]["webhook"]["enabled"], false);
        assert_eq!(config["staticPodPath"], layout::STATIC_PODS_DIR);

        let master = machine(&d, "master0");
        let args = kubelet_args(&d, master);
        assert!(args.contains(&format!("--kubeconfig={}", layout::KUBELET_KUBECONFIG)));
        assert!(args.contains(&format!(
            "--bootstrap-kubeconfig={}",
            layout::KUBELET_BOOTSTRAP_KUBECONFIG
        )));
        assert!(args.contains(&format!("--config={}", layout::KUBELET_CONFIG)));
    }

    /// KubeletConfiguration's v1beta1 fields as Kubernetes 1.34 names and types them
    /// (k8s.io/kubelet/config/v1beta1/types.go), limited to those kindling sets. kubernetes-validate
    /// has no schema for this kind, so decoding into it strictly is the check that every field
    /// kindling writes is spelt right and has the right type.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletConfiguration {
        api_version: String,
        kind: String,
        enable_server: bool,
        authentication: KubeletAuthentication,
        authorization: KubeletAuthorization,
        read_only_port: i32,
        rotate_certificates: bool,
        #[serde(rename = "serverTLSBootstrap")]
        server_tls_bootstrap: bool,
        tls_min_version: String,
        healthz_bind_address: String,
        healthz_port: i32,
        #[serde(rename = "clusterDNS")]
        cluster_dns: Vec<std::net::IpAddr>,
        cluster_domain: String,
        resolv_conf: String,
        static_pod_path: String,
        cgroup_driver: String,
        container_runtime_endpoint: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletAuthentication {
        x509: KubeletX509Authentication,
        webhook: KubeletWebhookAuthentication,
        anonymous: KubeletAnonymousAuthentication,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletX509Authentication {
        #[serde(rename = "clientCAFile")]
        client_ca_file: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletWebhookAuthentication {
        enabled: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletAnonymousAuthentication {
        enabled: bool,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be decoded, not read")]
    struct KubeletAuthorization {
        mode: String,
    }

    /// Decodes a KubeletConfiguration file strictly; `pub(crate)` so the kubernetes-validate test
    /// can check the files it wrote.
    pub(crate) fn check_kubelet_configuration(json: serde_json::Value) -> Result<(), String> {
        serde_json::from_value::<KubeletConfiguration>(json)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_kubelet_configuration_decodes_as_kubernetes_types_it() {
        let d = demo();
        for m in &d.inventory.machines {
            let config = parse(&kubelet_config(&d, KubeletMode::of(m.role)));
            assert_eq!(config["clusterDNS"], json!(["172.30.0.10"]));
            assert_eq!(config["clusterDomain"], "cluster.local");
            assert_eq!(
                config["authentication"]["x509"]["clientCAFile"],
                layout::CA_CERT
            );
            assert_eq!(config["cgroupDriver"], "systemd");
            assert_eq!(
                config["containerRuntimeEndpoint"],
                "unix:///run/containerd/containerd.sock"
            );
            assert_eq!(config["resolvConf"], "/run/systemd/resolve/resolv.conf");
            if m.role != Role::Bootstrap {
                assert_eq!(config["rotateCertificates"], true);
                assert_eq!(config["serverTLSBootstrap"], true);
                assert_eq!(config["authorization"]["mode"], "Webhook");
            }
            check_kubelet_configuration(config).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        }
    }
}
