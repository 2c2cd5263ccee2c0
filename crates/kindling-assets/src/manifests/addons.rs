//! The cluster add-ons `kindling agent bootstrap` applies once, in file-name order: the flannel
//! namespace, RBAC, the bootstrap token, then flannel, kube-proxy and CoreDNS.
//!
//! flannel and kube-proxy reach the apiserver at api-int rather than through the `kubernetes`
//! Service: that Service's ClusterIP works only once kube-proxy runs, and kube-proxy cannot wait for
//! itself. Setting `KUBERNETES_SERVICE_HOST`/`_PORT` in the container overrides the Service
//! variables the kubelet injects, and the in-cluster client config then dials api-int with the
//! pod's service account token.

use kindling_config::ClusterDescription;
use kindling_config::install_config::ClusterNetwork;
use serde_json::{Value, json};

use super::{
    API_PORT, APISERVER_KUBELET_CLIENT_USER, BootstrapToken, CLUSTER_DOMAIN, Images, Manifest,
    dns_service_ip, manifest, pod_network, to_yaml,
};

/// The add-on file that holds the bootstrap token's secret.
pub const BOOTSTRAP_TOKEN_SECRET_FILE: &str = "20-bootstrap-token-secret.yaml";
/// The group every kubelet joining with kindling's token is in, besides system:bootstrappers.
const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kindling:default-node-token";
const FLANNEL_NAMESPACE: &str = "kube-flannel";
const RBAC_API: &str = "rbac.authorization.k8s.io/v1";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Cluster add-ons applied once by the bootstrap agent, ordered so that applying them in file-name
/// order works (namespaces first; there are no CRDs):
///
/// - CNI flannel: pod CIDR = the first clusterNetwork cidr, per-node subnet size = its hostPrefix;
/// - CoreDNS: Service clusterIP = the service network's address + 10, cluster domain
///   cluster.local;
/// - kube-proxy: a DaemonSet and a ConfigMap holding its KubeProxyConfiguration (clusterCIDR);
/// - RBAC: bootstrap tokens (group system:bootstrappers) may create CSRs
///   (system:node-bootstrapper); nodes may renew their own client certificates (selfnodeclient
///   for system:nodes); the apiserver's kubelet client user may use the kubelet API. Nothing
///   approves a new node's first CSR automatically: kindling approves CSRs itself.
/// - the bootstrap token Secret `kube-system/bootstrap-token-<id>` (see [`Manifest::holds_secret`]).
///   It has no expiry, so machines added later join with it too; deleting the Secret revokes it.
pub fn addons(d: &ClusterDescription, token: &BootstrapToken<'_>) -> Vec<Manifest> {
    let images = Images::for_version(&d.inventory.kubernetes.version);
    let api_env = json!([
        { "name": "KUBERNETES_SERVICE_HOST", "value": d.api_int_host() },
        { "name": "KUBERNETES_SERVICE_PORT", "value": API_PORT.to_string() },
    ]);
    let mut files = vec![
        (
            "00-namespace-kube-flannel.yaml",
            "Namespace of the flannel pod network",
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": FLANNEL_NAMESPACE,
                    "labels": {
                        "k8s-app": "flannel",
                        // flannel's pods need host networking and NET_ADMIN.
                        "pod-security.kubernetes.io/enforce": "privileged",
                    },
                },
            }),
        ),
        (
            "10-rbac-node-bootstrapper.yaml",
            "RBAC: kubelets joining with a bootstrap token may request a client certificate",
            cluster_role_binding(
                "kindling:node-bootstrapper",
                "system:node-bootstrapper",
                json!([{ "kind": "Group", "apiGroup": RBAC_GROUP, "name": "system:bootstrappers" }]),
            ),
        ),
        (
            "11-rbac-node-client-cert-renewal.yaml",
            "RBAC: nodes may renew their own client certificates",
            cluster_role_binding(
                "kindling:node-client-cert-renewal",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                json!([{ "kind": "Group", "apiGroup": RBAC_GROUP, "name": "system:nodes" }]),
            ),
        ),
        (
            "12-rbac-apiserver-to-kubelet-role.yaml",
            "RBAC: the kubelet API (logs, exec, metrics) that kube-apiserver uses",
            json!({
                "apiVersion": RBAC_API,
                "kind": "ClusterRole",
                "metadata": { "name": "system:kube-apiserver-to-kubelet" },
                "rules": [{
                    "apiGroups": [""],
                    "resources": [
                        "nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec",
                        "nodes/metrics", "nodes/configz", "nodes/healthz", "nodes/pods",
                    ],
                    "verbs": ["*"],
                }],
            }),
        ),
        (
            "13-rbac-apiserver-to-kubelet-binding.yaml",
            "RBAC: kube-apiserver's kubelet client certificate may use the kubelet API",
            cluster_role_binding(
                "system:kube-apiserver-to-kubelet",
                "system:kube-apiserver-to-kubelet",
                json!([{ "kind": "User", "apiGroup": RBAC_GROUP, "name": APISERVER_KUBELET_CLIENT_USER }]),
            ),
        ),
        (
            BOOTSTRAP_TOKEN_SECRET_FILE,
            "The bootstrap token kubelets join with (secret)",
            bootstrap_token_secret(token),
        ),
    ];
    files.extend(flannel(d, &images, &api_env));
    files.extend(kube_proxy(d, &images, &api_env));
    files.extend(coredns(d, &images));
    files
        .into_iter()
        .map(|(name, what, object)| manifest(name, what, &object))
        .collect()
}

