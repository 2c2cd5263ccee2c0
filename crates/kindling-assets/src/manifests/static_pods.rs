//! The control plane as static pods: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, run by each machine's kubelet from `layout::STATIC_PODS_DIR`.
//!
//! The bootstrap machine runs a temporary control plane with a one-member etcd. Each master runs
//! the same components; its etcd member pod waits at `layout::ETCD_MEMBER_POD` until
//! `kindling agent join-master` has added the member to the cluster.
//!
//! Every certificate, key and kubeconfig is its own read-only hostPath mount of type `File`, so a
//! component sees only what it needs (the apiserver never sees the CA key) and a missing file holds
//! the pod back with a clear event instead of starting it half-configured. A file replaced on the
//! host (renamed over) is seen after the pod restarts, as with kubeadm's kubeconfig mounts. The
//! kubeconfigs must therefore embed their certificates (`*-data` fields).

use std::net::{IpAddr, Ipv4Addr};

use kindling_config::{ClusterDescription, Machine, Role};
use serde_json::{Value, json};

use super::{
    API_PORT, CLUSTER_DOMAIN, FRONT_PROXY_CLIENT_CN, Images, Manifest, manifest, pod_network,
    service_network, url,
};
use crate::layout;

/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub const ETCD_PEER_PORT: u16 = 2380;
/// etcd's plain-HTTP metrics and health listener, on 127.0.0.1 only.
pub const ETCD_METRICS_PORT: u16 = 2381;
const CONTROLLER_MANAGER_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Static pods of the bootstrap machine's temporary control plane: etcd.yaml (one member, name =
/// bootstrap machine name, `--initial-cluster-state=new`, listening on its inventory IP and
/// 127.0.0.1), kube-apiserver.yaml, kube-controller-manager.yaml, kube-scheduler.yaml.
///
/// With no bootstrap machine in the inventory, the first master runs this control plane instead.
pub fn bootstrap_control_plane(d: &ClusterDescription, bootstrap: &Machine) -> Vec<Manifest> {
    let images = Images::for_version(&d.inventory.kubernetes.version);
    let initial_cluster = etcd_initial_cluster([bootstrap]);
    let etcd = etcd_pod(&images, bootstrap, &initial_cluster, "new");
    vec![
        manifest(
            "etcd.yaml",
            &format!(
                "etcd static pod for {}: the temporary one-member cluster",
                bootstrap.name
            ),
            &etcd,
        ),
        apiserver(d, &images, bootstrap),
        controller_manager(d, &images, bootstrap),
        scheduler(&images, bootstrap),
    ]
}

/// A master's static pods: kube-apiserver.yaml (advertise-address = its IP, etcd-servers =
/// https://127.0.0.1:2379), kube-controller-manager.yaml, kube-scheduler.yaml, and
/// etcd-member.yaml: its etcd member pod with `--initial-cluster-state=existing` and
/// `--initial-cluster` listing the bootstrap member (if any) and every master
/// (`name=https://<ip>:2380`).
///
/// etcd-member.yaml is installed at `layout::ETCD_MEMBER_POD`, not in the static pods directory.
/// etcd refuses to join unless `--initial-cluster` equals the membership that `etcd member add`
/// reports, which is only known when the member is added; the join-master agent re-renders the
/// pod with [`etcd_member_pod`] and that membership before activating it. The full list here is
/// the membership the cluster is heading for.
pub fn master_control_plane(d: &ClusterDescription, master: &Machine) -> Vec<Manifest> {
    let images = Images::for_version(&d.inventory.kubernetes.version);
    let members = d
        .inventory
        .with_role(Role::Bootstrap)
        .chain(d.inventory.with_role(Role::Master));
    let initial_cluster = etcd_initial_cluster(members);
    vec![
        apiserver(d, &images, master),
        controller_manager(d, &images, master),
        scheduler(&images, master),
        etcd_member_pod(d, master, &initial_cluster),
    ]
}

