//! Where things live on a machine. Manifests (static pods, kubelet) and Ignition configs both
//! refer to these paths, so they are defined once here.

/// Kubernetes PKI on control-plane machines.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// Cluster root CA certificate (every machine). Its key stays in the asset directory.
pub const CA_CERT: &str = "/etc/kubernetes/pki/ca.crt";
/// The CSR signer, under the root: the controller manager signs the kubelets' client and
/// serving certificates with it (control plane only).
pub const CSR_SIGNER_CERT: &str = "/etc/kubernetes/pki/csr-signer.crt";
pub const CSR_SIGNER_KEY: &str = "/etc/kubernetes/pki/csr-signer.key";
/// The root CA and the CSR signer: what the API server and the controller manager trust for
/// client certificates and the kubelets' serving certificates.
pub const CLIENT_CA_BUNDLE: &str = "/etc/kubernetes/pki/client-ca-bundle.crt";
/// kube-apiserver serving certificate.
pub const APISERVER_CERT: &str = "/etc/kubernetes/pki/apiserver.crt";
pub const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// kube-apiserver's client certificate towards the kubelets (logs, exec).
pub const APISERVER_KUBELET_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.crt";
pub const APISERVER_KUBELET_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.key";
/// kube-apiserver's client certificate towards etcd.
pub const APISERVER_ETCD_CLIENT_CERT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
pub const APISERVER_ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";
/// Front proxy (aggregation layer).
pub const FRONT_PROXY_CA_CERT: &str = "/etc/kubernetes/pki/front-proxy-ca.crt";
pub const FRONT_PROXY_CLIENT_CERT: &str = "/etc/kubernetes/pki/front-proxy-client.crt";
pub const FRONT_PROXY_CLIENT_KEY: &str = "/etc/kubernetes/pki/front-proxy-client.key";
/// Service-account token signing key pair.
pub const SA_KEY: &str = "/etc/kubernetes/pki/sa.key";
pub const SA_PUB: &str = "/etc/kubernetes/pki/sa.pub";
/// etcd: its own CA, and this machine's member certificates.
pub const ETCD_CA_CERT: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const ETCD_SERVER_CERT: &str = "/etc/kubernetes/pki/etcd/server.crt";
pub const ETCD_SERVER_KEY: &str = "/etc/kubernetes/pki/etcd/server.key";
pub const ETCD_PEER_CERT: &str = "/etc/kubernetes/pki/etcd/peer.crt";
pub const ETCD_PEER_KEY: &str = "/etc/kubernetes/pki/etcd/peer.key";
/// etcd data.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

/// Kubeconfigs of the control-plane components (server: the local apiserver).
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
pub const SCHEDULER_KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";
/// Admin kubeconfig on the bootstrap machine, for `kindling agent bootstrap` (server: localhost).
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
/// The kubelet's bootstrap-token kubeconfig (server: api-int); the kubelet writes
/// `KUBELET_KUBECONFIG` once its client CSR is approved.
pub const KUBELET_BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// The kubelet's per-machine arguments (node name, IP, labels, taints), read by its unit.
pub const KUBELET_ENV: &str = "/etc/kubernetes/kubelet.env";
/// KubeletConfiguration.
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// Where the kubelet keeps its own (rotated) certificates.
pub const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";
/// Static pods.
pub const STATIC_PODS_DIR: &str = "/etc/kubernetes/manifests";
/// kubelet systemd unit name.
pub const KUBELET_UNIT: &str = "kubelet.service";

/// The kindling binary, fetched from `<serverURL>/assets/kindling`.
pub const KINDLING_BIN: &str = "/usr/local/bin/kindling";
/// Cluster manifests that `kindling agent bootstrap` applies, in file-name order.
pub const AGENT_MANIFESTS_DIR: &str = "/opt/kindling/manifests";
/// The masters' labels, for the bootstrap agent (JSON: node name to labels).
pub const NODE_LABELS: &str = "/opt/kindling/node-labels.json";
/// A master's etcd member pod; `kindling agent join-master` adds the member to the cluster, then
/// moves this file into `STATIC_PODS_DIR` with the membership it found.
pub const ETCD_MEMBER_POD: &str = "/opt/kindling/etcd-member.yaml";
/// Stage markers and stage records of the agent.
pub const AGENT_STATE_DIR: &str = "/opt/kindling";
pub const AGENT_LOG_DIR: &str = "/var/log/kindling";
/// The machine's MAC and token for `kindling serve` (`mac=`, `token=`), root only: the agent
/// sends its stage records as events with them, and the first boot its install report.
pub const AGENT_IDENTITY: &str = "/etc/kindling/identity";
/// The rendering of its pool a machine runs (`rendered-<pool>-<hash>`), which `kindling serve`
/// adds to the config it serves; the node agent reads it at first boot.
pub const RENDERING: &str = "/etc/kindling/rendering";
/// Every machine's report, from its first boot, that its install is done: `kindling serve` then
/// stops serving its secret-bearing configs (its install window closes). The marker keeps it
/// to one report per install.
pub const INSTALLED_REPORT_UNIT: &str = "kindling-installed.service";
pub const INSTALLED_MARKER: &str = "/var/lib/kindling/installed-reported";
/// The join-master unit on masters.
pub const JOIN_MASTER_UNIT: &str = "kindling-join-master.service";
/// The node agent's unit, on every machine of a pool.
pub const NODE_AGENT_UNIT: &str = "kindling-node-agent.service";
/// The agent's systemd unit on the bootstrap machine.
pub const BOOTSTRAP_AGENT_UNIT: &str = "kindling-bootstrap.service";