type File = (&'static str, &'static str, Value);

fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": RBAC_API,
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name },
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role },
        "subjects": subjects,
    })
}

fn service_account(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": name, "namespace": namespace },
    })
}

fn bootstrap_token_secret(token: &BootstrapToken<'_>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("bootstrap-token-{}", token.id),
            "namespace": "kube-system",
        },
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "kindling: the token kubelets join the cluster with",
            "token-id": token.id,
            "token-secret": token.secret,
            // The token cleaner deletes it then; `kindling wait-for install-complete` sooner.
            "expiration": token.expiration,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": NODE_TOKEN_GROUP,
        },
    })
}

/// flannel's net-conf.json: the pod network and the per-node subnet size, VXLAN between nodes.
/// With `--kube-subnet-mgr` flanneld takes each node's subnet from its `spec.podCIDR`, which the
/// controller manager allocates with the same mask, so `SubnetLen` agrees with it by
/// construction.
pub(crate) fn flannel_net_conf(pods: ClusterNetwork) -> Value {
    match pods.cidr {
        ipnet::IpNet::V4(_) => json!({
            "Network": pods.cidr.to_string(),
            "SubnetLen": pods.host_prefix,
            "EnableNFTables": false,
            "Backend": { "Type": "vxlan" },
        }),
        ipnet::IpNet::V6(_) => json!({
            "EnableIPv4": false,
            "EnableIPv6": true,
            "IPv6Network": pods.cidr.to_string(),
            "IPv6SubnetLen": pods.host_prefix,
            "EnableNFTables": false,
            "Backend": { "Type": "vxlan" },
        }),
    }
}