/// etcd-member.yaml: `machine`'s etcd member joining an existing cluster whose membership,
/// including this member, is `initial_cluster` (`name=https://<ip>:2380,...`).
pub fn etcd_member_pod(
    d: &ClusterDescription,
    machine: &Machine,
    initial_cluster: &str,
) -> Manifest {
    let images = Images::for_version(&d.inventory.kubernetes.version);
    let etcd = etcd_pod(&images, machine, initial_cluster, "existing");
    manifest(
        "etcd-member.yaml",
        &format!(
            "etcd member static pod for {}, activated by kindling agent join-master",
            machine.name
        ),
        &etcd,
    )
}

/// etcd's `--initial-cluster` for the given members: `name=https://<ip>:2380`, comma-separated.
pub fn etcd_initial_cluster<'m>(members: impl IntoIterator<Item = &'m Machine>) -> String {
    members
        .into_iter()
        .map(|m| format!("{}={}", m.name, url("https", m.ip, ETCD_PEER_PORT)))
        .collect::<Vec<_>>()
        .join(",")
}

fn etcd_pod(images: &Images, machine: &Machine, initial_cluster: &str, state: &str) -> Value {
    let ip = machine.ip;
    let client = url("https", ip, ETCD_CLIENT_PORT);
    let peer = url("https", ip, ETCD_PEER_PORT);
    let command = vec![
        "etcd".to_string(),
        format!("--name={}", machine.name),
        format!("--data-dir={}", layout::ETCD_DATA_DIR),
        format!(
            "--listen-client-urls={},{client}",
            url("https", LOCALHOST, ETCD_CLIENT_PORT)
        ),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        format!(
            "--listen-metrics-urls={}",
            url("http", LOCALHOST, ETCD_METRICS_PORT)
        ),
        format!("--trusted-ca-file={}", layout::ETCD_CA_CERT),
        format!("--cert-file={}", layout::ETCD_SERVER_CERT),
        format!("--key-file={}", layout::ETCD_SERVER_KEY),
        "--client-cert-auth=true".to_string(),
        format!("--peer-trusted-ca-file={}", layout::ETCD_CA_CERT),
        format!("--peer-cert-file={}", layout::ETCD_PEER_CERT),
        format!("--peer-key-file={}", layout::ETCD_PEER_KEY),
        "--peer-client-cert-auth=true".to_string(),
        // kubeadm's settings for etcd 3.6: check the data for corruption before serving, and
        // send watch progress notifications, which the apiserver's consistent reads from its
        // watch cache rely on.
        "--feature-gates=InitialCorruptCheck=true".to_string(),
        "--watch-progress-notify-interval=5s".to_string(),
        "--snapshot-count=10000".to_string(),
    ];
    // Serializable health needs no leader, so a member that lost quorum is not restarted over and
    // over (which cannot bring quorum back); a full database (NOSPACE) is not fixed by a restart
    // either. Readiness does ask for a leader, which is what "this member serves" means.
    let live = http_get(
        LOCALHOST,
        ETCD_METRICS_PORT,
        "HTTP",
        "/health?exclude=NOSPACE&serializable=true",
    );
    let ready = http_get(LOCALHOST, ETCD_METRICS_PORT, "HTTP", "/health");
    static_pod(
        "etcd",
        &images.etcd,
        command,
        Probes { live, ready },
        ("100m", "100Mi"),
        &[
            Mount::data_dir("etcd-data", layout::ETCD_DATA_DIR),
            Mount::file(layout::ETCD_CA_CERT),
            Mount::file(layout::ETCD_SERVER_CERT),
            Mount::file(layout::ETCD_SERVER_KEY),
            Mount::file(layout::ETCD_PEER_CERT),
            Mount::file(layout::ETCD_PEER_KEY),
        ],
    )
}