/// flannel as its v0.27.4 release manifest deploys it, in its own namespace. The CNI
/// configuration chains the `portmap` plugin and flannel delegates to `bridge` and `host-local`:
/// those come from the host's containernetworking-plugins in /opt/cni/bin.
fn flannel(d: &ClusterDescription, images: &Images, api_env: &Value) -> Vec<File> {
    let labels = json!({ "app": "flannel", "k8s-app": "flannel", "tier": "node" });
    let cni_conf = json!({
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            { "type": "flannel", "delegate": { "hairpinMode": true, "isDefaultGateway": true } },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    let pretty =
        |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()) + "\n";
    let mut env = vec![
        json!({ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
        json!({ "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }),
        json!({ "name": "EVENT_QUEUE_DEPTH", "value": "5000" }),
        json!({ "name": "CONT_WHEN_CACHE_NOT_READY", "value": "false" }),
    ];
    env.extend(api_env.as_array().into_iter().flatten().cloned());
    vec![
        (
            "30-flannel-serviceaccount.yaml",
            "flannel's service account",
            service_account("flannel", FLANNEL_NAMESPACE),
        ),
        (
            "31-flannel-clusterrole.yaml",
            "flannel's permissions: read nodes and pods, patch node status",
            json!({
                "apiVersion": RBAC_API,
                "kind": "ClusterRole",
                "metadata": { "name": "flannel", "labels": { "k8s-app": "flannel" } },
                "rules": [
                    { "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] },
                    { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"] },
                    { "apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"] },
                ],
            }),
        ),
        (
            "32-flannel-clusterrolebinding.yaml",
            "flannel's permissions, granted to its service account",
            cluster_role_binding(
                "flannel",
                "flannel",
                json!([{ "kind": "ServiceAccount", "name": "flannel", "namespace": FLANNEL_NAMESPACE }]),
            ),
        ),
        (
            "33-flannel-configmap.yaml",
            "flannel's pod network and CNI configuration",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "kube-flannel-cfg", "namespace": FLANNEL_NAMESPACE, "labels": labels },
                "data": {
                    "cni-conf.json": pretty(&cni_conf),
                    "net-conf.json": pretty(&flannel_net_conf(pod_network(d))),
                },
            }),
        ),
        (
            "34-flannel-daemonset.yaml",
            "flannel on every node, whatever its taints",
            json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": { "name": "kube-flannel-ds", "namespace": FLANNEL_NAMESPACE, "labels": labels },
                "spec": {
                    "selector": { "matchLabels": { "app": "flannel", "k8s-app": "flannel" } },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": {
                            "hostNetwork": true,
                            "priorityClassName": "system-node-critical",
                            "serviceAccountName": "flannel",
                            "nodeSelector": { "kubernetes.io/os": "linux" },
                            // Without the pod network no node works, infra and tainted ones
                            // included.
                            "tolerations": [{ "operator": "Exists" }],
                            "initContainers": [
                                {
                                    "name": "install-cni-plugin",
                                    "image": images.flannel_cni_plugin,
                                    "command": ["cp"],
                                    "args": ["-f", "/flannel", "/opt/cni/bin/flannel"],
                                    "volumeMounts": [{ "name": "cni-plugin", "mountPath": "/opt/cni/bin" }],
                                },
                                {
                                    "name": "install-cni",
                                    "image": images.flannel,
                                    "command": ["cp"],
                                    "args": ["-f", "/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"],
                                    "volumeMounts": [
                                        { "name": "cni", "mountPath": "/etc/cni/net.d" },
                                        { "name": "flannel-cfg", "mountPath": "/etc/kube-flannel/" },
                                    ],
                                },
                            ],
                            "containers": [{
                                "name": "kube-flannel",
                                "image": images.flannel,
                                "command": ["/opt/bin/flanneld"],
                                "args": ["--ip-masq", "--kube-subnet-mgr"],
                                "env": env,
                                "resources": { "requests": { "cpu": "100m", "memory": "50Mi" } },
                                "securityContext": {
                                    "privileged": false,
                                    "capabilities": { "add": ["NET_ADMIN", "NET_RAW"] },
                                },
                                "volumeMounts": [
                                    { "name": "run", "mountPath": "/run/flannel" },
                                    { "name": "flannel-cfg", "mountPath": "/etc/kube-flannel/" },
                                    { "name": "xtables-lock", "mountPath": "/run/xtables.lock" },
                                ],
                            }],
                            "volumes": [
                                { "name": "run", "hostPath": { "path": "/run/flannel" } },
                                { "name": "cni-plugin", "hostPath": { "path": "/opt/cni/bin" } },
                                { "name": "cni", "hostPath": { "path": "/etc/cni/net.d" } },
                                { "name": "flannel-cfg", "configMap": { "name": "kube-flannel-cfg" } },
                                { "name": "xtables-lock", "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" } },
                            ],
                        },
                    },
                },
            }),
        ),
    ]
}

/// KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1): iptables mode, and the pod network
/// so that kube-proxy masquerades traffic to Services from outside it.
pub(crate) fn kube_proxy_configuration(pods: ClusterNetwork) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": pods.cidr.to_string(),
    })
}

fn kube_proxy(d: &ClusterDescription, images: &Images, api_env: &Value) -> Vec<File> {
    let labels = json!({ "k8s-app": "kube-proxy" });
    let mut env = vec![json!({
        "name": "NODE_NAME",
        "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } },
    })];
    env.extend(api_env.as_array().into_iter().flatten().cloned());
    vec![
        (
            "40-kube-proxy-serviceaccount.yaml",
            "kube-proxy's service account",
            service_account("kube-proxy", "kube-system"),
        ),
        (
            "41-kube-proxy-clusterrolebinding.yaml",
            "kube-proxy's permissions (system:node-proxier)",
            cluster_role_binding(
                "kindling:node-proxier",
                "system:node-proxier",
                json!([{ "kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system" }]),
            ),
        ),
        (
            "42-kube-proxy-configmap.yaml",
            "kube-proxy's KubeProxyConfiguration",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "kube-proxy", "namespace": "kube-system", "labels": labels },
                "data": { "config.conf": to_yaml(&kube_proxy_configuration(pod_network(d))) },
            }),
        ),
        (
            "43-kube-proxy-daemonset.yaml",
            "kube-proxy on every node, whatever its taints",
            json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": { "name": "kube-proxy", "namespace": "kube-system", "labels": labels },
                "spec": {
                    "selector": { "matchLabels": labels },
                    "updateStrategy": { "type": "RollingUpdate" },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": {
                            "hostNetwork": true,
                            "priorityClassName": "system-node-critical",
                            "serviceAccountName": "kube-proxy",
                            "nodeSelector": { "kubernetes.io/os": "linux" },
                            "tolerations": [{ "operator": "Exists" }],
                            "containers": [{
                                "name": "kube-proxy",
                                "image": images.kube_proxy,
                                "command": [
                                    "/usr/local/bin/kube-proxy",
                                    "--config=/var/lib/kube-proxy/config.conf",
                                    "--hostname-override=$(NODE_NAME)",
                                ],
                                "env": env,
                                "resources": { "requests": { "cpu": "50m", "memory": "64Mi" } },
                                "securityContext": { "privileged": true },
                                "volumeMounts": [
                                    { "name": "kube-proxy", "mountPath": "/var/lib/kube-proxy", "readOnly": true },
                                    { "name": "xtables-lock", "mountPath": "/run/xtables.lock" },
                                    { "name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true },
                                ],
                            }],
                            "volumes": [
                                { "name": "kube-proxy", "configMap": { "name": "kube-proxy" } },
                                { "name": "xtables-lock", "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" } },
                                { "name": "lib-modules", "hostPath": { "path": "/lib/modules" } },
                            ],
                        },
                    },
                },
            }),
        ),
    ]
}