fn apiserver(d: &ClusterDescription, images: &Images, machine: &Machine) -> Manifest {
    let command = vec![
        "kube-apiserver".to_string(),
        format!("--advertise-address={}", machine.ip),
        format!("--secure-port={API_PORT}"),
        // flannel and kube-proxy run privileged.
        "--allow-privileged=true".to_string(),
        "--authorization-mode=Node,RBAC".to_string(),
        "--enable-admission-plugins=NodeRestriction".to_string(),
        "--enable-bootstrap-token-auth=true".to_string(),
        // Client certificates come from the root CA (components, admins) or the CSR signer
        // (kubelets).
        format!("--client-ca-file={}", layout::CLIENT_CA_BUNDLE),
        format!("--tls-cert-file={}", layout::APISERVER_CERT),
        format!("--tls-private-key-file={}", layout::APISERVER_KEY),
        // The local member: each control-plane machine runs one.
        format!(
            "--etcd-servers={}",
            url("https", LOCALHOST, ETCD_CLIENT_PORT)
        ),
        format!("--etcd-cafile={}", layout::ETCD_CA_CERT),
        format!("--etcd-certfile={}", layout::APISERVER_ETCD_CLIENT_CERT),
        format!("--etcd-keyfile={}", layout::APISERVER_ETCD_CLIENT_KEY),
        format!(
            "--kubelet-client-certificate={}",
            layout::APISERVER_KUBELET_CLIENT_CERT
        ),
        format!(
            "--kubelet-client-key={}",
            layout::APISERVER_KUBELET_CLIENT_KEY
        ),
        // Kubelets serve with certificates the controller manager signs with the CSR signer
        // (serverTLSBootstrap), so the apiserver can verify them instead of trusting any.
        format!(
            "--kubelet-certificate-authority={}",
            layout::CLIENT_CA_BUNDLE
        ),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".to_string(),
        format!("--service-cluster-ip-range={}", service_network(d)),
        format!("--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        format!("--service-account-key-file={}", layout::SA_PUB),
        format!("--service-account-signing-key-file={}", layout::SA_KEY),
        format!(
            "--proxy-client-cert-file={}",
            layout::FRONT_PROXY_CLIENT_CERT
        ),
        format!("--proxy-client-key-file={}", layout::FRONT_PROXY_CLIENT_KEY),
        format!(
            "--requestheader-client-ca-file={}",
            layout::FRONT_PROXY_CA_CERT
        ),
        format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT_CN}"),
        "--requestheader-username-headers=X-Remote-User".to_string(),
        "--requestheader-group-headers=X-Remote-Group".to_string(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_string(),
    ];
    let pod = static_pod(
        "kube-apiserver",
        &images.kube_apiserver,
        command,
        Probes {
            live: http_get(machine.ip, API_PORT, "HTTPS", "/livez"),
            ready: http_get(machine.ip, API_PORT, "HTTPS", "/readyz"),
        },
        ("250m", "512Mi"),
        &[
            Mount::file(layout::CLIENT_CA_BUNDLE),
            Mount::file(layout::APISERVER_CERT),
            Mount::file(layout::APISERVER_KEY),
            Mount::file(layout::APISERVER_KUBELET_CLIENT_CERT),
            Mount::file(layout::APISERVER_KUBELET_CLIENT_KEY),
            Mount::file(layout::APISERVER_ETCD_CLIENT_CERT),
            Mount::file(layout::APISERVER_ETCD_CLIENT_KEY),
            Mount::file(layout::ETCD_CA_CERT),
            Mount::file(layout::FRONT_PROXY_CA_CERT),
            Mount::file(layout::FRONT_PROXY_CLIENT_CERT),
            Mount::file(layout::FRONT_PROXY_CLIENT_KEY),
            Mount::file(layout::SA_KEY),
            Mount::file(layout::SA_PUB),
        ],
    );
    manifest(
        "kube-apiserver.yaml",
        &format!("kube-apiserver static pod for {}", machine.name),
        &pod,
    )
}

fn controller_manager(d: &ClusterDescription, images: &Images, machine: &Machine) -> Manifest {
    let pods = pod_network(d);
    let kubeconfig = layout::CONTROLLER_MANAGER_KUBECONFIG;
    let command = vec![
        "kube-controller-manager".to_string(),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".to_string(),
        "--leader-elect=true".to_string(),
        format!("--cluster-name={}", d.install_config.cluster_name),
        format!("--client-ca-file={}", layout::CLIENT_CA_BUNDLE),
        format!(
            "--requestheader-client-ca-file={}",
            layout::FRONT_PROXY_CA_CERT
        ),
        format!("--root-ca-file={}", layout::CA_CERT),
        // Kubelet client and serving certificates are signed by the CSR signer, not the root
        // CA, whose key never leaves the asset directory.
        format!("--cluster-signing-cert-file={}", layout::CSR_SIGNER_CERT),
        format!("--cluster-signing-key-file={}", layout::CSR_SIGNER_KEY),
        format!("--service-account-private-key-file={}", layout::SA_KEY),
        "--use-service-account-credentials=true".to_string(),
        // bootstrapsigner and tokencleaner are off by default; bootstrap tokens need them.
        "--controllers=*,bootstrapsigner,tokencleaner".to_string(),
        "--allocate-node-cidrs=true".to_string(),
        format!("--cluster-cidr={}", pods.cidr),
        format!("--node-cidr-mask-size={}", pods.host_prefix),
        format!("--service-cluster-ip-range={}", service_network(d)),
    ];
    let pod = static_pod(
        "kube-controller-manager",
        &images.kube_controller_manager,
        command,
        Probes {
            live: http_get(LOCALHOST, CONTROLLER_MANAGER_PORT, "HTTPS", "/healthz"),
            ready: http_get(LOCALHOST, CONTROLLER_MANAGER_PORT, "HTTPS", "/healthz"),
        },
        ("200m", "256Mi"),
        &[
            Mount::file(kubeconfig),
            Mount::file(layout::CA_CERT),
            Mount::file(layout::CLIENT_CA_BUNDLE),
            Mount::file(layout::CSR_SIGNER_CERT),
            Mount::file(layout::CSR_SIGNER_KEY),
            Mount::file(layout::FRONT_PROXY_CA_CERT),
            Mount::file(layout::SA_KEY),
        ],
    );
    manifest(
        "kube-controller-manager.yaml",
        &format!("kube-controller-manager static pod for {}", machine.name),
        &pod,
    )
}

fn scheduler(images: &Images, machine: &Machine) -> Manifest {
    let kubeconfig = layout::SCHEDULER_KUBECONFIG;
    let command = vec![
        "kube-scheduler".to_string(),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".to_string(),
        "--leader-elect=true".to_string(),
    ];
    let pod = static_pod(
        "kube-scheduler",
        &images.kube_scheduler,
        command,
        Probes {
            live: http_get(LOCALHOST, SCHEDULER_PORT, "HTTPS", "/healthz"),
            ready: http_get(LOCALHOST, SCHEDULER_PORT, "HTTPS", "/healthz"),
        },
        ("100m", "128Mi"),
        &[Mount::file(kubeconfig)],
    );
    manifest(
        "kube-scheduler.yaml",
        &format!("kube-scheduler static pod for {}", machine.name),
        &pod,
    )
}

/// A host path mounted at the same path in the container.
struct Mount {
    name: String,
    path: &'static str,
    writable_dir: bool,
}

impl Mount {
    /// A certificate, key or kubeconfig: read-only, and it must exist.
    fn file(path: &'static str) -> Mount {
        Mount {
            name: volume_name(path),
            path,
            writable_dir: false,
        }
    }

    /// A data directory, created if missing.
    fn data_dir(name: &str, path: &'static str) -> Mount {
        Mount {
            name: name.to_string(),
            path,
            writable_dir: true,
        }
    }
}

/// A DNS-1123 volume name from a path: `/etc/kubernetes/pki/etcd/ca.crt` is `etcd-ca-crt`.
fn volume_name(path: &str) -> String {
    let relative = path
        .strip_prefix(layout::PKI_DIR)
        .or_else(|| path.strip_prefix("/etc/kubernetes"))
        .unwrap_or(path);
    relative.trim_start_matches('/').replace(['/', '.'], "-")
}

struct Probes {
    live: Value,
    ready: Value,
}

fn http_get(host: IpAddr, port: u16, scheme: &str, path: &str) -> Value {
    json!({ "host": host.to_string(), "port": port, "scheme": scheme, "path": path })
}

/// kubeadm's probe timings: a startup probe gives a slow first start four minutes before the
/// liveness probe may restart the container.
fn static_pod(
    name: &str,
    image: &str,
    command: Vec<String>,
    probes: Probes,
    (cpu, memory): (&str, &str),
    mounts: &[Mount],
) -> Value {
    let volumes: Vec<Value> = mounts
        .iter()
        .map(|m| {
            let kind = if m.writable_dir {
                "DirectoryOrCreate"
            } else {
                "File"
            };
            json!({ "name": m.name, "hostPath": { "path": m.path, "type": kind } })
        })
        .collect();
    let volume_mounts: Vec<Value> = mounts
        .iter()
        .map(|m| json!({ "name": m.name, "mountPath": m.path, "readOnly": !m.writable_dir }))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": { "component": name, "tier": "control-plane" },
        },
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "securityContext": { "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": name,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "resources": { "requests": { "cpu": cpu, "memory": memory } },
                "startupProbe": {
                    "httpGet": probes.live.clone(),
                    "initialDelaySeconds": 10,
                    "periodSeconds": 10,
                    "timeoutSeconds": 15,
                    "failureThreshold": 24,
                },
                "livenessProbe": {
                    "httpGet": probes.live,
                    "initialDelaySeconds": 10,
                    "periodSeconds": 10,
                    "timeoutSeconds": 15,
                    "failureThreshold": 8,
                },
                "readinessProbe": {
                    "httpGet": probes.ready,
                    "periodSeconds": 1,
                    "timeoutSeconds": 15,
                    "failureThreshold": 3,
                },
                "volumeMounts": volume_mounts,
            }],
            "volumes": volumes,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::manifests::testing::{at, demo, parsed};

    fn command(pod: &Value) -> Vec<&str> {
        at(pod, "spec/containers/0/command")
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn flag<'p>(pod: &'p Value, name: &str) -> Option<&'p str> {
        let prefix = format!("--{name}=");
        command(pod)
            .into_iter()
            .find_map(|a| a.strip_prefix(prefix.as_str()))
    }

    fn demo_pods() -> (
        BTreeMap<String, Value>,
        BTreeMap<String, BTreeMap<String, Value>>,
    ) {
        let d = demo();
        let bootstrap = d.inventory.with_role(Role::Bootstrap).next().unwrap();
        let masters = d
            .inventory
            .with_role(Role::Master)
            .map(|m| (m.name.clone(), parsed(&master_control_plane(&d, m))))
            .collect();
        (parsed(&bootstrap_control_plane(&d, bootstrap)), masters)
    }

    #[test]
    fn the_bootstrap_control_plane_is_a_new_one_member_etcd_and_the_three_components() {
        let (bootstrap, _) = demo_pods();
        assert_eq!(
            bootstrap.keys().collect::<Vec<_>>(),
            [
                "etcd.yaml",
                "kube-apiserver.yaml",
                "kube-controller-manager.yaml",
                "kube-scheduler.yaml"
            ]
        );
        let etcd = &bootstrap["etcd.yaml"];
        assert_eq!(flag(etcd, "name"), Some("bootstrap"));
        assert_eq!(flag(etcd, "initial-cluster-state"), Some("new"));
        assert_eq!(
            flag(etcd, "initial-cluster"),
            Some("bootstrap=https://192.168.126.100:2380")
        );
        assert_eq!(
            flag(etcd, "listen-client-urls"),
            Some("https://127.0.0.1:2379,https://192.168.126.100:2379")
        );
        assert_eq!(
            flag(&bootstrap["kube-apiserver.yaml"], "advertise-address"),
            Some("192.168.126.100")
        );
    }

    #[test]
    fn a_masters_etcd_member_joins_the_bootstrap_member_and_every_master() {
        let (_, masters) = demo_pods();
        for (name, pods) in &masters {
            assert_eq!(
                pods.keys().collect::<Vec<_>>(),
                [
                    "etcd-member.yaml",
                    "kube-apiserver.yaml",
                    "kube-controller-manager.yaml",
                    "kube-scheduler.yaml"
                ]
            );
            let etcd = &pods["etcd-member.yaml"];
            assert_eq!(flag(etcd, "name"), Some(name.as_str()));
            assert_eq!(flag(etcd, "initial-cluster-state"), Some("existing"));
            assert_eq!(
                flag(etcd, "initial-cluster"),
                Some(
                    "bootstrap=https://192.168.126.100:2380,\
                     master0=https://192.168.126.110:2380,\
                     master1=https://192.168.126.111:2380,\
                     master2=https://192.168.126.112:2380"
                )
            );
        }
        let apiserver = &masters["master1"]["kube-apiserver.yaml"];
        assert_eq!(
            flag(apiserver, "advertise-address"),
            Some("192.168.126.111")
        );
        assert_eq!(
            flag(apiserver, "etcd-servers"),
            Some("https://127.0.0.1:2379")
        );
    }

    #[test]
    fn without_a_bootstrap_machine_the_initial_cluster_is_the_masters() {
        let mut d = demo();
        d.inventory.machines.retain(|m| m.role != Role::Bootstrap);
        let master = d.inventory.with_role(Role::Master).next().unwrap();
        let pods = parsed(&master_control_plane(&d, master));
        let initial = flag(&pods["etcd-member.yaml"], "initial-cluster").unwrap();
        assert!(
            initial.starts_with("master0=https://192.168.126.110:2380,"),
            "{initial}"
        );
        assert!(!initial.contains("bootstrap"), "{initial}");
    }

    #[test]
    fn network_flags_come_from_install_config() {
        let (bootstrap, _) = demo_pods();
        let kcm = &bootstrap["kube-controller-manager.yaml"];
        assert_eq!(flag(kcm, "cluster-cidr"), Some("10.128.0.0/14"));
        assert_eq!(flag(kcm, "node-cidr-mask-size"), Some("23"));
        assert_eq!(flag(kcm, "allocate-node-cidrs"), Some("true"));
        assert_eq!(flag(kcm, "service-cluster-ip-range"), Some("172.30.0.0/16"));
        assert_eq!(
            flag(kcm, "cluster-signing-cert-file"),
            Some(layout::CSR_SIGNER_CERT)
        );
        assert_eq!(
            flag(kcm, "cluster-signing-key-file"),
            Some(layout::CSR_SIGNER_KEY)
        );
        assert_eq!(
            flag(kcm, "controllers"),
            Some("*,bootstrapsigner,tokencleaner")
        );
        let api = &bootstrap["kube-apiserver.yaml"];
        assert_eq!(flag(api, "service-cluster-ip-range"), Some("172.30.0.0/16"));
        assert_eq!(
            flag(api, "service-account-issuer"),
            Some("https://kubernetes.default.svc.cluster.local")
        );
        assert_eq!(flag(api, "authorization-mode"), Some("Node,RBAC"));
    }

    /// Every flag that names a file under /etc/kubernetes names a file the pod mounts read-only,
    /// and every certificate, key and kubeconfig is mounted read-only; only etcd's data directory
    /// is writable.
    #[test]
    fn every_file_a_flag_names_is_mounted_read_only() {
        let (bootstrap, masters) = demo_pods();
        let all = bootstrap
            .iter()
            .chain(masters.values().flat_map(|pods| pods.iter()));
        for (file, pod) in all {
            let volumes = at(pod, "spec/volumes").as_array().unwrap();
            let mounts = at(pod, "spec/containers/0/volumeMounts")
                .as_array()
                .unwrap();
            assert_eq!(volumes.len(), mounts.len(), "{file}");
            let mut read_only = Vec::new();
            for (volume, mount) in volumes.iter().zip(mounts) {
                assert_eq!(volume["name"], mount["name"], "{file}");
                let path = at(volume, "hostPath/path").as_str().unwrap();
                assert_eq!(mount["mountPath"], path, "{file}");
                if path == layout::ETCD_DATA_DIR {
                    assert_eq!(mount["readOnly"], false, "{file}");
                    assert_eq!(at(volume, "hostPath/type"), "DirectoryOrCreate");
                } else {
                    assert!(path.starts_with("/etc/kubernetes/"), "{file}: {path}");
                    assert_eq!(mount["readOnly"], true, "{file}: {path}");
                    assert_eq!(at(volume, "hostPath/type"), "File", "{file}: {path}");
                    read_only.push(path);
                }
            }
            for arg in command(pod) {
                let Some((_, value)) = arg.split_once('=') else {
                    continue;
                };
                if value.starts_with("/etc/kubernetes/") {
                    assert!(read_only.contains(&value), "{file}: {arg} is not mounted");
                }
            }
        }
    }

    #[test]
    fn no_pod_sees_the_root_ca_key_and_only_the_controller_manager_the_csr_signers() {
        let (bootstrap, masters) = demo_pods();
        let all = bootstrap
            .iter()
            .chain(masters.values().flat_map(|pods| pods.iter()));
        for (file, pod) in all {
            let yaml = serde_json::to_string(pod).unwrap();
            assert!(!yaml.contains("/etc/kubernetes/pki/ca.key"), "{file}");
            assert_eq!(
                yaml.contains(layout::CSR_SIGNER_KEY),
                file == "kube-controller-manager.yaml",
                "{file}"
            );
        }
    }

    #[test]
    fn probes_hit_each_components_health_endpoint() {
        let (bootstrap, _) = demo_pods();
        let probe = |file: &str, which: &str| {
            let get = at(
                &bootstrap[file],
                &format!("spec/containers/0/{which}/httpGet"),
            );
            format!(
                "{} {}:{}{}",
                get["scheme"].as_str().unwrap(),
                get["host"].as_str().unwrap(),
                get["port"],
                get["path"].as_str().unwrap()
            )
        };
        assert_eq!(
            probe("kube-apiserver.yaml", "livenessProbe"),
            "HTTPS 192.168.126.100:6443/livez"
        );
        assert_eq!(
            probe("kube-apiserver.yaml", "readinessProbe"),
            "HTTPS 192.168.126.100:6443/readyz"
        );
        assert_eq!(
            probe("kube-controller-manager.yaml", "livenessProbe"),
            "HTTPS 127.0.0.1:10257/healthz"
        );
        assert_eq!(
            probe("kube-scheduler.yaml", "livenessProbe"),
            "HTTPS 127.0.0.1:10259/healthz"
        );
        assert_eq!(
            probe("etcd.yaml", "livenessProbe"),
            "HTTP 127.0.0.1:2381/health?exclude=NOSPACE&serializable=true"
        );
        assert_eq!(
            probe("etcd.yaml", "readinessProbe"),
            "HTTP 127.0.0.1:2381/health"
        );
        for (file, pod) in &bootstrap {
            assert_eq!(at(pod, "spec/hostNetwork"), true, "{file}");
            assert_eq!(
                at(pod, "spec/priorityClassName"),
                "system-node-critical",
                "{file}"
            );
            assert!(
                at(pod, "spec/containers/0/resources/requests/cpu").is_string(),
                "{file}"
            );
        }
    }

    #[test]
    fn ipv6_machines_get_bracketed_urls() {
        let mut d = demo();
        d.inventory.machines[0].ip = "fd00::100".parse().unwrap();
        let pods = parsed(&bootstrap_control_plane(&d, &d.inventory.machines[0]));
        assert_eq!(
            flag(&pods["etcd.yaml"], "initial-cluster"),
            Some("bootstrap=https://[fd00::100]:2380")
        );
        assert_eq!(
            flag(&pods["etcd.yaml"], "listen-client-urls"),
            Some("https://127.0.0.1:2379,https://[fd00::100]:2379")
        );
    }

    #[test]
    fn volume_names_are_dns_labels() {
        for path in [
            layout::APISERVER_KUBELET_CLIENT_CERT,
            layout::ETCD_CA_CERT,
            layout::CONTROLLER_MANAGER_KUBECONFIG,
        ] {
            let name = volume_name(path);
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
        }
        assert_eq!(volume_name(layout::ETCD_CA_CERT), "etcd-ca-crt");
        assert_eq!(
            volume_name(layout::CONTROLLER_MANAGER_KUBECONFIG),
            "controller-manager-conf"
        );
    }
}