/// CoreDNS as kubeadm deploys it: two replicas spread over nodes, able to run on masters before
/// any worker joins, forwarding outside names to the node's resolvers (`dnsPolicy: Default`).
fn coredns(d: &ClusterDescription, images: &Images) -> Vec<File> {
    let labels = json!({ "k8s-app": "kube-dns" });
    let corefile = format!(
        ".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
        max_concurrent 1000
    }}
    cache 30 {{
        disable success {CLUSTER_DOMAIN}
        disable denial {CLUSTER_DOMAIN}
    }}
    loop
    reload
    loadbalance
}}
"
    );
    vec![
        (
            "50-coredns-serviceaccount.yaml",
            "CoreDNS's service account",
            service_account("coredns", "kube-system"),
        ),
        (
            "51-coredns-clusterrole.yaml",
            "CoreDNS's permissions: watch Services, endpoints, pods and namespaces",
            json!({
                "apiVersion": RBAC_API,
                "kind": "ClusterRole",
                "metadata": { "name": "system:coredns" },
                "rules": [
                    { "apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"] },
                    { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get"] },
                    { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"] },
                ],
            }),
        ),
        (
            "52-coredns-clusterrolebinding.yaml",
            "CoreDNS's permissions, granted to its service account",
            cluster_role_binding(
                "system:coredns",
                "system:coredns",
                json!([{ "kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system" }]),
            ),
        ),
        (
            "53-coredns-configmap.yaml",
            "CoreDNS's Corefile",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "coredns", "namespace": "kube-system" },
                "data": { "Corefile": corefile },
            }),
        ),
        (
            "54-coredns-deployment.yaml",
            "CoreDNS, the cluster's DNS server",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": "coredns", "namespace": "kube-system", "labels": labels },
                "spec": {
                    "replicas": 2,
                    "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": {
                            "priorityClassName": "system-cluster-critical",
                            "serviceAccountName": "coredns",
                            "nodeSelector": { "kubernetes.io/os": "linux" },
                            "tolerations": [
                                { "key": "CriticalAddonsOnly", "operator": "Exists" },
                                { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" },
                            ],
                            "affinity": {
                                "podAntiAffinity": {
                                    "preferredDuringSchedulingIgnoredDuringExecution": [{
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "labelSelector": { "matchLabels": labels },
                                            "topologyKey": "kubernetes.io/hostname",
                                        },
                                    }],
                                },
                            },
                            "dnsPolicy": "Default",
                            "containers": [{
                                "name": "coredns",
                                "image": images.coredns,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "resources": {
                                    "limits": { "memory": "170Mi" },
                                    "requests": { "cpu": "100m", "memory": "70Mi" },
                                },
                                "ports": [
                                    { "name": "dns", "containerPort": 53, "protocol": "UDP" },
                                    { "name": "dns-tcp", "containerPort": 53, "protocol": "TCP" },
                                    { "name": "metrics", "containerPort": 9153, "protocol": "TCP" },
                                ],
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": { "add": ["NET_BIND_SERVICE"], "drop": ["ALL"] },
                                    "readOnlyRootFilesystem": true,
                                },
                                "livenessProbe": {
                                    "httpGet": { "path": "/health", "port": 8080, "scheme": "HTTP" },
                                    "initialDelaySeconds": 60,
                                    "timeoutSeconds": 5,
                                    "successThreshold": 1,
                                    "failureThreshold": 5,
                                },
                                "readinessProbe": {
                                    "httpGet": { "path": "/ready", "port": 8181, "scheme": "HTTP" },
                                },
                                "volumeMounts": [{ "name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true }],
                            }],
                            "volumes": [{
                                "name": "config-volume",
                                "configMap": { "name": "coredns", "items": [{ "key": "Corefile", "path": "Corefile" }] },
                            }],
                        },
                    },
                },
            }),
        ),
        (
            "55-coredns-service.yaml",
            "The cluster DNS Service, at the address every kubelet gives its pods",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kube-dns",
                    "namespace": "kube-system",
                    "labels": {
                        "k8s-app": "kube-dns",
                        "kubernetes.io/cluster-service": "true",
                        "kubernetes.io/name": "CoreDNS",
                    },
                    "annotations": { "prometheus.io/port": "9153", "prometheus.io/scrape": "true" },
                },
                "spec": {
                    "selector": labels,
                    "clusterIP": dns_service_ip(d).to_string(),
                    "ports": [
                        { "name": "dns", "port": 53, "protocol": "UDP" },
                        { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
                        { "name": "metrics", "port": 9153, "protocol": "TCP" },
                    ],
                },
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::testing::{at, demo, parsed};

    const TOKEN: BootstrapToken<'static> = BootstrapToken {
        id: "012345",
        secret: "1234567890e12345",
        expiration: "2026-12-08T00:00:00Z",
    };

    #[test]
    fn files_are_ordered_namespace_first_and_hold_one_object_each() {
        let files = addons(&demo(), &TOKEN);
        let names: Vec<&str> = files.iter().map(|m| m.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "00-namespace-kube-flannel.yaml");
        for file in &files {
            assert!(file.yaml.starts_with("# "), "{}", file.name);
            assert!(file.yaml.contains("Generated by kindling"), "{}", file.name);
            assert!(!file.yaml.contains("\n---"), "{}", file.name);
        }
        let secrets: Vec<&str> = files
            .iter()
            .filter(|m| m.holds_secret())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(secrets, [BOOTSTRAP_TOKEN_SECRET_FILE]);
    }

    #[test]
    fn coredns_listens_on_the_tenth_service_address() {
        let files = parsed(&addons(&demo(), &TOKEN));
        let service = &files["55-coredns-service.yaml"];
        assert_eq!(at(service, "spec/clusterIP"), "172.30.0.10");
        let corefile = at(&files["53-coredns-configmap.yaml"], "data/Corefile");
        assert!(
            corefile
                .as_str()
                .unwrap()
                .contains("kubernetes cluster.local in-addr.arpa ip6.arpa {")
        );
    }

    #[test]
    fn coredns_follows_another_service_network() {
        let mut d = demo();
        d.install_config.networking.service_network = vec!["10.96.0.0/12".parse().unwrap()];
        let files = parsed(&addons(&d, &TOKEN));
        assert_eq!(
            at(&files["55-coredns-service.yaml"], "spec/clusterIP"),
            "10.96.0.10"
        );
    }

    #[test]
    fn flannel_uses_the_cluster_network_and_its_host_prefix() {
        let files = parsed(&addons(&demo(), &TOKEN));
        let conf = at(&files["33-flannel-configmap.yaml"], "data/net-conf.json");
        let conf: Value = serde_json::from_str(conf.as_str().unwrap()).unwrap();
        assert_eq!(conf["Network"], "10.128.0.0/14");
        assert_eq!(conf["SubnetLen"], 23);
        assert_eq!(conf["Backend"]["Type"], "vxlan");
        let cni = at(&files["33-flannel-configmap.yaml"], "data/cni-conf.json");
        let cni: Value = serde_json::from_str(cni.as_str().unwrap()).unwrap();
        assert_eq!(cni["plugins"][0]["type"], "flannel");
    }

    #[test]
    fn kube_proxy_gets_the_cluster_cidr() {
        let files = parsed(&addons(&demo(), &TOKEN));
        let conf = at(&files["42-kube-proxy-configmap.yaml"], "data/config.conf");
        let conf = crate::manifests::testing::parse(conf.as_str().unwrap());
        assert_eq!(conf["kind"], "KubeProxyConfiguration");
        assert_eq!(conf["clusterCIDR"], "10.128.0.0/14");
    }

    #[test]
    fn flannel_and_kube_proxy_reach_the_apiserver_at_api_int() {
        let files = parsed(&addons(&demo(), &TOKEN));
        for (file, container) in [
            (
                "34-flannel-daemonset.yaml",
                "spec/template/spec/containers/0/env",
            ),
            (
                "43-kube-proxy-daemonset.yaml",
                "spec/template/spec/containers/0/env",
            ),
        ] {
            let env = at(&files[file], container).as_array().unwrap();
            let get = |name: &str| {
                env.iter()
                    .find(|e| e["name"] == name)
                    .map(|e| e["value"].clone())
            };
            assert_eq!(
                get("KUBERNETES_SERVICE_HOST"),
                Some(json!("api-int.demo.example.localdomain")),
                "{file}"
            );
            assert_eq!(
                get("KUBERNETES_SERVICE_PORT"),
                Some(json!("6443")),
                "{file}"
            );
            assert_eq!(
                at(&files[file], "spec/template/spec/tolerations"),
                &json!([{ "operator": "Exists" }]),
                "{file}"
            );
        }
    }

    #[test]
    fn the_bootstrap_token_secret_is_what_the_apiserver_looks_for() {
        let files = parsed(&addons(&demo(), &TOKEN));
        let secret = &files[BOOTSTRAP_TOKEN_SECRET_FILE];
        assert_eq!(at(secret, "metadata/name"), "bootstrap-token-012345");
        assert_eq!(at(secret, "metadata/namespace"), "kube-system");
        assert_eq!(at(secret, "type"), "bootstrap.kubernetes.io/token");
        assert_eq!(
            at(secret, "stringData"),
            &json!({
                "description": "kindling: the token kubelets join the cluster with",
                "token-id": "012345",
                "token-secret": "1234567890e12345",
                "expiration": "2026-12-08T00:00:00Z",
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:kindling:default-node-token",
            })
        );
    }

    #[test]
    fn bootstrap_tokens_may_request_certificates_but_nothing_approves_them() {
        let files = parsed(&addons(&demo(), &TOKEN));
        let bootstrapper = &files["10-rbac-node-bootstrapper.yaml"];
        assert_eq!(at(bootstrapper, "roleRef/name"), "system:node-bootstrapper");
        assert_eq!(at(bootstrapper, "subjects/0/name"), "system:bootstrappers");
        let renewal = &files["11-rbac-node-client-cert-renewal.yaml"];
        assert_eq!(
            at(renewal, "roleRef/name"),
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
        );
        assert_eq!(at(renewal, "subjects/0/name"), "system:nodes");
        for (file, object) in &files {
            let text = object.to_string();
            assert!(
                !text.contains("certificatesigningrequests:nodeclient"),
                "{file} grants auto-approval"
            );
        }
        let kubelet_api = &files["13-rbac-apiserver-to-kubelet-binding.yaml"];
        assert_eq!(at(kubelet_api, "subjects/0/kind"), "User");
        assert_eq!(
            at(kubelet_api, "subjects/0/name"),
            "kube-apiserver-kubelet-client"
        );
        assert_eq!(
            at(kubelet_api, "roleRef/name"),
            at(
                &files["12-rbac-apiserver-to-kubelet-role.yaml"],
                "metadata/name"
            )
        );
    }

    #[test]
    fn an_ipv6_pod_network_configures_flannel_for_ipv6() {
        let conf = flannel_net_conf(ClusterNetwork {
            cidr: "fd01::/48".parse().unwrap(),
            host_prefix: 64,
        });
        assert_eq!(conf["IPv6Network"], "fd01::/48");
        assert_eq!(conf["IPv6SubnetLen"], 64);
        assert_eq!(conf["EnableIPv4"], false);
    }
}
